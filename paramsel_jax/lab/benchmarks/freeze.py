"""Time-to-accuracy of freezing: dense `T` for S steps vs the protocol's cheap `T|α`.

For one model and data set, all seeds in one program:

1. the dense run: S steps of `T` (the η0 statistics collected over the last
   `window` steps before η0, which changes no number), the test accuracy
   evaluated every `eval_every` steps;
2. for every variant (granularity × selector × k/N, and at element
   granularity both today's `masked` step and the packed `active` one): from
   the dense state at η0, α is selected and η1 = S − η0 steps of `T|α` run,
   evaluated at the same steps;
3. the speed of every step function, measured side by side: each variant's
   compiled chunk against the dense one in interleaved rounds
   (`timing.run_rounds`); FLOPs per step from XLA's cost analysis of the
   compiled chunk; the optimizer's state in bytes per seed.

Wall-clock of a run is derived from the measured rates, so that evaluation
and compilation stay out and machine noise hits every variant alike:
`t(step) = step / rate_T` up to η0, then `+ select_s + (step − η0) /
rate_variant`. The time to the dense run's final accuracy is the first
evaluation at which a seed reaches its dense run's final test accuracy; the
speedup divides the dense run's own time to it (its first evaluation at that
accuracy, S at the latest) by the variant's.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.train import costs as costs_lib
from paramsel_jax.lab import experiment
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.lab import progress as progress_lib
from paramsel_jax.protocol import checks
from paramsel_jax.protocol import protocol
from paramsel_jax.protocol import config as protocol_config
from paramsel_jax import report
from paramsel_jax.lab.benchmarks import time_to_accuracy
from paramsel_jax.train import phase as phase_lib
from paramsel_jax.train import runner as runner_lib
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.train import timing

PyTree = Any


@dataclasses.dataclass(frozen=True)
class FreezeConfig:
  """One model's time-to-accuracy benchmark; checked when made.

  Attributes:
    model, dataset: what is trained (`models.MODELS`, `data.DATASETS`).
    steps: S, the dense run's length; eta0: the steps before α.
    variant_steps: how long the frozen runs train (default S): longer lets a
      cheaper run reach the dense final accuracy, which is the question.
    eval_every: steps between test evaluations (both must divide S - eta0
      and eta0).
    granularities, selectors, ks: the variants (k as fractions of N).
    budgets: what k counts at unit/layer granularity: 'params' (a share of
      the parameters), 'flops' (a share of the weight-gradient FLOPs) and/or
      'backward' (a cap on the share of the dense backward FLOPs; both
      `ProtocolConfig.budget`); element variants always count parameters.
    masked_element: also run today's dense `masked` step at element
      granularity.
    cache_prefix: time the frozen-prefix cached step where one is possible.
    seeds: all in one program.
    learning_rate, batch_size, window: the training (Adam).
    time_steps: steps per timed call; repeats: interleaved timed rounds.
    data_dir: the data cache; synthetic_size: for dataset 'synthetic'.
  """

  model: str = 'lenet300'
  dataset: str = 'mnist'
  steps: int = 4000
  variant_steps: int | None = None
  eta0: int = 1000
  eval_every: int = 250
  granularities: tuple[str, ...] = ('element', 'unit', 'layer')
  selectors: tuple[str, ...] = ('topgrad',)
  ks: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)
  budgets: tuple[str, ...] = ('params',)
  masked_element: bool = True
  cache_prefix: bool = True
  seeds: tuple[int, ...] = (0, 1, 2)
  learning_rate: float = 1e-3
  batch_size: int = 128
  window: int = 100
  time_steps: int = 200
  repeats: int = 5
  data_dir: str | None = None
  synthetic_size: int = 2048

  def __post_init__(self):
    checks.fields(self, ('steps', 'eta0', 'eval_every', 'batch_size', 'window',
                         'time_steps', 'repeats'), checks.integer, at_least=1)
    if self.eta0 >= self.steps or self.eta0 % self.eval_every or (
        self.steps - self.eta0) % self.eval_every:
      raise ValueError(f'eta0={self.eta0}, steps={self.steps}, eval_every='
                       f'{self.eval_every}; accepted: eta0 < steps, both '
                       'multiples of eval_every.')
    if self.variant_steps is not None and (
        self.variant_steps < self.steps or self.variant_steps % self.eval_every):
      raise ValueError(f'variant_steps={self.variant_steps}; accepted: None, '
                       f'or a multiple of eval_every >= steps={self.steps}.')
    if self.window > self.eta0:
      raise ValueError(f'window={self.window} > eta0={self.eta0}.')
    for g in self.granularities:
      granularity_lib.check_granularity(g)
    if not self.budgets:
      raise ValueError(f'budgets={self.budgets!r}; accepted: a non-empty '
                       f'subset of {protocol_config.BUDGETS}.')
    for b in self.budgets:
      checks.one_of('budgets', b, protocol_config.BUDGETS)
    protocol.check_selector_names(self.selectors)
    for k in self.ks:
      checks.real('ks', k, above=0)
      if k > 1:
        raise ValueError(f'ks contains {k}; accepted: fractions 0 < k <= 1.')
    checks.real('learning_rate', self.learning_rate, above=0)
    protocol.check_seeds(self.seeds)

  def experiment_config(self) -> experiment.ExperimentConfig:
    """The data and model as an `ExperimentConfig` (for the task)."""
    return experiment.resolved(experiment.ExperimentConfig(
        dataset=self.dataset, model=self.model, seeds=self.seeds,
        data_dir=self.data_dir, synthetic_size=self.synthetic_size))

  def protocol_config(self, granularity: str, step: str,
                      budget: str = 'params') -> protocol.ProtocolConfig:
    """The protocol settings of one variant."""
    axis = experiment.resolve_seed_axis('auto', self.model)
    return protocol.ProtocolConfig(
        eta0=self.eta0, eta1=(self.variant_steps or self.steps) - self.eta0,
        window=self.window,
        batch_size=self.batch_size, chunk_size=self.eval_every,
        seed_axis=axis, granularity=granularity, step=step, budget=budget,
        cache_prefix=False)


@dataclasses.dataclass
class Run:
  """One trajectory: test accuracy per seed at the evaluation steps."""

  name: str
  steps: list[int]
  accuracy: list[list[float]]  # per evaluation, per seed.
  case: timing.Case  # the timed step.
  flops_per_step: float
  opt_state_bytes: int
  granularity: str = 'dense'
  selector: str = ''
  k: float | None = None
  budget: str = 'params'
  step: str = 'T'
  plan: str = ''
  alpha_count: list[int] = dataclasses.field(default_factory=list)
  select_s: float = 0.0
  cached_case: timing.Case | None = None
  cached_flops: float = float('nan')


def _accuracy(runner: runner_lib.Runner, params: PyTree) -> list[float]:
  """Per-seed test accuracy only (the train split is not evaluated)."""
  return np.asarray(runner.test_accuracy(params)).tolist()


def _chunk_case(name: str, chunk: Callable, state: Any, start: int,
                steps: int) -> timing.Case:
  as_i32 = lambda x: jnp.asarray(x, jnp.int32)
  def run():
    jax.block_until_ready(chunk(state, as_i32(start), as_i32(steps)))
  return timing.Case(name, name, run, steps=steps, group='all')


def dense_run(config: FreezeConfig, runner: runner_lib.Runner, keys: jax.Array,
              log: Callable[[str], None]) -> tuple[Run, Any, Any]:
  """The dense trajectory; returns it, the state at η0 and the final state."""
  state = runner.init(keys)
  steps, acc, state_eta0 = [], [], None
  as_i32 = lambda x: jnp.asarray(x, jnp.int32)
  progress = progress_lib.Progress(config.steps, log, prefix='  dense T: ')
  t = 0
  while t < config.steps:
    n = config.eval_every
    if t + n == config.eta0:  # collect the selectors' window before η0.
      state, _ = runner.run_chunk(state, as_i32(t), as_i32(n - config.window))
      state, _ = runner.collect_chunk(state, as_i32(t + n - config.window),
                                      as_i32(config.window))
    else:
      state, _ = runner.run_chunk(state, as_i32(t), as_i32(n))
    t += n
    steps.append(t)
    acc.append(_accuracy(runner, state.params))
    progress.update(n, f'test accuracy {100 * np.mean(acc[-1]):.2f}%')
    if t == config.eta0:
      state_eta0 = state
  progress.close()
  log(f'  dense: final test accuracy {100 * np.mean(acc[-1]):.2f}% '
      f'(seeds {[round(100 * a, 2) for a in acc[-1]]})')
  seconds, flops = costs_lib.flops(runner.run_chunk, state, as_i32(0),
                                   as_i32(config.time_steps))
  del seconds
  case = _chunk_case('dense T', runner.run_chunk, state, config.eta0,
                      config.time_steps)
  run = Run('dense T', steps, acc, case, runner.flops_per_seed(flops, len(keys)),
            costs_lib.optimizer_bytes(state.opt_state, len(keys)))
  return run, state_eta0, state


def variant_run(config: FreezeConfig, runner: runner_lib.Runner, state_eta0: Any,
                granularity: str, step: str, selector: str, k: float,
                keys: jax.Array, log: Callable[[str], None]) -> Run:
  """One variant's η1 trajectory from the dense state at η0."""
  budget = runner.config.budget
  count = (k if budget in protocol_config.FLOP_BUDGETS else
           selectors_lib.resolve_count(k, _num_params(state_eta0), 'k'))
  tic = time.perf_counter()
  alpha = runner.select(state_eta0, selectors_lib.get_selector(selector),
                        'alpha', count, state_eta0.stats, name=selector)
  start = runner.start_phase1(state_eta0, alpha)
  jax.block_until_ready(start)
  select_s = time.perf_counter() - tic
  name = f'{granularity} {step} {selector} k={k:.0%}' + (
      {'flops': ' of FLOPs', 'backward': ' of backward FLOPs'}.get(budget, ''))
  as_i32 = lambda x: jnp.asarray(x, jnp.int32)
  steps, acc = [], []
  phase = phase_lib.for_alpha(runner, start, alpha, name, lambda _: None)
  chunk, state = phase.run_chunk, phase_lib.enter(phase, start)
  to_params = lambda s: phase_lib.leave(phase, s, start,
                                        state_eta0.stats).params
  plan_text = ('dense step, frozen updates zeroed' if phase.plan is None
               else phase.plan.describe())
  t, end = config.eta0, config.variant_steps or config.steps
  progress = progress_lib.Progress(end - t, log, prefix=f'  {name}: ')
  while t < end:
    state, _ = chunk(state, as_i32(t), as_i32(config.eval_every))
    t += config.eval_every
    steps.append(t)
    acc.append(_accuracy(runner, to_params(state)))
    progress.update(config.eval_every,
                    f'test accuracy {100 * np.mean(acc[-1]):.2f}%')
  progress.close()
  _, flops = costs_lib.flops(chunk, state, as_i32(0), as_i32(config.time_steps))
  run = Run(name, steps, acc,
            _chunk_case(name, chunk, state, config.eta0, config.time_steps),
            runner.flops_per_seed(flops, len(keys)),
            costs_lib.optimizer_bytes(state.opt_state, len(keys)),
            granularity, selector, k, budget, step, plan_text,
            np.asarray(runner_lib.count_per_seed(alpha)).tolist(), select_s)
  if step == 'active' and config.cache_prefix:
    _add_cached_case(config, runner, run, phase, start, state, keys)
  log(f'  {name}: {plan_text}; final test accuracy '
      f'{100 * np.mean(acc[-1]):.2f}%')
  return run


def _num_params(state: Any) -> int:
  return sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state.params))


def _add_cached_case(config: FreezeConfig, runner: runner_lib.Runner, run: Run,
                     phase: phase_lib.Phase, start: Any, state: Any,
                     keys: jax.Array) -> None:
  """The same variant's step with its frozen prefix cached, if it has one."""
  assert phase.plan is not None
  path = active_lib.cacheable_prefix(phase.plan, runner.call_order())
  if path is None:
    return
  phase = phase_lib.with_cache(
      runner, phase_lib.active(runner, phase.plan, phase.idx, path), start,
      costs_lib.PhaseCost(run.name + ' cached'))
  cached = state._replace(cache=phase.cache)
  as_i32 = lambda x: jnp.asarray(x, jnp.int32)
  _, flops = costs_lib.flops(phase.run_chunk, cached, as_i32(0),
                             as_i32(config.time_steps))
  run.cached_flops = runner.flops_per_seed(flops, len(keys))
  run.cached_case = _chunk_case(run.name + ' cached', phase.run_chunk, cached,
                                config.eta0, config.time_steps)
  run.plan += f'; {path} inputs cached'


def _timed_cases(runs: Sequence[Run]) -> list[timing.Case]:
  """Every run's step (and cached step), to be timed side by side."""
  return [r.case for r in runs] + [r.cached_case for r in runs
                                   if r.cached_case is not None]


def _wall_clock(run: Run, dense: Run, eta0: int,
                cached: bool = False) -> np.ndarray:
  """Seconds of training at each of the run's evaluation steps."""
  if run is dense:
    return time_to_accuracy.two_phase_wall_clock(run.steps,
                                                 dense.case.median_rate)
  case = run.cached_case if cached and run.cached_case else run.case
  return time_to_accuracy.two_phase_wall_clock(
      run.steps, dense.case.median_rate, eta0, run.select_s, case.median_rate)


def compare_variants(config: FreezeConfig,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs the dense trajectory, every variant, and the timing; returns all.

  Returns:
    `variant_results`: a row per run, the dense run first.
  """
  exp = config.experiment_config()
  dataset = experiment.load_dataset(exp)
  task = experiment.make_task(exp, dataset)
  tx = optax.adam(config.learning_rate)
  names = tuple(config.selectors)
  groups = frozenset().union(*(selectors_lib.get_selector(n).stats for n in names))
  runners = {}
  def runner_for(gran: str, step: str, budget: str = 'params'
                 ) -> runner_lib.Runner:
    if (gran, step, budget) not in runners:
      runners[(gran, step, budget)] = runner_lib.Runner(
          task, tx, config.protocol_config(gran, step, budget),
          stat_groups=groups, seeds=config.seeds)
    return runners[(gran, step, budget)]
  keys = jax.vmap(jax.random.key)(jnp.asarray(config.seeds, jnp.uint32))
  base = runner_for('element', 'masked')
  log(f'{config.dataset} / {config.model}: dense T for {config.steps} steps, '
      f'α after {config.eta0}; seeds {list(config.seeds)}')
  dense, state_eta0, _ = dense_run(config, base, keys, log)
  runs = [dense]
  for gran in config.granularities:
    step_kinds = (['masked'] if gran == 'element' and config.masked_element
                  else []) + ['active']
    budgets = ('params',) if gran == 'element' else config.budgets
    for step in step_kinds:
      for budget in budgets:
        for selector in config.selectors:
          for k in config.ks:
            runs.append(variant_run(
                config, runner_for(gran, step, budget), state_eta0, gran, step,
                selector, k, keys, log))
  time_to_accuracy.measure_rates(_timed_cases(runs), config.repeats, log)
  return variant_results(config, runs, _num_params(state_eta0))


def variant_results(config: FreezeConfig, runs: Sequence[Run],
                    num_params: int) -> dict[str, Any]:
  """Per run: speed ratios, accuracies, time to the dense final accuracy."""
  dense = runs[0]
  target = np.asarray(dense.accuracy[-1])
  dense_t = _wall_clock(dense, dense, config.eta0)
  # The same criterion for every run: the first evaluation reaching the
  # dense run's final accuracy (for the dense run itself: S or earlier).
  dense_reach = report.times_to_reach(dense.accuracy, dense_t, target)
  rows = []
  for run in runs:
    acc = np.asarray(run.accuracy)
    row = {'name': run.name, 'granularity': run.granularity,
           'selector': run.selector, 'k': run.k, 'budget': run.budget,
           'step': run.step,
           'plan': run.plan, 'alpha_count': run.alpha_count,
           'steps_per_s': run.case.median_rate,
           'ratio_vs_T': timing.paired_ratio(run.case, dense.case),
           'flops_per_step': run.flops_per_step,
           'flops_vs_T': run.flops_per_step / dense.flops_per_step,
           'opt_state_bytes': run.opt_state_bytes,
           'opt_state_vs_T': run.opt_state_bytes / dense.opt_state_bytes,
           'select_s': run.select_s, 'eval_steps': run.steps,
           'test_accuracy': acc.tolist(),
           'final_accuracy': acc[-1].tolist(),
           'final_delta_pt': (100 * (acc[-1] - target)).tolist()}
    at_s = acc[run.steps.index(config.steps)]  # equal steps: S.
    row['accuracy_at_S'] = at_s.tolist()
    row['delta_at_S_pt'] = (100 * (at_s - target)).tolist()
    for cached in (False, True):
      if cached and run.cached_case is None:
        continue
      t = _wall_clock(run, dense, config.eta0, cached)
      times = report.times_to_reach(acc, t, target)
      suffix = '_cached' if cached else ''
      row[f'time_to_dense_final_s{suffix}'] = times
      row[f'speedup_to_dense_final{suffix}'] = report.speedups(dense_reach,
                                                               times)
      row[f'wall_s{suffix}'] = float(t[-1])
      # Equal wall-clock: this run's accuracy when the dense run ends (its
      # last value if it ended sooner).
      row[f'accuracy_at_dense_wall{suffix}'] = [
          float(np.interp(dense_t[-1], t, acc[:, s]))
          for s in range(acc.shape[1])]
      row[f'delta_at_dense_wall_pt{suffix}'] = [
          100 * (a - b) for a, b in zip(row[f'accuracy_at_dense_wall{suffix}'],
                                        target)]
    if run.cached_case is not None:
      row['cached_steps_per_s'] = run.cached_case.median_rate
      row['cached_ratio_vs_T'] = timing.paired_ratio(run.cached_case, dense.case)
      row['cached_flops_vs_T'] = run.cached_flops / dense.flops_per_step
    rows.append(row)
  return {'config': dataclasses.asdict(config), 'runs': rows,
          'num_params': num_params, 'dense_final_accuracy': target.tolist()}
