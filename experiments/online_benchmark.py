r"""Time-to-accuracy of online freezing against dense training and the fixed protocol.

  uv run experiments/online_benchmark.py                    # LeNet-300 (MNIST, Fashion), LeNet-5
  uv run experiments/online_benchmark.py --models=lenet300 --datasets=mnist

Every method trains S steps with checks every --check_every (test accuracy
evaluated at each): dense `T`; the paper's fixed protocol (η0 dense steps,
then all but the best k/N of the units by Σ|g| frozen: topgrad's α at unit
granularity); and each online criterion (psgld, apf: units; autofreeze,
freezeout: layers). The step programs each run used are timed side by side in
interleaved rounds, and each run's wall-clock is rebuilt from those rates
plus its measured host overhead (compilation apart, reported). Prints a table
per (model, data set) — test accuracy at S, frozen share, time to the dense
run's final accuracy and the speedup, mean ± 95% CI over 3 seeds, the number
of compiled step programs — and writes `<workdir>/online_<dataset>_<model>
.{json,md,png}` (the plot: test accuracy against wall-clock).
"""

from typing import Any

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax.lab import experiment
from paramsel_jax.freeze import criteria as criteria_lib
from paramsel_jax import io as io_lib
from paramsel_jax.lab import online_experiment
from paramsel_jax.lab.benchmarks import online_bench

DEFAULTS: dict[str, dict[str, Any]] = {
    'lenet300': dict(steps=4000, check_every=250, eta0=1000),
    'lenet5': dict(steps=2000, check_every=250, eta0=500),
}
DATASETS = {'lenet300': ('mnist', 'fashion_mnist'), 'lenet5': ('mnist',)}

_MODELS = flags.DEFINE_list('models', list(DEFAULTS), 'Models to run.')
_DATASETS = flags.DEFINE_list('datasets', None, 'Data sets (default per model).')
_STEPS = flags.DEFINE_integer('steps', None, 'S (default per model).')
_METHOD_STEPS = flags.DEFINE_integer(
    'method_steps', None, 'How long the methods other than dense may train '
    '(default 2 S: a run that freezes may train longer and still reach the '
    'dense final accuracy sooner; S: equal steps). Runs stop when all is '
    'frozen.')
_CHECK_EVERY = flags.DEFINE_integer('check_every', None, 'Steps between checks.')
_ETA0 = flags.DEFINE_integer('eta0', None, "The fixed protocol's η0.")
_K = flags.DEFINE_float('k', 0.1, "The fixed protocol's k/N.")
_METHODS = flags.DEFINE_list(
    'methods', list(online_bench.DEFAULT_METHODS), 'What is compared: dense, '
    'and CRITERION:GRANULARITY entries (fixed is the paper\'s protocol at --k '
    'and --eta0).')
_THRESHOLDS = flags.DEFINE_list(
    'thresholds', [], 'Criterion thresholds as NAME=NUMBER (e.g. psgld=3,'
    'apf=0.4); the others keep their defaults. Choose them on the validation '
    'split (experiments/mnist.py --freeze=... --eval_split=valid).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Interleaved timed rounds.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds, one program.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'The data cache.')
RUN_DIR = cli.define_run_dir('results/online_benchmark', checkpoints=False)


# The flag of each config field, for the configs' own messages.
FLAG_NAMES = {name: name for name in ('steps', 'method_steps', 'check_every',
                                      'eta0', 'repeats', 'k')}
FLAG_NAMES.update(threshold='thresholds')


def configs() -> list[online_bench.OnlineBenchConfig]:
  """One config per (model, data set), checked (each method's settings too)."""
  with cli.as_flags(FLAG_NAMES):
    out = _configs()
  for config in out:
    exp = experiment.ExperimentConfig(dataset=config.dataset, model=config.model)
    for method in online_bench.with_blocks(config.methods, exp):
      try:
        online_experiment.validate_settings(
            exp, online_bench._settings(config, method))  # pylint: disable=protected-access
      except ValueError as e:
        raise ValueError(f'{cli.flag_message(str(e), FLAG_NAMES)} (method '
                         f'{method.name!r} of --methods)') from None
  return out


def _configs() -> list[online_bench.OnlineBenchConfig]:
  out = []
  for model in _MODELS.value:
    if model not in DEFAULTS:
      raise ValueError(f'--models contains {model!r}; accepted: '
                       f'{", ".join(DEFAULTS)}.')
    d = DEFAULTS[model]
    for dataset in _DATASETS.value or DATASETS[model]:
      steps = cli.or_default(_STEPS.value, d['steps'])
      out.append(online_bench.OnlineBenchConfig(
          model=model, dataset=dataset, steps=steps,
          method_steps=cli.or_default(_METHOD_STEPS.value, 2 * steps),
          check_every=cli.or_default(_CHECK_EVERY.value, d['check_every']),
          eta0=cli.or_default(_ETA0.value, d['eta0']),
          methods=online_bench.make_methods(
              _METHODS.value, _K.value, cli.named_floats(
                  _THRESHOLDS.value, 'thresholds', sorted(criteria_lib.CRITERIA))),
          seeds=cli.ints(_SEEDS.value, 'seeds'), repeats=_REPEATS.value,
          data_dir=_DATA_DIR.value))
  return out


def main(argv):
  """Runs each (model, data set) and writes its outputs."""
  cli.check_no_arguments(argv)
  run_dir = RUN_DIR()
  for config in cli.config_or_exit(configs):
    result = online_bench.compare_methods(config, log=lambda s: print(s, flush=True))
    base = f'{run_dir.workdir}/online_{config.dataset}_{config.model}'
    io_lib.write_json_atomic(result, base + '.json')
    table = online_bench.methods_table(result)
    io_lib.write_text_atomic(table + '\n', base + '.md')
    online_bench.plot_methods(result, base + '.png')
    print(table, flush=True)
    print(f'wrote {base}.json, .md, .png', flush=True)


if __name__ == '__main__':
  cli.run(main)
