r"""Structure search: a network of optimal complexity by relaxed structure choices.

  python experiments/structure_search.py --dataset=mnist
  python experiments/structure_search.py --dataset=mnist --space=conv
  python experiments/structure_search.py --dataset=fashion_mnist --space=conv
  python experiments/structure_search.py --dataset=cifar10  # conv space
  python experiments/structure_search.py --dataset=mnist --target_params=100000
  python experiments/structure_search.py --dataset=mnist --space=conv \
      --random_budgets=1,5 --select --select_l=0.2

Searches a space of structures (per layer: activation, width, presence, and
for conv layers kernel size and pool kind) by gradient descent on
Gumbel-softmax relaxed choices, derives the argmax network, retrains it from
scratch, and compares it with random search of the same space at the same
wall-clock (and at multiples of it: --random_budgets, successive halving), a
fixed hand-made network of similar size, and LeNet-300-100 (MLP spaces) or
LeNet-5 (conv spaces), all trained the same way. Prints a table (params,
FLOPs, mean ± sample std over seeds, accuracy under input and weight noise),
the search's failure modes (collapse, seed agreement, relaxation gap), the
published structured-pruning records, and with --select the paper-000
protocol's stages on the derived nets; writes results.json, one architecture
JSON per seed and accuracy_vs_cost.png to --workdir (default
results/structure_search/<dataset>/ or <dataset>_conv/). With
--noevaluate_test every accuracy is on the validation split and the test
split is not read (for choosing settings). With --checkpoint_every=N the
search and every network's training save a checkpoint every N steps (and at
their end) under <workdir>/checkpoints; the same command run again resumes
where a killed run stopped, with the same results.

Every flag is checked, the search space against the data's shape included,
before any data is loaded; a bad one is answered with one line
(``structure_search.py: error: ...``) and exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools
import os
from typing import Any

from absl import flags
import jax

from paramsel_jax.lab import cli
from paramsel_jax import data
from paramsel_jax.protocol import checks
from paramsel_jax.structure import config as config_lib
from paramsel_jax.structure import pipeline
from paramsel_jax.structure import presets
from paramsel_jax.structure import regularizer
from paramsel_jax.structure import relax
from paramsel_jax.structure import search
from paramsel_jax.structure import selection
from paramsel_jax.structure import space
from paramsel_jax.structure import training
from paramsel_jax.train import checkpoints

_DATASET = flags.DEFINE_string('dataset', 'mnist',
                               f'One of {", ".join(data.DATASETS)}.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Data cache directory.')
_VALID_SIZE = flags.DEFINE_integer(
    'valid_size', None, 'Validation examples carved from train (the structure '
    "logits' data); default: the data set's.")
DEFAULT_WORKDIR = 'results/structure_search/<dataset>'
RUN_DIR = cli.define_run_dir(DEFAULT_WORKDIR, 'Output dir; <dataset>: the '
                             "data set's name (+ _conv for --space=conv).")
_SYNTHETIC_SHAPE = flags.DEFINE_list(
    'synthetic_shape', ['28', '28', '1'], '--dataset=synthetic: image shape '
    'H,W,C (e.g. 32,32,3 for CIFAR-shaped).')
_SYNTHETIC_TRAIN = flags.DEFINE_integer('synthetic_train', 2000,
                                        '--dataset=synthetic: train size.')
_SYNTHETIC_TEST = flags.DEFINE_integer(
    'synthetic_test', 500, '--dataset=synthetic: test (and default valid) '
    'size.')
_SPACE = flags.DEFINE_enum('space', 'auto', ('auto', *config_lib.SPACES),
                           'Search space; auto: conv for cifar10, else mlp.')
# The space.
_WIDTHS = flags.DEFINE_list('widths', ['32', '64', '128', '256', '512'],
                            'MLP: candidate widths of every hidden layer.')
_DEPTH = flags.DEFINE_integer('depth', 3, 'MLP: hidden layers (all but the '
                              'first may be skipped).')
_ACTIVATIONS = flags.DEFINE_list(
    'activations', list(space.ACTIVATIONS),
    f'Candidate activations, from {", ".join(space.ACTIVATIONS)}.')
_CONV_WIDTHS = flags.DEFINE_string(
    'conv_widths', ';'.join(','.join(map(str, w)) for w in presets.CONV_WIDTHS),
    'Conv: candidate channels per conv layer, layers separated by ";".')
_CONV_POOLS = flags.DEFINE_list(
    'conv_pools', [str(int(p)) for p in presets.CONV_POOLS],
    'Conv: 2x2 pool after each conv layer.')
_CONV_OPTIONAL = flags.DEFINE_list(
    'conv_optional', [str(int(o)) for o in presets.CONV_OPTIONAL],
    'Conv: whether each conv layer may be skipped.')
_KERNEL_SIZES = flags.DEFINE_list(
    'kernel_sizes', [str(k) for k in presets.KERNEL_SIZES],
    'Conv: candidate kernel sizes.')
_POOL_TYPES = flags.DEFINE_list(
    'pool_types', list(presets.POOL_TYPES),
    f'Conv: candidate pool kinds, from {", ".join(space.POOLS)}.')
_DENSE_WIDTHS = flags.DEFINE_list(
    'dense_widths', [str(w) for w in presets.DENSE_WIDTHS],
    'Conv: candidate widths of the dense layers.')
_DENSE_DEPTH = flags.DEFINE_integer(
    'dense_depth', presets.DENSE_DEPTH,
    'Conv: dense layers (all but the first may be skipped).')
# The search.
_WARMUP_STEPS = flags.DEFINE_integer('warmup_steps', 500,
                                     'Weight-only steps first.')
_SEARCH_STEPS = flags.DEFINE_integer('search_steps', 1500,
                                     'Alternating structure/weight steps.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Minibatch size.')
_WEIGHT_LR = flags.DEFINE_float('weight_lr', 1e-3, 'Supernet weights: Adam.')
_ARCH_LR = flags.DEFINE_float('arch_lr', 3e-2, 'Structure logits: Adam.')
_TAU0 = flags.DEFINE_float('tau0', 5.0, 'Initial temperature.')
_TAU_MIN = flags.DEFINE_float('tau_min', 0.1, 'Final temperature.')
_SCHEDULE = flags.DEFINE_string(
    'schedule', 'exponential', f'One of {", ".join(relax.SCHEDULES)}.')
_HARD = flags.DEFINE_bool('hard', True, 'Straight-through one-hot samples.')
_SIZE_WEIGHT = flags.DEFINE_float('size_weight', 0.05,
                                  'Weight of the expected-size term.')
_TARGET_PARAMS = flags.DEFINE_integer(
    'target_params', None, 'Target-size mode: penalise only E[params] above '
    'this.')
_FLOPS_WEIGHT = flags.DEFINE_float('flops_weight', 0.0,
                                   'Weight of the expected-FLOPs term.')
_TARGET_FLOPS = flags.DEFINE_integer(
    'target_flops', None, 'Target-FLOPs mode: penalise only E[FLOPs] above '
    'this.')
_ENTROPY_WEIGHT = flags.DEFINE_float('entropy_weight', 0.0,
                                     'Weight of the choice entropy.')
_CHUNK_STEPS = flags.DEFINE_integer('chunk_steps', 500,
                                    'Steps per jitted chunk.')
_CONV_IMPL = flags.DEFINE_string('conv_impl', 'auto',
                                 'auto, im2col, xla or xla_vjp.')
# Retraining and baselines.
_RETRAIN_STEPS = flags.DEFINE_integer('retrain_steps', 6000,
                                      'Steps to train every final network.')
_RETRAIN_LR = flags.DEFINE_float('retrain_lr', 2e-3,
                                 'Peak Adam lr (cosine decay).')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Search seeds.')
_VMAP_SEEDS = flags.DEFINE_enum(
    'vmap_seeds', 'auto', ('auto', 'on', 'off'),
    'Search all seeds at once under vmap (on) or in turn (off); auto: off '
    'for conv spaces on CPU (vmapped convs are slow there), else on.')
_RANDOM_SAMPLES = flags.DEFINE_integer(
    'random_samples', None, 'Random-search structures per seed (0: none); '
    'default: the wall-clock budgets of --random_budgets.')
_RANDOM_BUDGETS = flags.DEFINE_list(
    'random_budgets', ['1'], 'Random search per seed at these multiples of '
    "the searched method's wall-clock for that seed, each reported.")
_RANDOM_ETA = flags.DEFINE_integer(
    'random_eta', 3, 'Successive halving rate of random search (1: every '
    'structure fully trained).')
_RANDOM_RUNGS = flags.DEFINE_integer('random_rungs', 3,
                                     'Rungs per successive-halving bracket.')
_FIXED = flags.DEFINE_bool('fixed', True, 'Train the fixed hand-made net.')
_REFERENCE = flags.DEFINE_string(
    'reference_model', 'auto', "A models.create_model name, 'none', or auto "
    '(lenet300 for MLP spaces, lenet5 for conv).')
_INPUT_SIGMAS = flags.DEFINE_list('input_sigmas', ['0.1', '0.2', '0.3'],
                                  'Input-noise levels (images in [0, 1]).')
_WEIGHT_SIGMAS = flags.DEFINE_list('weight_sigmas', ['0.1', '0.2', '0.3'],
                                   'Weight-noise levels (x RMS of a leaf).')
_NOISE_REPEATS = flags.DEFINE_integer('noise_repeats', 2,
                                      'Noise draws per level.')
_EVALUATE_TEST = flags.DEFINE_bool(
    'evaluate_test', True, 'Report accuracies on test; false: on the '
    'validation split, test unread (for choosing settings).')
# Search, then select: the paper-000 protocol on each derived net.
_SELECT = flags.DEFINE_bool('select', False, 'Run the protocol (alpha, beta) '
                            'on every derived network.')
_SELECT_SELECTOR = flags.DEFINE_string('select_selector', 'magnitude',
                                       '--select: a registered selector.')
_SELECT_MODE = flags.DEFINE_string('select_mode', 'prune_at_end',
                                   '--select: prune_at_end or retrain.')
_SELECT_K = flags.DEFINE_string('select_k', None, '--select: k, a count or a '
                                "fraction; default: the protocol's.")
_SELECT_L = flags.DEFINE_string('select_l', '0.1',
                                '--select: l, a count or a fraction.')
_SELECT_ETA0 = flags.DEFINE_integer('select_eta0', 2000, '--select: eta0.')
_SELECT_ETA1 = flags.DEFINE_integer('select_eta1', 4000, '--select: eta1.')
_SELECT_WINDOW = flags.DEFINE_integer('select_window', 100,
                                      '--select: statistics window.')
_SELECT_ROUNDS = flags.DEFINE_integer('select_rounds', 1,
                                      '--select: pruning rounds (retrain).')
_SELECT_LR = flags.DEFINE_float('select_lr', 1e-3,
                                '--select: Adam learning rate.')


def _space_name(dataset: str) -> str:
  if _SPACE.value != 'auto':
    return _SPACE.value
  return 'conv' if dataset == 'cifar10' else 'mlp'


def _reference(space_name: str) -> str | None:
  if _REFERENCE.value == 'auto':
    return 'lenet300' if space_name == 'mlp' else 'lenet5'
  return None if _REFERENCE.value == 'none' else _REFERENCE.value


def _vmap_seeds(space_name: str) -> bool:
  if _VMAP_SEEDS.value != 'auto':
    return _VMAP_SEEDS.value == 'on'
  return not (space_name == 'conv' and jax.default_backend() == 'cpu')


def search_config_from_flags() -> search.SearchConfig:
  """The search settings the flags describe (checked when made)."""
  return search.SearchConfig(
      warmup_steps=_WARMUP_STEPS.value, search_steps=_SEARCH_STEPS.value,
      batch_size=_BATCH_SIZE.value, weight_lr=_WEIGHT_LR.value,
      arch_lr=_ARCH_LR.value, tau0=_TAU0.value, tau_min=_TAU_MIN.value,
      schedule=_SCHEDULE.value, hard=_HARD.value,
      regularizer=regularizer.RegularizerConfig(
          size_weight=_SIZE_WEIGHT.value, target_params=_TARGET_PARAMS.value,
          flops_weight=_FLOPS_WEIGHT.value, target_flops=_TARGET_FLOPS.value,
          entropy_weight=_ENTROPY_WEIGHT.value),
      chunk_steps=_CHUNK_STEPS.value, conv_impl=_CONV_IMPL.value)


def selection_from_flags() -> selection.SelectionConfig | None:
  """The protocol settings of --select (None without it); checked."""
  if not _SELECT.value:
    return None
  return selection.SelectionConfig(
      selector=_SELECT_SELECTOR.value, mode=_SELECT_MODE.value,
      k=(None if _SELECT_K.value is None
         else cli.parse_count(_SELECT_K.value, 'select_k')),
      l=cli.parse_count(_SELECT_L.value, 'select_l'),
      eta0=_SELECT_ETA0.value, eta1=_SELECT_ETA1.value,
      window=_SELECT_WINDOW.value, prune_rounds=_SELECT_ROUNDS.value,
      learning_rate=_SELECT_LR.value)


def config_from_flags(dataset: str) -> config_lib.PipelineConfig:
  """The pipeline config the flags describe; ValueError on a bad flag."""
  space_name = _space_name(dataset)
  conv_widths = tuple(cli.ints(layer.split(','), 'conv_widths')
                      for layer in _CONV_WIDTHS.value.split(';')
                      if layer.strip())
  return config_lib.PipelineConfig(
      dataset=dataset, space=space_name,
      mlp_widths=cli.ints(_WIDTHS.value, 'widths'), mlp_depth=_DEPTH.value,
      activations=tuple(_ACTIVATIONS.value), conv_widths=conv_widths,
      conv_pools=cli.bools(_CONV_POOLS.value, 'conv_pools'),
      conv_optional=cli.bools(_CONV_OPTIONAL.value, 'conv_optional'),
      kernel_sizes=cli.ints(_KERNEL_SIZES.value, 'kernel_sizes'),
      pool_types=tuple(_POOL_TYPES.value),
      dense_widths=cli.ints(_DENSE_WIDTHS.value, 'dense_widths'),
      dense_depth=_DENSE_DEPTH.value,
      search=search_config_from_flags(),
      retrain=training.TrainConfig(
          steps=_RETRAIN_STEPS.value, batch_size=_BATCH_SIZE.value,
          learning_rate=_RETRAIN_LR.value,
          chunk_steps=max(_CHUNK_STEPS.value, 1000)),
      seeds=cli.ints(_SEEDS.value, 'seeds'),
      vmap_seeds=_vmap_seeds(space_name),
      random_samples=_RANDOM_SAMPLES.value,
      random_budgets=cli.floats(_RANDOM_BUDGETS.value, 'random_budgets'),
      random_eta=_RANDOM_ETA.value, random_rungs=_RANDOM_RUNGS.value,
      fixed=_FIXED.value,
      reference_model=_reference(space_name),
      input_sigmas=cli.floats(_INPUT_SIGMAS.value, 'input_sigmas'),
      weight_sigmas=cli.floats(_WEIGHT_SIGMAS.value, 'weight_sigmas'),
      noise_repeats=_NOISE_REPEATS.value, evaluate_test=_EVALUATE_TEST.value,
      select=selection_from_flags())


def data_from_flags(dataset: str
                    ) -> tuple[tuple[int, ...], int, Callable[[], Any]]:
  """``(image shape, classes, load)`` of the data the flags name, unloaded."""
  checks.integer('--valid_size', _VALID_SIZE.value, at_least=1, optional=True)
  if dataset != 'synthetic':
    info = data.info(dataset)
    load = functools.partial(data.load, dataset, data_dir=_DATA_DIR.value,
                             valid_size=_VALID_SIZE.value)
    return info.image_shape, info.num_classes, load
  shape = cli.ints(_SYNTHETIC_SHAPE.value, 'synthetic_shape')
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f'--synthetic_shape={",".join(_SYNTHETIC_SHAPE.value)}; '
                     'accepted: H,W,C, three positive ints.')
  checks.integer('--synthetic_train', _SYNTHETIC_TRAIN.value, at_least=1)
  checks.integer('--synthetic_test', _SYNTHETIC_TEST.value, at_least=1)
  load = functools.partial(data.synthetic, image_shape=shape,
                           num_train=_SYNTHETIC_TRAIN.value,
                           num_test=_SYNTHETIC_TEST.value,
                           valid_size=_VALID_SIZE.value)
  return shape, data.info('synthetic').num_classes, load


# The flag of each config field whose name differs from it, for the configs'
# own messages (`cli.as_flags`); the other fields are named as their flags.
_SAME = ('warmup_steps', 'search_steps', 'batch_size', 'weight_lr', 'arch_lr',
         'tau0', 'tau_min', 'schedule', 'chunk_steps', 'conv_impl',
         'size_weight', 'target_params', 'flops_weight', 'target_flops',
         'entropy_weight', 'activations', 'conv_widths', 'conv_pools',
         'conv_optional', 'kernel_sizes', 'pool_types', 'dense_widths',
         'dense_depth', 'seeds', 'random_samples', 'random_budgets',
         'random_eta', 'random_rungs', 'input_sigmas', 'weight_sigmas',
         'noise_repeats', 'space')
FLAG_NAMES = {
    'TrainConfig.steps': 'retrain_steps',
    'TrainConfig.learning_rate': 'retrain_lr',
    'SelectionConfig.learning_rate': 'select_lr',
    # The protocol's fields come from --select's flags only.
    'mode': 'select_mode', 'eta0': 'select_eta0', 'eta1': 'select_eta1',
    'window': 'select_window', 'prune_rounds': 'select_rounds',
    'k': 'select_k', 'l': 'select_l', 'mlp_widths': 'widths',
    'mlp_depth': 'depth', **{name: name for name in _SAME}}


def build() -> tuple[config_lib.PipelineConfig, Callable[[], Any]]:
  """The checked config and the data's loader; ValueError on a bad flag.

  Everything, the space against the data's shape included, is checked here,
  before any data is loaded; the configs' messages name the flags.
  """
  checks.one_of('--dataset', _DATASET.value, data.DATASETS)
  with cli.as_flags(FLAG_NAMES):
    config = config_from_flags(_DATASET.value)
    shape, num_classes, load = data_from_flags(config.dataset)
    config.validate(shape, num_classes)
  return config, load


def _data_settings(dataset: str) -> dict[str, Any]:
  """The flags that make the data besides its name (checkpoints' identity)."""
  if dataset != 'synthetic':
    return {'valid_size': _VALID_SIZE.value}
  return {'valid_size': _VALID_SIZE.value,
          'synthetic_shape': _SYNTHETIC_SHAPE.value,
          'synthetic_train': _SYNTHETIC_TRAIN.value,
          'synthetic_test': _SYNTHETIC_TEST.value}


def main(argv: Sequence[str]) -> None:
  """Runs the structure-search pipeline of the flags into its workdir."""
  cli.check_no_arguments(argv)
  run_dir = RUN_DIR()
  config, load = cli.config_or_exit(build)
  suffix = '_conv' if config.space == 'conv' else ''
  workdir = (os.path.join('results', 'structure_search', config.dataset + suffix)
             if run_dir.workdir == DEFAULT_WORKDIR else run_dir.workdir)
  checkpointer = None
  if run_dir.checkpoint_every:
    checkpointer = checkpoints.Checkpointer(
        os.path.join(workdir, 'checkpoints'), run_dir.checkpoint_every,
        pipeline.checkpoint_identity(config, **_data_settings(config.dataset)),
        keep=run_dir.keep)
  pipeline.run_pipeline(config, load(), workdir, checkpointer=checkpointer)
  if checkpointer is not None:
    checkpointer.close()


if __name__ == '__main__':
  cli.run(main)
