# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for the structure-search report and baselines' bookkeeping."""

import os

import jax
import numpy as np
import pytest

from paramsel_jax import report
from paramsel_jax.structure import baselines
from paramsel_jax.structure import results
from paramsel_jax.structure import presets
from paramsel_jax.structure import space as space_lib


def _run(accuracy, num_params=100, seed=0, **extra):
  return {'accuracy': accuracy, 'loss': 0.5, 'valid_accuracy': accuracy,
          'num_params': num_params, 'num_flops': 2 * num_params,
          'input_noise': {'0.1': accuracy - 0.1},
          'weight_noise': {'0.1': accuracy - 0.2}, 'seconds': 1.5,
          'seed': seed, **extra}


def _methods(accuracies):
  runs = [_run(a, seed=i) for i, a in enumerate(accuracies)]
  return {'searched': {'runs': runs, 'summary': results.summarize_runs(runs),
                       'agreement': {'all_agree': 1.0, 'pairwise': 1.0},
                       'search_seconds': 10.0}}


def test_summaries_are_report_summarize_with_the_sample_std():
  runs = _methods([0.9, 0.8, 0.7])['searched']['runs']
  summary = results.summarize_runs(runs)
  assert summary['accuracy'] == report.summarize([0.9, 0.8, 0.7])
  np.testing.assert_allclose(summary['accuracy']['std'], 0.1)  # ddof=1.
  assert summary['input_noise']['0.1']['n'] == 3
  assert summary['num_params']['mean'] == 100
  assert summary['seconds'] == 4.5


def test_table_shows_the_sample_std_and_says_so():
  table = results.results_table(_methods([0.9, 0.8]))
  header, rule, row, *footer = table.splitlines()
  assert header.split()[:3] == ['method', 'params', 'FLOPs']
  assert row.split()[3:5] == ['100', '200']
  assert set(rule.replace(' ', '')) == {'-'}
  # mean 85%, sample std 7.07% (the population std would be 5.00%).
  assert 'searched (argmax, retrained)' in row and '85.00 ± 7.07' in row
  assert '75.0 ± 7.1' in row and row.endswith('13')
  assert 'sample standard deviation over seeds (ddof=1)' in footer[0]


def test_table_marks_diverged_seeds():
  table = results.results_table(_methods([0.9, float('nan')]))
  assert '90.00 ± 0.00 (1/2)' in table


def test_plot_is_written_atomically(tmp_path):
  path = tmp_path / 'plot.png'
  results.plot_accuracy_vs_cost(_methods([0.9, 0.8]), str(path), title='t')
  assert path.read_bytes()[:4] == b'\x89PNG'
  assert os.listdir(tmp_path) == ['plot.png']


def _fake_fit(model, key, name):
  del model
  acc = float(jax.random.uniform(key))
  return _run(acc, num_params=int(1000 * acc), name=name)


def test_random_search_keeps_the_best_valid_and_the_small_ones():
  space = presets.mlp_space((4, 4, 1), 3, widths=(2, 4), depth=2)
  searched = [{'seed': 0, 'num_params': 500}, {'seed': 1, 'num_params': 0}]
  out = baselines.random_search(space, searched, 3, _fake_fit)
  best = out['random']['runs']
  assert [len(b['samples']) for b in best] == [3, 3]
  for b in best:
    assert b['valid_accuracy'] == max(r['valid_accuracy']
                                      for r in b['samples'])
  assert out['random']['summary']['seconds'] == out['random']['seconds'] == 9.0
  small = out.get('random_small', {'runs': []})['runs']
  assert all(r['seed'] == 0 and r['num_params'] <= 500 for r in small)


@pytest.mark.parametrize('method', ['fixed', 'reference'])
def test_baselines_use_their_own_key_stream(method):
  space = presets.mlp_space((4, 4, 1), 3, widths=(2, 4), depth=2)
  searched = [{'seed': 3, 'num_params': 60}]
  if method == 'fixed':
    out = baselines.fixed_baseline(space, searched, _fake_fit)
  else:
    out = baselines.reference_baseline('lenet300', 3, (3,), _fake_fit)
  key = jax.random.fold_in(jax.random.key(3), baselines.STREAMS[method])
  assert out['runs'][0]['accuracy'] == float(jax.random.uniform(key))
  assert out['runs'][0]['seed'] == 3
  assert out['summary']['accuracy']['n'] == 1
