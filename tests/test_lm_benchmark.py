"""experiments/lm_benchmark.py's machinery, on a tiny GPT and synthetic tokens."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paramsel_jax.lab import lm_benchmark as bench
from paramsel_jax.lab import lm_data
from paramsel_jax.lab import lm_experiment as lm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'lm_benchmark.py')
TINY = lm.LMConfig(steps=40, check_every=10, freeze_at=20, seeds=(0, 1),
                   num_layers=2, embed_dim=16, num_heads=2, context=16,
                   eval_windows=16, eval_batch_size=16, batch_size=4,
                   warmup_steps=5, time_repeats=1, data='synthetic',
                   pretrain_steps=20, time_steps=False)


@pytest.mark.parametrize('change, message', [
    (dict(arms=('psgld', 'dense')), 'dense first'),
    (dict(arms=('dense', 'sgd')), "arms='sgd'"),
    (dict(scenarios=('zero-shot',)), "scenarios='zero-shot'"),
    (dict(overrides={'lisa': {'gamma': 1}}, arms=('dense', 'psgld')),
     "set='lisa'"),
    (dict(overrides={'psgld': {'treshold': 1.0}}, arms=('dense', 'psgld')),
     'psgld.treshold'),
    (dict(overrides={'psgld': {'threshold': float('nan')}},
          arms=('dense', 'psgld')), 'threshold=nan'),
])
def test_bad_settings_are_refused_before_any_work(change, message):
  config = dataclasses.replace(bench.LMBenchmarkConfig(lm=TINY), **change)
  with pytest.raises(ValueError, match=message.replace('.', r'\.')
                     .replace('(', r'\(')):
    bench.validate_benchmark(config, 16)


def test_parse_settings_refuses_a_malformed_item():
  with pytest.raises(ValueError, match="set='lisa:gamma=2'"):
    bench.parse_settings(['lisa:gamma=2'])


def test_summary_speedup_and_loss_at_equal_wall_clock():
  check = lambda loss: {'metrics': {'val_loss': loss}, 'frozen_share': [0, 0]}
  runs = {'dense': {'checks': [check([2.0, 2.1]), check([1.5, 1.6])]},
          'fast': {'checks': [check([1.8, 1.9]), check([1.4, 1.7])]}}
  summaries = {'dense': {'wall_s': [2.0, 4.0],
                         'time_to_dense_final_s': [4.0, 4.0]},
               'fast': {'wall_s': [1.0, 2.0],
                        'time_to_dense_final_s': [2.0, None]}}
  out = bench.summarize_arms(runs, summaries)
  assert out['equal_wall_s'] == 2.0
  assert out['arms']['fast']['speedup'] == [2.0, None]
  assert out['arms']['dense']['val_loss_at_equal_wall'] == [2.0, 2.1]
  assert out['arms']['fast']['val_loss_at_equal_wall'] == [1.4, 1.7]


def test_tuning_keeps_the_candidate_reaching_dense_soonest(monkeypatch):
  seen = {}

  def fake_runs(lm, model, splits, init_params, arms, log, checkpointer=None):
    assert checkpointer is None
    seen.update(arms=arms, seeds=lm.seeds)
    times = {'dense': [9.0], 'lisa#0': [None], 'lisa#1': [4.0]}
    return {'summaries': {name: {'time_to_dense_final_s': times[name],
                                 'final_val_loss': [1.0]} for name in arms}}
  monkeypatch.setattr(lm, 'run_online_arms', fake_runs)
  config = bench.LMBenchmarkConfig(lm=TINY, arms=('dense', 'lisa', 'fixed'),
                                   tune=True, tune_seeds=(7,))
  chosen, scores = bench.tune(config, None, None, None, log=lambda s: None)
  # Only the arms with a grid run (fixed has none), on the tuning seeds.
  assert sorted(seen['arms']) == ['dense', 'lisa#0', 'lisa#1']
  assert seen['seeds'] == (7,) and seen['arms']['lisa#1'].gamma == 2
  assert chosen == {'lisa': {'gamma': 2}} and set(scores) == {'lisa'}


@pytest.mark.slow
def test_benchmark_writes_json_table_and_plot(tmp_path):
  config = bench.LMBenchmarkConfig(
      lm=dataclasses.replace(TINY, workdir=str(tmp_path / 'work'), steps=20),
      scenarios=('finetune',), arms=('dense', 'lisa'),
      overrides={'lisa': {'gamma': 1}})
  out = bench.run_lm_benchmark(
      config, str(tmp_path),
      data={'finetune': lm_data.synthetic_data('finetune')},
      log=lambda s: None)['finetune']
  base = tmp_path / 'lm_benchmark_finetune'
  result = json.loads(base.with_suffix('.json').read_text())
  assert base.with_suffix('.png').read_bytes()[:4] == b'\x89PNG'
  assert set(result['summaries']) == {'dense', 'lisa'}
  assert result['arms']['lisa']['settings']['gamma'] == 1  # --set wins.
  assert result['benchmark']['arms']['dense']['speedup'] == [1.0, 1.0]
  lisa = result['summaries']['lisa']
  assert 0 < np.mean(lisa['frozen_share']) < 1  # one of 2 blocks trains.
  for s in result['summaries'].values():
    assert np.all(np.isfinite(s['final_val_loss'] + s['test_loss']))
  assert 'val loss at' in out['table'] and '× dense (95% CI)' in out['table']


@pytest.mark.slow  # a subprocess: jax's import alone is ~10 s here.
def test_script_refuses_a_bad_arm_in_one_line():
  done = subprocess.run(
      [sys.executable, SCRIPT, '--data=synthetic', '--arms=dense,lisaa'],
      capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert done.returncode == 2, done.stderr[-2000:]
  assert "arms='lisaa'" in done.stderr and 'Traceback' not in done.stderr
