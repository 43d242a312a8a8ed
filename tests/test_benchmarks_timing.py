# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of timing: the round order, paired ratios, sub-timings."""

import pytest

from paramsel_jax.train import timing


def _recording_cases(calls, spec):
  """Cases named by `spec` ((name, group), ...) that append their name."""
  return [timing.Case(name, name, lambda n=name: calls.append(n), steps=1,
                      group=group) for name, group in spec]


def test_each_round_runs_every_case_once_groups_back_to_back():
  calls = []
  cases = _recording_cases(calls, (('a1', 'a'), ('b1', 'b'), ('a2', 'a'),
                                   ('b2', 'b'), ('c1', 'c')))
  rounds = []

  def after_round(r, seconds):
    del r, seconds
    rounds.append(calls[:])
    calls.clear()

  timing.run_rounds(cases, repeats=6, seed=3, after_round=after_round)
  assert [len(r) for r in rounds] == [5] * 6
  for r, order in enumerate(rounds):
    forwards = r % 2 == 0
    for group, members in (('a', ['a1', 'a2']), ('b', ['b1', 'b2'])):
      i = order.index(members[0] if forwards else members[1])
      expected = members if forwards else members[::-1]
      assert order[i:i + 2] == expected, (r, order)
  assert all(len(c.seconds) == 6 and min(c.seconds) > 0 for c in cases)
  # The groups' order is shuffled: not the same in every round.
  firsts = {order[0][0] for order in rounds}
  assert len(firsts) > 1


def test_round_order_depends_only_on_the_seed():
  def orders(seed):
    calls = []
    cases = _recording_cases(calls, [(str(i), str(i)) for i in range(6)])
    timing.run_rounds(cases, repeats=4, seed=seed)
    return calls
  assert orders(1) == orders(1)
  assert orders(1) != orders(2)


def test_paired_ratio_pairs_rounds_not_medians():
  a = timing.Case('a', 'a', lambda: None, steps=1,
                  seconds=[1 / 10, 1 / 2, 1 / 1])
  b = timing.Case('b', 'b', lambda: None, steps=1,
                  seconds=[1 / 5, 1 / 1, 1 / 10])
  # Per round: 10/5, 2/1, 1/10 -> median 2; the medians' ratio is 2/5.
  assert timing.paired_ratio(a, b) == pytest.approx(2.0)
  assert a.median_rate / b.median_rate == pytest.approx(0.4)


def test_warm_up_is_untimed_and_compile_s_is_first_minus_median():
  seen = []
  case = timing.Case('a', 'a', lambda: {'x': 1.0}, steps=4, examples=8)
  timing.warm_up([case], seen.append)
  assert seen == [case] and case.seconds == [] and case.parts == []
  case.seconds = [1.0, 3.0, 2.0]
  case.first_s = 5.0
  assert case.compile_s == 3.0
  record = case.record()
  assert record['median_rate'] == 2.0 and record['first_call_s'] == 5.0
  assert set(record) == {'label', 'steps', 'examples', 'flops', 'seconds',
                         'first_call_s', 'compile_s', 'parts', 'median_rate'}


def test_measure_keeps_the_sub_timings_of_each_round():
  def run():
    timer = timing.PartTimer(('a', 'b'))
    timer('a', lambda: None)
    timer('a', lambda: None)
    return timer.seconds
  case = timing.Case('c', 'c', run, steps=1)
  case.warm_up()
  case.measure()
  case.measure()
  assert len(case.parts) == 2
  assert all(p['b'] == 0.0 and p['a'] > 0.0 for p in case.parts)
