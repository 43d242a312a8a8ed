r"""A resumable grid: selector × k/N × l/N × optimizer × model, several seeds.

  python experiments/sweep.py --models=lenet300 --output_dir=results/sweep/lenet300
  python experiments/sweep.py --models=lenet5 --output_dir=results/sweep/lenet5
  python experiments/sweep.py --mode=retrain --models=lenet300 \
      --output_dir=results/sweep/anchors_lenet300
  # The anchors in the README: gradual pruning, L2, long retraining.
  python experiments/sweep.py --mode=retrain --models=lenet300 \
      --selectors=magnitude --weight_decay=1e-4 --prune_rounds=16 --eta1=32000

Every finished cell is saved atomically under --output_dir; run the same
command again after a kill and only the missing cells are computed. The
outputs (tables.txt, results.json, cells.csv, summary.csv, PNG plots) are
rewritten at the end from the stored cells. Flags left at 'auto' take the
measured defaults of `paramsel_jax.sweep.default_budget` (a reduced selector
set and fewer steps when a conv net is in the grid; longer training and
l/N ∈ {8, 5, 2}% in --mode=retrain); the chosen values are printed.
"""

from absl import app
from absl import flags

from paramsel_jax import data
from paramsel_jax import experiment
from paramsel_jax import models
from paramsel_jax import optimizers
from paramsel_jax import protocol
from paramsel_jax import selectors
from paramsel_jax import sweep

_MODELS = flags.DEFINE_list('models', ['lenet300'],
                            f'Comma-separated; of {", ".join(models.MODELS)}.')
_OPTIMIZERS = flags.DEFINE_list(
    'optimizers', ['adam'],
    f'Comma-separated name[:learning_rate], names of {", ".join(optimizers.OPTIMIZERS)}; '
    'without a learning rate, --learning_rate.')
_SELECTORS = flags.DEFINE_string(
    'selectors', 'auto',
    f'Comma-separated, of {", ".join(sorted(selectors.SELECTORS))}; "all"; or '
    '"auto" (all for MLPs; a reduced set with a conv net or in retrain mode).')
_KS = flags.DEFINE_list('ks', ['0.01', '0.05', '0.1', '0.25'],
                        'Fractions k/N of coordinates that keep training.')
_LS = flags.DEFINE_list('ls', ['auto'],
                        'Fractions l/N of weights kept; auto: 0.02,0.05,0.1 '
                        '(retrain: 0.08,0.05,0.02).')
_DATASET = flags.DEFINE_string('dataset', 'mnist', f'One of {", ".join(data.DATASETS)}.')
_MODE = flags.DEFINE_enum('mode', 'prune_at_end', list(protocol.MODES),
                          'prune_at_end (the paper) or retrain (Han et al. 2015).')
_PRUNE_ROUNDS = flags.DEFINE_integer(
    'prune_rounds', 1, '--mode=retrain: prune gradually in this many rounds.')
_ETA0 = flags.DEFINE_integer('eta0', None, 'Steps on all parameters (default: auto).')
_ETA1 = flags.DEFINE_integer('eta1', None, 'Steps of T|α (default: auto).')
_WINDOW = flags.DEFINE_integer('window', None, "Selectors' statistics window (default: auto).")
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Minibatch size.')
_TRAIN_EVAL_SIZE = flags.DEFINE_integer(
    'train_eval_size', None, 'Train metrics on the first this many training '
    'examples (default: auto; 0: all of them).')
_CHUNK_SIZE = flags.DEFINE_integer('chunk_size', 500, 'Steps per jitted call (does not change results).')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', None, 'Seeds per cell, in parallel (default: auto).')
_SEED = flags.DEFINE_integer('seed', 0, 'First seed.')
_SHARD_BATCH = flags.DEFINE_bool(
    'shard_batch', False, 'With several devices, also shard each minibatch '
    'over the devices the seeds leave.')
_SEED_AXIS = flags.DEFINE_enum('seed_axis', 'auto', list(experiment.SEED_AXES),
                               'vmap, map, or auto (map for conv nets on CPU).')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', None, 'γ (default: auto).')
_MOMENTUM = flags.DEFINE_float('momentum', 0.9, 'For momentum.')
_B1 = flags.DEFINE_float('b1', 0.9, "Adam's b1.")
_B2 = flags.DEFINE_float('b2', 0.999, "Adam's b2.")
_DECAY = flags.DEFINE_float('decay', 0.99, 'RMSprop/pSGLD decay.')
_EPS = flags.DEFINE_float('eps', None, "The preconditioner's λ (default per optimizer).")
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'Langevin temperature.')
_WEIGHT_DECAY = flags.DEFINE_float('weight_decay', 0.0, 'L2 term wd·w.')
_DECAY_STEPS = flags.DEFINE_integer(
    'decay_steps', 0, 'Cosine learning-rate decay to 0 over this many steps '
    '(0: constant; not for sgld/psgld).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'results/sweep', 'The store and the outputs.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Data cache.')


def _floats(name: str, values: list[str]) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise ValueError(f'--{name}={",".join(values)}: not numbers.') from None


def config_from_flags() -> tuple[sweep.SweepConfig, list[str]]:
  """The sweep, and notes on the 'auto' values chosen."""
  budget = sweep.default_budget(_MODELS.value, _MODE.value)
  notes = []

  def auto(flag, key):
    if flag.value is not None:
      return flag.value
    notes.append(f'{key}={budget[key]}')
    return budget[key]

  names = [s.strip() for s in _SELECTORS.value.split(',') if s.strip()]
  if names == ['all']:
    names = sorted(selectors.SELECTORS)
  elif names == ['auto']:
    names = list(budget['selectors'])
    notes.append(f'selectors={",".join(names)}')
  ls = _LS.value
  if ls == ['auto']:
    ls = budget['ls']
    notes.append(f'ls={",".join(map(str, ls))}')
  lr = auto(_LEARNING_RATE, 'learning_rate')
  opts = []
  for spec in _OPTIMIZERS.value:
    name, _, rate = spec.partition(':')
    opts.append(optimizers.OptimizerConfig(
        name=name, learning_rate=float(rate) if rate else lr,
        momentum=_MOMENTUM.value, b1=_B1.value, b2=_B2.value, decay=_DECAY.value,
        eps=_EPS.value, temperature=_TEMPERATURE.value,
        weight_decay=_WEIGHT_DECAY.value, decay_steps=_DECAY_STEPS.value))
  num_seeds = auto(_NUM_SEEDS, 'num_seeds')
  if num_seeds < 1:
    raise ValueError(f'num_seeds={num_seeds}; accepted: an integer >= 1.')
  config = sweep.SweepConfig(
      dataset=_DATASET.value, models=tuple(_MODELS.value),
      optimizers=tuple(opts), selectors=tuple(names),
      ks=_floats('ks', _KS.value), ls=_floats('ls', ls),
      seeds=tuple(range(_SEED.value, _SEED.value + num_seeds)),
      protocol=protocol.ProtocolConfig(
          eta0=auto(_ETA0, 'eta0'), eta1=auto(_ETA1, 'eta1'),
          window=auto(_WINDOW, 'window'), batch_size=_BATCH_SIZE.value,
          chunk_size=_CHUNK_SIZE.value, seed_axis=_SEED_AXIS.value,
          shard_batch=_SHARD_BATCH.value,
          train_eval_size=auto(_TRAIN_EVAL_SIZE, 'train_eval_size') or None,
          mode=_MODE.value, prune_rounds=_PRUNE_ROUNDS.value),
      data_dir=_DATA_DIR.value)
  return config, notes


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    config, notes = config_from_flags()
    sweep.validate_sweep(config)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if notes:
    print(f'[sweep] defaults for {",".join(config.models)} / {config.protocol.mode}'
          f' (sweep.default_budget): {"; ".join(notes)}', flush=True)
  sweep.run_sweep(config, _OUTPUT_DIR.value)


if __name__ == '__main__':
  app.run(main)
