"""The structure-search pipeline's settings: :class:`PipelineConfig`.

One frozen config holds everything :func:`~paramsel_jax.structure.pipeline.
run_pipeline` needs besides the data: the space, the search, the retraining,
the baselines (random search by count or by wall-clock budget, the fixed
net, a reference model), the stability report and the optional protocol run
on the derived networks (:class:`~paramsel_jax.structure.selection.
SelectionConfig`). Every field is checked when the config is made; what
depends on the data's shape is checked by :meth:`PipelineConfig.validate`.

Example:
  >>> PipelineConfig(random_budgets=(5.0, 1.0))
  Traceback (most recent call last):
  ...
  ValueError: PipelineConfig.random_budgets=(5.0, 1.0); accepted: finite \
floats > 0, increasing, distinct.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses

from paramsel_jax.protocol import checks
from paramsel_jax import models
from paramsel_jax.structure import presets
from paramsel_jax.structure import search as search_lib
from paramsel_jax.structure import selection as selection_lib
from paramsel_jax.structure import space as space_lib
from paramsel_jax.structure import training

SPACES = ('mlp', 'conv')


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything :func:`run_pipeline` needs besides the data.

  Every field is checked when the config is made (one ``ValueError`` naming
  the field, its value and what is accepted):

    >>> PipelineConfig(seeds=(0, -1))
    Traceback (most recent call last):
    ...
    ValueError: PipelineConfig.seeds=(0, -1); accepted: one or more distinct \
ints in [0, 2**32).

  Attributes:
    dataset: the data set's name (recorded; the data are passed in).
    space: ``'mlp'`` or ``'conv'``.
    mlp_widths: MLP: candidate widths of every hidden layer.
    mlp_depth: MLP: hidden layers (all but the first optional), ``>= 1``.
    activations: candidate activations of every layer.
    conv_widths: conv: candidate channels of each conv layer.
    conv_pools: conv: a 2x2 pool after each conv layer (bools).
    conv_optional: conv: whether each conv layer may be skipped (bools).
    kernel_sizes: conv: candidate kernel sizes.
    pool_types: conv: candidate kinds of every pool (``'max'``, ``'avg'``).
    dense_widths: conv: candidate widths of the dense layers.
    dense_depth: conv: dense layers (all but the first optional), ``>= 0``.
    search: the search settings.
    retrain: how derived nets and all baselines are trained.
    seeds: one search (and one run of each baseline) per seed: distinct ints
      in ``[0, 2**32)``.
    vmap_seeds: search all seeds at once under ``vmap``.
    random_samples: if set, random search trains this many structures per
      seed (0: no random search), each for ``retrain.steps``; ``None``: the
      wall-clock mode of ``random_budgets``.
    random_budgets: wall-clock mode: random search per seed gets these
      multiples of the searched method's time for that seed (search and
      retraining), each reported (``()``: no random search).
    random_eta: wall-clock mode: successive halving's rate (1: every
      structure is trained fully).
    random_rungs: wall-clock mode: rungs per successive-halving bracket.
    random_within_targets: wall-clock mode: sample only structures within
      the regularizer's ``target_params`` / ``target_flops`` (when set).
    fixed: train the fixed hand-made network of similar size.
    reference_model: a :func:`paramsel_jax.models.create_model` name trained
      the same way for reference (e.g. ``'lenet300'``), or ``None``.
    input_sigmas: input-noise levels of the stability report (``>= 0``).
    weight_sigmas: relative weight-noise levels of the stability report.
    noise_repeats: noise draws per level, ``>= 1``.
    eval_batch_size: evaluation batch size, ``>= 1``.
    evaluate_test: report accuracies on the test split; False: on the
      validation split, the test split unread (for choosing settings).
    select: run the paper-000 protocol on every derived net, or ``None``.
  """

  dataset: str = 'mnist'
  space: str = 'mlp'
  mlp_widths: tuple[int, ...] = (32, 64, 128, 256, 512)
  mlp_depth: int = 3
  activations: tuple[str, ...] = space_lib.ALL_ACTIVATIONS
  conv_widths: tuple[tuple[int, ...], ...] = presets.CONV_WIDTHS
  conv_pools: tuple[bool, ...] = presets.CONV_POOLS
  conv_optional: tuple[bool, ...] = presets.CONV_OPTIONAL
  kernel_sizes: tuple[int, ...] = presets.KERNEL_SIZES
  pool_types: tuple[str, ...] = presets.POOL_TYPES
  dense_widths: tuple[int, ...] = presets.DENSE_WIDTHS
  dense_depth: int = presets.DENSE_DEPTH
  search: search_lib.SearchConfig = search_lib.SearchConfig()
  retrain: training.TrainConfig = training.TrainConfig()
  seeds: tuple[int, ...] = (0, 1, 2)
  vmap_seeds: bool = True
  random_samples: int | None = None
  random_budgets: tuple[float, ...] = (1.0,)
  random_eta: int = 3
  random_rungs: int = 3
  random_within_targets: bool = True
  fixed: bool = True
  reference_model: str | None = None
  input_sigmas: tuple[float, ...] = (0.1, 0.2, 0.3)
  weight_sigmas: tuple[float, ...] = (0.1, 0.2, 0.3)
  noise_repeats: int = 2
  eval_batch_size: int = 1000
  evaluate_test: bool = True
  select: selection_lib.SelectionConfig | None = None

  def __post_init__(self):
    checks.fields(self, ('dataset',), checks.instance, cls=str)
    checks.fields(self, ('space',), checks.one_of, accepted=SPACES)
    checks.fields(self, ('mlp_widths', 'kernel_sizes', 'dense_widths'),
                  checks.integers)
    checks.fields(self, ('mlp_depth', 'random_eta', 'random_rungs'),
                  checks.integer, at_least=1)
    checks.fields(self, ('dense_depth',), checks.integer, at_least=0)
    checks.fields(self, ('activations', 'pool_types'), checks.strings)
    checks.fields(self, ('conv_widths',), checks.integer_lists)
    checks.fields(self, ('conv_pools', 'conv_optional'), checks.booleans)
    checks.fields(self, ('search',), checks.instance,
                  cls=search_lib.SearchConfig)
    checks.fields(self, ('retrain',), checks.instance,
                  cls=training.TrainConfig)
    checks.fields(self, ('seeds',), checks.seeds)
    checks.fields(self, ('vmap_seeds', 'fixed', 'evaluate_test',
                         'random_within_targets'), checks.boolean)
    checks.fields(self, ('random_samples',), checks.integer, at_least=0,
                  optional=True)
    budgets = self.random_budgets
    if (not isinstance(budgets, tuple)
        or not all(checks.is_real(b) and b > 0 for b in budgets)
        or list(budgets) != sorted(set(budgets))):
      raise ValueError(f'PipelineConfig.random_budgets={budgets!r}; accepted: '
                       'finite floats > 0, increasing, distinct.')
    checks.fields(self, ('reference_model',), checks.one_of,
                  accepted=tuple(models.MODELS), optional=True)
    checks.fields(self, ('input_sigmas', 'weight_sigmas'), checks.reals,
                  at_least=0)
    checks.fields(self, ('noise_repeats', 'eval_batch_size'), checks.integer,
                  at_least=1)
    if self.select is not None:
      checks.fields(self, ('select',), checks.instance,
                    cls=selection_lib.SelectionConfig)

  def build_space(self, input_shape: Sequence[int],
                  num_classes: int) -> space_lib.SearchSpace:
    """The validated search space for data of this shape."""
    if self.space == 'conv':
      return presets.conv_space(input_shape, num_classes,
                                conv_widths=self.conv_widths,
                                kernel_sizes=self.kernel_sizes,
                                pools=self.conv_pools,
                                optional=self.conv_optional,
                                pool_types=self.pool_types,
                                dense_widths=self.dense_widths,
                                dense_depth=self.dense_depth,
                                activations=self.activations)
    return presets.mlp_space(input_shape, num_classes,
                             widths=self.mlp_widths, depth=self.mlp_depth,
                             activations=self.activations)

  def validate(self, input_shape: Sequence[int],
               num_classes: int) -> space_lib.SearchSpace:
    """The search space for data of this shape; ValueError if it cannot be.

    Needs only the shape, so callers check before loading any data (see
    :func:`paramsel_jax.data.info`).

    Example:
      >>> PipelineConfig(space='conv').validate((2, 2, 1), 10)
      Traceback (most recent call last):
      ...
      ValueError: layer 1 (conv): pool on a 1x1 map; accepted: maps of at \
least 2x2.
    """
    return self.build_space(input_shape, num_classes)

  def random_mode(self) -> str:
    """``'count'``, ``'budget'`` or ``'none'``: how random search runs.

    Example:
      >>> PipelineConfig().random_mode(), PipelineConfig(
      ...     random_samples=0).random_mode()
      ('budget', 'none')
    """
    if self.random_samples is not None:
      return 'count' if self.random_samples else 'none'
    return 'budget' if self.random_budgets else 'none'

  def random_limits(self) -> dict[str, int | None]:
    """The size limits of random search's structures (wall-clock mode).

    Example:
      >>> from paramsel_jax.structure import regularizer
      >>> PipelineConfig(search=search_lib.SearchConfig(
      ...     regularizer=regularizer.RegularizerConfig(target_params=9000))
      ...     ).random_limits()
      {'max_params': 9000, 'max_flops': None}
    """
    reg = self.search.regularizer
    if not self.random_within_targets:
      return {'max_params': None, 'max_flops': None}
    return {'max_params': reg.target_params, 'max_flops': reg.target_flops}

  def num_random(self) -> int:
    """Structures random search trains per seed in count mode (else 0)."""
    return self.random_samples or 0
