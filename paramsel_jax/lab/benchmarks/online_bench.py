"""Time-to-accuracy of online freezing: dense, the fixed-η0 protocol, each criterion.

Every method is an `online.run_online` run of S steps, evaluated on the test
split at every check: dense training (`'none'`), the paper's fixed protocol
(`'fixed'`: at η0 all but the best k/N of the units by Σ|g| freeze, the
topgrad α), and the online criteria. Each run keeps a timed case per step
program it ran; all of them are then timed side by side in interleaved rounds
(`timing.run_rounds`), and a run's wall-clock is rebuilt from those rates:
`Σ_intervals steps / rate(step that ran) + the interval's host overhead`
(checks, switches, cache builds; compilation is left out of both and
reported apart). The time to the dense run's final test accuracy is the
wall-clock at the first check reaching it, per seed; speedups divide the
dense run's own time by it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import optax

from paramsel_jax.protocol import checks
from paramsel_jax.lab import experiment
from paramsel_jax.freeze import policy as freezing
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.protocol import online
from paramsel_jax.lab import progress as progress_lib
from paramsel_jax import report
from paramsel_jax.lab.benchmarks import time_to_accuracy
from paramsel_jax.train import timing


@dataclasses.dataclass(frozen=True)
class Method:
  """One method of the comparison: a name and its online settings."""

  name: str
  criterion: str
  granularity: str = 'unit'
  threshold: float | None = None
  max_frozen: float | None = None
  cache_prefix: bool = True
  blocks: tuple[str, ...] | None = None  # lisa, badam (None: the model's).


@dataclasses.dataclass(frozen=True)
class OnlineBenchConfig:
  """The comparison on one model and data set; checked when made."""

  model: str = 'lenet300'
  dataset: str = 'mnist'
  steps: int = 4000  # S: the dense run's length.
  method_steps: int | None = None  # the others' (None: S); they may stop sooner.
  check_every: int = 250
  eta0: int = 1000  # the fixed protocol's η0.
  methods: tuple[Method, ...] = ()
  seeds: tuple[int, ...] = (0, 1, 2)
  repeats: int = 5
  learning_rate: float = 1e-3
  data_dir: str | None = None

  def __post_init__(self):
    checks.fields(self, ('steps', 'check_every', 'eta0', 'repeats'),
                  checks.integer, at_least=1)
    if self.method_steps is not None and (
        self.method_steps < self.steps or self.method_steps % self.check_every):
      raise ValueError(f'method_steps={self.method_steps}; accepted: None, or '
                       f'a multiple of check_every={self.check_every} >= '
                       f'steps={self.steps}.')
    if self.steps % self.check_every:
      raise ValueError(f'steps={self.steps}; accepted: a multiple of '
                       f'check_every={self.check_every}.')
    if self.eta0 % self.check_every:
      raise ValueError(f'eta0={self.eta0}; accepted: a multiple of '
                       f'check_every={self.check_every}.')
    names = [m.name for m in self.methods]
    if len(set(names)) != len(names):
      raise ValueError(f'methods {names} repeat a name.')


DEFAULT_METHODS = ('dense', 'fixed:unit', 'psgld:unit', 'apf:unit',
                   'autofreeze:layer', 'freezeout:layer')


def make_methods(specs: Sequence[str] = DEFAULT_METHODS, k: float = 0.1,
                 thresholds: Mapping[str, float] | None = None
                 ) -> tuple[Method, ...]:
  """Methods from `criterion:granularity` specs ('dense': no freezing).

  'fixed' is the paper's protocol: at η0 all but the best k/N of the groups
  by Σ|g| freeze. `thresholds`: per criterion, its threshold (absent: its
  default).

  >>> [m.name for m in make_methods(['dense', 'psgld:layer'], thresholds={'psgld': 3})]
  ['dense', 'psgld (layer, threshold 3)']
  """
  checks.real('k', k, above=0, below=1)
  t = dict(thresholds or {})
  out = []
  for spec in specs:
    criterion, _, gran = spec.partition(':')
    if criterion == 'dense' and not gran:
      out.append(Method('dense', 'none'))
      continue
    if criterion not in freezing.CRITERIA or (
        gran not in granularity_lib.GRANULARITIES):
      raise ValueError(
          f'methods contains {spec!r}; accepted: dense, or CRITERION:'
          f'GRANULARITY with CRITERION one of '
          f'{", ".join(sorted(freezing.CRITERIA))} '
          f'and GRANULARITY one of {", ".join(granularity_lib.GRANULARITIES)}.')
    if criterion == 'fixed':
      out.append(Method(f'fixed η0 topgrad {gran} k={k:.0%}', 'fixed', gran,
                        max_frozen=1 - k))
    else:
      at = '' if criterion not in t else f', threshold {t[criterion]:g}'
      out.append(Method(f'{criterion} ({gran}{at})', criterion, gran,
                        t.get(criterion)))
  return tuple(out)


def default_methods(k: float = 0.1,
                    thresholds: Mapping[str, float] | None = None
                    ) -> tuple[Method, ...]:
  """Dense, the fixed protocol at k/N, and the four criteria."""
  return make_methods(DEFAULT_METHODS, k, thresholds)


def _settings(config: OnlineBenchConfig, method: Method) -> online.OnlineConfig:
  steps = (config.steps if method.criterion == 'none'
           else config.method_steps or config.steps)
  return online.OnlineConfig(
      criterion=method.criterion, steps=steps,
      check_every=config.check_every, threshold=method.threshold,
      max_frozen=method.max_frozen, granularity=method.granularity,
      cache_prefix=method.cache_prefix, freeze_at=config.eta0,
      blocks=method.blocks,
      seed_axis=experiment.resolve_seed_axis('auto', config.model))


def compare_methods(config: OnlineBenchConfig,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
  """All methods' runs, timed side by side; returns `method_results`."""
  exp = experiment.resolved(experiment.ExperimentConfig(
      dataset=config.dataset, model=config.model, seeds=config.seeds,
      data_dir=config.data_dir))
  dataset = experiment.load_dataset(exp)
  task = experiment.make_task(exp, dataset)
  tx = optax.adam(config.learning_rate)
  runs = {}
  methods = with_blocks(config.methods or default_methods(), exp)
  progress = progress_lib.Progress(
      sum(_settings(config, m).steps for m in methods), log,
      prefix=f'{config.dataset} / {config.model}, all methods: ')
  for method in methods:
    log(f'{config.dataset} / {config.model}: {method.name}')
    settings = _settings(config, method)
    runs[method.name] = online.run_online(
        task, tx, settings, config.seeds,
        log=lambda s: log('  ' + s) if s.startswith('online') else None,
        keep_cases=True)
    progress.update(settings.steps, f'{method.name} done')
  progress.close()
  cases = [c for r in runs.values() for c in r['cases'].values()]
  time_to_accuracy.measure_rates(cases, config.repeats, log)
  return method_results(config, runs)


def with_blocks(methods: Sequence[Method], exp: experiment.ExperimentConfig
                ) -> tuple[Method, ...]:
  """`methods`, each block criterion given every layer as a block.

  The image models are plain stacks of layers (no repeated blocks; see
  `freeze.blocks`), so LISA and BAdam train one layer at a time here (LISA:
  `gamma` random layers, nothing always trained). A method with its own
  `blocks` keeps them.
  """
  block_criteria = {'lisa', 'badam'}
  if not any(m.criterion in block_criteria and m.blocks is None
             for m in methods):
    return tuple(methods)
  apply_fn, shapes, example = experiment.model_outline(exp)
  layers = freezing.forward_layer_order(apply_fn, shapes, example)
  return tuple(dataclasses.replace(m, blocks=tuple(layers))
               if m.criterion in block_criteria and m.blocks is None else m
               for m in methods)


def _wall_clock(run: dict[str, Any]) -> np.ndarray:
  """Seconds at each check (`timing.wall_clock` of its intervals).

  Each interval's steps over the timed rate of the step that ran, plus the
  host overhead around the interval.
  """
  intervals = run['checks']
  return timing.wall_clock(
      [c['steps_run'] for c in intervals],
      [run['cases'][c['label']].median_rate for c in intervals],
      [c['overhead_s'] for c in intervals])


def _index_at(run: dict[str, Any], step: int) -> int:
  """The last check at or before `step` (a run that stopped early: its last)."""
  steps = [c['step'] for c in run['checks']]
  return max([i for i, s in enumerate(steps) if s <= step] or [0])


def method_results(config: OnlineBenchConfig,
                   runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """Per method: curve, wall-clock, time to the dense final accuracy."""
  dense = runs['dense'] if 'dense' in runs else next(iter(runs.values()))
  acc_of = lambda r: np.asarray([c['test_accuracy'] for c in r['checks']], float)
  target = acc_of(dense)[-1]
  dense_times = report.times_to_reach(acc_of(dense), _wall_clock(dense), target)
  rows = []
  for name, run in runs.items():
    acc, wall = acc_of(run), _wall_clock(run)
    times = report.times_to_reach(acc, wall, target)
    rows.append({
        'name': name, 'criterion': run['config']['criterion'],
        'granularity': run['config']['granularity'],
        'steps': [c['step'] for c in run['checks']],
        'wall_s': wall.tolist(), 'test_accuracy': acc.tolist(),
        'frozen_share': [c['frozen_share'] for c in run['checks']],
        'plans': [c['plan'] for c in run['checks']],
        'rates': {k: c.median_rate for k, c in run['cases'].items()},
        'final_accuracy': acc[-1].tolist(),
        'accuracy_at_S': acc[_index_at(run, config.steps)].tolist(),
        'frozen_at_S': run['checks'][_index_at(run, config.steps)]['frozen_share'],
        'time_to_dense_final_s': times,
        'speedup': report.speedups(dense_times, times),
        'compilations': run['compilations'], 'compile_s': run['compile_s']})
  return {'config': dataclasses.asdict(config), 'runs': rows,
          'dense_final_accuracy': target.tolist()}


def _ci(values: Sequence[float | None], scale: float = 1.0, digits: int = 2,
        none: str = 'diverged') -> str:
  s = report.summarize([np.nan if v is None else v for v in values])
  return report.plus_minus(s, scale, digits, spread='ci95', none=none)


def methods_table(result: dict[str, Any]) -> str:
  """Markdown: a row per method, mean ± 95% CI over seeds."""
  s_ = result['config']['steps']
  header = ('method', f'test acc at S={s_} %', 'frozen at S %', 'test acc at end %',
            'steps run', 'train s', 's to dense final acc', 'speedup',
            'compiled steps')
  rows = [(r['name'], _ci(r['accuracy_at_S'], 100), _ci(r['frozen_at_S'], 100),
           _ci(r['final_accuracy'], 100), str(r['steps'][-1]),
           f'{r["wall_s"][-1]:.1f}',
           _ci(r['time_to_dense_final_s'], none='never'),
           _ci(r['speedup'], none='never'), str(r['compilations']))
          for r in result['runs']]
  return report.format_table(header, rows, markdown=True)


def plot_methods(result: dict[str, Any], path: str) -> None:
  """Test accuracy against wall-clock, one line per method (mean of seeds)."""
  cfg, first = result['config'], result['runs'][0]
  time_to_accuracy.plot_curves(
      [time_to_accuracy.Curve(r['name'], r['wall_s'], r['test_accuracy'],
                              bold=r['criterion'] == 'none')
       for r in result['runs']],
      result['dense_final_accuracy'], path,
      title=(f'{cfg["dataset"]} / {cfg["model"]}: online freezing, '
             f'{len(cfg["seeds"])} seeds'),
      xlabel='training wall-clock (s; steps/s timed side by side)',
      bottom=100 * np.mean(first['test_accuracy'][len(first['steps']) // 4]) - 1)
