"""The protocol's η1 phase on the active set: `T|α` that skips frozen work.

`runner.Runner` trains η0 (and, with `step='masked'`, η1) as dense steps of
`masked(tx)`. An `ActivePhase` trains η1 on `active`'s split instead: the
full params ride along as constants of the step, the active tree is the only
thing differentiated and optimized (by `masked(tx)` over the active tree, whose
mask is the padding mask), and, when every module called before the first one
that trains is frozen and the cache is wanted, that module's inputs are
computed once over the training set and looked up by the minibatch's indices
(`cache`), so the frozen prefix is not computed at all.

`enter` turns the Runner's `TrainState` into an `ActiveState` (the optimizer
state sliced, so Adam continues from η0's moments), `leave` turns it back
(params and optimizer state written back; the statistics of frozen
coordinates are their η0 statistics, as selectors read them). Batches are the
Runner's (the same seed and step give the same indices), so the phase gives
the parameters of the dense `masked` phase to float rounding.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.freeze import active_check
from paramsel_jax.optim import masking
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.train import steps
from paramsel_jax.train.runner import BATCH_STREAM
from paramsel_jax.train.runner import TrainState

PyTree = Any


class ActiveState(NamedTuple):
  """One seed's η1 state on the active set."""

  params: PyTree  # the full params at entry: constants of the step.
  active: PyTree  # the active tree (active.split): what trains.
  opt_state: optax.OptState  # masked(tx) over the active tree.
  stats: stats_lib.TrajectoryStats  # over the active tree.
  key: jax.Array
  diverged_at: jax.Array
  idx: Any  # the plan's index arrays (active.plan), this seed's.
  cache: jax.Array | None  # the first trainable module's inputs, or None.


def cache_bytes(runner: Any, state: TrainState, path: str) -> int:
  """Bytes a cache of module `path`'s inputs over the training set takes.

  For all seeds, float32.
  """
  task = runner.task
  one = jax.tree.map(lambda x: x[0], state.params)
  example = steps.to_float(task.train_images[:1])
  shape = jax.eval_shape(
      lambda p, x: active_lib.module_input(task.apply_fn, p, x, path),
      one, example).shape
  per_example = int(jnp.prod(jnp.asarray(shape[1:])))
  seeds = int(jax.tree.leaves(state.params)[0].shape[0])
  return seeds * int(task.train_images.shape[0]) * per_example * 4


class ActivePhase:
  """The compiled pieces of one plan's η1 phase (one per `active.Plan`)."""

  def __init__(self, runner: Any, plan: active_lib.Plan,
               cache_path: str | None = None):
    self.runner, self.plan, self.cache_path = runner, plan, cache_path
    partial = [m for m, k in zip(plan.modules, plan.kinds) if k == 'partial']
    if partial:  # modules `forward` would split: refused before any work.
      task = runner.task
      active_check.check_active_step(
          task.apply_fn, jax.eval_shape(task.init_fn, jax.random.key(0)),
          steps.to_float(task.train_images[:1]), 'unit', modules=partial)
    seed_map = runner._seed_map  # pylint: disable=protected-access
    chunk = lambda collect: jax.jit(seed_map(
        functools.partial(self._chunk_one, collect=collect),
        in_axes=(0, None, None)))
    self.run_chunk = chunk(False)
    self.collect_chunk = chunk(True)
    self.enter = jax.jit(seed_map(self._enter_one))
    self.leave = jax.jit(seed_map(self._leave_one))
    self.build_cache = jax.jit(seed_map(self._cache_one))

  def _enter_one(self, state: TrainState, idx: Any,
                 cache: jax.Array | None,
                 stats: stats_lib.TrajectoryStats | None = None) -> ActiveState:
    """The active state of a dense one.

    `stats`: full-shaped statistics to continue (None: fresh ones).
    """
    p = self.plan
    act = active_lib.split(state.params, p, idx)
    opt_state = active_lib.state_to_active(state.opt_state, state.params, p, idx)
    if stats is None:
      active_stats = stats_lib.init_stats(act)
    else:
      fields = {f: active_lib.split(getattr(stats, f), p, idx)
                for f in stats_lib.TrajectoryStats._fields if f != 'count'}
      active_stats = stats_lib.TrajectoryStats(count=stats.count, **fields)
    return ActiveState(state.params, act, opt_state, active_stats,
                       state.key, state.diverged_at, idx, cache)

  def _leave_one(self, s: ActiveState, start: TrainState,
                 eta0_stats: stats_lib.TrajectoryStats) -> TrainState:
    p = self.plan
    params = active_lib.merge(s.params, s.active, p, s.idx)
    opt_state = active_lib.state_to_full(start.opt_state, s.opt_state,
                                         s.params, p, s.idx)
    return TrainState(params, opt_state, self._merge_stats(s, eta0_stats),
                      s.key, s.diverged_at)

  def _merge_stats(self, s: ActiveState, eta0: stats_lib.TrajectoryStats
                   ) -> stats_lib.TrajectoryStats:
    """Full-shaped statistics of the phase.

    The active ones where a coordinate trained, η0's where it was frozen
    (padding slots included).
    """
    p = self.plan
    live = masking.get_mask(s.opt_state)
    def one(full0, act):
      kept = jax.tree.map(lambda a, m, e: jnp.where(m, a, e), act, live,
                          active_lib.split(full0, p, s.idx))
      return active_lib.merge(full0, kept, p, s.idx)
    fields = {f: one(getattr(eta0, f), getattr(s.stats, f))
              for f in stats_lib.TrajectoryStats._fields if f != 'count'}
    return stats_lib.TrajectoryStats(count=s.stats.count, **fields)

  def _cache_one(self, state: TrainState, batch_size: int = 1000) -> jax.Array:
    task, path = self.runner.task, self.cache_path
    assert path is not None, 'build_cache needs a cache_path'
    images = task.train_images
    n = images.shape[0]
    batch_size = min(batch_size, n)
    pad = -n % batch_size
    padded = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
    batches = padded.reshape((-1, batch_size) + images.shape[1:])
    inputs = jax.lax.map(lambda x: active_lib.module_input(
        task.apply_fn, state.params, steps.to_float(x), path), batches)
    return inputs.reshape((-1,) + inputs.shape[2:])[:n]

  def _step(self, s: ActiveState, step: jax.Array,
            collect: bool) -> tuple[ActiveState, jax.Array]:
    runner, task, p = self.runner, self.runner.task, self.plan
    batch_key = jax.random.fold_in(jax.random.fold_in(s.key, BATCH_STREAM), step)
    bidx = steps.batch_indices(batch_key, task.train_images.shape[0],
                               runner.config.batch_size)
    images, labels = task.train_images[bidx], task.train_labels[bidx]
    cache = None if s.cache is None else (self.cache_path, s.cache[bidx])
    if runner._batch_sharding is not None:  # pylint: disable=protected-access
      images, labels = jax.lax.with_sharding_constraint(
          (images, labels), runner._batch_sharding)  # pylint: disable=protected-access

    def loss_fn(act):
      logits = active_lib.forward(task.apply_fn, p, s.params, act, s.idx,
                                  steps.to_float(images), cache)
      return steps.cross_entropy(logits, labels)

    loss, grads = jax.value_and_grad(loss_fn)(s.active)
    updates, opt_state = runner.tx.update(grads, s.opt_state, s.active)
    act = optax.apply_updates(s.active, updates)
    stats = s.stats
    if collect:
      stats = stats_lib.update_stats(stats, grads, s.active, act,
                                     ema_decay=runner.ema_decay,
                                     groups=runner.stat_groups)
    diverged_at = jnp.where((s.diverged_at < 0) & ~jnp.isfinite(loss), step,
                            s.diverged_at)
    return s._replace(active=act, opt_state=opt_state, stats=stats,
                      diverged_at=diverged_at), loss

  def _chunk_one(self, s: ActiveState, start: jax.Array, num_steps: jax.Array,
                 collect: bool) -> tuple[ActiveState, jax.Array]:
    def body(i, carry):
      s, loss_sum = carry
      s, loss = self._step(s, start + i, collect)
      return s, loss_sum + loss
    s, loss_sum = jax.lax.fori_loop(0, num_steps, body,
                                    (s, jnp.zeros((), jnp.float32)))
    return s, loss_sum / num_steps


def _cache_path(runner: Any, p: active_lib.Plan, start: TrainState,
                label: str, log: Callable[[str], None]) -> str | None:
  """The module whose inputs to cache, if caching is asked for and fits."""
  config = runner.config
  if not config.cache_prefix:
    return None
  path = active_lib.cacheable_prefix(p, runner.call_order())
  if path is None:
    log(f'{label}: no frozen prefix to cache (the first module called trains, '
        'or α is packed); training uncached.')
    return None
  need = cache_bytes(runner, start, path)
  budget = config.cache_budget_mb * 2 ** 20
  if need > budget:
    log(f'{label}: frozen-prefix cache REFUSED: the inputs of {path} over the '
        f'training set take {need / 2 ** 20:.0f} MB, over the budget of '
        f'{config.cache_budget_mb:g} MB (cache_budget_mb); training uncached.')
    return None
  log(f'{label}: caching the inputs of {path} (everything before it is '
      f'frozen): {need / 2 ** 20:.1f} MB for all seeds.')
  return path


def train_active(runner: Any, start: TrainState, alpha: PyTree,
                 eta0_stats: stats_lib.TrajectoryStats, label: str,
                 log: Callable[[str], None]) -> TrainState:
  """η1 of one (selector, k) group on the active set; returns the dense state.

  `start` is the Runner's state with α set (`Runner.start_phase1`), so the
  optimizer state carried over (η0's moments) and the mask (sliced into the
  live mask) are what the dense `masked` phase would use.
  """
  config = runner.config
  p, arrays = active_lib.plan(jax.device_get(alpha), config.granularity)
  path = _cache_path(runner, p, start, label, log)
  phase = runner.active_phase(p, path)
  log(f'{label}: T|α on the active set: {p.describe()}'
      + (f'; cached inputs of {path}' if path else ''))
  cache = phase.build_cache(start) if path else None
  state = phase.enter(start, jax.tree.map(jnp.asarray, arrays['idx']), cache)
  state = runner.train(state, config.eta0, config.eta1, config.window, log,
                       label, chunks=(phase.run_chunk, phase.collect_chunk),
                       step_name=f'T|α active: {p.describe()}'
                       + (f', {path} inputs cached' if path else ''))
  return phase.leave(state, start, eta0_stats)
