"""Convergence criteria of online freezing: when a group of weights freezes.

A `policy.FreezingPolicy` holds a criterion by name. Each criterion is one
small registered entry of `CRITERIA` (`register_criterion` adds one): the
statistics it collects and a `decide` function that reads the policy's
`FreezeState` at a check and returns the groups that may freeze now.

* `psgld` (the paper): drift against diffusion. Over the steps since the last
  check, a coordinate's net move `n · mean Δw` is compared with the random
  walk its increments would make if they were zero-mean noise, `std Δw · √n`:
  `z = √n · |mean Δw| / std Δw`. A group whose (mean) `z` is below
  `threshold` is sampling its stationary law, not descending: it freezes
  (and stays frozen). Under pSGLD the increments are drift plus Langevin
  diffusion; under Adam the diffusion is the gradient noise.
* `apf` (Chen et al. 2021): effective perturbation `P = |EMA Δw| / EMA |Δw|`
  (EMA factor 0.95, across checks). At a check, a group with `P < threshold`
  is stable: its freezing period grows by one check interval and it freezes
  for that long; otherwise the period halves. The threshold halves once more
  than 80% of the parameters are stable. A frozen group thaws when its period
  ends and is tested again.
* `autofreeze` (Liu et al. 2021), layers only: `g_l`, the L1 norm of layer
  l's gradient accumulated since the last check, `r_l = |g_l,prev − g_l| /
  g_l,prev`; every layer before the first unfrozen layer (in forward order)
  whose `r_l` is at or above the median `r` of the unfrozen layers freezes:
  a prefix only.
* `freezeout` (Brock et al. 2017), no test, a schedule: layer i of L stops at
  the training fraction `t_i = s(t0 + (1 − t0) · i / (L − 1))`, `s` linear,
  squared or cubic (the last layer never stops); `freezeout_annealing`
  anneals each layer's updates as `0.5 · (1 + cos(π t / t_i))`.
* `fixed`: the paper's protocol as a criterion, for comparison: once, at
  step `freeze_at` (η0), all but the best `1 − max_frozen` of the groups by
  mean Σ|g| over the last interval freeze: topgrad's α at that granularity,
  chosen by the protocol's own rule (`granularity.top_groups`), so the same
  scores give the same α.


The block criteria work on the model's blocks (`blocks.find_blocks`: by
default `blocks/0`, `Block_1`, ...; or the policy's `blocks=` patterns), at
layer granularity:

* `lisa` (Pan et al. 2024, "LISA: Layerwise Importance Sampling"): the
  layers outside the blocks (embeddings, final norm, head) always train
  (`train_outside`, default True); at every check `gamma` blocks, sampled
  without replacement, train for the next interval and the others are
  frozen (K = check_every). A block thaws when sampled again.
* `badam` (Luo et al. 2024, "BAdam"): one block trains at a time, K =
  check_every steps each, in `block_order` 'descending' (BAdam's default:
  the last block first), 'ascending' (the first block first) or 'random' (a
  fresh permutation per sweep over the blocks). The layers outside the
  blocks are frozen (`train_outside`, default False: BAdam's default leaves
  the embedding and the head out of its block list).
* `psgld_prefix`: psgld's z (`_psgld`, at layer granularity), averaged per
  unit (a block, or a layer outside the blocks) weighted by parameters; a
  unit whose z is below `threshold` freezes only when every unit before it
  in forward order is frozen or freezes now, so the frozen layers are
  always a forward prefix (the backward pass stops there).

`lisa` and `badam` sample from `block_seed` and the check count only
(`jax.random.fold_in(jax.random.key(block_seed), checks)`), not from the
training seed: every seed of one vmapped run gets the same α, so one
compiled `T|α` plan serves them all, and a run is reproducible. As in LISA
and BAdam, the first interval is already sampled: `policy.init` holds the
first decision (`decides_at_init`; `run_online` sets it before the first
step), and each check decides the next interval. The other criteria start
dense (nothing frozen until the first check).

  >>> sorted(CRITERIA)  # doctest: +NORMALIZE_WHITESPACE
  ['apf', 'autofreeze', 'badam', 'fixed', 'freezeout', 'lisa', 'psgld',
   'psgld_prefix']
  >>> get_criterion('autofreeze').layers_only
  True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.freeze.layer_order import resolve_layer_order
from paramsel_jax.protocol import checks
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.select.stats import TINY

PyTree = Any
# A `policy.FreezingPolicy` (its groups and settings); not imported here, as
# the policy imports its criteria.
Policy = Any
SCHEDULES = ('linear', 'squared', 'cubic')
BLOCK_ORDERS = ('descending', 'ascending', 'random')


class FreezeState(NamedTuple):
  """A policy's running state (arrays; group-level fields `(num_groups,)`)."""

  stats: stats_lib.TrajectoryStats  # of the steps since the last check.
  frozen: jax.Array  # bool: the group is frozen now.
  period: jax.Array  # int32: APF's freezing period, in checks.
  until: jax.Array  # int32: APF: the check at which a frozen group thaws.
  previous: jax.Array  # float32: AutoFreeze: the last check's gradient norm.
  threshold: jax.Array  # float32 scalar: the (APF: adaptive) threshold.
  checks: jax.Array  # int32 scalar: checks done.


@dataclasses.dataclass(frozen=True)
class Criterion:
  """A freezing criterion: what it collects and how it decides.

  Attributes:
    stats: the `stats.STAT_GROUPS` its decision reads.
    keep_stats: keep the statistics across checks (APF's EMAs) instead of
      resetting them at each check.
    decide: `(policy, state, step) -> (candidates, order)`: groups that may
      freeze now (bool) and the order in which a budget takes them (lower
      first). It may also return a new state as a third element.
    layers_only: only granularity 'layer' makes sense (a prefix of layers).
    default_threshold: used when none is given.
    can_thaw: a frozen group may train again (APF).
    own_budget: `decide` applies `max_frozen` itself (`fixed`: the
      protocol's rule); otherwise the policy caps its candidates.
    needs_order: it reads the layers' forward order (`policy.forward_order`).
    blocks: it works on the model's blocks (`policy.block_set`).
    decides_at_init: `policy.init` already holds its first decision (the
      α of the first interval; lisa, badam); otherwise nothing is frozen
      until the first check.
  """

  stats: frozenset[str]
  keep_stats: bool
  decide: Callable[..., tuple]
  layers_only: bool = False
  default_threshold: float = 1.0
  can_thaw: bool = False
  own_budget: bool = False
  needs_order: bool = False
  blocks: bool = False
  decides_at_init: bool = False


CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str, criterion: Criterion) -> Criterion:
  """Registers a criterion under `name` (replacing one of that name)."""
  CRITERIA[name] = criterion
  return criterion


def get_criterion(name: str) -> Criterion:
  """The criterion `name`; ValueError naming the accepted ones."""
  if name not in CRITERIA:
    raise ValueError(f'Unknown freezing criterion {name!r}; accepted: '
                     f'{", ".join(sorted(CRITERIA))}.')
  return CRITERIA[name]


def _mean_per_group(policy: Policy, tree: PyTree) -> jax.Array:
  return granularity_lib.aggregate(tree, policy.groups, 'mean')


def _sum_per_group(policy: Policy, tree: PyTree) -> jax.Array:
  return granularity_lib.aggregate(tree, policy.groups, 'sum')


def _psgld(policy: Policy, state: FreezeState, step: jax.Array):
  del step
  s = state.stats
  n = jnp.maximum(s.count, 1).astype(jnp.float32)
  z = jax.tree.map(lambda m, v: jnp.sqrt(n) * jnp.abs(m) / (jnp.sqrt(v) + TINY),
                   s.delta_mean, stats_lib.delta_variance(s))
  score = _mean_per_group(policy, z)
  candidates = (score < state.threshold) & (s.count >= 2)
  return candidates, score


def _apf(policy: Policy, state: FreezeState, step: jax.Array):
  del step
  s = state.stats
  p = jax.tree.map(lambda d, a: jnp.abs(d) / (a + TINY), s.delta_ema,
                   s.delta_abs_ema)
  score = _mean_per_group(policy, p)
  thawed = state.frozen & (state.until <= state.checks)
  tested = ~state.frozen | thawed
  stable = score < state.threshold
  period = jnp.where(tested, jnp.where(stable, state.period + 1,
                                       state.period // 2), state.period)
  sizes = jnp.asarray(policy.groups.sizes, jnp.float32)
  stable_share = jnp.sum(sizes * ((stable & tested) | (state.frozen & ~thawed))
                         ) / jnp.sum(sizes)
  threshold = jnp.where(stable_share > 0.8, state.threshold / 2, state.threshold)
  until = jnp.where(tested & stable, state.checks + period, state.until)
  new = state._replace(frozen=state.frozen & ~thawed, period=period,
                       until=until, threshold=threshold)
  return tested & stable & (period > 0), score, new


def _autofreeze(policy: Policy, state: FreezeState, step: jax.Array):
  del step
  order = jnp.asarray(policy.forward_order())
  g = _sum_per_group(policy, state.stats.grad_abs_sum)[order]
  prev = state.previous[order]
  frozen = state.frozen[order]
  r = jnp.where(prev > 0, jnp.abs(prev - g) / jnp.where(prev > 0, prev, 1.0),
                jnp.inf)
  median = jnp.nanmedian(jnp.where(frozen | ~jnp.isfinite(r), jnp.nan, r))
  at_or_above = ~frozen & (r >= median)
  first = jnp.argmax(at_or_above)  # the first unfrozen layer at/above median.
  ok = jnp.any(at_or_above) & jnp.any(prev > 0)
  prefix = jnp.where(ok, jnp.arange(order.shape[0]) < first, frozen)
  candidates = jnp.zeros_like(state.frozen).at[order].set(prefix)
  new = state._replace(previous=jnp.zeros_like(state.previous).at[order].set(g))
  return candidates, jnp.zeros_like(state.previous).at[order].set(
      jnp.arange(order.shape[0], dtype=jnp.float32)), new


def freezeout_fractions(num_layers: int, t0: float, schedule: str) -> np.ndarray:
  """FreezeOut's stop fractions `t_i` of layers 0..L-1 (the last is 1).

  Example:
    >>> freezeout_fractions(3, 0.5, 'linear').tolist()
    [0.5, 0.75, 1.0]
    >>> freezeout_fractions(3, 0.5, 'squared').tolist()
    [0.25, 0.5625, 1.0]
  """
  checks.one_of('schedule', schedule, SCHEDULES)
  power = SCHEDULES.index(schedule) + 1
  i = np.arange(num_layers)
  base = t0 + (1 - t0) * i / max(num_layers - 1, 1)
  return base ** power


def _freezeout(policy: Policy, state: FreezeState, step: jax.Array):
  order = policy.forward_order()
  fractions = jnp.asarray(freezeout_fractions(len(order), policy.t0,
                                              policy.schedule))
  stop = jnp.zeros(policy.groups.num_groups).at[
      jnp.asarray(order)].set(fractions * policy.total_steps)
  return (step >= stop) & (stop < policy.total_steps), stop


def _fixed(policy: Policy, state: FreezeState, step: jax.Array):
  """The paper's fixed protocol as a criterion.

  Once, at `freeze_at`, every group but the best by mean Σ|g| over the last
  interval freezes: the protocol's choice (`granularity.top_groups`) with
  `k = round((1 − max_frozen) · N)` parameters kept, or with `costs` the
  share `1 − max_frozen` of the total cost.
  """
  score = _mean_per_group(policy, state.stats.grad_abs_sum)
  keep = 1.0 - float(policy.max_frozen or 0.0)
  g = policy.groups
  if policy.costs is None:
    kept = granularity_lib.top_groups(score, round(keep * int(g.sizes.sum())), g)
  else:
    costs = np.asarray(policy.costs, np.float64)
    kept = granularity_lib.top_groups(score, 0, g, costs=costs,
                                      budget=keep * float(costs.sum()))
  now = step == policy.freeze_at
  return ~kept & now, score


def _train_blocks(policy: Policy, state: FreezeState,
                  trains: jax.Array) -> tuple:
  """(candidates, order, new state): all but `trains` (per block) frozen.

  The state's frozen set is cleared, so the groups frozen now are exactly
  the candidates (the block criteria thaw).
  """
  b = policy.block_set
  masks = jnp.asarray(b.masks())
  outside = jnp.asarray(b.outside_mask()) & policy.trains_outside()
  training = jnp.any(masks & trains[:, None], axis=0) | outside
  order = jnp.zeros(b.num_groups, jnp.float32)
  return ~training, order, state._replace(frozen=jnp.zeros_like(state.frozen))


def _lisa(policy: Policy, state: FreezeState, step: jax.Array):
  """LISA: `gamma` blocks sampled without replacement train."""
  del step
  num = len(policy.block_set.names)
  # The same key for every seed: from block_seed and the check count only.
  key = jax.random.fold_in(jax.random.key(policy.block_seed), state.checks)
  chosen = jax.random.choice(key, num, (policy.gamma,), replace=False)
  trains = jnp.zeros(num, bool).at[chosen].set(True)
  return _train_blocks(policy, state, trains)


def badam_block(order: str, num_blocks: int, check: jax.Array,
                key: jax.Array) -> jax.Array:
  """BAdam's block (index in forward order) for the interval after `check`.

  'ascending': 0, 1, ...; 'descending': the last first; 'random': a
  permutation of the blocks per sweep, from `fold_in(key, sweep)`.

  Example:
    >>> key = jax.random.key(0)
    >>> [int(badam_block('descending', 3, jnp.asarray(c), key))
    ...  for c in range(4)]
    [2, 1, 0, 2]
    >>> sweep = [int(badam_block('random', 3, jnp.asarray(c), key))
    ...          for c in range(3)]
    >>> sorted(sweep)
    [0, 1, 2]
  """
  checks.one_of('block_order', order, BLOCK_ORDERS)
  position = check % num_blocks
  if order == 'ascending':
    return position
  if order == 'descending':
    return num_blocks - 1 - position
  perm = jax.random.permutation(jax.random.fold_in(key, check // num_blocks),
                                num_blocks)
  return perm[position]


def _badam(policy: Policy, state: FreezeState, step: jax.Array):
  """BAdam: one block at a time, in `block_order`."""
  del step
  num = len(policy.block_set.names)
  block = badam_block(policy.block_order, num, state.checks,
                      jax.random.key(policy.block_seed))
  return _train_blocks(policy, state, jnp.arange(num) == block)


def _prefix_units(policy: Policy) -> np.ndarray:
  """Bool `(units, groups)`: the blocks and the outside layers, forward.

  A unit is a block or one layer outside the blocks, ordered by its first
  layer in the forward order.
  """
  b = policy.block_set
  position = np.empty(b.num_groups, int)
  position[list(policy.forward_order())] = np.arange(b.num_groups)
  rows = list(b.masks())
  for g in b.outside:
    row = np.zeros(b.num_groups, bool)
    row[g] = True
    rows.append(row)
  units = np.stack(rows) if rows else np.zeros((0, b.num_groups), bool)
  first = [position[row].min() for row in units]
  return units[np.argsort(first, kind='stable')]


def _psgld_prefix(policy: Policy, state: FreezeState, step: jax.Array):
  """Psgld's test per unit; only a forward prefix of units freezes."""
  _, z = _psgld(policy, state, step)
  units = jnp.asarray(_prefix_units(policy), jnp.float32)
  sizes = jnp.asarray(policy.groups.sizes, jnp.float32)
  unit_z = (units * sizes) @ z / jnp.maximum(units @ sizes, 1.0)
  below = (unit_z < state.threshold) & (state.stats.count >= 2)
  all_frozen = (units @ state.frozen.astype(jnp.float32)) >= units.sum(1)
  prefix = jnp.cumprod((below | all_frozen).astype(jnp.int32)) > 0
  candidates = (prefix.astype(jnp.float32) @ units) > 0
  position = jnp.zeros(policy.groups.num_groups, jnp.float32).at[
      jnp.asarray(policy.forward_order())].set(
          jnp.arange(policy.groups.num_groups, dtype=jnp.float32))
  return candidates, position


register_criterion('psgld', Criterion(frozenset({'delta'}), False, _psgld,
                                      default_threshold=1.0))
register_criterion('apf', Criterion(frozenset({'delta_ema'}), True, _apf,
                                    default_threshold=0.05, can_thaw=True))
register_criterion('autofreeze', Criterion(frozenset({'grad_abs_sum'}), False,
                                           _autofreeze, layers_only=True,
                                           needs_order=True))
register_criterion('freezeout', Criterion(frozenset(), False, _freezeout,
                                          layers_only=True, needs_order=True))
register_criterion('lisa', Criterion(frozenset(), False, _lisa,
                                     layers_only=True, can_thaw=True,
                                     own_budget=True, blocks=True,
                                     decides_at_init=True))
register_criterion('badam', Criterion(frozenset(), False, _badam,
                                      layers_only=True, can_thaw=True,
                                      own_budget=True, blocks=True,
                                      decides_at_init=True))
register_criterion('psgld_prefix', Criterion(
    frozenset({'delta'}), False, _psgld_prefix, layers_only=True,
    default_threshold=1.0, needs_order=True, blocks=True))
register_criterion('fixed', Criterion(frozenset({'grad_abs_sum'}), False,
                                      _fixed, own_budget=True))


def freezeout_annealing(params: PyTree, layer_order: Sequence[int | str],
                        total_steps: int, t0: float = 0.5,
                        schedule: str = 'linear'
                        ) -> optax.GradientTransformation:
  """FreezeOut's per-layer learning-rate annealing, as an optax transform.

  Chain it after the optimizer: layer i's updates are scaled by
  `0.5 · (1 + cos(π · min(t / (t_i · S), 1)))`, which reaches 0 at its stop
  step `t_i · S` (`freezeout_fractions`); the last layer is not annealed.
  `layer_order`: every layer, first first, as module names or group indices
  (`resolve_layer_order`; e.g. a policy's `layer_order`).
  """
  g = granularity_lib.groups(params, 'layer')
  layer_order = resolve_layer_order(layer_order, g)
  fractions = np.ones(g.num_groups)
  fractions[list(layer_order)] = freezeout_fractions(len(layer_order), t0,
                                                     schedule)
  stops = jax.tree.map(lambda ids: float(fractions[int(np.ravel(ids)[0])]
                                         * total_steps), g.ids)

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    t = state.count.astype(jnp.float32)
    def scale(u, stop):
      if stop >= total_steps:
        return u
      factor = 0.5 * (1 + jnp.cos(math.pi * jnp.minimum(t / stop, 1.0)))
      return u * factor.astype(u.dtype)
    return (jax.tree.map(scale, updates, stops),
            optax.ScaleByScheduleState(count=state.count + 1))

  return optax.GradientTransformation(init_fn, update_fn)
