r"""Time-to-accuracy of freezing: how much faster training gets, and at what cost.

  uv run experiments/freeze_benchmark.py                       # every model below
  uv run experiments/freeze_benchmark.py --models=lenet300 --datasets=mnist

Dense `T` for S steps against the paper's protocol with the cheap `T|α`
(`paramsel_jax.freeze.active`: η0 < S dense steps, α, η1 = S − η0 steps), per
granularity (element: today's masked step and the packed one; unit; layer),
selector and k/N ∈ {50, 25, 10, 5}% (with --budgets=params,flops also k as
a share of the weight-gradient FLOPs at unit/layer granularity; 'backward':
a cap on the share of the dense backward FLOPs), 3 seeds.
For every run: steps/s against `T` (interleaved timed rounds, one process),
with the frozen prefix cached
where one exists, FLOPs per step (XLA's cost analysis), the optimizer's state
in bytes, the test accuracy at S, and the training wall-clock to the dense
run's final test accuracy. Writes `<workdir>/<dataset>_<model>.{json,md,
png}` (the plot: test accuracy against wall-clock) and prints the tables.

Models and their defaults (--steps/--eta0/--time_steps override all):
  lenet300 (MNIST, Fashion-MNIST): S = 4000, η0 = 1000, topgrad and magnitude
  lenet5 (MNIST): S = 2000, η0 = 500, topgrad
  mlp1024 (784-1024-1024-10, MNIST): S = 4000, η0 = 1000, topgrad
"""

from typing import Any

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax.lab.benchmarks import freeze
from paramsel_jax.lab.benchmarks import freeze_report

DEFAULTS: dict[str, dict[str, Any]] = {
    'lenet300': dict(steps=4000, eta0=1000, time_steps=200,
                     selectors=('topgrad', 'magnitude')),
    'lenet5': dict(steps=2000, eta0=500, time_steps=50, selectors=('topgrad',)),
    'mlp1024': dict(steps=4000, eta0=1000, time_steps=100,
                    selectors=('topgrad',)),
}
DATASETS = {'lenet300': ('mnist', 'fashion_mnist'), 'lenet5': ('mnist',),
            'mlp1024': ('mnist',)}

_MODELS = flags.DEFINE_list('models', list(DEFAULTS), 'Models to run.')
_DATASETS = flags.DEFINE_list(
    'datasets', None, 'Data sets (default per model: lenet300 on MNIST and '
    'Fashion-MNIST, the others on MNIST).')
_SELECTORS = flags.DEFINE_list('selectors', None, 'Selectors (default per model).')
_GRANULARITIES = flags.DEFINE_list('granularities', ['element', 'unit', 'layer'],
                                   'Granularities of α.')
_KS = flags.DEFINE_list('ks', ['0.5', '0.25', '0.1', '0.05'], 'Fractions k/N.')
_BUDGETS = flags.DEFINE_list(
    'budgets', ['params'], "What k counts at unit/layer granularity: 'params' "
    "(a share of the parameters), 'flops' (a share of the weight-gradient "
    "FLOPs), 'backward' (a cap on the share of the dense backward FLOPs, "
    'the input gradients above the lowest trained layer included), or '
    'several.')
_STEPS = flags.DEFINE_integer('steps', None, 'S (default per model).')
_VARIANT_STEPS = flags.DEFINE_integer(
    'variant_steps', None, 'How long the frozen runs train (default: 2 S - '
    'η0, i.e. twice the dense η1, so a cheaper run can reach the dense final '
    'accuracy; S: equal steps).')
_ETA0 = flags.DEFINE_integer('eta0', None, 'η0 (default per model).')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 250, 'Steps between test evaluations.')
_WINDOW = flags.DEFINE_integer('window', 100, "The selectors' statistics window before η0.")
_TIME_STEPS = flags.DEFINE_integer('time_steps', None, 'Steps per timed call.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Interleaved timed rounds.')
_MASKED_ELEMENT = flags.DEFINE_bool(
    'masked_element', True, "Also run today's masked step at element granularity.")
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds, one program.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'The data cache.')
RUN_DIR = cli.define_run_dir('results/freeze_benchmark', checkpoints=False)


# The flag of each FreezeConfig field, for the config's own messages.
FLAG_NAMES = {name: name for name in (
    'steps', 'eta0', 'eval_every', 'window', 'time_steps', 'repeats',
    'variant_steps', 'budgets', 'ks', 'seeds')}
FLAG_NAMES.update(granularity='granularities')


def configs() -> list[freeze.FreezeConfig]:
  """One config per (model, data set) of the flags, checked."""
  with cli.as_flags(FLAG_NAMES):
    return _configs()


def _configs() -> list[freeze.FreezeConfig]:
  out = []
  for model in _MODELS.value:
    if model not in DEFAULTS:
      raise ValueError(f'--models contains {model!r}; accepted: '
                       f'{", ".join(DEFAULTS)}.')
    d = DEFAULTS[model]
    for dataset in _DATASETS.value or DATASETS[model]:
      steps = cli.or_default(_STEPS.value, d['steps'])
      eta0 = cli.or_default(_ETA0.value, d['eta0'])
      out.append(freeze.FreezeConfig(
          model=model, dataset=dataset, steps=steps, eta0=eta0,
          variant_steps=cli.or_default(_VARIANT_STEPS.value, 2 * steps - eta0),
          eval_every=_EVAL_EVERY.value, window=_WINDOW.value,
          granularities=tuple(_GRANULARITIES.value),
          selectors=tuple(_SELECTORS.value or d['selectors']),
          ks=cli.floats(_KS.value, 'ks'), budgets=tuple(_BUDGETS.value),
          seeds=cli.ints(_SEEDS.value, 'seeds'),
          time_steps=cli.or_default(_TIME_STEPS.value, d['time_steps']),
          repeats=_REPEATS.value, masked_element=_MASKED_ELEMENT.value,
          data_dir=_DATA_DIR.value))
  return out


def main(argv):
  """Runs every (model, data set) and writes its outputs."""
  cli.check_no_arguments(argv)
  run_dir = RUN_DIR()
  for config in cli.config_or_exit(configs):
    result = freeze.compare_variants(config, log=lambda s: print(s, flush=True))
    paths = freeze_report.write(result, run_dir.workdir,
                                f'{config.dataset}_{config.model}')
    print(freeze_report.variants_table(result), flush=True)
    print(f'wrote {", ".join(paths)}', flush=True)


if __name__ == '__main__':
  cli.run(main)
