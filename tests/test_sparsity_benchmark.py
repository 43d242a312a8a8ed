"""Smoke test of the channel-sparsity benchmark: it runs, tiny, and writes
consistent results (never how fast anything is)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'sparsity_benchmark.py')


@pytest.mark.slow
def test_tiny_benchmark_writes_consistent_results(tmp_path):
  done = subprocess.run(
      [sys.executable, SCRIPT, '--model=lenet300', '--channels=0.25',
       '--batch_size=8', '--steps=2', '--eval_batch_size=16',
       '--eval_batches=1', '--num_batches=2', '--repeats=1',
       f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  assert '| channels 0.25 |' in done.stdout
  result = json.loads((tmp_path / 'sparsity_lenet300.json').read_text())
  assert (tmp_path / 'sparsity_lenet300.md').read_text().startswith(
      '# Channel sparsity: lenet300')
  runs = result['variants']
  assert set(runs) == {'dense', 'channels', 'channels_wide'}
  assert runs['dense']['train_speedup'] == 1.0
  assert runs['dense']['train_flops_ratio'] == 1.0
  # 784-300-100-10 at 75/300 and 25/100 units: the first layer's outputs
  # shrink 4x in both variants; narrow, the next layers' inputs too.
  assert runs['channels']['params'] == 784 * 75 + 75 + 75 * 25 + 25 + 25 * 10 + 10
  assert runs['channels']['train_flops_ratio'] > runs['channels_wide'][
      'train_flops_ratio'] > 2.0
  assert 'Dense_1 reads 75/300 input rows' in runs['channels']['plan']
  for run in runs.values():
    for part in ('train', 'eval'):
      assert np.isfinite(run[f'{part}_speedup']) and run[part]['seconds']


@pytest.mark.slow
def test_bad_channels_is_refused_before_any_work(tmp_path):
  done = subprocess.run(
      [sys.executable, SCRIPT, '--channels=1.5', f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert done.returncode == 2
  assert 'channels=1.5; accepted: 0 < channels <= 1' in done.stderr
  assert not os.listdir(tmp_path)
