"""Running a sweep: only the (selector, k) groups that still miss a cell.

A restarted sweep computes which groups of each (model, optimizer) still miss
a cell and passes only those to `run_protocol` as `groups=`. The state after
η0 is saved once per run (`CellStore.state_dir`, named by
`grid.eta0_identity`) and restored, bit for bit, by every later invocation
that shares it: a restarted or extended sweep never recomputes η0.

Several processes (shards, `shards`) may run one sweep at once in one
workdir: each runs its block of η1 groups, claiming each group before it
computes it (`CellStore.claim`: a group is computed once, by one process),
and each run's η0 is computed by the first process to claim it while the
others wait for its saved state. The process that stores the last cell
writes the outputs, which are then the one-process sweep's, byte for byte.
"""

from __future__ import annotations

import dataclasses
import os
import time
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
from paramsel_jax.lab.sweep import shards
from paramsel_jax.lab.sweep import store as store_lib
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


@dataclasses.dataclass(frozen=True)
class _Work:
  """What one process of a sweep does, and how (`run_sweep`'s arguments)."""

  shard: shards.Shard
  groups: tuple[tuple[str, optimizers_lib.OptimizerConfig, str, float], ...]
  checkpoint_every: int
  keep_checkpoints: int


def _check_checkpointing(every: int, keep: int) -> None:
  if isinstance(every, bool) or not isinstance(every, int) or every < 0:
    raise ValueError(f'checkpoint_every={every!r}; accepted: an int >= 0 '
                     '(0: no checkpoints).')
  if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
    raise ValueError(f'keep_checkpoints={keep!r}; accepted: an int >= 1.')


def run_sweep(config: grid.SweepConfig, output_dir: str,
              log: Callable[[str], None] = _print,
              tasks: Mapping[str, user_tasks.TaskSpec] | None = None,
              shard: tuple[int, int] = shards.ONE,
              checkpoint_every: int = 0, keep_checkpoints: int = 3,
              claim_timeout_s: float = store_lib.CLAIM_TIMEOUT_S,
              collect_only: bool = False) -> dict[str, Any]:
  """Runs the unfinished part of a sweep (or of its shard), then the outputs.

  Args:
    config: the grid; validated before any data is loaded.
    output_dir: the store (`cells/`, `runs/`, `eta0/`, `claims/`,
      `checkpoints/`) and the outputs: `results.json`, `cells.csv` (per
      seed), `summary.csv`, `tables.txt`, `tables.md`, and PNG plots.
    log: where progress and tables go.
    tasks: user tasks by model name of `config.models`: a `Task`, a function
      ``() -> Task`` or a `UserTask` (with a `version` and `num_data`). Those
      names need not be registry models (a registry name given a task runs
      the task), and no data set is loaded for them; their metrics are
      whatever their `eval_fn` gives. Every factory is called once, before
      any work; the store names their cells by `user_tasks.task_identity`.
    shard: ``(index, count)``: run only this shard's η1 groups
      (`shards.block`); several processes may run the shards of one sweep
      at once in one ``output_dir`` (`store.CellStore.claim`).
    checkpoint_every: > 0: every training phase saves a checkpoint every
      this many steps under ``<output_dir>/checkpoints/<run>/``, and a rerun
      resumes each unfinished phase from its last one; 0: none.
    keep_checkpoints: checkpoints kept per phase.
    claim_timeout_s: a claim not refreshed for this long is taken over.
    collect_only: compute nothing: write the outputs if every cell is
      stored, else say what remains.

  Returns:
    The aggregated results (what `results.json` holds). The outputs are
    written only once every cell and run is stored, by whichever process
    finds it so (each file atomically; two writing at once write the same
    bytes); until then the results hold the finished cells, and the log
    says how many remain and who computes them.

  Example:
    >>> run_sweep(grid.SweepConfig(models=('mine',)), '/tmp/x')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Unknown model 'mine'; accepted: ...
  """
  shard = shards.check_shard(shard)
  _check_checkpointing(checkpoint_every, keep_checkpoints)
  users = user_tasks.as_user_tasks(tasks)
  grid.check_model_names(config, tuple(users))
  users = {name: user.built() for name, user in users.items()}
  grid.validate_sweep(config, users)
  config = grid.with_task_ids(config, users)
  store = CellStore(output_dir, store_lib.make_owner(shard), claim_timeout_s,
                    log)
  cells = grid.expand_grid(config)
  all_groups = grid.expand_groups(config)
  work = _Work(shard, tuple(shards.block(all_groups, shard)),
               checkpoint_every, keep_checkpoints)
  done = sum(store.has('cells', grid.cell_key(config, c)) for c in cells)
  log(f'[sweep] {len(cells)} cells ({len(config.models)} model(s) × '
      f'{len(config.optimizers)} optimizer(s) × {len(config.selectors)} '
      f'selector(s) × {"-" if config.retrain else len(config.ks)} k × '
      f'{len(config.ls)} l), {len(config.seeds)} seeds each; {done} already '
      f'finished in {output_dir}')
  if shard != shards.ONE and not collect_only:
    log(f'[sweep] shard {shard[0]}/{shard[1]}: {len(work.groups)} of '
        f'{len(all_groups)} η1 groups (shards.block)')
  if not collect_only:
    mine = [c for g in work.groups for c in grid.group_cells(config, *g)]
    progress = progress_lib.Progress(
        len(mine), log, unit='cell', prefix='[sweep] ',
        initial=sum(store.has('cells', grid.cell_key(config, c)) for c in mine))
    datasets: dict[str, data_lib.Dataset] = {}
    with store.heartbeat():
      for model in config.models:
        described = False
        for opt in config.optimizers:
          if not _has_work(config, model, opt, store, work):
            continue
          if not described:
            log(f'[sweep] {model}: {describe_devices(config, model)}')
            described = True
          _run_one(config, model, opt, store, work, datasets, progress, log,
                   users.get(model))
    progress.close()
  return _collect(config, store, output_dir, log, work)


def _collect(config: grid.SweepConfig, store: CellStore, output_dir: str,
             log: Callable[[str], None], work: _Work) -> dict[str, Any]:
  """The outputs, if every cell and run is stored; else what remains."""
  results = outputs.sweep_results(config, store)
  remaining = _remaining(config, store, work.shard[1])
  if remaining:
    log(f'[sweep] {remaining}; the outputs are written by the process that '
        f'finishes the last of them, or by a rerun with --collect_only.')
    return results
  paths = outputs.write_outputs(results, output_dir, log)
  log('')
  log(outputs.format_tables(results))
  if outputs.has_anchor_table(results):
    log('')
    log(outputs.format_anchor_table(results))
  log(f'[sweep] wrote {", ".join(paths)}')
  return results


def _remaining(config: grid.SweepConfig, store: CellStore, count: int) -> str:
  """'' when every cell and run is stored; else how many, where and whose."""
  all_groups = grid.expand_groups(config)
  whose: dict[str, int] = {}
  missing = 0
  for group in all_groups:
    cells = [c for c in grid.group_cells(config, *group)
             if not store.has('cells', grid.cell_key(config, c))]
    if not cells:
      continue
    missing += len(cells)
    holder = store.holder('groups', grid.group_key(config, *group))
    who = (f'being computed by {store_lib.describe_owner(holder or None)}'
           if holder is not None else
           f'not started (shard {shards.owner(all_groups, group, count)}/'
           f'{count}\'s)')
    whose[who] = whose.get(who, 0) + len(cells)
  runs = [grid.run_key(config, m, o) for m in config.models
          for o in config.optimizers
          if not store.has('runs', grid.run_key(config, m, o))]
  if not missing and not runs:
    return ''
  parts = [f'{n} {who}' for who, n in whose.items()]
  if runs:
    parts.append(f'the record of run(s) {", ".join(runs)} (runs/)')
  return (f'{missing} of {len(grid.expand_grid(config))} cells remain in '
          f'{store.directory}/cells: {"; ".join(parts)}')


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


def _run_groups(config: grid.SweepConfig, model: str,
                opt: optimizers_lib.OptimizerConfig
                ) -> list[tuple[str, optimizers_lib.OptimizerConfig, str, float]]:
  return [g for g in grid.expand_groups(config)
          if g[0] == model and g[1] == opt]


def _missing(config: grid.SweepConfig, store: CellStore,
             group: tuple[str, optimizers_lib.OptimizerConfig, str, float]
             ) -> bool:
  return not all(store.has('cells', grid.cell_key(config, c))
                 for c in grid.group_cells(config, *group))


def _has_work(config: grid.SweepConfig, model: str,
              opt: optimizers_lib.OptimizerConfig, store: CellStore,
              work: _Work) -> bool:
  """Whether this shard has a missing group of the run, or owes its record.

  The run's record (its η0 metrics) is written with its groups; a run whose
  cells are all stored without it is rerun (η0 restored, no group) by the
  shard of its first group.
  """
  run_groups = _run_groups(config, model, opt)
  mine = [g for g in run_groups if g in work.groups]
  if any(_missing(config, store, g) for g in mine):
    return True
  return (not store.has('runs', grid.run_key(config, model, opt))
          and run_groups[0] in mine
          and not any(_missing(config, store, g) for g in run_groups))


def _claim_groups(config: grid.SweepConfig, store: CellStore, work: _Work,
                  model: str, opt: optimizers_lib.OptimizerConfig,
                  log: Callable[[str], None]
                  ) -> list[tuple[str, optimizers_lib.OptimizerConfig, str, float]]:
  """This shard's missing groups of the run that it now holds the claim on.

  A group claimed by a live process is left to it; one finished by another
  process just before the claim is released at once (computed once only).
  """
  claimed = []
  for group in _run_groups(config, model, opt):
    if group not in work.groups or not _missing(config, store, group):
      continue
    key = grid.group_key(config, *group)
    if not store.claim('groups', key):
      log(f'[sweep] {key}: left to '
          f'{store_lib.describe_owner(store.holder("groups", key) or None)}, '
          'which claimed it')
      continue
    if not _missing(config, store, group):
      store.release('groups', key)
      continue
    claimed.append(group)
  return claimed


def _await_eta0(store: CellStore, key: str, directory: str, label: str,
                log: Callable[[str], None], poll_s: float = 2.0) -> bool:
  """Returns once the run's η0 state is saved, or this process must make it.

  True: this store claimed η0 (`run_protocol` computes and saves it);
  False: it is saved (`run_protocol` restores it). Another live process
  computing it is waited for.
  """
  waiting = False
  while not checkpoints.exists(directory):
    if store.claim('eta0', key):
      if checkpoints.exists(directory):  # saved just before the claim.
        store.release('eta0', key)
        return False
      return True
    if not waiting:
      log(f'[sweep] {label}: waiting for its η0 state, computed by '
          f'{store_lib.describe_owner(store.holder("eta0", key) or None)}')
      waiting = True
    time.sleep(poll_s)
  return False


def _checkpointer(config: grid.SweepConfig, model: str,
                  opt: optimizers_lib.OptimizerConfig, store: CellStore,
                  work: _Work, log: Callable[[str], None]
                  ) -> checkpoints.Checkpointer | None:
  """The run's in-phase checkpoints (None: off), one scope per shard.

  Under ``<workdir>/checkpoints/<grid.checkpoint_name>``, identified by
  `grid.checkpoint_identity`. The shard's scope keeps two processes of one
  run apart (each phase's files belong to one process); so a rerun of the
  same shard resumes its phases, another shard starts them over.
  """
  if not work.checkpoint_every:
    return None
  directory = os.path.join(store.directory, 'checkpoints',
                           grid.checkpoint_name(config, model, opt))
  ckpt = checkpoints.Checkpointer(
      directory, work.checkpoint_every,
      grid.checkpoint_identity(config, model, opt),
      keep=work.keep_checkpoints, log=log)
  return ckpt.scope(f'shard-{work.shard[0]}-of-{work.shard[1]}')


def _run_one(config: grid.SweepConfig, model: str,
             opt: optimizers_lib.OptimizerConfig, store: CellStore,
             work: _Work, datasets: dict[str, data_lib.Dataset],
             progress: progress_lib.Progress,
             log: Callable[[str], None],
             user: user_tasks.UserTask | None = None) -> None:
  """One (model, optimizer): this shard's groups that still miss a cell.

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
  fractions = config.ls if config.retrain else config.ks
  count_of = dict(zip(fractions, ls if config.retrain else ks))
  label = f'{model}/{opt.name}'
  claimed = _claim_groups(config, store, work, model, opt, log)
  rkey = grid.run_key(config, model, opt)
  if not claimed and (store.has('runs', rkey) or any(
      _missing(config, store, g) for g in _run_groups(config, model, opt))):
    log(f'[sweep] {label}: nothing left to this process, skipped')
    return
  log(f'[sweep] {label}: {len(claimed)} of {len(config.selectors) * len(fractions)}'
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
    fraction = l_of[first['l']] if config.retrain else k_of[first['k']]
    store.release('groups', grid.group_key(config, model, opt,
                                           first['selector'], fraction))
    what = (f'{label} {first["selector"]} '
            + (f'l={fraction:g}' if config.retrain else f'k={fraction:g}'))
    progress.update(len(raw_cells), what)

  eta0_key = checkpoints.state_key(grid.eta0_identity(config, model, opt))
  eta0_dir = store.state_dir(eta0_key)
  ckpt = _checkpointer(config, model, opt, store, work, log)
  # [resume] `checkpointer=` needs helper "resume"'s run_protocol; passed
  # only when checkpoints are on, so the default path runs without it.
  extra: dict[str, Any] = {} if ckpt is None else {'checkpointer': ckpt}
  try:
    _await_eta0(store, eta0_key, eta0_dir, label, log)
    results = protocol.run_protocol(
        task, tx, proto, config.selectors, config.seeds, log=log,
        groups=[(g[2], count_of[g[3]]) for g in claimed], on_cells=on_cells,
        eta0_checkpoint=eta0_dir, **extra)
  finally:
    store.release('eta0', eta0_key)
    for group in claimed:
      store.release('groups', grid.group_key(config, *group))
    if ckpt is not None:
      ckpt.close()
  store.save('runs', rkey, {'identity': grid.run_identity(config, model, opt),
                            'num_params': results['num_params'],
                            'after_eta0': results['after_eta0']})
