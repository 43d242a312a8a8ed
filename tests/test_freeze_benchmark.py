"""Smoke test of the time-to-accuracy benchmark: it runs, tiny, and its
numbers are consistent (never how fast anything is)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'freeze_benchmark.py')


@pytest.mark.slow
def test_tiny_benchmark_writes_consistent_results(tmp_path):
  done = subprocess.run(
      [sys.executable, SCRIPT, '--models=lenet300', '--datasets=synthetic',
       '--steps=100', '--eta0=50', '--eval_every=25', '--time_steps=10',
       '--repeats=1', '--ks=0.1', '--granularities=element,layer',
       '--nomasked_element', '--window=20', '--budgets=params,flops',
       '--selectors=topgrad', '--seeds=0,1', f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  assert '| dense T |' in done.stdout
  # Progress with rate and remaining time during every long phase.
  for phase in (r'  dense T: 100/100 steps',
                r'  layer active topgrad k=10%: 100/100 steps',
                r'  timed rounds: 1/1 rounds'):
    assert re.search(re.escape(phase) + r' \[[\d:]+<[\d:?]+, +[\d.]+ ?'
                     r'(\w+/s|s/\w+)\]', done.stdout), (phase, done.stdout[-3000:])
  result = json.loads((tmp_path / 'synthetic_lenet300.json').read_text())
  assert (tmp_path / 'synthetic_lenet300.png').read_bytes()[:4] == b'\x89PNG'
  runs = {r['name']: r for r in result['runs']}
  assert set(runs) == {'dense T', 'element active topgrad k=10%',
                       'layer active topgrad k=10%',
                       'layer active topgrad k=10% of FLOPs'}
  assert runs['layer active topgrad k=10% of FLOPs']['budget'] == 'flops'
  # A tenth of LeNet-300's weight-gradient FLOPs cannot include its first
  # layer (88% of them).
  assert runs['layer active topgrad k=10% of FLOPs']['flops_vs_T'] < 0.75
  dense = runs['dense T']
  assert dense['ratio_vs_T'] == 1.0 and dense['flops_vs_T'] == 1.0
  packed = runs['element active topgrad k=10%']
  assert packed['alpha_count'] == [26661, 26661]
  assert abs(packed['opt_state_vs_T'] - 0.1) < 0.01  # O(k) Adam state.
  layer = runs['layer active topgrad k=10%']
  assert layer['flops_vs_T'] < 0.75  # the first layer is frozen.
  assert 'cached_ratio_vs_T' in layer and layer['cached_flops_vs_T'] < layer['flops_vs_T']
  for run in result['runs']:
    assert np.all(np.isfinite(run['final_accuracy']))
    assert len(run['eval_steps']) == len(run['test_accuracy'])


@pytest.mark.slow
def test_bad_budget_is_refused_before_any_work():
  done = subprocess.run(
      [sys.executable, SCRIPT, '--models=lenet300', '--datasets=synthetic',
       '--budgets=params,time'], capture_output=True, text=True, timeout=300,
      cwd=ROOT)
  assert done.returncode != 0
  assert 'time' in done.stderr and 'flops' in done.stderr
  assert 'Traceback' not in done.stderr
