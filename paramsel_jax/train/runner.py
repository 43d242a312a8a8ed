"""The protocol's compiled pieces: seeds as one program, phases in chunks.

A `Runner` holds, for one task, optimizer and `ProtocolConfig`, the jitted
functions the protocol calls: `init` (per-seed params, optimizer state,
statistics), two training chunks (one `lax.fori_loop` of up to `chunk_size`
steps, with or without collecting the selectors' statistics), selection,
the switch to `T|α`, and evaluation. Every one is mapped over the leading
seed axis of the state: `vmap` (seeds in parallel, sharded over a device
mesh) or `lax.map` (in turn; faster for conv nets on CPU).

Each seed's key has fixed sub-streams, so that no two uses share one:
`fold_in(key, 0)` initializes the params, `fold_in(key, 1)` is the parent of
the minibatch keys (step t uses `fold_in(., t)`), `fold_in(key, 2)` seeds the
Langevin noise, `fold_in(key, 3)` and `fold_in(key, 4)` are the random
selector's α and β keys, and `fold_in(key, 5)` is the parent of the keys
`loss_fn` gets (step t: `fold_in(., t)`; dropout, noise).

The training batches come from the task's `train_data`: drawn on the device
inside the chunk (`task.OnDevice`), or pulled from the host streams chunk by
chunk (`feed.Feed`, passed to the chunk as its last argument).

A seed whose training loss stops being finite is marked where it happens: the
state carries the first such step (`diverged_at`, -1 while finite), the
progress line names the seed and the step, and the protocol's results say it.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple, TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.freeze import active_check
from paramsel_jax.freeze import layer_order as layer_order_lib
from paramsel_jax.optim import langevin
from paramsel_jax.optim import masking
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.select import prefix_budget
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.train import costs as costs_lib
from paramsel_jax.train import distributed
from paramsel_jax.train import feed as feed_lib
from paramsel_jax.train import mesh as mesh_lib
from paramsel_jax.train import steps

if TYPE_CHECKING:
  from paramsel_jax.train import checkpoints as checkpoints_lib

PyTree = Any

# Sub-streams of a seed's key (see the module docstring).
(INIT_STREAM, BATCH_STREAM, NOISE_STREAM, ALPHA_STREAM, BETA_STREAM,
 LOSS_STREAM) = range(6)


class TrainState(NamedTuple):
  """Everything one seed's run carries from step to step."""

  params: PyTree
  opt_state: optax.OptState  # a `masked(...)` state: α lives here.
  stats: stats_lib.TrajectoryStats  # over the current phase's window.
  key: jax.Array  # this seed's key (sub-streams: module docstring).
  diverged_at: jax.Array  # int32: first step with a non-finite loss; -1: none.


def seed_map(fn: Callable, seed_axis: str, in_axes=0,
             spmd_axis_name: str | None = None) -> Callable:
  """`fn` mapped over the leading seed axis of its (batched) arguments.

  A single seed runs as the plain program (index, call, re-add the axis):
  vmap or map over one element cost 6-18% on CPU (benchmark.py).
  `spmd_axis_name`: the mesh axis the vmapped axis is sharded over (sharding
  constraints inside `fn` then name only the other axes).

  Example:
    >>> import jax.numpy as jnp
    >>> seed_map(lambda x: x * 2, 'map')(jnp.arange(3.0)).tolist()
    [0.0, 2.0, 4.0]
  """
  def mapped(*args):
    axes = (in_axes[:len(args)] if isinstance(in_axes, tuple)
            else (in_axes,) * len(args))
    batched = [a for a, ax in zip(args, axes) if ax == 0]
    def one(xs):
      it = iter(xs)
      return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, axes)])
    if jax.tree.leaves(batched)[0].shape[0] == 1:
      out = one(jax.tree.map(lambda x: x[0], batched))
      return jax.tree.map(lambda x: x[None], out)
    if seed_axis == 'vmap':
      return jax.vmap(fn, in_axes=axes,
                      spmd_axis_name=spmd_axis_name)(*args)
    return jax.lax.map(one, batched)
  return mapped


def _finite_mean_std(values: np.ndarray) -> str:
  finite = values[np.isfinite(values)]
  if not finite.size:
    return 'not finite'
  return f'{finite.mean():.4f} ± {finite.std():.4f}'


class Runner:
  """The protocol's compiled pieces for one task, optimizer and config.

  `task`: a `protocol.Task` (or its `ImageTask` preset). `config`: a
  `protocol.ProtocolConfig` (its seed axis resolved by
  `mesh.resolve_seed_axis`). `stat_groups`: the `stats.STAT_GROUPS`
  collected in the windows (the union of what the compared selectors read).
  `mesh`: a `mesh.device_mesh`; its 'seed' axis shards vmapped seeds, its
  'batch' axis each training minibatch. `seeds`: the seed numbers, for
  progress lines. `ema_decay`: of the statistics' EMAs (APF's).
  """

  def __init__(self, task: Any, tx: optax.GradientTransformation,
               config: Any,
               stat_groups: frozenset[str] = stats_lib.ALL_GROUPS,
               mesh: jax.sharding.Mesh | None = None,
               seeds: tuple[int, ...] | None = None,
               ema_decay: float = 0.99):
    self.task, self.config, self.mesh, self.seeds = task, config, mesh, seeds
    self.ema_decay = ema_decay
    self.on_device = isinstance(task.train_data, feed_lib.OnDevice)
    self.stat_groups = stats_lib.check_groups(stat_groups)
    self.tx = masking.masked(tx)
    self._batch_sharding = None
    if mesh is not None and mesh.shape['batch'] > 1:
      self._batch_sharding = jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec('batch'))
    spmd = 'seed' if mesh is not None and mesh.shape['seed'] > 1 else None
    self.seed_axis = mesh_lib.resolve_seed_axis(config.seed_axis)
    # `seed_map` with this Runner's seed axis and mesh: what every per-seed
    # function of a phase is mapped with.
    self.seed_map = functools.partial(seed_map, seed_axis=self.seed_axis,
                                      spmd_axis_name=spmd)
    chunk = lambda collect: jax.jit(self.seed_map(
        functools.partial(self._chunk_one, collect=collect),
        in_axes=(0, None, None, 0)))
    self.init = jax.jit(self.seed_map(self._init_one))
    # `(state, start, num_steps[, feed])`, no stats; `feed`: host data only.
    self.run_chunk = chunk(False)
    self.collect_chunk = chunk(True)  # the same, collecting the statistics.
    self._select_fns: dict[tuple[Any, ...], Callable[..., PyTree]] = {}
    # The FLOPs (all seeds) of each program `precompile` compiled, by
    # (function, argument signature).
    self.compiled: dict[tuple[Any, ...], float] = {}
    self.costs: dict[str, costs_lib.PhaseCost] = {}  # per phase label.
    # The phases `train` resumed: checkpoint label -> the global step.
    self.resumed: dict[str, int] = {}
    # Programs other modules build on this Runner, by their own key (the
    # active step's, one per plan and cache: `phase.active_step`).
    self.programs: dict[Any, Any] = {}
    self._groups: granularity_lib.Groups | None = None
    self._unit_axes: dict[str, int] | None = None
    self._call_order: list[str] | None = None
    self._group_flops: np.ndarray | None = None
    self._backward_costs: prefix_budget.BackwardCosts | None = None
    self.start_phase1 = jax.jit(self.seed_map(self._start_phase1_one))
    self.set_alpha = jax.jit(self.seed_map(self._set_alpha_one))
    self.evaluate = jax.jit(self.seed_map(self._evaluate_one))
    self.test_accuracy = jax.jit(self.seed_map(self._test_accuracy_one))
    self.held_out = jax.jit(self.seed_map(self._held_out_one))

  def _init_one(self, key: jax.Array) -> TrainState:
    params = self.task.init_fn(jax.random.fold_in(key, INIT_STREAM))
    opt_state = langevin.reseed(self.tx.init(params),
                                jax.random.fold_in(key, NOISE_STREAM))
    return TrainState(params=params, opt_state=opt_state,
                      stats=stats_lib.init_stats(params), key=key,
                      diverged_at=jnp.full((), -1, jnp.int32))

  def minibatch(self, key: jax.Array, step: jax.Array, feed: Any = None,
                i: jax.Array | None = None) -> tuple[jax.Array | None, Any]:
    """One seed's minibatch of global step `step`: (indices, batch).

    On-device data: `config.batch_size` examples drawn from the seed's `key`
    and `step` alone (its batch sub-stream), so every phase kind trains on
    the same batches; with a mesh whose 'batch' axis is > 1, the batch is
    sharded over it. Host data: slot `i` of this chunk's `feed` (indices
    None). Call it inside a seed-mapped step.
    """
    if not self.on_device:
      return None, jax.tree.map(lambda f: f[i], feed)
    arrays = self.task.train_data.arrays
    batch_key = jax.random.fold_in(jax.random.fold_in(key, BATCH_STREAM), step)
    idx = steps.batch_indices(batch_key, self.task.train_data.num_examples,
                              self.config.batch_size)
    batch = jax.tree.map(lambda x: x[idx], arrays)
    if self._batch_sharding is not None:
      batch = jax.lax.with_sharding_constraint(batch, self._batch_sharding)
    return idx, batch

  def loss_key(self, key: jax.Array, step: jax.Array) -> jax.Array:
    """The key `loss_fn` gets at global step `step` (its sub-stream)."""
    return jax.random.fold_in(jax.random.fold_in(key, LOSS_STREAM), step)

  def _step(self, state: TrainState, step: jax.Array, collect: bool,
            batch: Any) -> tuple[TrainState, jax.Array]:
    params, opt_state, loss, grads = steps.loss_step(
        self.task.loss_fn, self.tx, state.params, state.opt_state, batch,
        self.loss_key(state.key, step))
    stats = state.stats
    if collect:
      stats = stats_lib.update_stats(stats, grads, state.params, params,
                                     ema_decay=self.ema_decay,
                                     groups=self.stat_groups)
    diverged_at = jnp.where((state.diverged_at < 0) & ~jnp.isfinite(loss),
                            step, state.diverged_at)
    return TrainState(params, opt_state, stats, state.key, diverged_at), loss

  def _chunk_one(self, state: TrainState, start: jax.Array,
                 num_steps: jax.Array, feed: Any = None, *,
                 collect: bool) -> tuple[TrainState, jax.Array]:
    """Steps `start .. start + num_steps - 1` (global step numbers)."""
    def body(i, carry):
      state, loss_sum = carry
      _, batch = self.minibatch(state.key, start + i, feed, i)
      state, loss = self._step(state, start + i, collect, batch)
      return state, loss_sum + loss
    state, loss_sum = jax.lax.fori_loop(
        0, num_steps, body, (state, jnp.zeros((), jnp.float32)))
    return state, loss_sum / num_steps

  def select(self, state: TrainState, selector: selectors_lib.Selector,
             which: str, k: int | float,
             eta0_stats: stats_lib.TrajectoryStats,
             within_alpha: bool = False, name: str = '') -> PyTree:
    """Per-seed α (`which='alpha'`) or β masks, each with exactly `k` ones.

    `k`: a count; with a FLOPs budget at unit/layer granularity, α's share of
    the weight-gradient FLOPs ('flops') or of the dense backward pass's
    FLOPs ('backward', `prefix_budget`). `within_alpha`: choose only among the
    coordinates of the current α (the
    optimizer's mask); `k` must not exceed its size. The selector's inputs
    are checked first (`selectors.check_inputs`), on the host, unless every
    seed has diverged (their phases were skipped; their numbers are dropped).
    """
    cache_key = (selector, which, k, within_alpha)
    if self.config.budget == 'backward' and which == 'alpha':
      self.backward_costs()  # traced here, on the host, not inside the jit.
    if cache_key not in self._select_fns:
      self._select_fns[cache_key] = jax.jit(self.seed_map(functools.partial(
          self._select_one, selector=selector, which=which, k=k,
          within_alpha=within_alpha)))
    if not np.all(distributed.fetch(state.diverged_at) >= 0):  # else nothing counts.
      selectors_lib.check_inputs(
          selector, which, self._context(state, eta0_stats, which), name)
    return self._select_fns[cache_key](state, eta0_stats)

  def _context(self, state: TrainState, eta0_stats: stats_lib.TrajectoryStats,
               which: str) -> selectors_lib.SelectionContext:
    stream = ALPHA_STREAM if which == 'alpha' else BETA_STREAM
    key = jax.random.fold_in(state.key, stream) if state.key.ndim == 0 else None
    return selectors_lib.SelectionContext(
        params=state.params, stats=state.stats, opt_state=state.opt_state,
        key=key, eta0_stats=eta0_stats,
        alpha=masking.get_mask(state.opt_state))

  def call_order(self) -> list[str]:
    """The flax modules in the order a forward pass calls them (once)."""
    if self._call_order is None:
      shapes = jax.eval_shape(self.task.init_fn, jax.random.key(0))
      fn, example = self.task.trace_target()
      self._call_order = active_lib.module_call_order(fn, shapes, example)
    return self._call_order

  def check_active_step(self) -> None:
    """ValueError unless `T|α` on the active set can train this model.

    At the config's granularity (`active_check.check_active_step`): one trace of the
    model, no training; call it before any work when the active step will be
    used.
    """
    shapes = jax.eval_shape(self.task.init_fn, jax.random.key(0))
    fn, example = self.task.trace_target()
    active_check.check_active_step(fn, shapes, example,
                                   self.config.granularity,
                                   unit_axes=self.unit_axes())

  def unit_axes(self) -> dict[str, int] | None:
    """Per module, its unit axes (`active_check.unit_axes`; traced once).

    None except at unit granularity. The trace names the output axes of a
    multi-axis `DenseGeneral` without a bias, which shapes cannot say.
    """
    if self.config.granularity != 'unit':
      return None
    if self._unit_axes is None:
      shapes = jax.eval_shape(self.task.init_fn, jax.random.key(0))
      fn, example = self.task.trace_target()
      self._unit_axes = active_check.unit_axes(fn, shapes, example)
    return self._unit_axes

  def groups(self) -> granularity_lib.Groups:
    """The groups of α at the config's granularity (computed once)."""
    if self._groups is None:
      shapes = jax.eval_shape(self.task.init_fn, jax.random.key(0))
      self._groups = granularity_lib.groups(shapes, self.config.granularity,
                                            self.unit_axes())
    return self._groups

  def group_flops(self) -> np.ndarray:
    """Per group, its weight gradient's FLOPs per example (computed once)."""
    if self._group_flops is None:
      shapes = jax.eval_shape(self.task.init_fn, jax.random.key(0))
      fn, example = self.task.trace_target()
      uses = granularity_lib.module_uses(fn, shapes, example)
      self._group_flops = granularity_lib.weight_grad_flops(self.groups(), uses)
    return self._group_flops

  def layer_order(self) -> tuple[str, ...]:
    """The layers' module names, first called first.

    The task's `layer_order`, or traced (`freeze.forward_layer_order`, which
    raises a ValueError naming the layers it could not place).
    """
    given = getattr(self.task, 'layer_order', None)
    if given is not None:
      return tuple(given)
    shapes = jax.eval_shape(self.task.init_fn, jax.random.key(0))
    fn, example = self.task.trace_target()
    return layer_order_lib.forward_layer_order(fn, shapes, example)

  def backward_costs(self) -> prefix_budget.BackwardCosts:
    """Per group w(g), its layer's forward position, per layer i(l).

    What `budget='backward'` charges (`prefix_budget`), per example;
    computed once. Raises before any training when the layer order is
    neither given (`Task.layer_order`) nor traceable.
    """
    if self._backward_costs is None:
      shapes = jax.eval_shape(self.task.init_fn, jax.random.key(0))
      fn, example = self.task.trace_target()
      uses = granularity_lib.module_uses(fn, shapes, example)
      self._backward_costs = prefix_budget.backward_costs(
          shapes, self.groups(), uses, self.layer_order())
    return self._backward_costs

  def _select_one(self, state: TrainState, eta0_stats, *, selector, which, k,
                  within_alpha) -> PyTree:
    ctx = self._context(state, eta0_stats, which)
    within = ctx.alpha if within_alpha else None
    config = self.config
    if which == 'beta' or config.granularity == 'element':
      return selectors_lib.select(selector, which, ctx, k, within=within)
    scores = selectors_lib.scores(selector, which, ctx, within)
    if config.budget == 'backward':
      return prefix_budget.top_k_prefix_groups(scores, self.groups(),
                                        self.backward_costs(), k,
                                        config.aggregate)
    if config.budget == 'flops':
      cost = self.group_flops()
      return granularity_lib.top_k_groups(scores, 0, self.groups(),
                                          config.aggregate, costs=cost,
                                          budget=k * float(cost.sum()))
    return granularity_lib.top_k_groups(scores, k, self.groups(),
                                        config.aggregate)

  def _start_phase1_one(self, state: TrainState, alpha: PyTree) -> TrainState:
    return state._replace(
        opt_state=masking.set_mask(state.opt_state, alpha),
        stats=stats_lib.init_stats(state.params))

  def _set_alpha_one(self, state: TrainState, alpha: PyTree) -> TrainState:
    return state._replace(opt_state=masking.set_mask(state.opt_state, alpha))

  def _test_accuracy_one(self, params: PyTree) -> jax.Array:
    return self.task.check_metrics(params,
                                   self.config.eval_batch_size)['test_accuracy']

  def _held_out_one(self, params: PyTree) -> dict[str, jax.Array]:
    return self.task.check_metrics(params, self.config.eval_batch_size)

  def _evaluate_one(self, params: PyTree) -> dict[str, jax.Array]:
    return self.task.evaluate_splits(params, self.config.eval_batch_size,
                                     self.config.train_eval_size)

  def feed(self, first_step: int, num_seeds: int,
           label: str) -> feed_lib.Feed | None:
    """The host-data `Feed` of a phase from `first_step` (None: on device)."""
    if self.on_device:
      return None
    seeds = self.seeds if self.seeds is not None else tuple(range(num_seeds))
    return feed_lib.Feed(self.task.train_data, seeds, first_step,
                         self.config.chunk_size, self.mesh, label)

  def train(self, state: Any, first_step: int, num_steps: int, window: int,
            log: Callable[[str], None], label: str,
            chunks: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
            step_name: str = 'T',
            checkpoints: checkpoints_lib.PhaseCheckpoints | None = None) -> Any:
    """Steps `first_step ..` in chunks; statistics over the last `window`.

    Step `t`'s minibatch depends only on the seed and `t`, so every selector's
    η1 phase sees the same batches. A seed whose loss becomes non-finite is
    reported once, in the chunk where it happens; once every seed has
    diverged, the rest of the phase is skipped (there is nothing to learn).
    `chunks`: the (run, collect) chunk functions (default: this Runner's
    dense ones; `phase.train` passes the phase's, with its state).
    The phase's cost goes to `self.costs[label]` (`costs.PhaseCost`).

    `checkpoints`: the phase's (`checkpoints.PhaseCheckpoints`). The phase
    then starts from its latest checkpoint (restored into `state`'s
    structure; `self.resumed` says from which step, by the checkpoints'
    label), chunks also end at every multiple of `checkpoints.every`, and
    the state is saved there and where the phase ends (or stops, every seed diverged). A chunk's
    length does not change the numbers (one `fori_loop` of a dynamic
    length), so a resumed phase ends bit-identical to an uninterrupted one.
    """
    run_chunk, collect_chunk = chunks or (self.run_chunk, self.collect_chunk)
    cost = self.cost(label, step_name)
    num_seeds = int(np.shape(state.diverged_at)[0])
    cost.opt_state_bytes = costs_lib.optimizer_bytes(state.opt_state, num_seeds)
    as_i32 = lambda x: jnp.asarray(x, jnp.int32)
    collect_from = first_step + num_steps - window
    step, end = first_step, first_step + num_steps
    saved = None  # the step of the phase's latest checkpoint.
    if checkpoints is not None:
      state, saved = _resume(checkpoints, state, first_step, end, label)
      if saved is not None:
        self.resumed[checkpoints.label] = step = saved
    next_save = lambda step: (end if checkpoints is None
                              else min(end, checkpoints.next_save(step)))
    chunk_len = lambda step: min(
        self.config.chunk_size,
        (end if step >= collect_from else collect_from) - step,
        next_save(step) - step)
    feed = self.feed(step, num_seeds, label)
    while step < end:
      if np.all(distributed.fetch(state.diverged_at) >= 0):
        log(f'{label}: every seed has diverged; the remaining '
            f'{end - step} steps of this phase are skipped.')
        break
      collect = step >= collect_from
      n = chunk_len(step)
      chunk = collect_chunk if collect else run_chunk
      args: tuple[Any, ...] = (state, as_i32(step), as_i32(n))
      if feed is not None:
        args += (feed.next(n),)
      self._compile(chunk, args, cost, collect, num_seeds)
      before = distributed.fetch(state.diverged_at)
      tic = time.perf_counter()
      state, loss = chunk(*args)
      if feed is not None and step + n < end:
        feed.prefetch(chunk_len(step + n))  # while the device runs.
      loss = distributed.fetch(loss)  # waits for the chunk.
      seconds = time.perf_counter() - tic
      cost.add(n, seconds)
      step += n
      if checkpoints is not None and step == next_save(step - n):
        _save(checkpoints, step, state, first_step, end)  # before the line.
        saved = step
      log(f'{label}: step {step - first_step}/{num_steps}  train loss (chunk '
          f'mean) {_finite_mean_std(loss)} over seeds  '
          f'[{n / seconds:.0f} steps/s]')
      self._report_divergence(before, distributed.fetch(state.diverged_at),
                              first_step, label, log)
    if checkpoints is not None and saved != step:  # stopped: all diverged.
      _save(checkpoints, step, state, first_step, end)
    return state

  def _compile(self, chunk: Callable[..., Any], args: tuple, cost: Any,
               collect: bool, num_seeds: int) -> None:
    """Compiles `chunk` for `args` ahead of time (once), timing it apart."""
    flops = self.precompile(chunk, args, cost)
    if not collect or cost.flops_per_step is None:
      cost.flops_per_step = self.flops_per_seed(flops, num_seeds)

  def cost(self, label: str, step_name: str) -> costs_lib.PhaseCost:
    """The running cost of phase `label` (made, naming `step_name`, once)."""
    return self.costs.setdefault(label, costs_lib.PhaseCost(step_name))

  def precompile(self, fn: Callable[..., Any], args: tuple,
                 cost: costs_lib.PhaseCost) -> float:
    """Compiles jitted `fn` for `args` ahead of time, once per signature.

    The compile time goes to `cost.compile_s`, so that the seconds of the
    call that follows are run time only; the program is kept in
    `self.compiled`. Returns its FLOPs (all seeds; `flops_per_seed`).
    """
    key = (fn, costs_lib.signature(args))
    if key not in self.compiled:
      seconds, self.compiled[key] = costs_lib.flops(fn, *args)
      cost.compile_s += seconds
    return self.compiled[key]

  def flops_per_seed(self, flops: float, num_seeds: int) -> float:
    """One seed's share of a program's `flops`.

    Vmapped seeds are one program doing every seed's work; mapped ones
    (`lax.map`) are counted once, as the loop's body.
    """
    vmapped = self.seed_axis == 'vmap' and num_seeds > 1
    return flops / (num_seeds if vmapped else 1)

  def _report_divergence(self, before: np.ndarray, after: np.ndarray,
                         first_step: int, label: str,
                         log: Callable[[str], None]) -> None:
    for i in np.flatnonzero((before < 0) & (after >= 0)):
      seed = self.seeds[i] if self.seeds is not None else i
      log(f'{label}: WARNING: seed {seed} diverged: its training loss is not '
          f'finite from step {after[i] - first_step + 1} of this phase (global '
          f'step {after[i]}); its numbers are left out of the summaries.')


def _saved_part(state: Any) -> Any:
  """What a phase's checkpoint holds of its `state`.

  All of it, except the frozen-prefix cache of an active-set state (a
  `cache` field): that is rebuilt from the phase's start state, which it
  depends on alone.
  """
  if 'cache' in getattr(state, '_fields', ()):
    return state._replace(cache=None)
  return state


def _save(checkpoints: checkpoints_lib.PhaseCheckpoints, step: int,
          state: Any, first_step: int, end: int) -> None:
  checkpoints.save(step, _saved_part(state),
                   {'first_step': first_step, 'end': end})


def _resume(checkpoints: checkpoints_lib.PhaseCheckpoints, state: Any,
            first_step: int, end: int, label: str) -> tuple[Any, int | None]:
  """(`state` or the phase's latest checkpoint in it, that step or None)."""
  restored = checkpoints.restore(_saved_part(state))
  if restored is None:
    return state, None
  step, saved, meta = restored
  if ((meta.get('first_step'), meta.get('end')) != (first_step, end)
      or not first_step <= step <= end):
    raise ValueError(
        f'{label}: the checkpoint of step {step} ({checkpoints.directory}) is '
        f"of steps {meta.get('first_step')}..{meta.get('end')}, not of this "
        f'phase\'s {first_step}..{end}; accepted: the checkpoints of the same '
        'run (another --workdir for a new one).')
  if saved is not state and 'cache' in getattr(state, '_fields', ()):
    saved = saved._replace(cache=state.cache)
  return saved, step


def count_per_seed(mask: PyTree) -> jax.Array:
  """Per-seed number of True entries of a seed-batched mask.

  Example:
    >>> import jax.numpy as jnp
    >>> count_per_seed({'w': jnp.array([[True, False], [True, True]])}).tolist()
    [1, 2]
  """
  # A mask has leaves, so the sum is an array (mypy reads `sum` as maybe 0).
  return sum(jnp.sum(m, axis=tuple(range(1, m.ndim)))  # type: ignore[return-value]
             for m in jax.tree.leaves(mask))


def frozen_moved(alpha: PyTree, new: PyTree, old: PyTree) -> list[bool]:
  """Per seed: did any coordinate outside α change (it must not)?

  Compared bit for bit, so a NaN that stayed NaN did not move.

  Example:
    >>> import jax.numpy as jnp
    >>> a = {'w': jnp.array([[True, False]])}
    >>> frozen_moved(a, {'w': jnp.array([[5.0, jnp.nan]])}, {'w': jnp.array([[1.0, jnp.nan]])})
    [False]
  """
  def moved(a, p1, p0):
    bits = lambda x: jax.lax.bitcast_convert_type(
        x, jnp.dtype(f'uint{8 * x.dtype.itemsize}'))
    return jnp.any((bits(p1) != bits(p0)) & ~a, axis=tuple(range(1, a.ndim)))
  flags = jax.tree.leaves(jax.tree.map(moved, alpha, new, old))
  return distributed.fetch(functools.reduce(jnp.logical_or, flags)).tolist()
