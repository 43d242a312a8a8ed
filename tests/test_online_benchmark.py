"""Smoke test of the online time-to-accuracy benchmark: it runs, tiny, and its
numbers are consistent (never how fast anything is)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from paramsel_jax.lab import experiment
from paramsel_jax.lab.benchmarks import online_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'online_benchmark.py')


@pytest.mark.slow
def test_tiny_benchmark_writes_consistent_results(tmp_path):
  done = subprocess.run(
      [sys.executable, SCRIPT, '--models=lenet300', '--datasets=synthetic',
       '--steps=50', '--method_steps=75', '--check_every=25', '--eta0=25',
       '--repeats=1', '--seeds=0,1', '--thresholds=psgld=3',
       '--methods=dense,fixed:unit,psgld:unit,apf:unit',
       f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  assert '| dense |' in done.stdout
  # Progress with rate and remaining time: over all methods, over the rounds.
  for phase in ('synthetic / lenet300, all methods: 275/275 steps',
                '  timed rounds: 1/1 rounds'):
    assert re.search(re.escape(phase) + r' \[[\d:]+<[\d:?]+, +[\d.]+ ?'
                     r'(\w+/s|s/\w+)\]', done.stdout), (phase, done.stdout[-3000:])
  result = json.loads((tmp_path / 'online_synthetic_lenet300.json').read_text())
  assert (tmp_path / 'online_synthetic_lenet300.png').read_bytes()[:4] == b'\x89PNG'
  runs = {r['name']: r for r in result['runs']}
  assert set(runs) == {'dense', 'fixed η0 topgrad unit k=10%',
                       'psgld (unit, threshold 3)', 'apf (unit)'}
  assert runs['dense']['steps'][-1] == 50  # dense trains S steps,
  assert runs['apf (unit)']['steps'][-1] == 75  # the others up to 75.
  fixed = runs['fixed η0 topgrad unit k=10%']
  # At η0 = 25 (the first check), 90% of the parameters are frozen.
  assert np.allclose(fixed['frozen_share'][0], 0.9, atol=0.01)
  assert np.allclose(fixed['frozen_at_S'], 0.9, atol=0.01)
  assert np.all(np.asarray(runs['dense']['frozen_share']) == 0)
  for run in result['runs']:
    assert np.all(np.isfinite(run['final_accuracy']))
    assert np.all(np.diff(run['wall_s']) > 0)
    assert 1 <= run['compilations'] <= 8
  assert runs['dense']['speedup'] == [1.0, 1.0] or None in runs['dense']['speedup']


@pytest.mark.slow
def test_bad_thresholds_are_refused_before_any_work():
  done = subprocess.run(
      [sys.executable, SCRIPT, '--datasets=synthetic', '--models=lenet300',
       '--thresholds=psgld'], capture_output=True, text=True, timeout=300,
      cwd=ROOT)
  assert done.returncode != 0
  assert "'psgld'" in done.stderr and 'NAME=NUMBER' in done.stderr
  assert 'Traceback' not in done.stderr


@pytest.mark.slow
def test_bad_method_is_refused_before_any_work():
  done = subprocess.run(
      [sys.executable, SCRIPT, '--datasets=synthetic', '--models=lenet300',
       '--methods=dense,psgld:row'], capture_output=True, text=True,
      timeout=300, cwd=ROOT)
  assert done.returncode != 0
  assert "'psgld:row'" in done.stderr and 'GRANULARITY' in done.stderr
  assert 'Traceback' not in done.stderr


def test_block_criteria_train_one_layer_at_a_time_on_a_plain_stack():
  methods = online_bench.make_methods(['dense', 'badam:layer', 'lisa:layer',
                                       'psgld_prefix:layer'])
  exp = experiment.ExperimentConfig(model='lenet300')
  out = {m.criterion: m.blocks for m in online_bench.with_blocks(methods, exp)}
  # Every layer is a block, in forward order; other criteria are untouched.
  assert out['badam'] == out['lisa'] == ('Dense_0', 'Dense_1', 'Dense_2')
  assert out['none'] is None and out['psgld_prefix'] is None
