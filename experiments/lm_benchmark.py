r"""Every freezing criterion on the char-GPT, side by side, with 95% intervals.

  uv run experiments/lm_benchmark.py                         # fine-tuning, 3 seeds
  uv run experiments/lm_benchmark.py --scenarios=finetune,pretrain --tune
  uv run experiments/lm_benchmark.py --arms=dense,lisa,badam --set=lisa.gamma=2
  uv run experiments/lm_benchmark.py --data=synthetic --num_layers=2 \
      --embed_dim=16 --num_heads=2 --context=16 --steps=40 --check_every=10 \
      --freeze_at=20 --num_seeds=1 --pretrain_steps=20 --time_steps=false
                                                             # a smoke run

Dense training and each --arms criterion (LISA, BAdam, the paper's psgld test
and its prefix-aware form, AutoFreeze, FreezeOut, APF, the fixed η0
protocol) train the nanoGPT `shakespeare_char` model on the same seeds, one
process, at layer granularity. Reported per arm: the time to the dense run's
final validation loss and the speedup (95% intervals over seeds), the
validation loss at equal wall-clock, steps/s, FLOPs/step, optimizer bytes
and peak memory. --tune first chooses each arm's settings (its threshold, K,
γ, order or budget) on the validation plays with --tune_seeds; --set fixes
an arm's setting instead (arm.field=value, an `OnlineConfig` field). The
test plays are evaluated once per run, at the end. Writes
<workdir>/lm_benchmark_<scenario>.{json,txt,png} (the pre-trained model:
<workdir>/pretrained).
"""

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax.lab import flags as experiment_flags
from paramsel_jax.lab import lm_benchmark
from paramsel_jax.lab import lm_data
from paramsel_jax.lab import lm_experiment
from paramsel_jax.lab import lm_flags

D = lm_benchmark.LMBenchmarkConfig()

# The benchmark's own defaults for the shared LM flags: a fine-tuning run of
# 600 steps at a fine-tuning learning rate, checked (K) every 50 steps.
for _name, _value in lm_benchmark.LM_DEFAULTS.items():
  flags.FLAGS.set_default(_name, _value)

_SCENARIOS = flags.DEFINE_list('scenarios', list(D.scenarios),
                               'finetune and/or pretrain.')
_ARMS = flags.DEFINE_list('arms', list(D.arms),
                          f'dense first, then any of {", ".join(lm_benchmark.ARMS)}.')
_TUNE = flags.DEFINE_bool('tune', D.tune, "Choose each arm's settings on the "
                          'validation plays first (--tune_seeds).')
_TUNE_SEEDS = flags.DEFINE_list('tune_seeds', [str(s) for s in D.tune_seeds],
                                'Seeds of the tuning runs (not reported).')
_SET = flags.DEFINE_list('set', [], 'Arm settings, arm.field=value (e.g. '
                         'lisa.gamma=2,badam.order=random).')
RUN_DIR = lm_flags.define_run_dir('results/lm_benchmark')


def config() -> lm_benchmark.LMBenchmarkConfig:
  """The config of the flags, checked (ValueError naming the flag)."""
  c = lm_benchmark.LMBenchmarkConfig(
      lm=lm_flags.lm_config(RUN_DIR().workdir), scenarios=tuple(_SCENARIOS.value),
      arms=tuple(_ARMS.value), tune=_TUNE.value,
      tune_seeds=cli.ints(_TUNE_SEEDS.value, 'tune_seeds'),
      overrides=lm_benchmark.parse_settings(_SET.value))
  with cli.as_flags(lm_experiment.FLAG_NAMES):
    lm_benchmark.validate_benchmark(c, lm_data.vocab_size_of(c.lm.data))
  return c


def main(argv):
  """Runs the benchmark of the flags."""
  cli.check_no_arguments(argv)
  c = cli.config_or_exit(config)
  run_dir = RUN_DIR()
  checkpointer = cli.config_or_exit(lambda: experiment_flags.checkpointer(
      run_dir, lm_experiment.checkpoint_identity(c)))
  lm_benchmark.run_lm_benchmark(c, run_dir.workdir, checkpointer=checkpointer,
                                log=lambda s: print(s, flush=True))
  if checkpointer is not None:
    checkpointer.close()


if __name__ == '__main__':
  cli.run(main)
