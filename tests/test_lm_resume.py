"""The LM experiment killed mid-pre-training and mid-fine-tuning resumes bit for bit.

Needs `online.run_online(..., checkpointer=...)` (helper "resume"'s, merged
before this branch); until then it is skipped with that reason.
"""

import dataclasses
import inspect

import pytest

from paramsel_jax.lab import lm_data
from paramsel_jax.lab import lm_experiment as lm
from paramsel_jax.protocol import online
from paramsel_jax.train import checkpoints

from killing import Killed, killer  # tests/killing.py

TINY = lm.LMConfig(scenario='finetune', steps=40, check_every=20,
                   freeze_at=20, seeds=(0,), num_layers=1, embed_dim=16,
                   num_heads=2, context=16, eval_windows=16,
                   eval_batch_size=16, batch_size=4, warmup_steps=5,
                   pretrain_steps=60, time_steps=False, data='synthetic')

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        'checkpointer' not in inspect.signature(online.run_online).parameters,
        reason="needs online.run_online(checkpointer=...) (helper resume's "
        'branch, to be merged first)')]


def curves(out):
  """What the runs computed, without timings: per arm, every check's
  step, frozen share and held-out metrics, and the test losses."""
  return {name: ([(c['step'], c['frozen_share'], c['metrics'])
                  for c in run['checks']], run['test_loss'])
          for name, run in out['runs'].items()}


def test_finetune_killed_in_pretraining_and_in_an_arm_resumes(tmp_path):
  data = lm_data.synthetic_data('finetune')
  reference = lm.run_lm_experiment(
      dataclasses.replace(TINY, workdir=str(tmp_path / 'ref')), None,
      data=data, log=lambda _: None)
  config = dataclasses.replace(TINY, workdir=str(tmp_path / 'run'))

  def run(log):
    ckpt = checkpoints.Checkpointer(
        str(tmp_path / 'run' / 'checkpoints'), 10,
        lm.checkpoint_identity(config), log=lambda _: None)
    try:
      return lm.run_lm_experiment(config, None, data=data, log=log,
                                  checkpointer=ckpt)
    finally:
      ckpt.close()

  with pytest.raises(Killed):  # In the pre-training (60 steps).
    run(killer('step 40/60'))
  with pytest.raises(Killed):  # In the frozen arm's fine-tuning.
    run(killer('online [fixed] step 20/40'))
  lines = []
  resumed = run(lines.append)
  assert not any('step 20/60' in line for line in lines)
  assert curves(resumed) == curves(reference)
