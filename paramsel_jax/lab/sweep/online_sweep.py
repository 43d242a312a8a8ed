"""Sweeps of online freezing: criterion × optimizer × model, several seeds.

`experiments/sweep.py --freeze=psgld,apf,...` runs, for every (model,
optimizer), dense training and each criterion with `online.run_online`
(same steps, same checks), stores each run's record atomically (resumable
like the grid's cells), and writes a table per (model, optimizer): test
accuracy, frozen share and training time against the dense run (each run
timed in turn; `experiments/online_benchmark.py` times them side by side).
Like the grid it may be split over processes (`shards`): each run is one
unit of work, claimed before it is computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable

from paramsel_jax import data as data_lib
from paramsel_jax.lab import experiment
from paramsel_jax import io as io_lib
from paramsel_jax.protocol import online
from paramsel_jax.optim import optimizers as optimizers_lib
from paramsel_jax.protocol import protocol
from paramsel_jax import report
from paramsel_jax.lab.sweep import shards
from paramsel_jax.lab.sweep import store as store_lib
from paramsel_jax.lab.sweep.store import CellStore
from paramsel_jax.train import checkpoints


@dataclasses.dataclass(frozen=True)
class OnlineSweepConfig:
  """The grid of an online-freezing sweep; checked when made."""

  dataset: str = 'mnist'
  models: tuple[str, ...] = ('lenet300',)
  optimizers: tuple[optimizers_lib.OptimizerConfig, ...] = (
      optimizers_lib.OptimizerConfig(),)
  criteria: tuple[str, ...] = ('none', 'psgld')
  seeds: tuple[int, ...] = (0, 1, 2)
  online: online.OnlineConfig = online.OnlineConfig()
  data_dir: str | None = None

  def __post_init__(self):
    protocol.check_seeds(self.seeds)
    from paramsel_jax.freeze import criteria as criteria_lib  # pylint: disable=g-import-not-at-top
    for name in self.criteria:
      if name != 'none':
        criteria_lib.get_criterion(name)  # one clear error for an unknown name.
    if len(set(self.criteria)) != len(self.criteria) or not self.criteria:
      raise ValueError(f'criteria={self.criteria!r}: give distinct names.')
    for model in self.models:
      experiment.ExperimentConfig(dataset=self.dataset, model=model)


def _settings(config: OnlineSweepConfig, model: str,
              criterion: str) -> online.OnlineConfig:
  from paramsel_jax.freeze import criteria as criteria_lib  # pylint: disable=g-import-not-at-top
  gran = config.online.granularity
  if criterion != 'none' and criteria_lib.get_criterion(criterion).layers_only:
    gran = 'layer'
  return dataclasses.replace(
      config.online, criterion=criterion, granularity=gran,
      seed_axis=experiment.resolve_seed_axis(config.online.seed_axis, model))


def online_run_identity(config: OnlineSweepConfig, model: str,
                        opt: optimizers_lib.OptimizerConfig,
                        criterion: str) -> dict[str, Any]:
  """Everything that determines one run's numbers."""
  return {'dataset': config.dataset, 'model': model,
          'optimizer': dataclasses.asdict(opt.resolved()),
          'online': dataclasses.asdict(_settings(config, model, criterion)),
          'seeds': list(config.seeds)}


def online_run_key(config: OnlineSweepConfig, model: str,
                   opt: optimizers_lib.OptimizerConfig, criterion: str) -> str:
  """A readable, stable name for one run's record."""
  ident = online_run_identity(config, model, opt, criterion)
  digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()
                          ).hexdigest()[:16]
  return f'{model}-{opt.name}-{criterion}-{digest}'


def _record(run: dict[str, Any]) -> dict[str, Any]:
  checks = run['checks']
  seconds = sum(c['steps_run'] / c['steps_per_s'] for c in checks)
  return {'checks': checks, 'final_test_accuracy': checks[-1]['test_accuracy'],
          'frozen_share': checks[-1]['frozen_share'], 'train_s': seconds,
          'compilations': run['compilations'], 'compile_s': run['compile_s']}


def validate_online_sweep(config: OnlineSweepConfig) -> None:
  """Each run's criterion settings, checked from the models' shapes.

  `online_experiment.validate_settings` for every (model, criterion), before
  any data are loaded.
  """
  from paramsel_jax.lab import online_experiment  # pylint: disable=g-import-not-at-top
  for model in config.models:
    exp = experiment.ExperimentConfig(dataset=config.dataset, model=model)
    for criterion in config.criteria:
      online_experiment.validate_settings(exp, _settings(config, model,
                                                         criterion))


def _runs(config: OnlineSweepConfig
          ) -> list[tuple[str, optimizers_lib.OptimizerConfig, str]]:
  """Every (model, optimizer, criterion), in table order."""
  return [(model, opt, criterion) for model in config.models
          for opt in config.optimizers for criterion in config.criteria]


def run_online_sweep(config: OnlineSweepConfig, output_dir: str,
                     log: Callable[[str], None] = print,
                     shard: tuple[int, int] = shards.ONE,
                     checkpoint_every: int = 0, keep_checkpoints: int = 3,
                     claim_timeout_s: float = store_lib.CLAIM_TIMEOUT_S,
                     collect_only: bool = False) -> dict[str, Any]:
  """Runs the missing runs, then writes `online.json` and `online_tables.md`.

  Args:
    config: the grid.
    output_dir: the store (`online/`, `claims/`, `checkpoints/`) and the
      outputs.
    log: where progress and the table go.
    shard: ``(index, count)``: run only this shard's block of runs
      (`shards.block` over (model, optimizer, criterion) in table order);
      several processes may share ``output_dir`` (each run is claimed,
      `store.CellStore.claim`, so it is computed once).
    checkpoint_every: > 0: each run checkpoints its training every this
      many steps under ``<output_dir>/checkpoints/<run key>/`` and a rerun
      resumes it; 0: none.
    keep_checkpoints: checkpoints kept.
    claim_timeout_s: a claim not refreshed for this long is taken over.
    collect_only: compute nothing; write the outputs if every run is stored.

  Returns:
    ``{'config', 'runs'}``: the stored runs. The outputs are written once
    every run is stored, by the process that finds it so; until then the
    log says how many remain.
  """
  shard = shards.check_shard(shard)
  if (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
      or checkpoint_every < 0):
    raise ValueError(f'checkpoint_every={checkpoint_every!r}; accepted: an '
                     'int >= 0 (0: no checkpoints).')
  validate_online_sweep(config)
  store = CellStore(output_dir, store_lib.make_owner(shard), claim_timeout_s,
                    log)
  datasets: dict[str, data_lib.Dataset] = {}
  runs = _runs(config)
  if not collect_only:
    with store.heartbeat():
      for model, opt, criterion in shards.block(runs, shard):
        _run_online_one(config, model, opt, criterion, store, datasets, log,
                        checkpoint_every, keep_checkpoints)
  records = []
  for model, opt, criterion in runs:
    key = online_run_key(config, model, opt, criterion)
    if store.has('online', key):
      records.append({'model': model, 'optimizer': opt.name,
                      'criterion': criterion, **store.load('online', key)})
  results = {'config': dataclasses.asdict(config), 'runs': records}
  if len(records) < len(runs):
    log(f'[sweep] {len(runs) - len(records)} of {len(runs)} runs remain in '
        f'{output_dir}/online; the outputs are written by the process that '
        'finishes the last of them, or by a rerun with --collect_only.')
    return results
  io_lib.write_json_atomic(results, os.path.join(output_dir, 'online.json'))
  table = format_online_tables(results)
  io_lib.write_text_atomic(table + '\n',
                           os.path.join(output_dir, 'online_tables.md'))
  log(table)
  return results


def _run_online_one(config: OnlineSweepConfig, model: str,
                    opt: optimizers_lib.OptimizerConfig, criterion: str,
                    store: CellStore, datasets: dict[str, data_lib.Dataset],
                    log: Callable[[str], None], checkpoint_every: int,
                    keep_checkpoints: int) -> None:
  """One run, unless stored or claimed by another process."""
  key = online_run_key(config, model, opt, criterion)
  label = f'{model}/{opt.name}/{criterion}'
  if store.has('online', key):
    log(f'[sweep] {label}: finished, skipped')
    return
  if not store.claim('online', key):
    log(f'[sweep] {label}: left to '
        f'{store_lib.describe_owner(store.holder("online", key) or None)}, '
        'which claimed it')
    return
  try:
    if store.has('online', key):  # finished just before the claim.
      return
    exp = experiment.resolved(experiment.ExperimentConfig(
        dataset=config.dataset, model=model, seeds=config.seeds,
        data_dir=config.data_dir))
    if config.dataset not in datasets:
      datasets[config.dataset] = experiment.load_dataset(exp)
    task = experiment.make_task(exp, datasets[config.dataset])
    tx = optimizers_lib.create_optimizer(
        opt, num_data=len(datasets[config.dataset].train.labels))
    log(f'[sweep] {label}: running')
    extra: dict[str, Any] = {}
    ckpt = None
    if checkpoint_every:
      # [resume] `checkpointer=` needs helper "resume"'s run_online; passed
      # only when checkpoints are on, so the default path runs without it.
      ckpt = checkpoints.Checkpointer(
          os.path.join(store.directory, 'checkpoints', key), checkpoint_every,
          online_run_identity(config, model, opt, criterion),
          keep=keep_checkpoints, log=log)
      extra['checkpointer'] = ckpt
    try:
      run = online.run_online(task, tx, _settings(config, model, criterion),
                              config.seeds, log=log, **extra)
    finally:
      if ckpt is not None:
        ckpt.close()
    store.save('online', key, _record(run))
  finally:
    store.release('online', key)


def format_online_tables(results: dict[str, Any]) -> str:
  """A markdown table per (model, optimizer); times against the dense run."""
  out = []
  runs = results['runs']
  for model, opt in dict.fromkeys((r['model'], r['optimizer']) for r in runs):
    mine = [r for r in runs if (r['model'], r['optimizer']) == (model, opt)]
    dense = next((r for r in mine if r['criterion'] == 'none'), None)
    out += [f'{model}, {opt}: mean ± 95% CI over '
            f'{len(results["config"]["seeds"])} seeds', '',
            '| criterion | test acc % | frozen % | train s | vs dense | '
            'compiled steps |', '| --- | --- | --- | --- | --- | --- |']
    for r in mine:
      pm = lambda v, scale: report.plus_minus(report.summarize(v), scale, 2,
                                              spread='ci95')
      speed = ('-' if dense is None else
               f'{dense["train_s"] / r["train_s"]:.2f}×')
      out.append(f'| {r["criterion"]} | {pm(r["final_test_accuracy"], 100)} | '
                 f'{pm(r["frozen_share"], 100)} | {r["train_s"]:.1f} | {speed} | '
                 f'{r["compilations"]} |')
    out.append('')
  return '\n'.join(out).rstrip('\n')
