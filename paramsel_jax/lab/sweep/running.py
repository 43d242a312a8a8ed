"""Running a sweep: only the (selector, k) groups that still miss a cell.

A restarted sweep computes which groups of each (model, optimizer) still miss
a cell and passes only those to `run_protocol` as `groups=`. The state after
η0 is saved once per run (`CellStore.state_dir`, named by
`grid.eta0_identity`) and restored, bit for bit, by every later invocation
that shares it: a restarted or extended sweep never recomputes η0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax

from paramsel_jax.train import checkpoints
from paramsel_jax import data as data_lib
from paramsel_jax.lab import experiment
from paramsel_jax.train import mesh as mesh_lib
from paramsel_jax import models as models_lib
from paramsel_jax.optim import optimizers as optimizers_lib
from paramsel_jax.lab import progress as progress_lib
from paramsel_jax.protocol import protocol
from paramsel_jax.lab.sweep import grid
from paramsel_jax.lab.sweep import outputs
from paramsel_jax.lab.sweep import user_tasks
from paramsel_jax.lab.sweep.store import CellStore


def _print(msg: str) -> None:
  print(msg, flush=True)


def describe_devices(config: grid.SweepConfig, model: str) -> str:
  """Which devices there are and how the seeds and batches use them."""
  devices = jax.devices()
  axis = grid.seed_axis(config, model)
  p = config.protocol
  mesh = mesh_lib.device_mesh(len(config.seeds) if axis == 'vmap' else 1,
                              p.batch_size if p.shard_batch else None)
  where = (mesh_lib.describe_mesh(mesh) if mesh is not None else
           'one device' if len(devices) == 1 else
           f'NOT sharded (seed_axis={axis}, no device count > 1 divides '
           f'{len(config.seeds)} seeds, and shard_batch={p.shard_batch})')
  return (f'{len(devices)} {jax.default_backend()} device(s); {len(config.seeds)} '
          f'seeds by {axis}; {where}')


def _cell_record(config: grid.SweepConfig, cell: grid.Cell, raw: dict[str, Any],
                 num_params: int) -> dict[str, Any]:
  return {'identity': grid.cell_identity(config, cell), 'num_params': num_params,
          'k_count': None if cell.k is None else raw['k'], 'l_count': raw['l'],
          'alpha_count': raw['alpha_count'], 'beta_count': raw['beta_count'],
          'frozen_moved': raw['frozen_moved'], 'diverged': raw['diverged'],
          'w': raw['w'], 'pruned': raw['pruned']}


def run_sweep(config: grid.SweepConfig, output_dir: str,
              log: Callable[[str], None] = _print,
              tasks: Mapping[str, user_tasks.TaskSpec] | None = None
              ) -> dict[str, Any]:
  """Runs the unfinished part of a sweep, then writes every output.

  Args:
    config: the grid; validated before any data is loaded.
    output_dir: the store (`cells/`, `runs/`) and the outputs: `results.json`,
      `cells.csv` (per seed), `summary.csv`, `tables.txt`, `tables.md`, and
      PNG plots.
    log: where progress and tables go.
    tasks: user tasks by model name of `config.models`: a `Task`, a function
      ``() -> Task`` or a `UserTask` (with a `version` and `num_data`). Those
      names need not be registry models (a registry name given a task runs
      the task), and no data set is loaded for them; their metrics are
      whatever their `eval_fn` gives. Every factory is called once, before
      any work; the store names their cells by `user_tasks.task_identity`.

  Returns:
    The aggregated results (what `results.json` holds).

  Example:
    >>> run_sweep(grid.SweepConfig(models=('mine',)), '/tmp/x')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Unknown model 'mine'; accepted: ...
  """
  users = user_tasks.as_user_tasks(tasks)
  grid.check_model_names(config, tuple(users))
  users = {name: user.built() for name, user in users.items()}
  grid.validate_sweep(config, users)
  config = grid.with_task_ids(config, users)
  store = CellStore(output_dir)
  cells = grid.expand_grid(config)
  done = sum(store.has('cells', grid.cell_key(config, c)) for c in cells)
  progress = progress_lib.Progress(len(cells), log, unit='cell', initial=done,
                                   prefix='[sweep] ')
  log(f'[sweep] {len(cells)} cells ({len(config.models)} model(s) × '
      f'{len(config.optimizers)} optimizer(s) × {len(config.selectors)} '
      f'selector(s) × {"-" if config.retrain else len(config.ks)} k × '
      f'{len(config.ls)} l), {len(config.seeds)} seeds each; {done} already '
      f'finished in {output_dir}')
  datasets: dict[str, data_lib.Dataset] = {}
  for model in config.models:
    log(f'[sweep] {model}: {describe_devices(config, model)}')
    for opt in config.optimizers:
      _run_one(config, model, opt, store, datasets, progress, log,
               users.get(model))
  progress.close()
  results = outputs.sweep_results(config, store)
  paths = outputs.write_outputs(results, output_dir, log)
  log('')
  log(outputs.format_tables(results))
  if outputs.has_anchor_table(results):
    log('')
    log(outputs.format_anchor_table(results))
  log(f'[sweep] wrote {", ".join(paths)}')
  return results


def _missing_groups(config: grid.SweepConfig, model: str,
                    opt: optimizers_lib.OptimizerConfig, store: CellStore,
                    counts: tuple[int | float, ...]) -> list[tuple[str, int | float]]:
  """The (selector, resolved count) groups of this run that miss a cell."""
  cells = [c for c in grid.expand_grid(config)
           if c.model == model and c.optimizer == opt]
  missing = {(c.selector, c.l if config.retrain else c.k) for c in cells
             if not store.has('cells', grid.cell_key(config, c))}
  fractions = config.ls if config.retrain else config.ks
  count_of = dict(zip(fractions, counts))
  return [(sel, count_of[f]) for sel in config.selectors for f in fractions
          if (sel, f) in missing]


def _task_and_optimizer(
    config: grid.SweepConfig, opt: optimizers_lib.OptimizerConfig,
    datasets: dict[str, data_lib.Dataset],
    source: experiment.ExperimentConfig | user_tasks.UserTask
) -> tuple[protocol.Task, Any]:
  """The run's task and optimizer: a built user task's, or a registry model's.

  A registry model's data set is loaded once per sweep (``datasets``).
  """
  if isinstance(source, user_tasks.UserTask):
    # validate_sweep refused a Langevin optimizer without num_data; the
    # others do not read it.
    return source.built_task(), optimizers_lib.create_optimizer(
        opt, num_data=source.resolved_num_data() or 1)
  if config.dataset not in datasets:
    datasets[config.dataset] = experiment.load_dataset(source)
  dataset = datasets[config.dataset]
  return (experiment.make_task(source, dataset),
          optimizers_lib.create_optimizer(source.optimizer,
                                          num_data=len(dataset.train.labels)))


def _run_one(config: grid.SweepConfig, model: str,
             opt: optimizers_lib.OptimizerConfig, store: CellStore,
             datasets: dict[str, data_lib.Dataset],
             progress: progress_lib.Progress,
             log: Callable[[str], None],
             user: user_tasks.UserTask | None = None) -> None:
  """One (model, optimizer): only the groups that still miss a cell.

  ``user``: the built user task run as ``model`` (None: a registry model).
  """
  source: experiment.ExperimentConfig | user_tasks.UserTask
  if user is None:
    source = experiment.resolved(
        grid.experiment_config_of_run(config, model, opt))
    proto = source.protocol
    ks, ls = experiment.validate_config(source)
  else:
    source = user
    proto = dataclasses.replace(grid.protocol_of_run(config),
                                seed_axis=grid.seed_axis(config, model))
    ks, ls = grid.user_task_counts(config, user.built_task())
  counts = ls if config.retrain else ks
  groups = _missing_groups(config, model, opt, store, counts)
  rkey = grid.run_key(config, model, opt)
  label = f'{model}/{opt.name}'
  if not groups and store.has('runs', rkey):
    log(f'[sweep] {label}: all cells finished, skipped')
    return
  log(f'[sweep] {label}: {len(groups)} of {len(config.selectors) * len(counts)}'
      f' η1 groups to run')
  task, tx = _task_and_optimizer(config, opt, datasets, source)
  num_params = models_lib.count_params(
      jax.eval_shape(task.init_fn, jax.random.key(0)))
  k_of = dict(zip(ks, config.ks)) if not config.retrain else {}
  l_of = dict(zip(ls, config.ls))

  def on_cells(raw_cells: list[dict[str, Any]]) -> None:
    for raw in raw_cells:
      k = None if config.retrain else k_of[raw['k']]
      cell = grid.Cell(model, opt, raw['selector'], k, l_of[raw['l']])
      store.save('cells', grid.cell_key(config, cell),
                 _cell_record(config, cell, raw, num_params))
    first = raw_cells[0]
    what = (f'{label} {first["selector"]} '
            + (f'l={l_of[first["l"]]:g}' if config.retrain else
               f'k={k_of[first["k"]]:g}'))
    progress.update(len(raw_cells), what)

  eta0_dir = store.state_dir(checkpoints.state_key(
      grid.eta0_identity(config, model, opt)))
  results = protocol.run_protocol(task, tx, proto,
                                  config.selectors, config.seeds, log=log,
                                  groups=groups, on_cells=on_cells,
                                  eta0_checkpoint=eta0_dir)
  store.save('runs', rkey, {'identity': grid.run_identity(config, model, opt),
                            'num_params': results['num_params'],
                            'after_eta0': results['after_eta0']})
