"""experiments/lm.py and its machinery, on a tiny GPT and synthetic tokens.

Nothing here reads the real Shakespeare data: `lm_experiment.synthetic_data`
is passed in (or `--data=synthetic`).
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from paramsel_jax.lab import lm_data
from paramsel_jax.lab import lm_experiment as lm
from paramsel_jax.lab import lm_report
from paramsel_jax.models import gpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'lm.py')
TINY = lm.LMConfig(steps=40, check_every=20, freeze_at=20, seeds=(0,),
                   num_layers=1, embed_dim=16, num_heads=2, context=16,
                   eval_windows=16, eval_batch_size=16, batch_size=4,
                   warmup_steps=5, time_repeats=1, data='synthetic')
TINY_FLAGS = ['--data=synthetic', '--num_layers=1', '--embed_dim=16',
              '--num_heads=2', '--context=16', '--steps=40',
              '--check_every=20', '--freeze_at=20', '--num_seeds=1']


@pytest.mark.slow
def test_pipeline_writes_json_table_and_plot_with_both_runs(tmp_path):
  config = dataclasses.replace(
      TINY, freeze_modules=('token_embed', 'pos_embed', 'blocks/0'))
  out = lm.run_lm_experiment(config, str(tmp_path),
                             data=lm_data.synthetic_data('pretrain'),
                             log=lambda s: None)
  base = tmp_path / 'lm_pretrain_online_fixed'
  result = json.loads(base.with_suffix('.json').read_text())
  table = base.with_suffix('.txt').read_text()
  assert base.with_suffix('.png').read_bytes()[:4] == b'\x89PNG'
  name = 'fixed: token_embed,pos_embed,blocks/0 frozen at 20'
  assert set(result['summaries']) == {'dense', name}
  assert 'dense ' in table and name in table and '× dense' in table
  dense, frozen = result['summaries']['dense'], result['summaries'][name]
  for s in (dense, frozen):
    assert np.all(np.isfinite(s['final_val_loss'] + s['test_loss']))
    assert np.all(np.diff(s['wall_s']) > 0)
  # Exactly the named modules freeze, at freeze_at, in the frozen run only.
  shapes = jax.eval_shape(lambda k: gpt.init(lm.gpt_config(config, 16), k)[1],
                          jax.random.key(0))
  size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  named = size({k: shapes[k] for k in ('token_embed', 'pos_embed', 'blocks')})
  assert frozen['frozen_share'] == pytest.approx([named / size(shapes)])
  assert dense['frozen_share'] == [0.0]
  timed = result['side_by_side']['runs']
  assert timed['dense']['T (dense)']['ratio_to_dense'] == 1.0
  assert [short for short in map(lm_report.program_label, timed[name])] == [
      'T|α: 10 of 12 modules frozen']  # its dense part is the dense run's.
  assert result['clock'] == 'side by side'
  assert out['runs']['dense']['checks'][-1]['step'] == 40


def test_named_groups_refuse_part_of_a_group_and_unknown_names():
  shapes = jax.eval_shape(lambda k: gpt.init(lm.gpt_config(TINY, 16), k)[1],
                          jax.random.key(0))
  frozen = lm.named_groups(shapes, 'layer', ('blocks/0/mlp',))
  assert frozen.sum() == 2  # fc and proj.
  with pytest.raises(ValueError, match='match no leaf'):
    lm.named_groups(shapes, 'layer', ('blocks/7',))
  with pytest.raises(ValueError, match='names part of'):
    lm.named_groups({'a': {'w': np.zeros(2), 'b': np.zeros(2)}}, 'layer',
                    ('a/w',))


@pytest.mark.parametrize('change, message', [
    (dict(freeze='sgd'), "freeze='sgd'; accepted: none, apf"),
    (dict(scenario='pre'), "scenario='pre'; accepted: pretrain, finetune"),
    (dict(freeze_at=30), 'freeze_at=30; accepted: a multiple of check_every'),
    (dict(freeze_modules=('blocks/9',)), 'match no leaf'),
    (dict(freeze_modules=('blocks/0',), freeze='psgld'),
     "accepted: freeze='fixed' mode='online'"),
    (dict(freeze='autofreeze', granularity='unit'), 'whole layers'),
    (dict(max_frozen=1.5), 'max_frozen=1.5'),
    (dict(mode='protocol', selector='best'), 'best'),
    (dict(learning_rate=0.0), 'learning_rate=0.0'),
])
def test_bad_settings_are_refused_naming_the_field(change, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(')):
    lm.validate(dataclasses.replace(TINY, **change), 16)


def test_lr_schedule_is_nanogpts():
  f = lm.lr_schedule(1e-3, 100, 2000)
  assert float(f(1050)) == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-5)
  assert float(f(5000)) == pytest.approx(1e-4)


@pytest.mark.slow  # a subprocess: jax's import alone is ~10 s here.
def test_bad_flag_is_one_line_before_any_work():
  done = subprocess.run(
      [sys.executable, SCRIPT, *TINY_FLAGS, '--freeze_threshold=-1',
       '--freeze=psgld'], capture_output=True, text=True, timeout=300,
      cwd=ROOT)
  assert done.returncode == 2, done.stderr[-2000:]
  assert '--freeze_threshold=-1' in done.stderr
  assert 'Traceback' not in done.stderr and '---' not in done.stdout


@pytest.mark.slow
def test_script_smoke_run_and_finetune_reuses_the_pretrained_model(tmp_path):
  flags = [*TINY_FLAGS, '--scenario=finetune', '--freeze=psgld',
           '--freeze_threshold=3', '--pretrain_steps=20', '--time_steps=false',
           f'--workdir={tmp_path}']
  runs = [subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True,
                         text=True, timeout=600, cwd=ROOT) for _ in range(2)]
  for done in runs:
    assert done.returncode == 0, done.stderr[-3000:]
  assert 'pre-training 20 dense steps' in runs[0].stdout
  assert 'reusing the pre-trained model' in runs[1].stdout
  result = json.loads(
      (tmp_path / 'lm_finetune_online_psgld.json').read_text())
  assert result['pretrained']['reused'] is True
  assert set(result['summaries']) == {'dense', 'psgld layer'}


@pytest.mark.slow
def test_protocol_mode_reports_w_and_pruned(tmp_path):
  config = dataclasses.replace(TINY, mode='protocol', eta0=20, eta1=20, k=0.5,
                               l=0.5)
  out = lm.run_lm_experiment(config, str(tmp_path),
                             data=lm_data.synthetic_data('pretrain'),
                             log=lambda s: None)
  cell = out['protocol']['cells'][0]
  assert set(cell['w']) == {'val_loss', 'test_loss'}
  assert 'β⊙w' in out['table']
  assert (tmp_path / 'lm_pretrain_protocol_fixed.txt').exists()
