r"""A character-level GPT on Shakespeare's plays: dense training vs selective training.

  uv run experiments/lm.py                                  # pre-train: dense vs fixed
  uv run experiments/lm.py --freeze_modules=token_embed,pos_embed,blocks/0,blocks/1
  uv run experiments/lm.py --scenario=finetune --freeze=psgld
  uv run experiments/lm.py --mode=protocol --selector=topgrad --k=0.5
  uv run experiments/lm.py --data=synthetic --num_layers=1 --embed_dim=16 \
      --num_heads=2 --context=16 --steps=40 --check_every=20 --freeze_at=20 \
      --num_seeds=1                                         # a smoke run

The model and optimizer are nanoGPT's `shakespeare_char` CPU setting (4
layers, 4 heads, 128 dimensions, context 64, batch 12, 2000 steps, AdamW with
β2 0.99 and weight decay 0.1, gradient clipping 1.0, 100 warmup steps then
cosine decay to lr/10), on whole plays (train / validation / test plays).

--scenario=pretrain trains from scratch; --scenario=finetune pre-trains once
(dense, --pretrain_steps, saved under <workdir>/pretrained and reused) and fine-tunes on
plays the pre-training never saw. --mode=online runs dense training and the
--freeze criterion side by side (same seeds, one process; --freeze=none: dense
only), evaluated on the validation plays every --check_every steps and on the
test plays once at the end; --freeze_modules freezes the named modules at
--freeze_at instead of fixed's choice. --mode=protocol runs the paper's
protocol (η0 dense, α by --selector, η1 on the active set, β). With
--time_steps the step programs that ran are then timed side by side and the
frozen/dense steps/s ratio is reported. Writes
<workdir>/lm_<scenario>_<mode>_<freeze>.{json,txt,png}.
"""

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax.lab import flags as experiment_flags
from paramsel_jax.lab import lm_data
from paramsel_jax.lab import lm_experiment
from paramsel_jax.lab import lm_flags

D = lm_experiment.LMConfig()

_SCENARIO = flags.DEFINE_enum('scenario', D.scenario,
                              list(lm_experiment.SCENARIOS),
                              'pretrain: from scratch; finetune: from a '
                              'pre-trained model, on unseen plays.')
_MODE = flags.DEFINE_enum('mode', D.mode, list(lm_experiment.MODES),
                          'online: dense vs --freeze side by side; protocol: '
                          'the paper\'s η0 → α → η1 → β.')
_FREEZE = flags.DEFINE_string('freeze', D.freeze,
                              'The online criterion of the frozen run (none: '
                              'dense only; fixed: the paper\'s fixed η0).')
_FREEZE_MODULES = flags.DEFINE_list(
    'freeze_modules', [], 'With --freeze=fixed: freeze these modules '
    '(mask_by_name globs, e.g. token_embed,pos_embed,blocks/0,blocks/1) at '
    '--freeze_at instead of fixed\'s choice.')
_GRANULARITY = flags.DEFINE_string('granularity', D.granularity,
                                   'Of α: element, unit or layer.')
_MAX_FROZEN = flags.DEFINE_float('max_frozen', D.max_frozen,
                                 'The most share of the parameters frozen '
                                 '(fixed: exactly about this share).')
_THRESHOLD = flags.DEFINE_float('freeze_threshold', None,
                                "The criterion's threshold (default: the LM's "
                                'own for psgld, 3.0, chosen on the validation '
                                'play; else the criterion\'s own).')
_SELECTOR = flags.DEFINE_string('selector', D.selector, 'protocol: α and β.')
_K = flags.DEFINE_float('k', D.k, 'protocol: fraction of params kept training.')
_L = flags.DEFINE_float('l', D.l, 'protocol: fraction of weights kept (β).')
_ETA0 = flags.DEFINE_integer('eta0', D.eta0, 'protocol: dense steps.')
_ETA1 = flags.DEFINE_integer('eta1', D.eta1, 'protocol: steps of T|α.')
RUN_DIR = lm_flags.define_run_dir('results/lm')


def config() -> lm_experiment.LMConfig:
  """The config of the flags, checked (ValueError naming the flag)."""
  c = lm_flags.lm_config(
      RUN_DIR().workdir, scenario=_SCENARIO.value, mode=_MODE.value, freeze=_FREEZE.value,
      freeze_modules=tuple(_FREEZE_MODULES.value),
      granularity=_GRANULARITY.value, max_frozen=_MAX_FROZEN.value,
      freeze_threshold=_THRESHOLD.value, selector=_SELECTOR.value, k=_K.value,
      l=_L.value, eta0=_ETA0.value, eta1=_ETA1.value)
  with cli.as_flags(lm_experiment.FLAG_NAMES):
    lm_experiment.validate(c, lm_data.vocab_size_of(c.data))
  return c


def main(argv):
  """Runs the experiment of the flags."""
  cli.check_no_arguments(argv)
  c = cli.config_or_exit(config)
  run_dir = RUN_DIR()
  checkpointer = cli.config_or_exit(lambda: experiment_flags.checkpointer(
      run_dir, lm_experiment.checkpoint_identity(c)))
  lm_experiment.run_lm_experiment(c, run_dir.workdir, checkpointer=checkpointer,
                                  log=lambda s: print(s, flush=True))
  if checkpointer is not None:
    checkpointer.close()


if __name__ == '__main__':
  cli.run(main)
