"""Smoke test of experiments/benchmark.py: every part runs, tiny, once.

It asserts that the script runs and writes complete results, never how fast
anything is (timings on a shared machine are noise at these sizes).
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

PARTS = ('throughput', 'peak', 'masked', 'protocol', 'seeds', 'diagnose')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'benchmark.py')
TINY = ['--models=lenet300', f'--parts={",".join(PARTS)}', '--repeats=1', '--mlp_steps=3',
        '--num_train=256', '--num_test=64', '--matmul_size=32',
        '--matmul_reps=2', '--eta0=4', '--eta1=4', '--window=2',
        '--chunk_size=3', '--num_seeds=2', '--seed_mlp_steps=2',
        '--nocold_protocol']


@pytest.mark.slow
def test_every_part_runs_tiny_and_writes_results(tmp_path):
  has_torch = importlib.util.find_spec('torch') is not None
  done = subprocess.run(
      [sys.executable, SCRIPT, *TINY, f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  out = done.stdout
  for text in ('steps/s', 'matmul peak', 'masked overhead', 'Protocol overhead',
               'seeds vmap / map', 'all stats, extra cost per step',
               'forward 68.1 M + backward 76.1 M = 144.2'):
    assert text in out, text
  if has_torch:
    assert 'Adam fused' in out
  else:
    assert 'PyTorch is not installed' in out

  (path,) = tmp_path.glob('benchmark_*.json')
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp')]
  results = json.loads(path.read_text())
  assert results['environment']['versions']['jax']
  assert results['environment']['machine']['jax_backend']
  cases = results['cases']
  expected = {'matmul', 'protocol/full', 'protocol/raw'} | {
      f'lenet300/{name}' for name in (
          'jax/runner', 'jax/scan_adam', 'jax/scan_masked',
          'jax/stats_all', 'jax/stats_topgrad', 'jax/step_loop', 'seeds/vmap',
          'seeds/map')}
  if has_torch:
    expected |= {'lenet300/torch/default', 'lenet300/torch/fused'}
  assert set(cases) == expected
  for name, case in cases.items():
    assert len(case['seconds']) == 1 and case['seconds'][0] > 0, name
  assert np.all(np.isfinite(list(results['ratios'].values())))
  targets = {t['target']: t for t in results['targets']}
  fused = targets['LeNet-300-100 Runner >= 2.0x PyTorch fused Adam']
  assert (fused['met'] is None) == (not has_torch)
  assert results['flops_per_step']['lenet300']['step'] == 144_230_400
