"""The protocol's settings: `ProtocolConfig` and the checks of its inputs.

`ProtocolConfig` is checked when it is made; `validate_protocol_config` adds
the checks that need N and the data, and resolves the k's and l's to counts.
`check_seeds` and `check_selector_names` check the other inputs of
`protocol.run_protocol`.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from paramsel_jax.protocol import checks
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.train.mesh import SEED_AXES
MODES = ('prune_at_end', 'retrain')
STEPS = ('auto', 'masked', 'active')
BUDGETS = ('params', 'flops', 'backward')
# The budgets whose k is a share of FLOPs (a fraction), at unit/layer
# granularity only.
FLOP_BUDGETS = ('flops', 'backward')
# Where an active phase keeps the optimizer state of what does not train
# (`phase.run_phase`).
INACTIVE_STATES = ('device', 'host', 'reset')
DEFAULT_K = 0.1  # k when none is given, in mode 'prune_at_end'.
MAX_SEED = checks.SEED_LIMIT - 1  # seeds become uint32 PRNG keys.


def _as_tuple(x) -> tuple:
  return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _check_positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
    raise ValueError(f'{name}={value!r}; accepted: an integer > 0.')


def _check_counts(name: str, values: Any) -> None:
  """Each value a count (int >= 1) or a fraction (float in (0, 1]), distinct."""
  values = _as_tuple(values)
  if not values:
    raise ValueError(f'{name}=(): give at least one count or fraction.')
  for v in values:
    selectors_lib.check_count(v, name)
  if len(set(values)) != len(values):
    raise ValueError(f'{name}={values!r} repeats a value.')


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
  """The protocol's settings, checked when the config is made.

  Attributes:
    eta0: steps of `T` on all parameters.
    eta1: steps of `T|α`.
    k: how many coordinates keep training: a count (int) or a fraction of N
      (float in (0, 1]); or a tuple of such values (each gets its own η1
      phase). None: 0.1 in mode 'prune_at_end'; must be None in 'retrain'.
    l: how many weights are kept at the end: a count or a fraction; or a
      tuple (all read off the same η1 phase).
    window: the selectors' statistics cover the last `window` steps of each
      phase.
    batch_size: minibatch size of `T`.
    chunk_size: steps per jitted call between progress reports.
    eval_batch_size: batch size of the evaluation scan.
    train_eval_size: the train metrics are computed on the first this many
      training examples; None: on all of them (`L(β ⊙ w, D)` exactly). Test
      metrics always use the whole test split.
    evaluate_after_eta0: also evaluate the dense `w` after η0 (a reference
      row; one evaluation beyond the paper's protocol).
    seed_axis: 'vmap' (seeds in parallel), 'map' (in turn, `lax.map`) or
      'auto' (`mesh.resolve_seed_axis`: 'map' for the conv nets of
      `models.CONV_MODELS` on CPU when the model is named, else 'vmap').
      With several devices, vmapped seeds are sharded over them.
    shard_batch: with several devices, also shard each training minibatch
      over the devices the seeds leave (data parallelism; `mesh`).
    mode: 'prune_at_end' (the paper: α after η0, β after η1) or 'retrain'
      (prune-then-retrain, as in Han et al. 2015: β is chosen after η0 from
      the selector's β scores, the other weights are zeroed, and only the
      kept ones train for η1; α = β, so `k` is not used and must be None).
    prune_rounds: 'retrain' mode only: prune gradually, in this many rounds
      of η1 / prune_rounds steps each; round r keeps N·(l/N)^(r/R) weights,
      chosen among those kept so far (iterative pruning, as Han et al. 2015
      and Frankle & Carbin 2019 do). 1: one-shot.
    granularity: of α: 'element' (scalars, the paper), 'unit' (an output
      neuron or channel: its fan-in weights and bias) or 'layer' (a module);
      see `granularity`. β is always chosen per element.
    aggregate: how a group's score is made of its elements' (`granularity.
      AGGREGATIONS`; 'mean': score per parameter).
    budget: what k counts at unit/layer granularity: 'params' (k parameters'
      worth of groups, to the nearest group boundary), 'flops' (groups
      until their weight-gradient FLOPs are the fraction k of all) or
      'backward' (a cap: α's backward pass, its weight gradients plus the
      input gradients of every layer above its lowest trained one, costs
      at most the fraction k of the dense backward pass's FLOPs;
      `select.prefix_budget`; needs the forward layer order,
      `Task.layer_order` or traced).
    step: `T|α`'s implementation: 'masked' (the dense step, frozen updates
      zeroed), 'active' (`active`: the cost follows α; packed optimizer state
      at element granularity), 'auto' ('active' at unit/layer granularity,
      'masked' at element).
    cache_prefix: with step 'active', when every module called before the
      first one that trains is frozen, compute that module's inputs once over
      the training set and train on them (the model must be deterministic).
    cache_budget_mb: the most memory the cache may take (all seeds); a cache
      that would not fit is refused with a message and the phase runs
      uncached.
    inactive_state: with step 'active', where the full optimizer state waits
      while a phase trains the active set: 'device' (stays on the device),
      'host' (moved to host memory and back, bit-identical), 'reset' (dropped;
      the slots that did not train get fresh `tx.init` values when the phase
      ends, as BAdam does at a block switch). See `phase.run_phase`.

  Example:
    >>> ProtocolConfig(mode='retrian')
    Traceback (most recent call last):
    ...
    ValueError: mode='retrian'; accepted: prune_at_end, retrain.
  """

  eta0: int = 500
  eta1: int = 1500
  k: float | int | tuple[float | int, ...] | None = None
  l: float | int | tuple[float | int, ...] = 0.2
  window: int = 100
  batch_size: int = 128
  chunk_size: int = 500
  eval_batch_size: int = 1000
  train_eval_size: int | None = None
  evaluate_after_eta0: bool = True
  seed_axis: str = 'auto'
  shard_batch: bool = False
  mode: str = 'prune_at_end'
  prune_rounds: int = 1
  granularity: str = 'element'
  aggregate: str = 'mean'
  budget: str = 'params'
  step: str = 'auto'
  cache_prefix: bool = False
  cache_budget_mb: float = 2048.0
  inactive_state: str = 'device'

  def __post_init__(self):
    for name in ('eta0', 'eta1', 'window', 'batch_size', 'chunk_size',
                 'eval_batch_size', 'prune_rounds'):
      _check_positive_int(name, getattr(self, name))
    if self.window > self.eta0 or self.window > self.eta1:
      raise ValueError(
          f'window={self.window} is larger than eta0={self.eta0} or '
          f'eta1={self.eta1}; accepted: 1 <= window <= min(eta0, eta1).')
    if self.train_eval_size is not None:
      _check_positive_int('train_eval_size', self.train_eval_size)
    if self.seed_axis not in SEED_AXES:
      raise ValueError(f'seed_axis={self.seed_axis!r}; accepted: '
                       f'{", ".join(SEED_AXES)}.')
    if self.mode not in MODES:
      raise ValueError(f'mode={self.mode!r}; accepted: {", ".join(MODES)}.')
    for name in ('evaluate_after_eta0', 'shard_batch'):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f'{name}={getattr(self, name)!r}; accepted: True or '
                         'False.')
    self._check_mode()
    if self.k is not None:
      _check_counts('k', self.k)
    _check_counts('l', self.l)
    self._check_freezing()

  def _check_freezing(self) -> None:
    checks.one_of('granularity', self.granularity,
                  granularity_lib.GRANULARITIES)
    checks.one_of('aggregate', self.aggregate, granularity_lib.AGGREGATIONS)
    checks.one_of('budget', self.budget, BUDGETS)
    checks.one_of('step', self.step, STEPS)
    checks.boolean('cache_prefix', self.cache_prefix)
    checks.real('cache_budget_mb', self.cache_budget_mb, above=0)
    checks.one_of('inactive_state', self.inactive_state, INACTIVE_STATES)
    if self.budget in FLOP_BUDGETS:
      budget = self.budget
      if self.granularity == 'element':
        raise ValueError(f"budget={budget!r} with granularity='element'; "
                         "accepted: granularity 'unit' or 'layer' (FLOPs are "
                         'counted per unit).')
      for k in self.ks:
        if isinstance(k, numbers.Integral):
          raise ValueError(f'k={k!r} with budget={budget!r}: accepted: '
                           'fractions 0 < k <= 1 of the '
                           + ('weight-gradient' if budget == 'flops'
                              else 'dense backward') + ' FLOPs.')
    if self.mode == 'retrain' and (self.granularity != 'element'
                                   or self.step == 'active'):
      raise ValueError(
          "mode='retrain' trains the l kept weights (α = β, chosen per "
          "element); accepted there: granularity='element' and step 'auto' or "
          "'masked'.")
    if self.cache_prefix and self.active_step() != 'active':
      raise ValueError("cache_prefix=True needs the active step; accepted: "
                       "step='active', or granularity 'unit'/'layer' with "
                       "step='auto'.")

  def active_step(self) -> str:
    """'masked' or 'active': the step η1 runs ('auto' resolved)."""
    if self.step != 'auto':
      return self.step
    return 'masked' if self.granularity == 'element' else 'active'

  def _check_mode(self) -> None:
    rounds = self.prune_rounds
    if self.mode == 'retrain' and self.k is not None:
      raise ValueError(
          f"k={self.k!r} with mode='retrain': in prune-then-retrain α = β (the "
          'l kept weights train), so k is not used; accepted: k=None (leave '
          '--k unset).')
    if rounds > 1 and self.mode != 'retrain':
      raise ValueError(f'prune_rounds={rounds} needs mode=\'retrain\'; '
                       f'accepted with mode={self.mode!r}: 1.')
    if rounds > 1 and self.window > self.eta1 // rounds:
      raise ValueError(
          f'window={self.window} is longer than a pruning round (eta1 // '
          f'prune_rounds = {self.eta1 // rounds}); accepted: window <= '
          f'{self.eta1 // rounds}.')

  @property
  def ks(self) -> tuple[float | int, ...]:
    """The k values as given (the default in 'prune_at_end'); () in 'retrain'."""
    if self.mode == 'retrain':
      return ()
    return _as_tuple(DEFAULT_K if self.k is None else self.k)

  @property
  def ls(self) -> tuple[float | int, ...]:
    """The l values as given, as a tuple."""
    return _as_tuple(self.l)


def validate_protocol_config(
    config: ProtocolConfig, num_params: int, num_train: int | None
) -> tuple[tuple[int | float, ...], tuple[int, ...]]:
  """The checks that need N and the data; returns the resolved k's and l's.

  `num_train`: the examples of on-device training data (None: host batches,
  whose size the data sets: `batch_size` and `train_eval_size` are unused).

  In 'retrain' mode the k's are (); with `budget='flops'` or 'backward'
  they stay the fractions of the FLOPs they are.
  """
  size = config.train_eval_size
  if num_train is None:
    pass
  elif size is not None and size > num_train:
    raise ValueError(f'train_eval_size={size!r}; accepted: an integer in '
                     f'[1, {num_train}], or None (0 on the command line) for '
                     'the whole training set.')
  elif config.batch_size > num_train:
    raise ValueError(f'batch_size={config.batch_size} is larger than the '
                     f'training set ({num_train} examples).')
  resolve = lambda vs, name: tuple(
      selectors_lib.resolve_count(v, num_params, name) for v in vs)
  ls = resolve(config.ls, 'l')
  ks: tuple[int | float, ...] = resolve(config.ks, 'k')
  if config.budget in FLOP_BUDGETS:  # k is a share of FLOPs, not a count.
    ks = tuple(float(k) for k in config.ks)
  for name, given, counts in (('k', config.ks, ks), ('l', config.ls, ls)):
    if len(set(counts)) != len(counts):
      raise ValueError(f'{name}={given!r} gives the counts {list(counts)} of '
                       f'N = {num_params}: each value must give a distinct '
                       'count.')
  return ks, ls


def check_seeds(seeds: Any) -> tuple[int, ...]:
  """`seeds` as a tuple of distinct ints in [0, 2**32); ValueError otherwise.

  Example:
    >>> check_seeds([0, 1])
    (0, 1)
    >>> check_seeds(2)
    Traceback (most recent call last):
    ...
    ValueError: seeds=2; accepted: one or more distinct ints in [0, 2**32).
  """
  checks.seeds('seeds', seeds)
  return tuple(int(s) for s in seeds)


def check_selector_names(names: Any) -> tuple[str, ...]:
  """Registered selector names as a tuple; ValueError naming a bad one.

  Example:
    >>> check_selector_names('topgrad')  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: selector_names='topgrad' is a string; accepted: a sequence of registered names, e.g.
    ('topgrad',).
  """
  if isinstance(names, str):
    raise ValueError(f'selector_names={names!r} is a string; accepted: a '
                     f'sequence of registered names, e.g. ({names!r},).')
  names = tuple(names)
  if not names:
    raise ValueError('No selector given; accepted: '
                     f'{", ".join(sorted(selectors_lib.SELECTORS))}.')
  for name in names:
    selectors_lib.get_selector(name)
  if len(set(names)) != len(names):
    raise ValueError(f'selectors {names!r} repeat a name.')
  return names
