"""The main job with online freezing: `experiments/mnist.py --freeze=...`.

Runs `online.run_online` with the chosen criterion and, for reference, dense
training (`criterion='none'`) for the same number of steps, both evaluated on
the held-out split at every check, and reports the frozen share over time,
the final accuracies, the training wall-clock (each interval's steps timed
after compilation; evaluation left out) and the time each run takes to reach
the dense run's final accuracy. The two runs are timed one after the other,
not interleaved: `experiments/online_benchmark.py` compares them side by
side.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from paramsel_jax.lab import experiment
from paramsel_jax import io as io_lib
from paramsel_jax.protocol import online
from paramsel_jax.optim import optimizers
from paramsel_jax import report
from paramsel_jax.train import timing


def curve(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(steps, wall-clock seconds, test accuracy per seed) at the checks."""
  checks = run['checks']
  steps = np.asarray([c['step'] for c in checks], float)
  seconds = timing.wall_clock(np.diff(steps, prepend=0.0),
                              [c['steps_per_s'] for c in checks])
  acc = np.asarray([c['test_accuracy'] for c in checks], float)
  return steps, seconds, acc


def compare(dense: dict[str, Any], frozen: dict[str, Any]) -> dict[str, Any]:
  """Time to the dense run's final accuracy, for both runs, and the ratio.

  Example (one seed; the frozen run reaches 0.9 at its second check, in
  100 / 50 + 100 / 200 = 2.5 s, the dense run in 100 / 50 + 100 / 50 = 4 s):
    >>> check = lambda step, rate, acc: {'step': step, 'steps_per_s': rate,
    ...                                  'test_accuracy': [acc]}
    >>> dense = {'checks': [check(100, 50.0, 0.5), check(200, 50.0, 0.9)]}
    >>> frozen = {'checks': [check(100, 50.0, 0.6), check(200, 200.0, 0.95)]}
    >>> compare(dense, frozen)
    {'target_accuracy': [0.9], 'dense_s': [4.0], 'frozen_s': [2.5], 'speedup': [1.6]}
  """
  target = curve(dense)[2][-1]

  def time_to_target(run):
    _, seconds, acc = curve(run)
    return report.times_to_reach(acc, seconds, target)

  t_dense, t_frozen = time_to_target(dense), time_to_target(frozen)
  return {'target_accuracy': target.tolist(), 'dense_s': t_dense,
          'frozen_s': t_frozen, 'speedup': report.speedups(t_dense, t_frozen)}


def format_summary(name: str, dense: dict[str, Any], frozen: dict[str, Any],
                   comparison: dict[str, Any], split: str = 'test') -> str:
  """A table: one row per run; `split` names the evaluated split."""
  pm = lambda v, scale=100.0, none='diverged': report.plus_minus(
      report.summarize([np.nan if x is None else x for x in v]), scale, 2,
      none=none)
  rows = []
  for label, run, t in (('dense T', dense, comparison['dense_s']),
                        (f'online {name}', frozen, comparison['frozen_s'])):
    steps, seconds, acc = curve(run)
    share = run['checks'][-1]['frozen_share']
    rows.append((label, pm(acc[-1]), pm(share), f'{seconds[-1]:.1f}',
                 f'{steps[-1] / seconds[-1]:.0f}', pm(t, 1.0, 'never'),
                 run['compilations']))
  header = ('run', f'{split} acc %', 'frozen at the end %', 'train s',
            'mean steps/s', 's to dense final acc', 'compiled steps')
  speedup = comparison['speedup']
  if all(v is None for v in speedup):
    verdict = (f'{name} never reached it within the steps (0/{len(speedup)} '
               'seeds).')
  else:
    verdict = (f'{pm(speedup, 1.0)}× sooner with {name} (per seed; the runs '
               'were timed one after the other).')
  return (report.format_table(header, rows) + '\n' +
          'time to the dense final accuracy: ' + verdict)


def validate_settings(config: experiment.ExperimentConfig,
                      settings: online.OnlineConfig) -> None:
  """Every check of the run's `FreezingPolicy`, without loading the data.

  `OnlineConfig` checks its own fields when made; the criterion's settings
  (`max_frozen`, FreezeOut's `t0` and `schedule`, ...) are checked by
  `freezing.FreezingPolicy`, which needs the params' shapes: this builds it
  over the model's shapes (`experiment.param_shapes`), so a bad setting is
  refused before the data are loaded and before the dense reference run.

  Example:
    >>> validate_settings(experiment.ExperimentConfig(),
    ...                   online.OnlineConfig(max_frozen=1.5))
    Traceback (most recent call last):
    ...
    ValueError: max_frozen=1.5; accepted: a fraction in (0, 1], or None.
  """
  if settings.criterion == 'none':
    return
  apply_fn, shapes, example = experiment.model_outline(config)
  online.policy_for(settings, shapes, apply_fn=apply_fn, example=example)


def run_online_experiment(config: experiment.ExperimentConfig,
                          settings: online.OnlineConfig,
                          output_dir: str | None = None,
                          log: Callable[[str], None] = print,
                          checkpointer: Any = None) -> dict[str, Any]:
  """The online run and its dense reference; prints, writes, returns both.

  `checkpointer`: a `checkpoints.Checkpointer` of this run (its identity:
  the resolved config and `settings`): both runs save and resume
  (`online.run_online`), as its scopes 'dense' and the criterion's name.
  """
  experiment.validate_config(config)
  validate_settings(config, settings)
  config = experiment.resolved(config)
  dataset = experiment.load_dataset(config)
  task = experiment.make_task(config, dataset)
  tx = optimizers.create_optimizer(config.optimizer,
                                   num_data=len(dataset.train.labels))
  axis = experiment.resolve_seed_axis(settings.seed_axis, config.model)
  settings = dataclasses.replace(settings, seed_axis=axis)
  log(f'{config.dataset} / {config.model} / {config.optimizer.name}: '
      f'{settings.steps} steps, checks every {settings.check_every}, '
      f'criterion {settings.criterion} at granularity {settings.granularity}; '
      f'dense reference first')
  scope = lambda name: (None if checkpointer is None
                        else checkpointer.scope(name))
  dense = online.run_online(task, tx, dataclasses.replace(
      settings, criterion='none'), config.seeds, log=log,
                            checkpointer=scope('dense'))
  frozen = online.run_online(task, tx, settings, config.seeds, log=log,
                             checkpointer=scope(settings.criterion))
  comparison = compare(dense, frozen)
  log('')
  log(format_summary(settings.criterion, dense, frozen, comparison,
                     config.eval_split))
  results = {'config': dataclasses.asdict(config),
             'online': dataclasses.asdict(settings),
             'dense': _plain(dense), 'frozen': _plain(frozen),
             'comparison': comparison,
             'environment': experiment.environment()}
  if output_dir is not None:
    path = experiment.results_path(config, output_dir).replace(
        '.json', f'_online_{settings.criterion}.json')
    io_lib.write_json_atomic(results, path)
    log(f'results written to {path}')
  return results


def _plain(run: dict[str, Any]) -> dict[str, Any]:
  out = {k: v for k, v in run.items() if k not in ('final_params', 'alphas')}
  out['num_params'] = sum(int(np.prod(np.shape(x)[1:]))
                          for x in jax.tree.leaves(run['final_params']))
  return out
