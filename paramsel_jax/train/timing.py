# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Timing noisy work fairly: interleaved rounds and paired ratios.

On a shared machine one variant's rate moves by 2x from one minute to the
next (PERF_NOTES.md), so two variants are compared only when they were timed
seconds apart. A `Case` is one timed variant: a `run()` that does one
measurement's work and waits for it. `warm_up` calls each case once, untimed
(tracing, compilation, warm-up); `run_rounds` then times `repeats` rounds,
each running the groups of cases in a shuffled order and each group's cases
back to back, forwards in even rounds and backwards in odd ones (so no case
always goes first). `paired_ratio` is the median over rounds of two cases'
rates *in the same round*.

  >>> fast = Case('fast', 'no work', lambda: None, steps=1000)
  >>> slow = Case('slow', 'a 1 ms sleep', lambda: time.sleep(1e-3), steps=1)
  >>> warm_up([fast, slow])
  >>> run_rounds([fast, slow], repeats=3)
  >>> len(fast.seconds), paired_ratio(fast, slow) > 1.0
  (3, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import operator
import statistics
import time
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass
class Case:
  """One timed variant: `run()` does the work and waits for it.

  Attributes:
    name: a unique key, e.g. 'lenet300/jax/runner'.
    label: what a table prints.
    run: does one measurement's work, blocks until done, and returns None or
      a dict of named sub-timings in seconds (see `PartTimer`).
    steps: training steps (or matmuls) per `run()`.
    examples: examples per `run()` (0: not a training case).
    flops: FLOPs per `run()` (0: not counted).
    group: cases compared with each other; a round runs them back to back.
    seconds: wall time of each timed `run()`, one per round.
    parts: sub-timings per round, when `run` returns them.
    first_s: the first, untimed call (tracing, compilation, warm-up).
  """

  name: str
  label: str
  run: Callable[[], dict[str, float] | None]
  steps: int
  examples: int = 0
  flops: float = 0.0
  group: str = ''
  seconds: list[float] = dataclasses.field(default_factory=list)
  parts: list[dict[str, float]] = dataclasses.field(default_factory=list)
  first_s: float = float('nan')

  def time_once(self) -> float:
    """Calls `run()` once; returns its wall time and keeps its sub-timings."""
    tic = time.perf_counter()
    parts = self.run()
    seconds = time.perf_counter() - tic
    if parts:
      self.parts.append(parts)
    return seconds

  def warm_up(self) -> None:
    """The first, untimed call: sets `first_s`, keeps no sub-timings."""
    self.first_s = self.time_once()
    self.parts.clear()

  def measure(self) -> None:
    """One timed call, appended to `seconds`."""
    self.seconds.append(self.time_once())

  @property
  def rates(self) -> list[float]:
    """Steps (or matmuls) per second, per round."""
    return [self.steps / s for s in self.seconds]

  @property
  def flop_rates(self) -> list[float]:
    """FLOPs per second, per round."""
    return [self.flops / s for s in self.seconds]

  @property
  def median_rate(self) -> float:
    """The median over rounds of `rates`."""
    return statistics.median(self.rates)

  @property
  def compile_s(self) -> float:
    """First call minus a typical call: tracing + compilation (+ warm-up)."""
    return self.first_s - statistics.median(self.seconds)

  def record(self) -> dict[str, Any]:
    """What was measured, for a results JSON (`run` left out)."""
    return {'label': self.label, 'steps': self.steps,
            'examples': self.examples, 'flops': self.flops,
            'seconds': self.seconds, 'first_call_s': self.first_s,
            'compile_s': self.compile_s, 'parts': self.parts,
            'median_rate': self.median_rate}


def paired_median(a: Sequence[Any], b: Sequence[Any],
                  op: Callable[[Any, Any], float] = operator.truediv
                  ) -> float:
  """Median over rounds of `op(a[r], b[r])`: two per-round series, paired.

  Example:
    >>> paired_median([2.0, 9.0, 4.0], [1.0, 3.0, 1.0])
    3.0
  """
  return statistics.median(op(x, y) for x, y in zip(a, b))


def paired_ratio(a: Case, b: Case) -> float:
  """Median over rounds of a's rate / b's rate in the same round.

  Example:
    >>> a = Case('a', 'a', lambda: None, steps=2, seconds=[1.0, 2.0, 1.0])
    >>> b = Case('b', 'b', lambda: None, steps=1, seconds=[1.0, 1.0, 2.0])
    >>> paired_ratio(a, b)
    2.0
  """
  return paired_median(a.rates, b.rates)


def wall_clock(steps_run: Any, rates: Any, overhead_s: Any = 0.0
               ) -> np.ndarray:
  """A run's seconds at the end of each interval, rebuilt from timed rates.

  A run that trains first and has its step programs timed afterwards, side
  by side (`run_rounds`), keeps compilation, evaluation and machine noise out
  of its clock: each interval costs its steps over the rate of the step that
  ran, plus the host work around it.

  Args:
    steps_run: the steps of each interval.
    rates: steps per second of the step that ran in each interval (or one
      rate for all).
    overhead_s: seconds of host work in each interval (or one for all).

  Returns:
    The cumulative seconds at the end of each interval.

  Example:
    >>> wall_clock([100, 100], [50.0, 100.0], [0.5, 0.0])
    array([2.5, 3.5])
  """
  return np.cumsum(np.asarray(steps_run, np.float64)
                   / np.asarray(rates, np.float64)
                   + np.asarray(overhead_s, np.float64))


def warm_up(cases: Sequence[Case],
            log: Callable[[Case], None] | None = None) -> None:
  """Calls every case once, untimed, in order; `log(case)` after each."""
  for case in cases:
    case.warm_up()
    if log is not None:
      log(case)


def groups_of(cases: Sequence[Case]) -> dict[str, list[Case]]:
  """The cases by `group`, groups and members in order of first appearance.

  Example:
    >>> cs = [Case(n, n, lambda: None, 1, group=g) for n, g in
    ...       (('a', 'x'), ('b', 'y'), ('c', 'x'))]
    >>> {g: [c.name for c in m] for g, m in groups_of(cs).items()}
    {'x': ['a', 'c'], 'y': ['b']}
  """
  groups: dict[str, list[Case]] = {}
  for case in cases:
    groups.setdefault(case.group, []).append(case)
  return groups


def round_order(groups: dict[str, list[Case]], round_index: int,
                rng: np.random.Generator) -> list[Case]:
  """One round's order: groups shuffled, members forwards or backwards.

  Even rounds run each group's members in order, odd rounds in reverse.

  Example:
    >>> cs = [Case(n, n, lambda: None, 1, group='g') for n in 'abc']
    >>> rng = np.random.default_rng(0)
    >>> [c.name for c in round_order(groups_of(cs), 1, rng)]
    ['c', 'b', 'a']
  """
  names = list(groups)
  order = []
  for g in rng.permutation(len(names)):
    members = groups[names[g]]
    order.extend(members if round_index % 2 == 0 else members[::-1])
  return order


def run_rounds(cases: Sequence[Case], repeats: int, seed: int = 0,
               after_round: Callable[[int, float], None] | None = None
               ) -> None:
  """Times `repeats` interleaved rounds; each case is measured once a round.

  Args:
    cases: the cases, warmed up (`warm_up`); their `group`s say which run
      back to back (one group per case: a fully shuffled order).
    repeats: the number of rounds.
    seed: the seed of the groups' shuffled order.
    after_round: called with the round's index (from 0) and its wall time
      in seconds after each round, e.g. to log progress.
  """
  groups = groups_of(cases)
  rng = np.random.default_rng(seed)
  for r in range(repeats):
    tic = time.perf_counter()
    for case in round_order(groups, r, rng):
      case.measure()
    if after_round is not None:
      after_round(r, time.perf_counter() - tic)


class PartTimer:
  """Adds the wall time of calls to named parts, for a case's sub-timings.

  Each call runs `fn(*args)`, waits for its result (`jax.block_until_ready`)
  and adds the time to `part`.

  Example:
    >>> timer = PartTimer(('work', 'other'))
    >>> timer('work', sum, [1, 2])
    3
    >>> sorted(timer.seconds), timer.seconds['other']
    (['other', 'work'], 0.0)
  """

  def __init__(self, parts: Sequence[str]):
    self.seconds = dict.fromkeys(parts, 0.0)

  def __call__(self, part: str, fn: Callable, *args):
    """Returns ``fn(*args)``, its time (until ready) added to ``part``."""
    tic = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    self.seconds[part] += time.perf_counter() - tic
    return out
