"""One training phase: `T`, `T|α` as a masked dense step, or `T|α` on the active set.

A `Phase` says how a phase of training steps: its two chunk functions (one
`lax.fori_loop` of steps, with or without collecting the selectors'
statistics, mapped over the seeds), the way in from the Runner's
`TrainState` and back, and the step's name in the cost tables. Its kinds:

- 'dense' (`dense`): `T`, the Runner's own chunks on `masked(tx)`, in and
  out unchanged (a mask of all ones, or the one the optimizer state holds);
- 'masked' (`dense(runner, masked=True)`): the same program, its optimizer
  state holding α: `T|α` as the dense step with frozen updates zeroed;
- 'active' (`active`): `T|α` on `active`'s split, so that the cost follows
  α (`ActiveStep` below).

`for_alpha` makes the η1 phase of an α (the protocol, the freeze
benchmark); `run_phase` runs a phase: in, `num_steps` steps in chunks
(`Runner.train`: progress, divergence, the `costs.PhaseCost`), out. The
protocol, the online driver and the freeze benchmark all step through it.

On the active set the full params ride along as constants of the step, the
active tree is the only thing differentiated and optimized (by `masked(tx)`
over the active tree, whose mask is the padding mask), and, when every module
called before the first one that trains is frozen and the cache is wanted,
that module's inputs are computed once over the training set and looked up by
the minibatch's indices (`with_cache`), so the frozen prefix is not computed
at all. Going in slices the optimizer state (Adam continues from η0's
moments); going out writes params and optimizer state back, the statistics
of frozen coordinates being the `frozen_stats` given (η0's, as selectors
read them). Batches are the Runner's (`Runner.minibatch`), so the phase
gives the parameters of the 'masked' one to float rounding.

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> from paramsel_jax.protocol import protocol
  >>> x = jnp.ones((8, 3)); y = jnp.zeros((8,), jnp.int32)
  >>> task = protocol.ImageTask(lambda k: {'w': jax.random.normal(k, (3, 2))},
  ...                      lambda p, x: x @ p['w'], x, y, x, y)
  >>> config = protocol.ProtocolConfig(eta0=4, eta1=4, window=2, batch_size=4)
  >>> runner = protocol.Runner(task, optax.sgd(0.1), config)
  >>> state = runner.init(jax.vmap(jax.random.key)(jnp.arange(2)))
  >>> state = run_phase(runner, dense(runner), state, 0, 4, 2,
  ...                   lambda _: None, 'T')
  >>> runner.costs['T'].steps
  4
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.freeze import active_check
from paramsel_jax.optim import masking
from paramsel_jax.protocol import checks
from paramsel_jax.protocol.config import INACTIVE_STATES
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.train import costs as costs_lib
from paramsel_jax.train import distributed
from paramsel_jax.train import memory
from paramsel_jax.train import steps
from paramsel_jax.train.runner import Runner
from paramsel_jax.train.runner import TrainState

if TYPE_CHECKING:
  from paramsel_jax.train import checkpoints as checkpoints_lib

PyTree = Any
Log = Callable[[str], None]

KINDS = ('dense', 'masked', 'active')


class Phase(NamedTuple):
  """How one phase of training steps (see the module docstring).

  The chunks are `(state, start, num_steps) -> (state, mean loss)` over the
  phase's own state: the `TrainState` for 'dense' and 'masked', an
  `ActiveState` for 'active' (`enter` makes it, `leave` undoes it).
  """

  kind: str  # one of KINDS.
  name: str  # the step, as the cost tables name it.
  run_chunk: Callable[..., Any]
  collect_chunk: Callable[..., Any]  # the same, collecting the statistics.
  program: ActiveStep | None = None  # 'active': its compiled pieces.
  plan: active_lib.Plan | None = None  # 'active': the active set.
  idx: Any = None  # 'active': the plan's index arrays, seed-batched.
  cache: jax.Array | None = None  # cached inputs of `program.cache_path`.


def dense(runner: Runner, masked: bool = False) -> Phase:
  """`T` on the Runner's own chunks; `masked`: `T|α`, α in the optimizer state.

  The module docstring's example trains a dense phase.
  """
  return Phase('masked' if masked else 'dense', 'T|α masked' if masked else 'T',
               runner.run_chunk, runner.collect_chunk)


def active_step(runner: Runner, plan: active_lib.Plan,
                cache_path: str | None = None) -> ActiveStep:
  """The compiled pieces of `T|α` on `plan`'s active set (made once per plan).

  `cache_path`: the module whose cached inputs the step reads (None: none).
  """
  key = ('active', plan, cache_path)
  if key not in runner.programs:
    runner.programs[key] = ActiveStep(runner, plan, cache_path)
  return runner.programs[key]


def active(runner: Runner, plan: active_lib.Plan, idx: Any,
           cache_path: str | None = None) -> Phase:
  """`T|α` on `plan`'s active set; `idx`: its index arrays (`active.plan`).

  With a `cache_path` the phase needs its cache (`with_cache`) to train.
  """
  program = active_step(runner, plan, cache_path)
  name = f'T|α active: {plan.describe()}' + (
      f', {cache_path} inputs cached' if cache_path else '')
  return Phase('active', name, program.run_chunk, program.collect_chunk,
               program, plan, jax.tree.map(jnp.asarray, idx))


def with_cache(runner: Runner, phase: Phase, start: TrainState,
               cost: costs_lib.PhaseCost) -> Phase:
  """`phase` with its cache built from `start`'s params (if it reads one).

  The build is compiled ahead of time, its compile time going to `cost`.
  """
  if phase.program is None or phase.program.cache_path is None:
    return phase
  runner.precompile(phase.program.build_cache, (start,), cost)
  return phase._replace(cache=phase.program.build_cache(start))


def for_alpha(runner: Runner, start: TrainState, alpha: PyTree, label: str,
              log: Log) -> Phase:
  """The η1 phase of α, at the config's step (`ProtocolConfig.active_step`).

  `start` is the Runner's state with α set (`Runner.start_phase1`). On the
  active set, at the config's granularity, with the frozen prefix cached
  when the config asks for it, it fits and the phase's `eta1` steps repay
  it (`cached_module`).
  """
  config = runner.config
  if config.active_step() != 'active':
    return dense(runner, masked=True)
  p, arrays = active_lib.plan(distributed.fetch_tree(alpha), config.granularity,
                              unit_axes=runner.unit_axes())
  path = cached_module(runner, p, start, label, log,
                       steps_left=config.eta1)
  phase = active(runner, p, arrays['idx'], path)
  log(f'{label}: T|α on the active set: {p.describe()}'
      + (f'; cached inputs of {path}' if path else ''))
  return with_cache(runner, phase, start, runner.cost(label, phase.name))


def enter(phase: Phase, state: TrainState,
          stats: stats_lib.TrajectoryStats | None = None) -> Any:
  """The phase's state of a Runner's one.

  `stats`: full-shaped statistics to continue on the active set (None: fresh
  ones; 'dense' and 'masked' always continue `state.stats`).
  """
  if phase.program is None:
    return state
  return phase.program.enter(state, phase.idx, phase.cache, stats)


def leave(phase: Phase, inner: Any, start: TrainState,
          frozen_stats: stats_lib.TrajectoryStats) -> TrainState:
  """The Runner's state of the phase's `inner` one, entered from `start`.

  `frozen_stats`: the statistics a frozen coordinate keeps (active set).
  """
  if phase.program is None:
    return inner
  return phase.program.leave(inner, start, frozen_stats)


def run_phase(runner: Runner, phase: Phase, state: TrainState,
              first_step: int, num_steps: int, window: int, log: Log,
              label: str, *,
              frozen_stats: stats_lib.TrajectoryStats | None = None,
              keep_stats: bool = False, consume: bool = False,
              checkpoints: checkpoints_lib.PhaseCheckpoints | None = None
              ) -> TrainState:
  """Steps `first_step ..` of `phase` from `state`; returns the Runner's state.

  In, `Runner.train` (chunks, statistics over the last `window` steps,
  progress lines, the cost in `runner.costs[label]`), out. On the active set,
  going in and out is compiled ahead of time (its time counts as the
  phase's compilation); `keep_stats`: continue `state.stats` there (else
  fresh ones); `frozen_stats`: what frozen coordinates keep (default:
  `state.stats`).

  While the active set trains, the full optimizer state waits as the
  config's `inactive_state` says (`park`): on the device, on the host, or
  not at all ('reset': `leave` gives the slots that did not train fresh
  `tx.init` values). `consume`: nothing else reads `state.opt_state` after
  this call, so its device buffers are freed once the phase is in (what
  makes 'host' and 'reset' save device memory; the online driver passes it,
  the protocol, whose η1 phases share η0's state, does not).

  `checkpoints`: the phase's (`checkpoints.PhaseCheckpoints`): it resumes
  from the latest one and saves as `Runner.train` says. On the active set
  the state saved is the active one without its cache (rebuilt from
  `state`), restored into the one just entered.
  """
  chunks = (phase.run_chunk, phase.collect_chunk)
  if phase.program is None:
    return runner.train(state, first_step, num_steps, window, log, label,
                        chunks=chunks, step_name=phase.name,
                        checkpoints=checkpoints)
  cost = runner.cost(label, phase.name)
  enter_args = (state, phase.idx, phase.cache,
                state.stats if keep_stats else None)
  runner.precompile(phase.program.enter, enter_args, cost)
  inner = phase.program.enter(*enter_args)
  mode = inactive_state(runner)
  parked = park(state.opt_state, mode, consume, keep=inner)
  state = state._replace(opt_state=None)
  inner = runner.train(inner, first_step, num_steps, window, log, label,
                       chunks=chunks, step_name=phase.name,
                       checkpoints=checkpoints)
  frozen = state.stats if frozen_stats is None else frozen_stats
  leave_args: tuple[Any, ...]
  if mode == 'reset':
    leave_fn, leave_args = phase.program.leave_fresh, (inner, frozen)
  else:
    leave_fn = phase.program.leave
    leave_args = (inner, state._replace(opt_state=unpark(parked)), frozen)
  runner.precompile(leave_fn, leave_args, cost)
  return leave_fn(*leave_args)


def inactive_state(runner: Runner) -> str:
  """The Runner's config's `inactive_state` ('device' when it has none)."""
  return getattr(runner.config, 'inactive_state', 'device')


class Parked(NamedTuple):
  """A full optimizer state while its active part trains (`park`)."""

  tree: Any  # 'device': the state; 'host': its host copy; 'reset': None.
  shardings: Any  # where each leaf goes back to ('host').


def park(opt_state: optax.OptState, mode: str, consume: bool,
         keep: Any = None) -> Parked:
  """`opt_state` kept as `mode` says while a phase trains its active part.

  'device': as it is; 'host': copied to host memory (`memory.to_host`);
  'reset': dropped. With `consume` (and a mode other than 'device') the
  device buffers are freed, except those `keep` (the phase's state) shares.

  Example:
    >>> import jax.numpy as jnp
    >>> parked = park({'mu': jnp.ones(3)}, 'host', consume=True)
    >>> unpark(parked)['mu'].tolist()
    [1.0, 1.0, 1.0]
  """
  checks.one_of('inactive_state', mode, INACTIVE_STATES)
  if mode == 'device':
    return Parked(opt_state, None)
  placed = memory.shardings(opt_state)
  tree = memory.to_host(opt_state) if mode == 'host' else None
  if consume:
    jax.block_until_ready(tree)
    memory.free(opt_state, keep=(keep, tree))
  return Parked(tree, placed)


def unpark(parked: Parked) -> optax.OptState:
  """The device state `park` kept ('device', 'host'); None for 'reset'."""
  if parked.shardings is None or parked.tree is None:
    return parked.tree
  return memory.to_device(parked.tree, parked.shardings)


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


def cache_bytes(runner: Runner, state: TrainState, path: str) -> int:
  """Bytes a cache of module `path`'s inputs over the training set takes.

  For all seeds, float32.
  """
  apply_fn, images = runner.task.cache_inputs()
  one = jax.tree.map(lambda x: x[0], state.params)
  example = steps.to_float(images[:1])
  shape = jax.eval_shape(
      lambda p, x: active_lib.module_input(apply_fn, p, x, path),
      one, example).shape
  per_example = int(jnp.prod(jnp.asarray(shape[1:])))
  seeds = int(jax.tree.leaves(state.params)[0].shape[0])
  return seeds * int(images.shape[0]) * per_example * 4


class ActiveStep:
  """The compiled pieces of `T|α` on one plan's active set (`active_step`)."""

  def __init__(self, runner: Runner, plan: active_lib.Plan,
               cache_path: str | None = None):
    self.runner, self.plan, self.cache_path = runner, plan, cache_path
    partial = [m for m, k in zip(plan.modules, plan.kinds) if k == 'partial']
    if partial:  # modules `forward` would split: refused before any work.
      task = runner.task
      fn, example = task.trace_target()
      active_check.check_active_step(
          fn, jax.eval_shape(task.init_fn, jax.random.key(0)), example,
          'unit', modules=partial, unit_axes=runner.unit_axes())
    seed_map = runner.seed_map
    chunk = lambda collect: jax.jit(seed_map(
        functools.partial(self._chunk_one, collect=collect),
        in_axes=(0, None, None, 0)))
    self.run_chunk = chunk(False)
    self.collect_chunk = chunk(True)
    self.enter = jax.jit(seed_map(self._enter_one))
    self.leave = jax.jit(seed_map(self._leave_one))
    # `inactive_state='reset'`: leave without the full state.
    self.leave_fresh = jax.jit(seed_map(self._leave_fresh_one))
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

  def _leave_fresh_one(self, s: ActiveState,
                       eta0_stats: stats_lib.TrajectoryStats) -> TrainState:
    """`_leave_one` with fresh `tx.init` values where nothing trained.

    The mask is α again (the active one written over all-False); the
    non-params-shaped parts (optax's step counts, Langevin keys) continue
    from the active state, as in `_leave_one`.
    """
    fresh = self.runner.tx.init(s.params)
    fresh = masking.set_mask(fresh, jax.tree.map(
        lambda x: jnp.zeros(jnp.shape(x), bool), s.params))
    start = TrainState(s.params, fresh, eta0_stats, s.key, s.diverged_at)
    return self._leave_one(s, start, eta0_stats)

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
    path = self.cache_path
    assert path is not None, 'build_cache needs a cache_path'
    apply_fn, images = self.runner.task.cache_inputs()
    n = images.shape[0]
    batch_size = min(batch_size, n)
    pad = -n % batch_size
    padded = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
    batches = padded.reshape((-1, batch_size) + images.shape[1:])
    inputs = jax.lax.map(lambda x: active_lib.module_input(
        apply_fn, state.params, steps.to_float(x), path), batches)
    return inputs.reshape((-1,) + inputs.shape[2:])[:n]

  def _step(self, s: ActiveState, step: jax.Array, collect: bool,
            feed: Any, i: jax.Array) -> tuple[ActiveState, jax.Array]:
    runner, task, p = self.runner, self.runner.task, self.plan
    bidx, batch = runner.minibatch(s.key, step, feed, i)
    cache = None if s.cache is None else (self.cache_path, s.cache[bidx])
    loss_of = lambda q, x: task.loss_fn(q, x[0], x[1])

    def loss_fn(act):
      return active_lib.forward(loss_of, p, s.params, act, s.idx,
                                (batch, runner.loss_key(s.key, step)), cache)

    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(s.active)
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
                 feed: Any = None, *,
                 collect: bool) -> tuple[ActiveState, jax.Array]:
    def body(i, carry):
      s, loss_sum = carry
      s, loss = self._step(s, start + i, collect, feed, i)
      return s, loss_sum + loss
    s, loss_sum = jax.lax.fori_loop(0, num_steps, body,
                                    (s, jnp.zeros((), jnp.float32)))
    return s, loss_sum / num_steps


CACHE_MARGIN = 2.0  # a cache must repay its build this many times over.


def cache_repays(build_cost: float, saving_per_step: float, steps_left: int,
                 margin: float = CACHE_MARGIN) -> bool:
  """Whether building a cache pays: `margin · build < steps_left · saving`.

  Both costs in one unit (FLOPs, seconds). `margin` covers what the
  estimate leaves out: compiling the build, the cache's gather in the step.

  Example:
    >>> cache_repays(6e9, 1e7, steps_left=500)  # one tenth of an epoch.
    False
    >>> cache_repays(6e9, 1e7, steps_left=5000)
    True
  """
  checks.integer('steps_left', steps_left, at_least=0)
  checks.real('margin', margin, above=0)
  return margin * build_cost < steps_left * saving_per_step


def cache_estimates(runner: Runner, state: TrainState, path: str
                    ) -> tuple[float, float]:
  """(build FLOPs, FLOPs saved per step) of caching module `path`'s inputs.

  From XLA's cost analysis of the frozen prefix's forward on one example
  (one seed): the build runs it over the training set, each cached step
  skips it on a minibatch of the config's `batch_size`.
  """
  apply_fn, images = runner.task.cache_inputs()
  one = jax.tree.map(lambda x: x[0], state.params)
  example = steps.to_float(images[:1])
  lowered = jax.jit(lambda p, x: active_lib.module_input(
      apply_fn, p, x, path)).lower(one, example)
  analysis = lowered.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  per_example = float((analysis or {}).get('flops', 0.0))
  return (per_example * int(images.shape[0]),
          per_example * runner.config.batch_size)


def cached_module(runner: Runner, p: active_lib.Plan, start: TrainState,
                  label: str, log: Log, steps_left: int | None = None
                  ) -> str | None:
  """The module whose inputs to cache on `p`'s active set, or None.

  One when the config asks for it (`cache_prefix`), every module called
  before it is frozen, the cache fits `cache_budget_mb`, and, given
  `steps_left` (the steps the cache would serve; None: not asked), it
  repays its build (`cache_repays` of `cache_estimates`); the choice, or
  why none, is logged under `label`.
  """
  config = runner.config
  if not config.cache_prefix:
    return None
  if runner.task.cache_inputs() is None:
    log(f'{label}: no frozen-prefix cache: it needs the training inputs on '
        'the device and a linen apply_fn (an ImageTask); training uncached.')
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
  if steps_left is not None:
    build, saving = cache_estimates(runner, start, path)
    pays = cache_repays(build, saving, steps_left)
    log(f'{label}: frozen-prefix cache of {path}: build ~{build:.3g} FLOPs '
        f'per seed vs {steps_left} steps left x ~{saving:.3g} FLOPs saved '
        f'per step = {steps_left * saving:.3g} (margin {CACHE_MARGIN:g}x): '
        + ('building it.' if pays else 'DECLINED, training uncached.'))
    if not pays:
      return None
  log(f'{label}: caching the inputs of {path} (everything before it is '
      f'frozen): {need / 2 ** 20:.1f} MB for all seeds.')
  return path
