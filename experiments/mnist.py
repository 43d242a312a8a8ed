r"""Which parameters to keep optimizing, and which to keep: the paper's protocol.

  python experiments/mnist.py --selector=topgrad --eta0=500
  python experiments/mnist.py --selector=all --num_seeds=5 --model=lenet5

η0 steps of the optimizer on all parameters, the selector picks the k
coordinates that keep training (α), η1 steps on those, the selector keeps l
weights (β), and the test/train loss and accuracy of w and of β⊙w are printed
(mean ± std over seeds) and written as JSON to --output_dir.
"""

from absl import app
from absl import flags

from paramsel_jax import data
from paramsel_jax import experiment
from paramsel_jax import models
from paramsel_jax import optimizers
from paramsel_jax import protocol
from paramsel_jax import selectors

_SELECTOR = flags.DEFINE_string(
    'selector', 'topgrad',
    f'One of {", ".join(sorted(selectors.SELECTORS))}, a comma-separated list, '
    'or "all" (every registered selector, sharing the eta0 phase).')
_DATASET = flags.DEFINE_string('dataset', 'mnist',
                               f'One of {", ".join(data.DATASETS)}.')
_MODEL = flags.DEFINE_string('model', 'lenet300',
                             f'One of {", ".join(models.MODELS)}.')
_OPTIMIZER = flags.DEFINE_string(
    'optimizer', 'adam', f'One of {", ".join(optimizers.OPTIMIZERS)}.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 1e-3, 'γ.')
_MOMENTUM = flags.DEFINE_float('momentum', 0.9, 'For --optimizer=momentum.')
_B1 = flags.DEFINE_float('b1', 0.9, "Adam's b1.")
_B2 = flags.DEFINE_float('b2', 0.999, "Adam's b2.")
_DECAY = flags.DEFINE_float('decay', 0.99, 'RMSprop/pSGLD squared-gradient decay.')
_EPS = flags.DEFINE_float(
    'eps', None, "The preconditioner's λ (default: 1e-8 for Adam and RMSprop, "
    '1e-5 for pSGLD).')
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'Langevin temperature (sgld, psgld).')
_WEIGHT_DECAY = flags.DEFINE_float(
    'weight_decay', 0.0, 'L2 term wd·w added to the gradient (for sgld/psgld: '
    'a Gaussian prior of variance 1/(n·wd)).')
_DECAY_STEPS = flags.DEFINE_integer(
    'decay_steps', 0, 'Cosine learning-rate decay to 0 over this many steps '
    '(0: constant; not for sgld/psgld).')
_ETA0 = flags.DEFINE_integer('eta0', 500, 'Steps on all parameters.')
_ETA1 = flags.DEFINE_integer('eta1', 1500, 'Steps on the k selected ones.')
_K = flags.DEFINE_float('k', 0.1, 'Coordinates that keep training: a count or a fraction 0<k<1.')
_L = flags.DEFINE_float('l', 0.2, 'Weights kept at the end: a count or a fraction 0<l<1.')
_WINDOW = flags.DEFINE_integer('window', 100, "Steps the selectors' statistics cover.")
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Minibatch size.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', 3, 'Seeds run in parallel.')
_SEED = flags.DEFINE_integer('seed', 0, 'First seed; seeds are seed .. seed+num_seeds-1.')
_SHARD_BATCH = flags.DEFINE_bool(
    'shard_batch', False, 'With several devices, also shard each minibatch over '
    'the devices the seeds leave.')
_SEED_AXIS = flags.DEFINE_enum(
    'seed_axis', 'auto', experiment.SEED_AXES,
    'vmap: seeds in parallel; map: in turn; auto: map for conv nets on CPU.')
_MODE = flags.DEFINE_enum(
    'mode', 'prune_at_end', ['prune_at_end', 'retrain'],
    'prune_at_end: the paper (α after eta0, β after eta1); retrain: β after '
    'eta0, the rest zeroed, only the kept weights train for eta1.')
_PRUNE_ROUNDS = flags.DEFINE_integer(
    'prune_rounds', 1, '--mode=retrain: prune gradually in this many rounds.')
_CHUNK_SIZE = flags.DEFINE_integer('chunk_size', 500, 'Steps per jitted call between progress lines.')
_TRAIN_EVAL_SIZE = flags.DEFINE_integer(
    'train_eval_size', 0, 'Train metrics on the first this many training examples (0: all).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'results', 'Where the JSON goes.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Data cache (default $PARAMSEL_DATA_DIR or ~/.cache/paramsel_jax).')


def _count_or_fraction(value: float) -> float | int:
  return int(value) if value >= 1 and value == int(value) else value


def config_from_flags() -> experiment.ExperimentConfig:
  if _NUM_SEEDS.value < 1:
    raise ValueError(f'num_seeds={_NUM_SEEDS.value}; accepted: an integer >= 1.')
  names = [s.strip() for s in _SELECTOR.value.split(',') if s.strip()]
  if names == ['all']:
    names = sorted(selectors.SELECTORS)
  return experiment.ExperimentConfig(
      dataset=_DATASET.value, model=_MODEL.value, selectors=tuple(names),
      seeds=tuple(range(_SEED.value, _SEED.value + _NUM_SEEDS.value)),
      optimizer=optimizers.OptimizerConfig(
          name=_OPTIMIZER.value, learning_rate=_LEARNING_RATE.value,
          momentum=_MOMENTUM.value, b1=_B1.value, b2=_B2.value,
          decay=_DECAY.value, eps=_EPS.value, temperature=_TEMPERATURE.value,
          weight_decay=_WEIGHT_DECAY.value, decay_steps=_DECAY_STEPS.value),
      protocol=protocol.ProtocolConfig(
          eta0=_ETA0.value, eta1=_ETA1.value, k=_count_or_fraction(_K.value),
          l=_count_or_fraction(_L.value), window=_WINDOW.value,
          batch_size=_BATCH_SIZE.value, chunk_size=_CHUNK_SIZE.value,
          train_eval_size=_TRAIN_EVAL_SIZE.value or None,
          seed_axis=_SEED_AXIS.value, shard_batch=_SHARD_BATCH.value,
          mode=_MODE.value,
          prune_rounds=_PRUNE_ROUNDS.value),
      data_dir=_DATA_DIR.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    config = config_from_flags()
    experiment.validate_config(config)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  experiment.run_experiment(config, _OUTPUT_DIR.value)


if __name__ == '__main__':
  app.run(main)
