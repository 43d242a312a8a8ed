"""Online convergence freezing: a policy that decides α during training.

The paper's protocol freezes once, at a fixed η0. A `FreezingPolicy` decides
while training runs, in any training loop: it holds running statistics of the
steps in arrays (`stats.TrajectoryStats`), is fed each step's gradients and
parameters (`update`), and every `check_every` steps (`check`) returns the new
α at the chosen granularity. All of it is pure and jittable. What decides is
its criterion, by name: `psgld`, `apf`, `autofreeze`, `freezeout`, `fixed`,
or the block criteria `lisa`, `badam` and `psgld_prefix` (`criteria.CRITERIA`;
`criteria.register_criterion` adds one).

The block criteria work on the model's blocks (`blocks.find_blocks`; the
default rule, or `blocks=` patterns), at layer granularity: `lisa` trains
`gamma` sampled blocks per interval, `badam` one block at a time in
`block_order`, both sampling from `block_seed` (the same α for every seed
of a vmapped run), and `train_outside` says whether the layers outside the
blocks train (default: lisa yes, badam no). They thaw, take no
`max_frozen`, and `init` already holds their first interval's α (as LISA and
BAdam sample from step 0).

The layer criteria (`autofreeze`, `freezeout`, `psgld_prefix`) need the
layers in forward order, which the params' (sorted) key order is not
(`Block_10` sorts before `Block_2`, a head `Dense_0` before `Embed_0`): give
the policy `apply_fn` and an `example` input of a flax linen model
(`forward_layer_order` traces it), or `layer_order` (module names or group
indices, first layer first). Without either they refuse to start.

A budget (`max_frozen`) caps the frozen share of the parameters (or, with
`costs`, e.g. the weight-gradient FLOPs): the most converged groups freeze
first, as long as the frozen share does not exceed `max_frozen`
(`granularity.choose_groups(rule='at_most')`). `fixed` reads `max_frozen` as
the protocol's budget instead: it keeps the best groups whose size is
*nearest* to `k = round((1 − max_frozen) · N)` parameters (with `costs`:
nearest to `(1 − max_frozen)` of the total cost; `rule='nearest'`, at least
one group), as the protocol does with that k, so its frozen share may pass
`max_frozen` by up to half a group.

  >>> import jax, jax.numpy as jnp
  >>> params = {'w': jnp.zeros(2)}
  >>> policy = FreezingPolicy('psgld', params, granularity='element',
  ...                         check_every=50, threshold=2.0)
  >>> state = policy.init(params)
  >>> key = jax.random.key(0)
  >>> for t in range(50):  # coordinate 0: zero-mean noise; 1: a steady drift.
  ...   noise = 0.01 * jax.random.normal(jax.random.fold_in(key, t))
  ...   new = {'w': params['w'] + jnp.array([noise, 0.01 + 0.1 * noise])}
  ...   state = policy.update(state, params, params, new)
  ...   params = new
  >>> alpha, state = policy.check(state, step=50)
  >>> alpha['w'].tolist()  # True: keeps training.
  [False, True]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.freeze import blocks as blocks_lib
from paramsel_jax.freeze.criteria import BLOCK_ORDERS
from paramsel_jax.freeze.criteria import CRITERIA
from paramsel_jax.freeze.criteria import Criterion
from paramsel_jax.freeze.criteria import FreezeState
from paramsel_jax.freeze.criteria import freezeout_annealing
from paramsel_jax.freeze.criteria import get_criterion
from paramsel_jax.freeze.criteria import register_criterion
from paramsel_jax.freeze.criteria import SCHEDULES
from paramsel_jax.freeze.layer_order import forward_layer_order
from paramsel_jax.freeze.layer_order import resolve_layer_order
from paramsel_jax.protocol import checks
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.select import stats as stats_lib

PyTree = Any
# The policy, and the names its users import from here with it (the
# criteria's home is `criteria`, the layer order's `layer_order`).
__all__ = ['FreezingPolicy', 'FreezeState', 'CRITERIA', 'Criterion',
           'BLOCK_ORDERS',
           'get_criterion', 'register_criterion', 'freezeout_annealing',
           'forward_layer_order']


@dataclasses.dataclass(frozen=True, eq=False)
class FreezingPolicy:
  """A freezing criterion with its settings, over params of a given shape.

  Args:
    criterion: a name of `CRITERIA`.
    params: the params (or their shapes): the groups are built from them.
    granularity: 'element', 'unit' or 'layer' ('layer' for autofreeze and
      freezeout).
    check_every: steps between checks (the caller's loop calls `check`).
    threshold: the criterion's threshold (None: its default).
    max_frozen: the largest frozen share (of parameters, or of FLOPs with
      `costs`); None: no cap. For `fixed`, the protocol's `1 − k/N`, met
      its way (the nearest prefix; see the module docstring).
    costs: per group, what `max_frozen` counts (default: parameters).
    layer_order: the layers in forward order, as module names (those of
      `groups.module_names`) or group indices (layer granularity; stored as
      indices). Default: `forward_layer_order(apply_fn, params, example)`
      when `apply_fn` is given; autofreeze and freezeout refuse to start
      without either.
    total_steps, t0, schedule: FreezeOut's run length and schedule.
    freeze_at: `fixed`'s η0 (a check step).
    ema_decay: the EMA factor of APF's statistics.
    apply_fn, example: `apply_fn(params, x)` of a flax linen model and an
      input (or its shape): at layer granularity, the forward layer order
      is traced from them.
    unit_axes: per module, its unit axes at unit granularity
      (`active_check.unit_axes`; None: read from the params' shapes).
    gamma: `lisa`'s number of blocks that train per interval (1..the
      number of blocks).
    blocks: the block criteria's blocks, one glob pattern per block (None:
      `blocks.find_blocks`'s default rule, e.g. `blocks/0`, `Block_1`).
    block_order: `badam`'s order: 'descending' (its default), 'ascending'
      or 'random'.
    block_seed: the seed of `lisa`'s sampling and `badam`'s 'random' order
      (shared by every training seed).
    train_outside: the layers outside the blocks train (None: the
      criterion's default; lisa True, badam False).
  """

  criterion: str
  params: PyTree
  granularity: str = 'unit'
  check_every: int = 200
  threshold: float | None = None
  max_frozen: float | None = None
  costs: np.ndarray | None = None
  layer_order: Sequence[int | str] | None = None
  total_steps: int = 0
  t0: float = 0.5
  schedule: str = 'linear'
  freeze_at: int = 0
  ema_decay: float = 0.95
  apply_fn: Callable[[PyTree, Any], Any] | None = dataclasses.field(
      default=None, repr=False)
  example: Any = dataclasses.field(default=None, repr=False)
  unit_axes: dict[str, int] | None = dataclasses.field(default=None,
                                                       repr=False)
  gamma: int = 1
  blocks: Sequence[str] | None = None
  block_order: str = 'descending'
  block_seed: int = 0
  train_outside: bool | None = None
  groups: granularity_lib.Groups = dataclasses.field(init=False, repr=False)
  block_set: blocks_lib.Blocks | None = dataclasses.field(init=False,
                                                          repr=False)

  def __post_init__(self):
    crit = get_criterion(self.criterion)
    granularity_lib.check_granularity(self.granularity)
    if crit.layers_only and self.granularity != 'layer':
      raise ValueError(f'criterion {self.criterion!r} freezes whole layers '
                       f'(a prefix); accepted: granularity=\'layer\', got '
                       f'{self.granularity!r}.')
    checks.integer('check_every', self.check_every, at_least=1)
    if self.threshold is not None:
      checks.real('threshold', self.threshold, above=0)
    if self.max_frozen is not None:
      checks.real('max_frozen', self.max_frozen, above=0)
      if self.max_frozen > 1:
        raise ValueError(f'max_frozen={self.max_frozen}; accepted: a fraction '
                         'in (0, 1], or None.')
    if self.criterion == 'fixed' and (self.max_frozen is None
                                      or self.freeze_at < 1):
      raise ValueError("criterion 'fixed' needs max_frozen (1 - k/N) and "
                       'freeze_at (η0) >= 1.')
    if self.criterion == 'freezeout':
      checks.integer('total_steps', self.total_steps, at_least=1)
      checks.real('t0', self.t0, above=0)
      checks.one_of('schedule', self.schedule, SCHEDULES)
    object.__setattr__(self, 'groups', granularity_lib.groups(
        self.params, self.granularity, self.unit_axes))
    object.__setattr__(self, 'layer_order', self._layer_order(crit))
    object.__setattr__(self, 'block_set', self._block_set(crit))

  def _block_set(self, crit: Criterion) -> blocks_lib.Blocks | None:
    """The blocks of a block criterion, its settings checked."""
    if not crit.blocks:
      return None
    if self.train_outside is not None:
      checks.boolean('train_outside', self.train_outside)
    checks.integer('block_seed', self.block_seed, at_least=0)
    checks.one_of('block_order', self.block_order, BLOCK_ORDERS)
    if crit.own_budget and self.max_frozen is not None:
      raise ValueError(f'max_frozen={self.max_frozen}: criterion '
                       f'{self.criterion!r} chooses which blocks train, not '
                       'how many parameters freeze; accepted: None.')
    order = (None if self.layer_order is None
             else [int(i) for i in self.layer_order])  # indices by now.
    found = blocks_lib.find_blocks(self.groups.module_names, self.blocks,
                                   order)
    if self.criterion == 'psgld_prefix':
      return found
    if not found.names:
      raise ValueError(
          f'criterion {self.criterion!r} trains blocks, and the model has '
          'none by the default rule (a path component that is an integer, '
          "or 'Name_<int>' with sub-modules); accepted: blocks= patterns, "
          'one per block, over the layers '
          f'{list(self.groups.module_names[:16])}.')
    if self.criterion == 'lisa':
      checks.integer('gamma', self.gamma, at_least=1)
      if self.gamma > len(found.names):
        raise ValueError(f'gamma={self.gamma}; accepted: 1..'
                         f'{len(found.names)} (the model has '
                         f'{found.describe()}).')
    return found

  def trains_outside(self) -> bool:
    """Whether the layers outside the blocks train (block criteria)."""
    if self.train_outside is not None:
      return bool(self.train_outside)
    return self.criterion != 'badam'

  def _layer_order(self, crit: Criterion) -> tuple[int, ...] | None:
    """The given or traced forward order (None: not needed, not given)."""
    if (self.apply_fn is None) != (self.example is None):
      raise ValueError('apply_fn and example come together (the forward '
                       'order is traced from both); got only '
                       f'{"apply_fn" if self.example is None else "example"}.')
    if self.layer_order is not None:
      return resolve_layer_order(self.layer_order, self.groups)
    if self.apply_fn is not None and self.granularity == 'layer':
      return resolve_layer_order(forward_layer_order(
          self.apply_fn, self.params, self.example), self.groups)
    if crit.needs_order:
      raise ValueError(
          f'criterion {self.criterion!r} freezes layers in forward order, '
          'and none was given (the params\' key order is not it); accepted: '
          'layer_order= (module names, first layer first, e.g. '
          f'{list(self.groups.module_names[:3])}..., or group indices), or '
          'apply_fn= and example= of a flax linen model '
          '(freezing.forward_layer_order).')
    return None

  def forward_order(self) -> tuple[int, ...]:
    """The layer groups in forward order; ValueError when none was given."""
    if self.layer_order is None:
      raise ValueError(f'criterion {self.criterion!r}: no layer order; '
                       'accepted: layer_order=, or apply_fn= and example=.')
    return tuple(int(i) for i in self.layer_order)

  def init(self, params: PyTree) -> FreezeState:
    """Empty statistics; nothing frozen, or the first decision.

    A criterion that `decides_at_init` (lisa, badam) has made its first
    decision (the first interval's α, `alpha(state)`; one check counted);
    the others have frozen nothing.
    """
    n = self.groups.num_groups
    crit = get_criterion(self.criterion)
    threshold = (crit.default_threshold if self.threshold is None
                 else self.threshold)
    state = FreezeState(stats_lib.init_stats(params), jnp.zeros(n, bool),
                        jnp.zeros(n, jnp.int32), jnp.zeros(n, jnp.int32),
                        jnp.zeros(n, jnp.float32),
                        jnp.asarray(threshold, jnp.float32),
                        jnp.zeros((), jnp.int32))
    if crit.decides_at_init:
      state = self.check(state, 0)[1]
    return state

  def update(self, state: FreezeState, grads: PyTree, old_params: PyTree,
             new_params: PyTree) -> FreezeState:
    """Adds one step (the gradient at `old_params`, moving to `new_params`)."""
    stats = stats_lib.update_stats(
        state.stats, grads, old_params, new_params, ema_decay=self.ema_decay,
        groups=get_criterion(self.criterion).stats)
    return state._replace(stats=stats)

  def check(self, state: FreezeState, step: jax.typing.ArrayLike
            ) -> tuple[PyTree, FreezeState]:
    """The new α (True: trains) after the steps seen; resets what it must.

    `step`: the global step now (FreezeOut's schedule reads it).
    """
    crit = get_criterion(self.criterion)
    out = crit.decide(self, state, jnp.asarray(step))
    candidates, order = out[0], out[1]
    if len(out) > 2:
      state = out[2]
    if crit.own_budget:
      frozen = state.frozen | candidates
    else:
      frozen = state.frozen | self._within_budget(state.frozen, candidates,
                                                  order)
    stats = state.stats if crit.keep_stats else stats_lib.init_stats(
        state.stats.grad_abs_sum)
    state = state._replace(frozen=frozen, stats=stats, checks=state.checks + 1)
    return self.alpha(state), state

  def _within_budget(self, frozen: jax.Array, candidates: jax.Array,
                     order: jax.Array) -> jax.Array:
    """The candidates that freeze now: in `order` (lower first), capped."""
    new = candidates & ~frozen
    if self.max_frozen is None:
      return new
    costs = jnp.asarray(self.groups.sizes if self.costs is None else self.costs,
                        jnp.float32)
    room = self.max_frozen * jnp.sum(costs) - jnp.sum(costs * frozen)
    return granularity_lib.choose_groups(-jnp.asarray(order, jnp.float32),
                                         costs, room, 'at_most', eligible=new)

  def alpha(self, state: FreezeState) -> PyTree:
    """The element mask of the groups that still train."""
    return granularity_lib.expand(~state.frozen, self.groups)

  def frozen_share(self, state: FreezeState) -> jax.Array:
    """The share of the parameters frozen now."""
    sizes = jnp.asarray(self.groups.sizes, jnp.float32)
    return jnp.sum(sizes * state.frozen) / jnp.sum(sizes)
