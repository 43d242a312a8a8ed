"""The paper's protocol: η0 steps of `T` → α → η1 steps of `T|α` → β → evaluate.

Several seeds run as one program: the training state carries a leading seed
axis and every jitted function is `vmap`ped over it (or, for conv nets on CPU,
where vmap is slower, mapped over the seeds in turn with `lax.map`). The η0
phase is shared by all selectors compared in one run: each selector starts its
η1 phase from the same `T^η0(w0)`, so the comparison is paired.

Training runs in chunks: one jitted `lax.fori_loop` of up to `chunk_size` steps
per call, the host printing progress between chunks. Two compiled chunks serve
every phase (the step numbers are traced arguments and α lives in the
optimizer state): one without statistics, and one for the last `window` steps
of a phase that also collects the statistics the compared selectors read
(`Selector.stats`), and no others.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import langevin
from paramsel_jax import masking
from paramsel_jax import models
from paramsel_jax import selectors as selectors_lib
from paramsel_jax import stats as stats_lib
from paramsel_jax import steps

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
  """The protocol's settings (SPEC.md, Part A).

  Attributes:
    eta0: steps of `T` on all parameters.
    eta1: steps of `T|α`.
    k: how many coordinates keep training: a count, or a fraction 0 < k < 1;
      or a tuple of such values (each gets its own η1 phase).
    l: how many weights are kept at the end: a count, or a fraction; or a
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
    seed_axis: 'vmap' (seeds in parallel) or 'map' (in turn, `lax.map`).
      With several devices, vmapped seeds are sharded over them.
    shard_batch: with several devices, also shard each training minibatch
      over the devices the seeds leave (data parallelism; `device_mesh`).
    mode: 'prune_at_end' (the paper: α after η0, β after η1) or 'retrain'
      (prune-then-retrain, as in Han et al. 2015: β is chosen after η0 from
      the selector's β scores, the other weights are zeroed, and only the
      kept ones train for η1; α = β, and k is not used).
    prune_rounds: 'retrain' mode only: prune gradually, in this many rounds
      of η1 / prune_rounds steps each; round r keeps N·(l/N)^(r/R) weights,
      chosen among those kept so far (iterative pruning, as Han et al. 2015
      and Frankle & Carbin 2019 do). 1: one-shot.
  """

  eta0: int = 500
  eta1: int = 1500
  k: float | tuple[float, ...] = 0.1
  l: float | tuple[float, ...] = 0.2
  window: int = 100
  batch_size: int = 128
  chunk_size: int = 500
  eval_batch_size: int = 1000
  train_eval_size: int | None = None
  evaluate_after_eta0: bool = True
  seed_axis: str = 'vmap'
  shard_batch: bool = False
  mode: str = 'prune_at_end'
  prune_rounds: int = 1


SEED_AXES = ('vmap', 'map')
MODES = ('prune_at_end', 'retrain')


def _as_tuple(x) -> tuple:
  return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def validate_protocol_config(
    config: ProtocolConfig, num_params: int, num_train: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Checks every setting before any work; returns the resolved k's and l's."""
  for name in ('eta0', 'eta1', 'window', 'batch_size', 'chunk_size',
               'eval_batch_size'):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
      raise ValueError(f'{name}={value!r}; accepted: an integer > 0.')
  if config.window > config.eta0 or config.window > config.eta1:
    raise ValueError(
        f'window={config.window} is larger than eta0={config.eta0} or '
        f'eta1={config.eta1}; accepted: 1 <= window <= min(eta0, eta1).')
  size = config.train_eval_size
  if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                           or not 0 < size <= num_train):
    raise ValueError(f'train_eval_size={size!r}; accepted: an integer in '
                     f'[1, {num_train}], or None (0 on the command line) for '
                     'the whole training set.')
  if config.batch_size > num_train:
    raise ValueError(f'batch_size={config.batch_size} is larger than the '
                     f'training set ({num_train} examples).')
  if config.seed_axis not in SEED_AXES:
    raise ValueError(f'seed_axis={config.seed_axis!r}; accepted: '
                     f'{", ".join(SEED_AXES)}.')
  if config.mode not in MODES:
    raise ValueError(f'mode={config.mode!r}; accepted: {", ".join(MODES)}.')
  rounds = config.prune_rounds
  if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
    raise ValueError(f'prune_rounds={rounds!r}; accepted: an integer >= 1.')
  if rounds > 1 and config.mode != 'retrain':
    raise ValueError(f'prune_rounds={rounds} needs mode=\'retrain\'; '
                     f'accepted with mode={config.mode!r}: 1.')
  if rounds > 1 and config.window > config.eta1 // rounds:
    raise ValueError(
        f'window={config.window} is longer than a pruning round (eta1 // '
        f'prune_rounds = {config.eta1 // rounds}); accepted: window <= '
        f'{config.eta1 // rounds}.')
  ks, ls = _as_tuple(config.k), _as_tuple(config.l)
  if not ks or not ls:
    raise ValueError(f'k={config.k!r}, l={config.l!r}: give at least one value '
                     'of each.')
  return (tuple(selectors_lib.resolve_count(k, num_params, 'k') for k in ks),
          tuple(selectors_lib.resolve_count(l, num_params, 'l') for l in ls))


class TrainState(NamedTuple):
  """Everything one seed's run carries from step to step."""

  params: PyTree
  opt_state: optax.OptState  # a `masked(...)` state: α lives here.
  stats: stats_lib.TrajectoryStats  # over the current phase's window.
  key: jax.Array  # this seed's key; step t's batch uses fold_in(key, t).


@dataclasses.dataclass(frozen=True)
class Task:
  """A model and a data set, as arrays and pure functions.

  Attributes:
    init_fn: `key -> params`.
    apply_fn: `(params, float images) -> logits`.
    train_images, train_labels: uint8 NHWC images and int labels (`D`).
    test_images, test_labels: the held-out split.
  """

  init_fn: Callable[[jax.Array], PyTree]
  apply_fn: steps.ApplyFn
  train_images: jax.Array
  train_labels: jax.Array
  test_images: jax.Array
  test_labels: jax.Array


def _seed_map(fn: Callable, seed_axis: str, in_axes=0,
              spmd_axis_name: str | None = None) -> Callable:
  """`fn` mapped over the leading seed axis of its (batched) arguments.

  A single seed runs as the plain program (index, call, re-add the axis):
  vmap or map over one element cost 6-18% on CPU (benchmark.py).
  `spmd_axis_name`: the mesh axis the vmapped axis is sharded over (sharding
  constraints inside `fn` then name only the other axes).
  """
  def mapped(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    batched = [a for a, ax in zip(args, axes) if ax == 0]
    def one(xs):
      it = iter(xs)
      return fn(*[next(it) if ax == 0 else a for a, ax in zip(args, axes)])
    if jax.tree.leaves(batched)[0].shape[0] == 1:
      out = one(jax.tree.map(lambda x: x[0], batched))
      return jax.tree.map(lambda x: x[None], out)
    if seed_axis == 'vmap':
      return jax.vmap(fn, in_axes=in_axes,
                      spmd_axis_name=spmd_axis_name)(*args)
    return jax.lax.map(one, batched)
  return mapped


class Runner:
  """The protocol's compiled pieces for one task, optimizer and config.

  `stat_groups`: the `stats.STAT_GROUPS` collected in the windows (the union
  of what the compared selectors read). `mesh`: a `device_mesh`; its 'seed'
  axis shards vmapped seeds, its 'batch' axis each training minibatch.
  """

  def __init__(self, task: Task, tx: optax.GradientTransformation,
               config: ProtocolConfig,
               stat_groups: frozenset[str] = stats_lib.ALL_GROUPS,
               mesh: jax.sharding.Mesh | None = None):
    self.task, self.config, self.mesh = task, config, mesh
    self.stat_groups = stats_lib.check_groups(stat_groups)
    self.tx = masking.masked(tx)
    self._batch_sharding = None
    if mesh is not None and mesh.shape['batch'] > 1:
      self._batch_sharding = jax.sharding.NamedSharding(
          mesh, jax.sharding.PartitionSpec('batch'))
    spmd = 'seed' if mesh is not None and mesh.shape['seed'] > 1 else None
    seed_map = functools.partial(_seed_map, seed_axis=config.seed_axis,
                                 spmd_axis_name=spmd)
    chunk = lambda collect: jax.jit(seed_map(
        functools.partial(self._chunk_one, collect=collect),
        in_axes=(0, None, None)))
    self.init = jax.jit(seed_map(self._init_one))
    self.run_chunk = chunk(False)  # `(state, start, num_steps)`, no stats.
    self.collect_chunk = chunk(True)  # the same, collecting the statistics.
    self._select_fns = {}
    self._compiled = set()  # the chunks that have run (and compiled).
    self.start_phase1 = jax.jit(seed_map(self._start_phase1_one))
    self.evaluate = jax.jit(seed_map(self._evaluate_one))

  def _init_one(self, key: jax.Array) -> TrainState:
    params = self.task.init_fn(jax.random.fold_in(key, 0))
    # Each seed's Langevin noise (sgld, psgld) gets its own key.
    opt_state = langevin.reseed(self.tx.init(params), jax.random.fold_in(key, 2))
    return TrainState(params=params, opt_state=opt_state,
                      stats=stats_lib.init_stats(params), key=key)

  def _step(self, state: TrainState, step: jax.Array,
            collect: bool) -> tuple[TrainState, jax.Array]:
    task = self.task
    batch_key = jax.random.fold_in(jax.random.fold_in(state.key, 1), step)
    images, labels = steps.sample_batch(
        batch_key, task.train_images, task.train_labels, self.config.batch_size)
    if self._batch_sharding is not None:
      images, labels = jax.lax.with_sharding_constraint(
          (images, labels), self._batch_sharding)
    params, opt_state, loss, grads = steps.train_step(
        task.apply_fn, self.tx, state.params, state.opt_state, images, labels)
    stats = state.stats
    if collect:
      stats = stats_lib.update_stats(stats, grads, state.params, params,
                                     groups=self.stat_groups)
    return state._replace(params=params, opt_state=opt_state, stats=stats), loss

  def _chunk_one(self, state: TrainState, start: jax.Array, num_steps: jax.Array,
                 collect: bool) -> tuple[TrainState, jax.Array]:
    """Steps `start .. start + num_steps - 1` (global step numbers)."""
    def body(i, carry):
      state, loss_sum = carry
      state, loss = self._step(state, start + i, collect)
      return state, loss_sum + loss
    state, loss_sum = jax.lax.fori_loop(
        0, num_steps, body, (state, jnp.zeros((), jnp.float32)))
    return state, loss_sum / num_steps

  def select(self, state: TrainState, selector: selectors_lib.Selector,
             which: str, k: int, eta0_stats: stats_lib.TrajectoryStats,
             within_alpha: bool = False) -> PyTree:
    """Per-seed α (`which='alpha'`) or β masks, each with exactly `k` ones.

    `within_alpha`: choose only among the coordinates of the current α (the
    optimizer's mask); `k` must not exceed its size.
    """
    cache_key = (selector, which, k, within_alpha)
    if cache_key not in self._select_fns:
      def select_one(state, eta0_stats):
        ctx = selectors_lib.SelectionContext(
            params=state.params, stats=state.stats, opt_state=state.opt_state,
            key=jax.random.fold_in(state.key, 1 if which == 'alpha' else 2),
            eta0_stats=eta0_stats, alpha=masking.get_mask(state.opt_state))
        return selectors_lib.select(selector, which, ctx, k,
                                    within=ctx.alpha if within_alpha else None)
      self._select_fns[cache_key] = jax.jit(
          _seed_map(select_one, self.config.seed_axis))
    return self._select_fns[cache_key](state, eta0_stats)

  def _start_phase1_one(self, state: TrainState, alpha: PyTree) -> TrainState:
    return state._replace(
        opt_state=masking.set_mask(state.opt_state, alpha),
        stats=stats_lib.init_stats(state.params))

  def _evaluate_one(self, params: PyTree) -> dict[str, jax.Array]:
    task, bs = self.task, self.config.eval_batch_size
    n = self.config.train_eval_size
    train = steps.evaluate(task.apply_fn, params, task.train_images[:n],
                           task.train_labels[:n], bs)
    test = steps.evaluate(task.apply_fn, params, task.test_images,
                          task.test_labels, bs)
    return {'train_loss': train[0], 'train_accuracy': train[1],
            'test_loss': test[0], 'test_accuracy': test[1]}

  def train(self, state: TrainState, first_step: int, num_steps: int,
            window: int, log: Callable[[str], None], label: str) -> TrainState:
    """Steps `first_step ..` in chunks; statistics over the last `window`.

    Step `t`'s minibatch depends only on the seed and `t`, so every selector's
    η1 phase sees the same batches.
    """
    as_i32 = lambda x: jnp.asarray(x, jnp.int32)
    collect_from = first_step + num_steps - window
    step, end = first_step, first_step + num_steps
    while step < end:
      collect = step >= collect_from
      n = min(self.config.chunk_size, (end if collect else collect_from) - step)
      chunk = self.collect_chunk if collect else self.run_chunk
      tic = time.perf_counter()
      state, loss = chunk(state, as_i32(step), as_i32(n))
      loss = np.asarray(loss)  # waits for the chunk.
      seconds = time.perf_counter() - tic
      step += n
      note = '' if collect in self._compiled else ', incl. compilation'
      self._compiled.add(collect)
      log(f'{label}: step {step - first_step}/{num_steps}  train loss (chunk '
          f'mean) {loss.mean():.4f} ± {loss.std():.4f} over seeds  '
          f'[{n / seconds:.0f} steps/s{note}]')
    return state


def _print(msg: str) -> None:
  print(msg, flush=True)


def device_mesh(num_seeds: int, batch_size: int | None = None
                ) -> jax.sharding.Mesh | None:
  """The devices as a ('seed', 'batch') mesh; None when it would be 1 x 1.

  'seed' gets the largest device count that divides `num_seeds` (pass 1 when
  the seeds are not vmapped); 'batch', when `batch_size` is given, the
  largest count dividing both the devices left and `batch_size`. Data and
  other unbatched arrays are replicated by jit.

  Example:
    >>> device_mesh(3) is None or device_mesh(3).shape['seed'] > 1
    True
  """
  devices = jax.devices()
  seed = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
  rest = len(devices) // seed
  batch = 1 if batch_size is None else max(
      d for d in range(1, rest + 1) if rest % d == 0 and batch_size % d == 0)
  if seed * batch == 1:
    return None
  return jax.sharding.Mesh(
      np.array(devices[:seed * batch]).reshape(seed, batch), ('seed', 'batch'))


def describe_mesh(mesh: jax.sharding.Mesh | None) -> str:
  """E.g. 'seeds over 4 devices, each minibatch over 2'."""
  if mesh is None:
    return 'one device'
  parts = []
  if mesh.shape['seed'] > 1:
    parts.append(f'seeds over {mesh.shape["seed"]} devices')
  if mesh.shape['batch'] > 1:
    parts.append(f'each minibatch over {mesh.shape["batch"]} devices')
  return ', '.join(parts)


def _to_lists(metrics: dict[str, jax.Array]) -> dict[str, list[float]]:
  return {m: np.asarray(v).tolist() for m, v in metrics.items()}


def _any_frozen_moved(alpha: PyTree, new: PyTree, old: PyTree) -> list[bool]:
  """Per seed: did any coordinate outside α change (it must not)?"""
  moved = jax.tree.map(
      lambda a, p1, p0: jnp.any((p1 != p0) & ~a, axis=tuple(range(1, a.ndim))),
      alpha, new, old)
  return np.asarray(functools.reduce(jnp.logical_or,
                                     jax.tree.leaves(moved))).tolist()


def run_protocol(
    task: Task,
    tx: optax.GradientTransformation,
    config: ProtocolConfig,
    selector_names: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None] = _print,
    groups: Sequence[tuple[str, int]] | None = None,
    on_cells: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
  """Runs the protocol for several selectors, k's, l's and seeds.

  One η0 phase is shared by everything; then each (selector, k) group gets
  its own η1 phase (in 'retrain' mode, each (selector, l)), and every l is
  read off it. A cell is one (selector, k, l) with per-seed metrics.

  Args:
    task: the model and the data.
    tx: the optimizer `T` (unmasked; it is wrapped in `masked` here).
    config: the protocol settings.
    selector_names: registered selectors to compare.
    seeds: one run per seed (init, batches, random selection). With several
      devices the seed axis is sharded over them, and with
      `config.shard_batch` each minibatch too (`device_mesh`).
    log: where progress lines go.
    groups: the (selector name, resolved k) pairs to run (in 'retrain' mode,
      (selector, l)); None: every selector × every k (l). A resumable sweep
      passes only the unfinished ones.
    on_cells: called with each group's finished cells, e.g. to save them.

  Returns:
    `{'num_params', 'ks', 'ls', 'seeds', 'after_eta0': {metric: [per seed]},
    'cells': [{'selector', 'k', 'l', 'alpha_count', 'beta_count',
    'frozen_moved', 'w': {metric: [...]}, 'pruned': {metric: [...]}}],
    'timing': {...}}`; all values are Python numbers, ready for JSON.
  """
  for name in selector_names:
    selectors_lib.get_selector(name)
  n = models.count_params(jax.eval_shape(task.init_fn, jax.random.key(0)))
  ks, ls = validate_protocol_config(config, n, int(task.train_images.shape[0]))
  if not seeds:
    raise ValueError('seeds is empty; give at least one seed.')
  retrain = config.mode == 'retrain'
  if groups is None:
    groups = [(name, c) for name in selector_names for c in (ls if retrain else ks)]

  needed = frozenset().union(*(selectors_lib.get_selector(name).stats
                               for name in selector_names))
  mesh = device_mesh(len(seeds) if config.seed_axis == 'vmap' else 1,
                     config.batch_size if config.shard_batch else None)
  runner = Runner(task, tx, config, stat_groups=needed, mesh=mesh)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  if mesh is not None and mesh.shape['seed'] > 1:
    keys = jax.device_put(keys, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec('seed')))
  timing = {}
  t0 = time.perf_counter()
  state0 = runner.init(keys)
  axis = (('one program' if len(seeds) == 1 else config.seed_axis) +
          ('' if mesh is None else f'; {describe_mesh(mesh)}'))
  counts = f'l = {list(ls)}' if retrain else f'k = {list(ks)}, l = {list(ls)}'
  log(f'N = {n} parameters, {counts}, {len(seeds)} seeds ({axis}), '
      f'eta0 = {config.eta0}, eta1 = {config.eta1}, mode {config.mode}')
  state0 = runner.train(state0, 0, config.eta0, config.window, log, 'eta0')
  timing['eta0_s'] = time.perf_counter() - t0

  results = {'num_params': n, 'ks': list(ks), 'ls': list(ls),
             'seeds': list(seeds), 'mode': config.mode,
             'after_eta0': (_to_lists(runner.evaluate(state0.params))
                            if config.evaluate_after_eta0 else None),
             'cells': []}
  for name, count in groups:
    selector = selectors_lib.get_selector(name)
    t1 = time.perf_counter()
    if retrain:
      state, alpha, start = _prune_and_retrain(runner, state0, selector, name,
                                               count, n, log)
      cell_ls = [count]
    else:
      alpha = runner.select(state0, selector, 'alpha', count, state0.stats)
      start = runner.start_phase1(state0, alpha)
      cell_ls = ls
      state = runner.train(start, config.eta0, config.eta1, config.window, log,
                           f'eta1 [{name}, k={count}]')
    w_metrics = _to_lists(runner.evaluate(state.params))
    cells = []
    for l in cell_ls:
      beta = alpha if retrain else runner.select(state, selector, 'beta', l,
                                                 state0.stats)
      cells.append({
          'selector': name, 'k': count, 'l': l,
          'alpha_count': np.asarray(_count(alpha)).tolist(),
          'beta_count': np.asarray(_count(beta)).tolist(),
          'frozen_moved': _any_frozen_moved(alpha, state.params, start.params),
          'w': w_metrics,
          'pruned': _to_lists(runner.evaluate(steps.prune(state.params, beta))),
      })
    timing[f'{name}/{count}_s'] = time.perf_counter() - t1
    results['cells'].extend(cells)
    if on_cells is not None:
      on_cells(cells)
  timing['total_s'] = time.perf_counter() - t0
  results['timing'] = timing
  return results


def round_counts(n: int, l: int, rounds: int) -> list[int]:
  """Weights kept after each pruning round: N·(l/N)^(r/R), the last exactly l.

  Example:
    >>> round_counts(1000, 10, 2)
    [100, 10]
  """
  return [l if r == rounds else int(round(n * (l / n) ** (r / rounds)))
          for r in range(1, rounds + 1)]


def _prune_and_retrain(runner: Runner, state0: TrainState, selector, name: str,
                       l: int, n: int, log) -> tuple[TrainState, PyTree, TrainState]:
  """'retrain' mode: prune to `l` weights in rounds, retraining after each.

  Returns the final state, the final mask and the last round's start state.
  """
  config = runner.config
  rounds = config.prune_rounds
  steps_done, state = config.eta0, state0
  for r, count in enumerate(round_counts(n, l, rounds)):
    length = config.eta1 // rounds + (1 if r < config.eta1 % rounds else 0)
    alpha = runner.select(state, selector, 'beta', count, state0.stats,
                          within_alpha=r > 0)
    start = runner.start_phase1(
        state._replace(params=steps.prune(state.params, alpha)), alpha)
    label = (f'eta1 [{name}, l={l}]' if rounds == 1 else
             f'eta1 [{name}, l={l}, round {r + 1}/{rounds}: {count} kept]')
    state = runner.train(start, steps_done, length, config.window, log, label)
    steps_done += length
  return state, alpha, start


def _count(mask: PyTree) -> jax.Array:
  """Per-seed number of True entries of a seed-batched mask."""
  return sum(jnp.sum(m, axis=tuple(range(1, m.ndim))) for m in jax.tree.leaves(mask))
