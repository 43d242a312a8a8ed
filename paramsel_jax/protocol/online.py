"""Online freezing: train, check convergence, switch to the cheaper `T|α`.

`run_online` trains for `steps` steps in intervals of `check_every`. After
each interval the `freezing.FreezingPolicy` looks at the interval's
statistics and returns α; the driver then trains the next interval with the
`T|α` of the new active set (`phase.active`), so training gets
cheaper as parameters freeze. A criterion that decides at init (lisa,
badam: blocks sampled from step 0) has its α set before the first interval;
for the others the first interval is dense.

Compilation is bounded: slot counts are rounded up to `buckets` sizes per
module (`active.plan(buckets=...)`), a plan already compiled is reused, and
after `max_compiles` step programs the driver keeps the current plan when
α fits in it (the mask holds the newly frozen units) or falls back to the
dense masked step (compiled at the start) when it does not (an APF group
that thawed). The number of compilations and their time are reported.

Frozen coordinates stay bit-identical; their optimizer state stays as it was
(`masked`'s semantics). When every parameter of every seed is frozen and the
criterion cannot thaw one, training is over and the run stops early. The run
gives the parameters of dense `masked` steps with the same sequence of α, to
float rounding (tested).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.freeze import policy as freezing
from paramsel_jax.optim import masking
from paramsel_jax.protocol import checks
from paramsel_jax.protocol import protocol
from paramsel_jax.protocol import task as task_lib
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.train import checkpoints
from paramsel_jax.train import costs as costs_lib
from paramsel_jax.train import distributed
from paramsel_jax.train import mesh as mesh_lib
from paramsel_jax.train import phase as phase_lib
from paramsel_jax.train import runner as runner_lib
from paramsel_jax.train import timing

PyTree = Any


# What `max_frozen` may count. Not 'backward' (`prefix_budget`): the
# criteria's cap (`FreezingPolicy.max_frozen`) is a per-group sum.
ONLINE_BUDGETS = ('params', 'flops')


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
  """Settings of an online-freezing run; checked when made.

  Attributes:
    criterion: a name of `freezing.CRITERIA`, or 'none' (dense training).
    steps: the run's length.
    check_every: steps between checks (one compiled chunk per interval).
    threshold: the criterion's threshold (None: its default).
    max_frozen: the largest frozen share (of parameters, or FLOPs with
      `budget='flops'`); None: no cap.
    budget: 'params' or 'flops' (what `max_frozen` counts).
    granularity: of α ('layer' for autofreeze and freezeout).
    buckets: slot sizes per module (`active.plan`); 0: exact sizes.
    max_compiles: the most step programs a run compiles (the dense one
      included).
    cache_prefix, cache_budget_mb: cache a frozen prefix's outputs (built
      only when the run's remaining steps repay it: `phase.cache_repays`).
    inactive_state: where the optimizer state of what does not train waits
      during an active interval: 'device', 'host' or 'reset'
      (`ProtocolConfig.inactive_state`, `phase.run_phase`).
    batch_size, eval_batch_size: minibatch sizes.
    eval_every: test accuracy every this many steps (a multiple of
      check_every; 0: at every check).
    seed_axis: 'auto', 'vmap' or 'map'.
    t0, schedule: FreezeOut's schedule.
    freeze_at: criterion 'fixed': the step of its one decision (η0).
    gamma, blocks, block_order, block_seed, train_outside: the block
      criteria's settings (`policy.FreezingPolicy`; lisa, badam,
      psgld_prefix).
  """

  criterion: str = 'psgld'
  steps: int = 2000
  check_every: int = 200
  threshold: float | None = None
  max_frozen: float | None = None
  budget: str = 'params'
  granularity: str = 'unit'
  buckets: int = 4
  max_compiles: int = 8
  cache_prefix: bool = False
  cache_budget_mb: float = 2048.0
  inactive_state: str = 'device'
  batch_size: int = 128
  eval_batch_size: int = 1000
  eval_every: int = 0
  seed_axis: str = 'auto'
  t0: float = 0.5
  schedule: str = 'linear'
  freeze_at: int = 0
  gamma: int = 1
  blocks: tuple[str, ...] | None = None
  block_order: str = 'descending'
  block_seed: int = 0
  train_outside: bool | None = None

  def __post_init__(self):
    if self.criterion != 'none':
      crit = freezing.get_criterion(self.criterion)
      if crit.layers_only and self.granularity != 'layer':
        raise ValueError(f'criterion {self.criterion!r} freezes whole layers; '
                         f"accepted: granularity='layer', got "
                         f'{self.granularity!r}.')
    checks.fields(self, ('steps', 'check_every', 'batch_size',
                         'eval_batch_size', 'max_compiles'), checks.integer,
                  at_least=1)
    checks.integer('buckets', self.buckets, at_least=0)
    checks.integer('eval_every', self.eval_every, at_least=0)
    if self.eval_every % self.check_every:
      raise ValueError(f'eval_every={self.eval_every}; accepted: 0 or a '
                       f'multiple of check_every={self.check_every}.')
    if self.budget == 'backward':
      raise ValueError(
          "budget='backward'; accepted here: 'params' or 'flops'. Online "
          "freezing's max_frozen caps a per-group sum; the backward-cost "
          "budget (prefix_budget) is the fixed-η0 protocol's "
          "(ProtocolConfig(budget='backward')).")
    checks.one_of('budget', self.budget, ONLINE_BUDGETS)
    checks.one_of('inactive_state', self.inactive_state,
                  phase_lib.INACTIVE_STATES)
    granularity_lib.check_granularity(self.granularity)
    if self.threshold is not None:
      checks.real('threshold', self.threshold, above=0)
    checks.integer('gamma', self.gamma, at_least=1)
    checks.integer('block_seed', self.block_seed, at_least=0)
    checks.one_of('block_order', self.block_order, freezing.BLOCK_ORDERS)
    if self.train_outside is not None:
      checks.boolean('train_outside', self.train_outside)

  def protocol_config(self) -> protocol.ProtocolConfig:
    """What the Runner reads (chunks of one interval)."""
    n = self.check_every
    return protocol.ProtocolConfig(
        eta0=n, eta1=n, window=n, batch_size=self.batch_size, chunk_size=n,
        eval_batch_size=self.eval_batch_size, seed_axis=self.seed_axis,
        granularity=self.granularity, budget=self.budget, step='active',
        cache_prefix=self.cache_prefix, cache_budget_mb=self.cache_budget_mb,
        inactive_state=self.inactive_state)


def make_policy(config: OnlineConfig, runner: runner_lib.Runner
                ) -> freezing.FreezingPolicy:
  """The config's `FreezingPolicy` over the task's params.

  The layer criteria get the task's forward layer order
  (`freezing.forward_layer_order`, traced on one training example); the
  block criteria get it when the task has one.
  """
  shapes = jax.eval_shape(runner.task.init_fn, jax.random.key(0))
  costs = runner.group_flops() if config.budget == 'flops' else None
  layer_order = runner.task.layer_order
  if layer_order is None and freezing.get_criterion(
      config.criterion).needs_order:
    fn, example = runner.task.trace_target()
    layer_order = freezing.forward_layer_order(fn, shapes, example)
  return policy_for(config, shapes, costs=costs, layer_order=layer_order,
                    unit_axes=runner.unit_axes())


def policy_for(config: OnlineConfig, shapes: PyTree, **fields: Any
               ) -> freezing.FreezingPolicy:
  """The `FreezingPolicy` of `config`'s criterion settings over `shapes`.

  `fields`: what the config does not hold (the model's `layer_order` or
  `apply_fn` and `example`, `costs`, `unit_axes`). Building it runs every
  check of the settings against the model, so a script calls it on the
  params' shapes before any work.

  Example:
    >>> import jax.numpy as jnp
    >>> policy_for(OnlineConfig(check_every=10), {'w': jnp.zeros(3)}).criterion
    'psgld'
  """
  return freezing.FreezingPolicy(
      config.criterion, shapes, granularity=config.granularity,
      check_every=config.check_every, threshold=config.threshold,
      max_frozen=config.max_frozen, total_steps=config.steps, t0=config.t0,
      schedule=config.schedule, freeze_at=config.freeze_at,
      **block_settings(config), **fields)


def block_settings(config: OnlineConfig) -> dict[str, Any]:
  """The block criteria's fields of `config`, for `FreezingPolicy`.

  Example:
    >>> block_settings(OnlineConfig(criterion='lisa', granularity='layer',
    ...                             gamma=2))['gamma']
    2
  """
  return {name: getattr(config, name) for name in BLOCK_FIELDS}


BLOCK_FIELDS = ('gamma', 'blocks', 'block_order', 'block_seed',
                'train_outside')


@dataclasses.dataclass
class _Switch:
  """The driver's choice of step, and the (plan, cache path)s compiled."""

  phase: phase_lib.Phase  # 'dense' (the masked step) or 'active'.
  compiled: set = dataclasses.field(default_factory=set)
  alpha: PyTree = None  # the α `phase`'s plan and indices were made of.


def _fits(alpha: PyTree, switch: _Switch, granularity: str,
          unit_axes: dict[str, int] | None = None) -> bool:
  """Whether α's active units all sit in the current plan's slots."""
  old = switch.phase.plan
  if old is None:
    return True
  new, arrays = active_lib.plan(distributed.fetch_tree(alpha), granularity,
                                unit_axes=unit_axes)
  if new.mode != old.mode:
    return False
  if new.mode == active_lib.PACKED:
    return False  # packed indices change with α: refit.
  old_idx = distributed.fetch_tree(switch.phase.idx)
  for name, kind, old_kind in zip(new.modules, new.kinds, old.kinds):
    if kind == 'frozen' or old_kind == 'full':
      continue
    if old_kind == 'frozen' or kind == 'full':
      return False
    want, have = arrays['idx'][name], old_idx[name]
    for s in range(want.shape[0]):
      if not np.isin(want[s][arrays['live'][name][s]], have[s]).all():
        return False
  return True


def _choose(runner: runner_lib.Runner, config: OnlineConfig, alpha: PyTree,
            state: Any, switch: _Switch, log: Callable[[str], None],
            steps_left: int | None = None) -> _Switch:
  """The step for the next interval (see the module docstring).

  `steps_left`: the run's steps still to come (what a cache must repay).
  """
  host_alpha = distributed.fetch_tree(alpha)
  dense = _Switch(phase_lib.dense(runner), switch.compiled)
  if all(np.asarray(a).all() for a in jax.tree.leaves(host_alpha)):
    return dense
  new, arrays = active_lib.plan(host_alpha, config.granularity,
                                buckets=config.buckets,
                                unit_axes=runner.unit_axes())
  if new.mode != active_lib.PACKED and all(k == 'full' for k in new.kinds):
    return dense  # nothing to save.
  if switch.phase.plan == new:
    return _Switch(switch.phase._replace(
        idx=jax.tree.map(jnp.asarray, arrays['idx'])), switch.compiled)
  budget_left = len(switch.compiled) < config.max_compiles
  if new in {p for p, _ in switch.compiled} or budget_left:
    path = phase_lib.cached_module(runner, new, state, 'online', log,
                                   steps_left=steps_left)
    phase = phase_lib.with_cache(
        runner, phase_lib.active(runner, new, arrays['idx'], path), state,
        _switch_cost(runner))
    switch.compiled.add((new, path))
    return _Switch(phase, switch.compiled)
  if _fits(alpha, switch, config.granularity, runner.unit_axes()):
    return switch  # keep the plan; the mask holds the newly frozen units.
  log(f'online: {config.max_compiles} step programs compiled; α does not fit '
      'the current plan: the next interval runs the dense masked step.')
  return dense


def run_online(task: protocol.Task, tx: optax.GradientTransformation,
               config: OnlineConfig, seeds: Sequence[int],
               log: Callable[[str], None] = print,
               record_alphas: bool = False,
               keep_cases: bool = False,
               checkpointer: checkpoints.Checkpointer | None = None
               ) -> dict[str, Any]:
  """Trains with online freezing; returns the curve, the costs, the α's.

  `record_alphas`: also return, per check, the α it chose (host arrays,
  seed-batched), e.g. to replay the run by hand; for a criterion that
  decides at init (lisa, badam), the first is the first interval's α.
  `keep_cases`: also return, per step that ran (by label), a
  `benchmarks.timing.Case` of one interval of it from the final state, for
  side-by-side timing. Each check's record
  says which step ran (`label`) and the host time around it (`overhead_s`:
  check, switch, enter/leave, compilation).

  `checkpointer`: a `checkpoints.Checkpointer` of this run. The driver's
  state is saved at every interval's end (the dense state, the policy's,
  the records, what rebuilds the current step: `_DriverCheckpoints`), each
  interval saves inside it as a phase does (`phase.run_phase`), and a rerun
  resumes where the last run stopped: the results equal an uninterrupted
  run's except the timings (and `'cases'`, the steps run since the resume).

  Returns:
    `{'checks': [{'step', 'frozen_share': [per seed], 'plan',
    'steps_per_s', 'test_accuracy': [per seed] or None}], 'compilations',
    'compile_s', 'timing', 'final_params'}` (the params as a seed-batched
    pytree; everything else plain numbers). With a `checkpointer`, also
    `'resumed'`: {checkpoint label: the global step it resumed from}.
  """
  seeds = protocol.check_seeds(seeds)
  runner, policy = _make_runner(task, tx, config, seeds)
  criterion = None if policy is None else freezing.get_criterion(
      config.criterion)
  state = runner.init(mesh_lib.seed_keys(seeds, runner.mesh))
  checker = _Checker(runner, policy, state) if policy is not None else None
  switch = _Switch(phase_lib.dense(runner), compiled={(None, None)})
  history: list[dict[str, Any]] = []
  alphas: list[PyTree] = []
  t, over = 0, False
  saver = (None if checkpointer is None else
           _DriverCheckpoints(checkpointer, runner, config, state, checker,
                              record_alphas))
  restored = None if saver is None else saver.restore(state, log)
  if restored is not None:
    state, t, history, alphas, switch, over = restored
    if history and checkpointer is not None:  # if a kill came before.
      checkpointer.discard(_interval_label(t - history[-1]['steps_run'],
                                           history[-1]['steps_run']))
  elif checker is not None and criterion is not None and (
      criterion.decides_at_init):
    state, alpha = checker.start(state)  # lisa, badam: sampled from step 0.
    alphas += [distributed.fetch_tree(alpha)] if record_alphas else []
    switch = _choose(runner, config, alpha, state, switch, log)
    switch.alpha = alpha
  used: dict[str, _Switch] = {}  # the steps that ran, by label.
  while t < config.steps and not over:
    n, label = min(config.check_every, config.steps - t), _label(switch)
    used.setdefault(label, switch)
    tic, compiled_before = time.perf_counter(), _compile_seconds(runner)
    state, seconds, timed = _interval(
        runner, state, switch, t, n, criterion, log,
        None if checkpointer is None else checkpointer.phase(_interval_label(
            t, n)))
    t += n
    share = [0.0] * len(seeds)
    if checker is not None:
      state, alpha, share = checker(state, t)
      alphas += [distributed.fetch_tree(alpha)] if record_alphas else []
      chosen = _choose(runner, config, alpha, state, switch, log,
                       steps_left=config.steps - t)
      if chosen is not switch:  # else kept: its plan is an earlier α's.
        chosen.alpha = alpha
      switch = chosen
    # Host time around the interval (check, switch, enter/leave, cache),
    # compilation left out.
    overhead = (time.perf_counter() - tic - seconds
                - (_compile_seconds(runner) - compiled_before))
    over = (criterion is not None and not criterion.can_thaw
            and min(share) >= 1.0 - 1e-9 and t < config.steps)
    rate = timed / seconds if seconds > 0 else float('nan')
    history.append(_record(runner, config, state, switch, t, share,
                           rate, log, force_eval=over)
                   | {'label': label, 'steps_run': n, 'overhead_s': overhead})
    if saver is not None and checkpointer is not None:
      saver.save(t, state, history, alphas, switch, over, used)
      checkpointer.discard(_interval_label(t - n, n))
    if over:
      log(f'online [{config.criterion}] step {t}: every parameter of every '
          f'seed is frozen; training is over ({config.steps - t} steps not run).')
  results = _results(runner, config, state, used, keep_cases,
                     saver.programs if saver is not None else None)
  if checkpointer is not None:
    checkpointer.wait()
    results['resumed'] = dict(runner.resumed)
  return results | {'checks': history, 'alphas': alphas, 'seeds': list(seeds)}


def _interval_label(t: int, n: int) -> str:
  """The checkpoints' label of the interval of steps `t .. t + n - 1`."""
  return f'interval {t}..{t + n}'


class _DriverCheckpoints:
  """`run_online`'s own state at interval ends, saved and restored.

  Saved (arrays): the dense state, the policy's state, the α the current
  step's plan was made of (`_Switch.alpha`) and, with `record_alphas`, the
  α's so far (stacked, padded to the run's number of checks + 1). Saved
  (JSON): the step, the records, whether training is over, the current
  step's kind and cached module, the (plan, cached module)s compiled (what
  `_choose`'s `max_compiles` reads) and the chunk programs compiled (the
  results' `compilations`). The current `_Switch` is rebuilt from them:
  the plan of its α, its cache from the state (the cached prefix has been
  frozen since the cache was built, so its inputs are the same).
  """

  LABEL = 'driver'

  def __init__(self, checkpointer: checkpoints.Checkpointer,
               runner: runner_lib.Runner, config: OnlineConfig, state: Any,
               checker: _Checker | None, record_alphas: bool):
    self.runner, self.config, self.checker = runner, config, checker
    self.phase = checkpointer.phase(self.LABEL)
    self.max_alphas = (-(-config.steps // config.check_every) + 1
                       if record_alphas else 0)
    self.programs: set[str] = set()  # chunk programs compiled before.
    self._alpha_like = _as_bool(masking.get_mask(state.opt_state))

  def _tree(self, state: Any, switch_alpha: PyTree, alphas: list[PyTree]
            ) -> dict[str, Any]:
    stacked = None if not self.max_alphas else jax.tree.map(
        lambda like, *xs: np.concatenate([
            np.stack([np.asarray(x, bool) for x in xs]) if xs else
            np.zeros((0,) + like.shape, bool),
            np.zeros((self.max_alphas - len(xs),) + like.shape, bool)]),
        self._alpha_like, *alphas)
    return {'state': state,
            'fstate': None if self.checker is None else self.checker.fstate,
            'switch_alpha': _as_bool(switch_alpha), 'alphas': stacked}

  def save(self, t: int, state: Any, history: list[dict[str, Any]],
           alphas: list[PyTree], switch: _Switch, over: bool,
           used: dict[str, _Switch]) -> None:
    """Saves the driver at step `t` (an interval's end), and waits for it."""
    alpha = (switch.alpha if switch.alpha is not None
             else masking.get_mask(state.opt_state))
    phase = switch.phase
    meta = {'t': t, 'history': history, 'over': over,
            'num_alphas': len(alphas),
            'switch': {'active': phase.plan is not None,
                       'plan': _plan_json(phase.plan),
                       'cache_path': (None if phase.program is None
                                      else phase.program.cache_path)},
            'compiled': [[_plan_json(p), path]
                         for p, path in sorted(switch.compiled, key=repr)],
            'programs': sorted(self.programs | _programs(self.runner, used))}
    self.phase.save(t, self._tree(state, alpha, alphas), meta)
    self.phase.wait()  # before the interval's checkpoints are discarded.

  def restore(self, state: Any, log: Callable[[str], None]
              ) -> tuple[Any, int, list[Any], list[PyTree], _Switch, bool] | None:
    """(state, t, records, α's, the current step, over), or None: no save."""
    like = self._tree(state, self._alpha_like, [])
    restored = self.phase.restore(like)
    if restored is None:
      return None
    t, tree, meta = restored
    self.runner.resumed[self.phase.label] = t
    if self.checker is not None:
      self.checker.fstate = tree['fstate']
    state = tree['state']
    compiled = {(_plan_of(p), path) for p, path in meta['compiled']}
    self.programs = set(meta['programs'])
    switch = _Switch(phase_lib.dense(self.runner), compiled)
    if meta['switch']['active']:
      switch = self._active(tree['switch_alpha'], meta['switch'], state,
                            compiled)
    alphas = [jax.tree.map(lambda x, i=i: x[i], tree['alphas'])
              for i in range(meta['num_alphas'])]
    log(f'online [{self.config.criterion}]: resumed at step {t} '
        f'({len(meta["history"])} checks done)')
    return state, t, meta['history'], alphas, switch, meta['over']

  def _active(self, alpha: PyTree, saved: dict[str, Any], state: Any,
              compiled: set[Any]) -> _Switch:
    runner, config = self.runner, self.config
    plan, arrays = active_lib.plan(distributed.fetch_tree(alpha), config.granularity,
                                   buckets=config.buckets,
                                   unit_axes=runner.unit_axes())
    if _plan_json(plan) != saved['plan']:
      raise ValueError(f'online: the saved step\'s plan {saved["plan"]} is not '
                       f'the plan of its saved α ({plan.describe()}); the '
                       'checkpoint is of another version of the driver.')
    phase = phase_lib.with_cache(
        runner, phase_lib.active(runner, plan, arrays['idx'],
                                 saved['cache_path']),
        state, _switch_cost(runner))
    return _Switch(phase, compiled, alpha)


def _as_bool(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jnp.asarray(x, bool), tree)


def _plan_json(plan: active_lib.Plan | None) -> dict[str, Any] | None:
  return None if plan is None else json.loads(json.dumps(
      dataclasses.asdict(plan)))


def _plan_of(saved: dict[str, Any] | None) -> active_lib.Plan | None:
  """The `active.Plan` of `_plan_json`.

  Example:
    >>> p = active_lib.Plan('units', ('a', 'b'), ('full', 'frozen'), (3, 0))
    >>> _plan_of(_plan_json(p)) == p
    True
  """
  if saved is None:
    return None
  fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                            for k, v in saved.items()}
  return active_lib.Plan(**fields)


def _programs(runner: runner_lib.Runner, used: dict[str, _Switch]) -> set[str]:
  """The chunk programs compiled in this process, as names (`_results`)."""
  names = {}
  for sw in used.values():
    phase = sw.phase
    program = ('dense' if phase.plan is None else
               repr((phase.plan, phase.program and phase.program.cache_path)))
    names[phase.run_chunk] = f'{program} run'
    names[phase.collect_chunk] = f'{program} collect'
  names.setdefault(runner.run_chunk, 'dense run')
  names.setdefault(runner.collect_chunk, 'dense collect')
  return {f'{names[fn]} {signature}' for fn, signature in runner.compiled
          if fn in names}


def _make_runner(task: protocol.Task, tx: optax.GradientTransformation,
                 config: OnlineConfig, seeds: tuple[int, ...]
                 ) -> tuple[runner_lib.Runner, freezing.FreezingPolicy | None]:
  """The run's Runner, and its policy (None: criterion 'none').

  A model the active step cannot train fails here, before any work. For
  FreezeOut the optimizer is chained with its annealing of each layer's
  steps.
  """
  criterion = None if config.criterion == 'none' else freezing.get_criterion(
      config.criterion)
  groups = criterion.stats if criterion else frozenset()
  make = lambda tx: runner_lib.Runner(task, tx, config.protocol_config(),
                                      stat_groups=groups, seeds=seeds,
                                      ema_decay=0.95)
  runner = make(tx)
  task_lib.check(task, jax.random.key(seeds[0]))
  if criterion is None:
    return runner, None
  runner.check_active_step()
  policy = make_policy(config, runner)
  if config.criterion == 'freezeout':
    runner = make(optax.chain(tx, freezing.freezeout_annealing(
        policy.params, policy.forward_order(), config.steps, config.t0,
        config.schedule)))
  return runner, policy


class _Checker:
  """The policy's check after an interval: α, set on the state, and shares."""

  def __init__(self, runner: runner_lib.Runner,
               policy: freezing.FreezingPolicy, state: Any):
    self.runner, self.policy = runner, policy
    self.fstate = jax.vmap(policy.init)(state.params)
    self.check = jax.jit(jax.vmap(policy.check, in_axes=(0, None)))

  def start(self, state: Any) -> tuple[Any, PyTree]:
    """(the state with the policy's initial α set, that α)."""
    alpha = jax.vmap(self.policy.alpha)(self.fstate)
    return self.runner.set_alpha(state, alpha), alpha

  def __call__(self, state: Any, t: int) -> tuple[Any, PyTree, list[float]]:
    """(the state with α set, α, the frozen share per seed) at step `t`."""
    runner, cost = self.runner, _switch_cost(self.runner)
    check_args = (self.fstate._replace(stats=state.stats), t)
    runner.precompile(self.check, check_args, cost)
    alpha, self.fstate = self.check(*check_args)
    set_args = (state._replace(stats=self.fstate.stats), alpha)
    runner.precompile(runner.set_alpha, set_args, cost)
    state = runner.set_alpha(*set_args)
    share = jax.vmap(self.policy.frozen_share)(self.fstate)
    return state, alpha, distributed.fetch(share).tolist()


def _results(runner: runner_lib.Runner, config: OnlineConfig, state: Any,
             used: dict[str, _Switch], keep_cases: bool,
             programs: set[str] | None = None) -> dict[str, Any]:
  """The run's costs, compilations, final params and (maybe) timed cases.

  `programs`: the chunk programs an earlier run (this one, resumed) compiled
  (`_programs`); None: none.
  """
  costs = {label: c.record() for label, c in runner.costs.items()}
  chunks = _chunk_functions(runner, used)
  compilations = (sum(1 for key in runner.compiled if key[0] in chunks)
                  if programs is None
                  else len(programs | _programs(runner, used)))
  return {'compilations': compilations,
          'compile_s': sum(c['compile_s'] for c in costs.values()),
          'timing': {'phases': costs}, 'final_params': state.params,
          'cases': (_cases(runner, config, state, used) if keep_cases
                    else {}),
          'config': dataclasses.asdict(config)}


def _interval(runner: runner_lib.Runner, state: Any, switch: _Switch, t: int,
              n: int, criterion: freezing.Criterion | None,
              log: Callable[[str], None],
              phase_checkpoints: checkpoints.PhaseCheckpoints | None = None
              ) -> tuple[Any, float, int]:
  """One interval of `n` steps on the current step.

  Returns the dense state, the interval's training seconds (compilation
  apart) and the steps they timed (`n` less those a resume skipped).
  """
  window = n if criterion is not None and criterion.stats else 0
  label = _label(switch)
  before = _seconds(runner, label)
  state = phase_lib.run_phase(runner, switch.phase, state, t, n, window, log,
                              label, keep_stats=criterion is not None
                              and criterion.keep_stats, consume=True,
                              checkpoints=phase_checkpoints)
  skipped = 0 if phase_checkpoints is None else runner.resumed.get(
      phase_checkpoints.label, t) - t
  return state, _seconds(runner, label) - before, n - skipped


def _switch_cost(runner: runner_lib.Runner) -> costs_lib.PhaseCost:
  """Where the compile time of checks and switches goes."""
  return runner.cost('switches', 'enter/leave')


def _chunk_functions(runner: runner_lib.Runner, used: dict[str, _Switch]
                     ) -> set[Any]:
  """The step programs (training chunks) of the run's steps."""
  fns: set[Any] = {runner.run_chunk, runner.collect_chunk}
  for sw in used.values():
    fns |= {sw.phase.run_chunk, sw.phase.collect_chunk}
  return fns


def _compile_seconds(runner: runner_lib.Runner) -> float:
  return sum(c.compile_s for c in runner.costs.values())


def _label(switch: _Switch) -> str:
  plan = switch.phase.plan
  return 'T (dense)' if plan is None else f'T|α {plan.describe()}'


def _cases(runner: runner_lib.Runner, config: OnlineConfig, state: Any,
           used: dict[str, _Switch]) -> dict[str, Any]:
  """A timed case per step that ran: one interval from the final state."""
  n = jnp.asarray(config.check_every, jnp.int32)
  start = jnp.asarray(0, jnp.int32)
  collect = (config.criterion != 'none'
             and bool(freezing.get_criterion(config.criterion).stats))
  out = {}
  feed = runner.feed(0, len(runner.seeds or ()) or 1, 'timing')
  batches = () if feed is None else (feed.next(config.check_every),)
  for label, sw in used.items():
    chunk = sw.phase.collect_chunk if collect else sw.phase.run_chunk
    args = phase_lib.enter(sw.phase, state)
    run = (lambda chunk=chunk, args=args:
           jax.block_until_ready(chunk(args, start, n, *batches)) and None)
    out[label] = timing.Case(label, label, run, steps=config.check_every)
  return out


def _seconds(runner: runner_lib.Runner, label: str) -> float:
  cost = runner.costs.get(label)
  return 0.0 if cost is None else cost.seconds


def _record(runner: runner_lib.Runner, config: OnlineConfig, state: Any,
            switch: _Switch, t: int, share: list[float], rate: float,
            log: Callable[[str], None], force_eval: bool = False
            ) -> dict[str, Any]:
  evaluate = (config.eval_every == 0 or t % config.eval_every == 0
              or t == config.steps or force_eval)
  metrics = ({m: distributed.fetch(v).tolist()
              for m, v in runner.held_out(state.params).items()}
             if evaluate else {})
  plan = 'dense' if switch.phase.plan is None else switch.phase.plan.describe()
  shown = ', '.join(
      f'{m} {100 * np.mean(v):.2f}%' if m.endswith('accuracy') else
      f'{m} {np.mean(v):.4f}' for m, v in metrics.items())
  log(f'online [{config.criterion}] step {t}/{config.steps}: frozen '
      f'{100 * np.mean(share):.1f}% of the parameters (seeds '
      f'{[round(100 * s, 1) for s in share]}), next: {plan}; '
      f'{rate:.0f} steps/s' + (f'; held-out {shown}' if shown else ''))
  return {'step': t, 'frozen_share': share, 'plan': plan, 'steps_per_s': rate,
          'test_accuracy': metrics.get('test_accuracy'),
          'metrics': metrics or None}
