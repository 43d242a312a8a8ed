"""Sweeps: selector × k/N × l/N × optimizer × model, several seeds per cell.

A sweep is a frozen `SweepConfig`. It expands into runs, one per (model,
optimizer), each one call of `protocol.run_protocol` (one shared η0 phase, one
η1 phase per (selector, k) group — per (selector, l) in 'retrain' mode — every
l read off it), and into cells, one per (model, optimizer, selector, k, l),
each holding per-seed metrics of w and of β⊙w.

Resumable: every finished cell is written atomically to its own JSON file in
a `CellStore`, named by a hash of everything that determines its numbers
(data, model, optimizer and its hyperparameters, selector, k, l, mode, η0, η1,
window, batch size, seeds, ...). A restarted sweep computes which (selector,
k) groups still miss a cell and passes only those to `run_protocol` as
`groups=`; the η0 phase is re-run (it is deterministic, so the results are the
same bit for bit). A sweep with other settings gets other keys, so results
never mix. The aggregated outputs (tables, CSV, JSON) hold no times or dates,
so a killed-and-resumed sweep writes the same bytes as an uninterrupted one.

  >>> config = SweepConfig(dataset='synthetic', models=('mlp',),
  ...                      selectors=('random', 'topgrad'), ks=(0.1, 0.5),
  ...                      ls=(0.05,), seeds=(0, 1))
  >>> len(expand_grid(config)), len(expand_groups(config))
  (4, 4)

References:
  Han, Pool, Tran, Dally (2015), Learning both weights and connections for
    efficient neural networks. Frankle, Carbin (2019), The lottery ticket
    hypothesis.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from paramsel_jax import data as data_lib
from paramsel_jax import experiment
from paramsel_jax import io as io_lib
from paramsel_jax import models as models_lib
from paramsel_jax import optimizers as optimizers_lib
from paramsel_jax import protocol
from paramsel_jax import selectors as selectors_lib

METRICS = ('test_loss', 'test_accuracy', 'train_loss', 'train_accuracy')
PARTS = ('w', 'pruned')  # the trained weights w, and β⊙w.
STORE_VERSION = 1  # part of every cell key; bump when a cell's meaning changes.

# Selectors for conv nets by default: a conv step is ~10x slower on CPU.
CONV_SELECTORS = ('random', 'topgrad', 'psgld')
# In 'retrain' mode only β matters; these have distinct β rules (topgrad and
# apf keep the top |w| as magnitude does, the psgld variants share psgld's).
RETRAIN_SELECTORS = ('magnitude', 'psgld')

# Published prune-then-retrain results on MNIST, test error in % at a kept
# fraction l/N (Han et al. 2015, Table 1; Frankle & Carbin 2019, Fig. 3).
ANCHORS: tuple[dict[str, Any], ...] = (
    dict(model='lenet300', l=0.08, error=1.59, source='Han et al. 2015'),
    dict(model='lenet5', l=0.08, error=0.77, source='Han et al. 2015'),
    dict(model='lenet300', l=0.036, error=None,
         source='Frankle & Carbin 2019: winning tickets match the dense net'),
)
# This library's targets: test error (%) at l/N = 5%.
TARGETS = {('lenet300', 0.05): 1.5, ('lenet5', 0.05): 0.8}


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """A grid of selector × k/N × l/N × optimizer × model; plain values only.

  Attributes:
    dataset: a name from `paramsel_jax.data.DATASETS`.
    models: names from `paramsel_jax.models.MODELS`.
    optimizers: one `OptimizerConfig` per optimizer compared.
    selectors: registered selector names (all share each run's η0 phase).
    ks: fractions 0 < k/N < 1 of coordinates that keep training (unused in
      'retrain' mode).
    ls: fractions 0 < l/N < 1 of weights kept.
    seeds: one run per seed, in parallel (vmap; sharded over devices).
    protocol: η0, η1, window, batch size, chunk size, seed axis ('auto'
      allowed), mode; its `k` and `l` are ignored (the grid sets them).
    data_dir: the data cache (None: the default).
    synthetic_size, synthetic_shape: for `dataset='synthetic'`.
  """

  dataset: str = 'mnist'
  models: tuple[str, ...] = ('lenet300',)
  optimizers: tuple[optimizers_lib.OptimizerConfig, ...] = (
      optimizers_lib.OptimizerConfig(),)
  selectors: tuple[str, ...] = ('random', 'topgrad', 'psgld')
  ks: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25)
  ls: tuple[float, ...] = (0.02, 0.05, 0.1)
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  protocol: protocol.ProtocolConfig = protocol.ProtocolConfig(seed_axis='auto')
  data_dir: str | None = None
  synthetic_size: int = 2048
  synthetic_shape: tuple[int, int, int] = (28, 28, 1)

  @property
  def retrain(self) -> bool:
    return self.protocol.mode == 'retrain'


@dataclasses.dataclass(frozen=True)
class Cell:
  """One point of the grid; `k` is None in 'retrain' mode."""

  model: str
  optimizer: optimizers_lib.OptimizerConfig
  selector: str
  k: float | None
  l: float


def default_budget(models: Sequence[str], mode: str) -> dict[str, Any]:
  """Steps and selectors chosen by measurement on a 2-core CPU (see README).

  Prune-at-end sweeps of MLPs: every selector, η0 = 1000, η1 = 300. On
  LeNet-300-100 with 5 seeds, an idle 2-core CPU runs ~30-40 steps/s and one
  evaluation of w or β⊙w (train and test sets) takes ~3 s, so a (selector, k)
  group costs ~10 s of steps plus ~12 s of evaluation and the 36 groups of 9
  selectors × 4 k (× 3 l) ~13-15 min; measured 2026-11-22 with the CPU shared
  by other jobs (load ~10): 39 min. With a conv net: `CONV_SELECTORS` and
  η0 = 500, η1 = 200; LeNet-5 with 5 seeds ('map' on CPU) ran 1-3 steps/s
  there and a group took ~5-9 min, most of it evaluating 4 times on 60k
  images, so its 12 groups need ~1-2 h on such a CPU. 'retrain' mode (the
  anchors): `RETRAIN_SELECTORS`, 3 seeds, η0 = η1 = 4000 (MLP) or 2000
  (conv), l/N ∈ {8, 5, 2}% (6000 + 6000 steps gave the same errors). With a
  conv net the train metrics are read on the first 10,000 training examples
  (`train_eval_size`; 0 = all): evaluation, not training, dominated there.

  Example:
    >>> default_budget(['lenet5'], 'prune_at_end')['selectors']
    ('random', 'topgrad', 'psgld')
  """
  conv = any(m in experiment.CONV_MODELS for m in models)
  if mode == 'retrain':
    return dict(selectors=RETRAIN_SELECTORS, eta0=2000 if conv else 4000,
                eta1=2000 if conv else 4000, window=100, num_seeds=3,
                ls=(0.08, 0.05, 0.02), learning_rate=1e-3,
                train_eval_size=10000 if conv else 0)
  if conv:
    return dict(selectors=CONV_SELECTORS, eta0=500, eta1=200, window=100,
                num_seeds=5, ls=(0.02, 0.05, 0.1), learning_rate=1e-3,
                train_eval_size=10000)
  return dict(selectors=tuple(sorted(selectors_lib.SELECTORS)), eta0=1000,
              eta1=300, window=100, num_seeds=5, ls=(0.02, 0.05, 0.1),
              learning_rate=1e-3, train_eval_size=0)


# ---------------------------------------------------------------------------
# The grid.
# ---------------------------------------------------------------------------


def experiment_config(config: SweepConfig, model: str,
                      optimizer: optimizers_lib.OptimizerConfig
                      ) -> experiment.ExperimentConfig:
  """The `ExperimentConfig` of one run: every k and l of the grid at once."""
  proto = dataclasses.replace(config.protocol,
                              k=tuple(config.ks) if not config.retrain else config.ls[0],
                              l=tuple(config.ls))
  return experiment.ExperimentConfig(
      dataset=config.dataset, model=model, selectors=tuple(config.selectors),
      seeds=tuple(config.seeds), optimizer=optimizer, protocol=proto,
      data_dir=config.data_dir, synthetic_size=config.synthetic_size,
      synthetic_shape=tuple(config.synthetic_shape))


def _check_fractions(name: str, values: Sequence[float]) -> None:
  if not values:
    raise ValueError(f'{name} is empty; give at least one fraction 0 < x < 1.')
  for v in values:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
      raise ValueError(f'{name} contains {v!r}; accepted: fractions of N with '
                       f'0 < {name[:-1]}/N < 1.')
  if len(set(values)) != len(values):
    raise ValueError(f'{name}={tuple(values)!r} repeats a value.')


def validate_sweep(config: SweepConfig) -> None:
  """Checks the whole grid before any work; one ValueError naming the problem.

  Example:
    >>> validate_sweep(SweepConfig(ks=(0.1, 1.5)))
    Traceback (most recent call last):
    ...
    ValueError: ks contains 1.5; accepted: fractions of N with 0 < k/N < 1.
  """
  for field in ('models', 'optimizers', 'selectors', 'seeds'):
    values = getattr(config, field)
    if not values:
      raise ValueError(f'{field} is empty; give at least one.')
    if len(set(values)) != len(values):
      raise ValueError(f'{field}={tuple(values)!r} repeats a value.')
  for name in config.models:
    if name not in models_lib.MODELS:
      raise ValueError(f'Unknown model {name!r}; accepted: '
                       f'{", ".join(sorted(models_lib.MODELS))}.')
  for name in config.selectors:
    selectors_lib.get_selector(name)
  for opt in config.optimizers:
    optimizers_lib.validate_optimizer_config(opt)
  labels = [_opt_label(opt) for opt in config.optimizers]
  if len(set(labels)) != len(labels):
    raise ValueError(f'optimizers {labels} share a name and learning rate; '
                     'give each optimizer of a sweep its own.')
  if not config.retrain:
    _check_fractions('ks', config.ks)
  _check_fractions('ls', config.ls)
  for model in config.models:
    for opt in config.optimizers:
      ks, ls = experiment.validate_config(experiment_config(config, model, opt))
      for name, counts in (('ls', ls),) if config.retrain else (('ks', ks), ('ls', ls)):
        if 0 in counts or len(set(counts)) != len(counts):
          raise ValueError(
              f'{name}={getattr(config, name)!r} gives the counts {counts} on '
              f'{model}: each must be >= 1 and distinct.')


def expand_grid(config: SweepConfig) -> list[Cell]:
  """Every cell, in table order: model, optimizer, k, l, selector."""
  ks = (None,) if config.retrain else tuple(config.ks)
  return [Cell(model, opt, sel, k, l)
          for model in config.models for opt in config.optimizers
          for k in ks for l in config.ls for sel in config.selectors]


def expand_groups(config: SweepConfig) -> list[tuple[str, optimizers_lib.OptimizerConfig, str, float]]:
  """Every η1 phase: (model, optimizer, selector, k) — (…, l) in 'retrain'."""
  counts = config.ls if config.retrain else config.ks
  return [(model, opt, sel, c) for model in config.models
          for opt in config.optimizers for sel in config.selectors
          for c in counts]


def _seed_axis(config: SweepConfig, model: str) -> str:
  return experiment.resolve_seed_axis(config.protocol.seed_axis, model)


def _optimizer_identity(optimizer: optimizers_lib.OptimizerConfig) -> dict:
  # Fields added after stores were written are left out at their defaults, so
  # those stores stay valid.
  ident = dataclasses.asdict(optimizer)
  if not ident['decay_steps']:
    del ident['decay_steps']
  return ident


def run_identity(config: SweepConfig, model: str,
                 optimizer: optimizers_lib.OptimizerConfig) -> dict[str, Any]:
  """Everything that determines a run's numbers (not chunk size or paths)."""
  p = config.protocol
  ident = {
      'version': STORE_VERSION, 'dataset': config.dataset, 'model': model,
      'optimizer': _optimizer_identity(optimizer), 'mode': p.mode,
      'eta0': p.eta0, 'eta1': p.eta1, 'window': p.window,
      'batch_size': p.batch_size, 'eval_batch_size': p.eval_batch_size,
      'seed_axis': _seed_axis(config, model), 'seeds': list(config.seeds)}
  # Settings added later are absent at their defaults: older stores stay valid.
  if p.train_eval_size is not None:
    ident['train_eval_size'] = p.train_eval_size
  if p.prune_rounds != 1:
    ident['prune_rounds'] = p.prune_rounds
  if p.shard_batch:  # changes the order of the gradient's sums.
    ident['shard_batch'] = True
  if config.dataset == 'synthetic':
    ident['synthetic'] = [config.synthetic_size, list(config.synthetic_shape)]
  return ident


def _hash(obj: Any) -> str:
  canonical = json.dumps(obj, sort_keys=True, separators=(',', ':'))
  return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def cell_identity(config: SweepConfig, cell: Cell) -> dict[str, Any]:
  return dict(run_identity(config, cell.model, cell.optimizer),
              selector=cell.selector, k=cell.k, l=cell.l)


def cell_key(config: SweepConfig, cell: Cell) -> str:
  """A readable, stable file name: names, fractions and a config hash.

  Example:
    >>> c = SweepConfig(dataset='synthetic', models=('mlp',))
    >>> cell_key(c, expand_grid(c)[0])[:26]
    'mlp-adam-random-k0.01-l0.0'
  """
  k = '' if cell.k is None else f'-k{cell.k:g}'
  return (f'{cell.model}-{cell.optimizer.name}-{cell.selector}{k}-l{cell.l:g}-'
          f'{_hash(cell_identity(config, cell))}')


def run_key(config: SweepConfig, model: str,
            optimizer: optimizers_lib.OptimizerConfig) -> str:
  return f'{model}-{optimizer.name}-{_hash(run_identity(config, model, optimizer))}'


# ---------------------------------------------------------------------------
# The store.
# ---------------------------------------------------------------------------


class CellStore:
  """Finished cells (and each run's dense η0 metrics), one JSON file each.

  Every file is written atomically (a temp file renamed into place), so a
  kill at any point leaves either the whole file or none.

  Example:
    >>> import tempfile
    >>> store = CellStore(tempfile.mkdtemp())
    >>> store.save('cells', 'a', {'x': 1}); store.load('cells', 'a')
    {'x': 1}
  """

  def __init__(self, directory: str):
    self.directory = directory

  def path(self, kind: str, key: str) -> str:
    return os.path.join(self.directory, kind, f'{key}.json')

  def has(self, kind: str, key: str) -> bool:
    return os.path.exists(self.path(kind, key))

  def load(self, kind: str, key: str) -> dict[str, Any]:
    with open(self.path(kind, key)) as f:
      return json.load(f)

  def save(self, kind: str, key: str, record: dict[str, Any]) -> None:
    io_lib.write_json_atomic(record, self.path(kind, key))


# ---------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


class Progress:
  """Cells done / total, elapsed, and the remaining time at this session's rate.

  The rate is measured from the first group finished in this session on (so
  the first η0 phase and compilation do not inflate it), or over the whole
  elapsed time until a second group has finished.
  """

  def __init__(self, total: int, done: int, log: Callable[[str], None]):
    self.total, self.done, self.log = total, done, log
    self.start = time.perf_counter()
    self.first: tuple[float, int] | None = None  # (time, done) at 1st group.

  def add(self, count: int, what: str) -> None:
    now = time.perf_counter()
    before = self.done
    self.done += count
    if self.first is None:
      self.first = (now, self.done)
      rate = (now - self.start) / (self.done - before)
    else:
      rate = (now - self.first[0]) / (self.done - self.first[1])
    left = self.total - self.done
    self.log(f'[sweep] {self.done}/{self.total} cells done ({what}); elapsed '
             f'{_duration(now - self.start)}, estimated remaining '
             f'{_duration(rate * left)}')


def _print(msg: str) -> None:
  print(msg, flush=True)


def describe_devices(config: SweepConfig, model: str) -> str:
  """Which devices there are and how the seeds and batches use them."""
  devices = jax.devices()
  seed_axis = _seed_axis(config, model)
  p = config.protocol
  mesh = protocol.device_mesh(len(config.seeds) if seed_axis == 'vmap' else 1,
                              p.batch_size if p.shard_batch else None)
  where = (protocol.describe_mesh(mesh) if mesh is not None else
           'one device' if len(devices) == 1 else
           f'NOT sharded (seed_axis={seed_axis}, no device count > 1 divides '
           f'{len(config.seeds)} seeds, and shard_batch={p.shard_batch})')
  return (f'{len(devices)} {jax.default_backend()} device(s); {len(config.seeds)} '
          f'seeds by {seed_axis}; {where}')


def _cell_record(config: SweepConfig, cell: Cell, raw: dict[str, Any],
                 num_params: int) -> dict[str, Any]:
  return {'identity': cell_identity(config, cell), 'num_params': num_params,
          'k_count': None if cell.k is None else raw['k'], 'l_count': raw['l'],
          'alpha_count': raw['alpha_count'], 'beta_count': raw['beta_count'],
          'frozen_moved': raw['frozen_moved'], 'w': raw['w'],
          'pruned': raw['pruned']}


def run_sweep(config: SweepConfig, output_dir: str,
              log: Callable[[str], None] = _print) -> dict[str, Any]:
  """Runs the unfinished part of a sweep, then writes every output.

  Args:
    config: the grid; validated before any data is loaded.
    output_dir: the store (`cells/`, `runs/`) and the outputs: `results.json`,
      `cells.csv` (per seed), `summary.csv`, `tables.txt`, and PNG plots.
    log: where progress and tables go.

  Returns:
    The aggregated results (what `results.json` holds).
  """
  validate_sweep(config)
  store = CellStore(output_dir)
  grid = expand_grid(config)
  done = sum(store.has('cells', cell_key(config, c)) for c in grid)
  progress = Progress(len(grid), done, log)
  log(f'[sweep] {len(grid)} cells ({len(config.models)} model(s) × '
      f'{len(config.optimizers)} optimizer(s) × {len(config.selectors)} '
      f'selector(s) × {"-" if config.retrain else len(config.ks)} k × '
      f'{len(config.ls)} l), {len(config.seeds)} seeds each; {done} already '
      f'finished in {output_dir}')
  datasets: dict[str, data_lib.Dataset] = {}
  for model in config.models:
    log(f'[sweep] {model}: {describe_devices(config, model)}')
    for opt in config.optimizers:
      _run_one(config, model, opt, store, datasets, progress, log)
  results = aggregate(config, store)
  paths = write_outputs(results, output_dir)
  log('')
  log(format_tables(results))
  if config.retrain:
    log('')
    log(format_anchor_table(results))
  log(f'[sweep] wrote {", ".join(paths)}')
  return results


def _run_one(config: SweepConfig, model: str,
             opt: optimizers_lib.OptimizerConfig, store: CellStore,
             datasets: dict[str, data_lib.Dataset], progress: Progress,
             log: Callable[[str], None]) -> None:
  """One (model, optimizer): only the groups that still miss a cell."""
  exp = experiment_config(config, model, opt)
  ks, ls = experiment.validate_config(exp)
  k_of = dict(zip(ks, config.ks)) if not config.retrain else {}
  l_of = dict(zip(ls, config.ls))
  cells = [c for c in expand_grid(config) if c.model == model and c.optimizer == opt]
  missing = {(c.selector, c.l if config.retrain else c.k) for c in cells
             if not store.has('cells', cell_key(config, c))}
  rkey = run_key(config, model, opt)
  label = f'{model}/{opt.name}'
  if not missing and store.has('runs', rkey):
    log(f'[sweep] {label}: all {len(cells)} cells finished, skipped')
    return
  counts = ls if config.retrain else ks
  fraction_of = dict(zip(config.ls if config.retrain else config.ks, counts))
  groups = [(sel, fraction_of[c]) for sel in config.selectors
            for c in (config.ls if config.retrain else config.ks)
            if (sel, c) in missing]
  log(f'[sweep] {label}: {len(groups)} of {len(config.selectors) * len(counts)}'
      f' η1 groups to run')
  if config.dataset not in datasets:
    datasets[config.dataset] = experiment.load_dataset(exp, log)
  dataset = datasets[config.dataset]
  task = experiment.make_task(exp, dataset)
  tx = optimizers_lib.create_optimizer(opt, num_data=len(dataset.train.labels))
  proto = dataclasses.replace(exp.protocol, seed_axis=_seed_axis(config, model))

  def on_cells(raw_cells: list[dict[str, Any]]) -> None:
    for raw in raw_cells:
      k = None if config.retrain else k_of[raw['k']]
      cell = Cell(model, opt, raw['selector'], k, l_of[raw['l']])
      store.save('cells', cell_key(config, cell),
                 _cell_record(config, cell, raw, num_params))
    first = raw_cells[0]
    what = (f'{label} {first["selector"]} '
            + (f'l={l_of[first["l"]]:g}' if config.retrain else
               f'k={k_of[first["k"]]:g}'))
    progress.add(len(raw_cells), what)

  num_params = models_lib.count_params(
      jax.eval_shape(task.init_fn, jax.random.key(0)))
  results = protocol.run_protocol(task, tx, proto, config.selectors,
                                  config.seeds, log=log, groups=groups,
                                  on_cells=on_cells)
  store.save('runs', rkey, {'identity': run_identity(config, model, opt),
                            'num_params': results['num_params'],
                            'after_eta0': results['after_eta0']})


# ---------------------------------------------------------------------------
# Aggregation and outputs.
# ---------------------------------------------------------------------------


def _opt_label(opt: optimizers_lib.OptimizerConfig) -> str:
  return f'{opt.name}(lr={opt.learning_rate:g})'


def _file_label(opt_label: str) -> str:
  return re.sub(r'[^A-Za-z0-9.]+', '_', opt_label).strip('_')


def aggregate(config: SweepConfig, store: CellStore) -> dict[str, Any]:
  """The grid's finished cells with summaries; no times, so it is reproducible.

  Each cell gets `summary[part][metric]` = `experiment.summarize` (mean, std,
  95% t-CI half-width) over seeds, and `best` = whether its selector has the
  lowest mean test loss of β⊙w among the selectors of its (model, optimizer,
  k, l).
  """
  cells, runs = [], []
  for model in config.models:
    for opt in config.optimizers:
      rkey = run_key(config, model, opt)
      if store.has('runs', rkey):
        run = store.load('runs', rkey)
        runs.append({'model': model, 'optimizer': _opt_label(opt),
                     'num_params': run['num_params'],
                     'after_eta0': run['after_eta0'],
                     'after_eta0_summary': {m: experiment.summarize(v) for m, v
                                            in run['after_eta0'].items()}})
  for cell in expand_grid(config):
    key = cell_key(config, cell)
    if not store.has('cells', key):
      continue
    record = store.load('cells', key)
    cells.append({
        'model': cell.model, 'optimizer': _opt_label(cell.optimizer),
        'selector': cell.selector, 'k': cell.k, 'l': cell.l,
        'num_params': record['num_params'], 'k_count': record['k_count'],
        'l_count': record['l_count'], 'frozen_moved': record['frozen_moved'],
        'w': record['w'], 'pruned': record['pruned'],
        'summary': {part: {m: experiment.summarize(record[part][m])
                           for m in METRICS} for part in PARTS},
        'key': key})
  by_point: dict[tuple, list[dict[str, Any]]] = {}
  for c in cells:
    by_point.setdefault((c['model'], c['optimizer'], c['k'], c['l']), []).append(c)
  for group in by_point.values():
    best = min(group, key=lambda c: c['summary']['pruned']['test_loss']['mean'])
    for c in group:
      c['best'] = c is best
  results = {'config': dataclasses.asdict(config),
             'total_cells': len(expand_grid(config)),
             'finished_cells': len(cells), 'runs': runs, 'cells': cells}
  return json.loads(json.dumps(results))  # as results.json holds it.


def _ci(s: dict[str, float], scale: float = 1.0, digits: int = 4) -> str:
  return f'{s["mean"] * scale:.{digits}f} ± {s["ci95"] * scale:.{digits}f}'


def format_tables(results: dict[str, Any]) -> str:
  """One text table per model: mean ± 95% CI over seeds; * = best selector.

  The best selector of a (optimizer, k, l) cell is the one with the lowest
  mean test loss of β⊙w.
  """
  cfg = results['config']
  proto = cfg['protocol']
  out = []
  for model in cfg['models']:
    cells = [c for c in results['cells'] if c['model'] == model]
    runs = [r for r in results['runs'] if r['model'] == model]
    n = cells[0]['num_params'] if cells else (runs[0]['num_params'] if runs else 0)
    out.append(
        f'== {cfg["dataset"]} / {model} (N = {n}), mode {proto["mode"]}, '
        f'eta0 = {proto["eta0"]}, eta1 = {proto["eta1"]}, window = '
        f'{proto["window"]}, batch {proto["batch_size"]}, '
        f'{len(cfg["seeds"])} seeds; mean ± 95% CI (t) over seeds; '
        f'* = best selector of the cell (lowest mean test loss of β⊙w); '
        f'{len(cells)} of {results["total_cells"] // len(cfg["models"])} '
        f'cells finished ==')
    for r in runs:
      s = r['after_eta0_summary']
      out.append(f'   dense after η0 ({r["optimizer"]}): test loss '
                 f'{_ci(s["test_loss"])}, test acc {_ci(s["test_accuracy"], 100, 2)} %')
    header = ('optimizer', 'k/N', 'l/N', 'selector', 'test loss β⊙w',
              'test acc β⊙w %', 'test loss w', 'test acc w %')
    rows = []
    previous = None
    for c in cells:
      point = (c['optimizer'], c['k'], c['l'])
      show = point != previous
      previous = point
      s, w = c['summary']['pruned'], c['summary']['w']
      rows.append((c['optimizer'] if show else '',
                   ('-' if c['k'] is None else f'{c["k"]:.0%}') if show else '',
                   f'{c["l"]:.1%}' if show else '',
                   c['selector'] + (' *' if c['best'] else ''),
                   _ci(s['test_loss']), _ci(s['test_accuracy'], 100, 2),
                   _ci(w['test_loss']), _ci(w['test_accuracy'], 100, 2)))
    out.append(_format_rows(header, rows))
    out.append('')
  return '\n'.join(out).rstrip('\n')


def format_markdown(results: dict[str, Any]) -> str:
  """Markdown tables, one per (model, optimizer): a row per (k/N, l/N), a
  column per selector, test accuracy (%) of β⊙w as mean ± 95% CI; the cell's
  best selector (lowest mean test loss of β⊙w, as in `format_tables`) in bold.
  """
  cfg = results['config']
  selectors = list(cfg['selectors'])
  out = []
  pairs = dict.fromkeys((c['model'], c['optimizer']) for c in results['cells'])
  for model, opt in pairs:
    cells = [c for c in results['cells']
             if (c['model'], c['optimizer']) == (model, opt)]
    points = dict.fromkeys((c['k'], c['l']) for c in cells)
    out.append(f'{model}, {opt}, {cfg["protocol"]["mode"]}: test accuracy of '
               f'β⊙w (%), mean ± 95% CI over {len(cfg["seeds"])} seeds; bold: '
               'lowest test loss of β⊙w')
    out.append('')
    out.append('| k/N | l/N | ' + ' | '.join(selectors) + ' |')
    out.append('| --- | --- |' + ' --- |' * len(selectors))
    for k, l in points:
      row = [('-' if k is None else f'{k:.0%}'), f'{l:.0%}']
      for name in selectors:
        match = [c for c in cells if (c['k'], c['l'], c['selector']) == (k, l, name)]
        if not match:
          row.append('')
          continue
        s = match[0]['summary']['pruned']['test_accuracy']
        text = f'{100 * s["mean"]:.1f} ± {100 * s["ci95"]:.1f}'
        row.append(f'**{text}**' if match[0]['best'] else text)
      out.append('| ' + ' | '.join(row) + ' |')
    out.append('')
  return '\n'.join(out).rstrip('\n')


def _format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  line = lambda r: '  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
  return '\n'.join([line(header), '  '.join('-' * w for w in widths)]
                   + [line(r) for r in rows])


def format_anchor_table(results: dict[str, Any]) -> str:
  """Test error (%) of β⊙w per (model, l/N, selector) next to published numbers.

  Targets (`TARGETS`) are met when the mean error is at most the target.
  """
  header = ('model', 'l/N', 'selector', 'test error β⊙w % (mean ± 95% CI)',
            'published', 'target', 'met?')
  rows = []
  for c in results['cells']:
    s = c['summary']['pruned']['test_accuracy']
    err = 100 * (1 - s['mean'])
    published = '; '.join(
        f'{a["source"]}: {a["error"]:.2f}%' for a in ANCHORS
        if a['model'] == c['model'] and math.isclose(a['l'], c['l'])
        and a['error'] is not None)
    target = TARGETS.get((c['model'], round(c['l'], 6)))
    met = '' if target is None else (
        f'yes (by {target - err:.2f} pt)' if err <= target else
        f'no (by {err - target:.2f} pt)')
    rows.append((c['model'], f'{c["l"]:.1%}', c['selector'] + (' *' if c['best'] else ''),
                 f'{err:.2f} ± {100 * s["ci95"]:.2f}', published or '-',
                 '-' if target is None else f'≤ {target:.2f}%', met or '-'))
  notes = ['Published anchors (prune-then-retrain, MNIST): Han et al. 2015: '
           'LeNet-300-100 1.59% error with 8% of weights, LeNet-5 0.77% with '
           '8%; Frankle & Carbin 2019: LeNet-300-100 winning tickets match the '
           'dense net down to ~3.6% of weights.']
  for r in results['runs']:
    s = r['after_eta0_summary']['test_accuracy']
    notes.append(f'Dense {r["model"]} after η0 ({r["optimizer"]}): test error '
                 f'{100 * (1 - s["mean"]):.2f} ± {100 * s["ci95"]:.2f} %.')
  return '\n'.join([_format_rows(header, rows), *notes])


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  return buffer.getvalue()


def _fraction(x: float | None) -> str:
  return '' if x is None else f'{x:g}'


def cells_csv(results: dict[str, Any]) -> str:
  """The raw results: one row per (cell, seed)."""
  header = ['model', 'optimizer', 'selector', 'k_frac', 'l_frac', 'k', 'l',
            'seed'] + [f'{p}_{m}' for p in PARTS for m in METRICS]
  rows = []
  seeds = results['config']['seeds']
  for c in results['cells']:
    for i, seed in enumerate(seeds):
      rows.append([c['model'], c['optimizer'], c['selector'], _fraction(c['k']),
                   _fraction(c['l']), '' if c['k_count'] is None else c['k_count'],
                   c['l_count'], seed]
                  + [repr(c[p][m][i]) for p in PARTS for m in METRICS])
  return _csv_text(header, rows)


def summary_csv(results: dict[str, Any]) -> str:
  """One row per cell: mean, std and 95% CI half-width of every metric."""
  header = ['model', 'optimizer', 'selector', 'k_frac', 'l_frac', 'best'] + [
      f'{p}_{m}_{s}' for p in PARTS for m in METRICS for s in ('mean', 'std', 'ci95')]
  rows = [[c['model'], c['optimizer'], c['selector'], _fraction(c['k']),
           _fraction(c['l']), int(c['best'])]
          + [repr(c['summary'][p][m][s]) for p in PARTS for m in METRICS
             for s in ('mean', 'std', 'ci95')]
          for c in results['cells']]
  return _csv_text(header, rows)


def write_outputs(results: dict[str, Any], output_dir: str) -> list[str]:
  """results.json, cells.csv, summary.csv, tables.txt, tables.md, PNG plots."""
  os.makedirs(output_dir, exist_ok=True)
  paths = []
  path = os.path.join(output_dir, 'results.json')
  io_lib.write_json_atomic(results, path)
  paths.append(path)
  texts = {'cells.csv': cells_csv(results), 'summary.csv': summary_csv(results),
           'tables.txt': format_tables(results) + '\n',
           'tables.md': format_markdown(results) + '\n'}
  if results['config']['protocol']['mode'] == 'retrain':
    texts['anchors.txt'] = format_anchor_table(results) + '\n'
  for name, text in texts.items():
    path = os.path.join(output_dir, name)
    io_lib.write_text_atomic(text, path)
    paths.append(path)
  paths.extend(plot_sweep(results, output_dir))
  return paths


def plot_sweep(results: dict[str, Any], output_dir: str) -> list[str]:
  """PNG plots, one set per (model, optimizer), mean and 95% CI band per selector.

  'prune_at_end': test loss of β⊙w vs k/N (one panel per l/N) and vs l/N (one
  panel per k/N). 'retrain': test loss and test error of β⊙w vs l/N, with the
  published anchors (`ANCHORS`) and targets (`TARGETS`) marked.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  cfg = results['config']
  retrain = cfg['protocol']['mode'] == 'retrain'
  paths = []
  combos = []
  for c in results['cells']:
    if (c['model'], c['optimizer']) not in combos:
      combos.append((c['model'], c['optimizer']))
  for model, opt in combos:
    cells = [c for c in results['cells']
             if c['model'] == model and c['optimizer'] == opt]
    if retrain:
      specs = [('l', None, [('test_loss', None), ('test_error', None)])]
    else:
      specs = [(x, p, [('test_loss', v) for v in sorted({c[p] for c in cells})])
               for x, p in (('k', 'l'), ('l', 'k'))]
    for x_name, panel_name, panels in specs:
      fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8),
                               squeeze=False)
      for ax, (metric, panel) in zip(axes[0], panels):
        for sel in cfg['selectors']:
          pts = sorted((c[x_name], c['summary']['pruned']) for c in cells
                       if c['selector'] == sel and
                       (panel_name is None or c[panel_name] == panel))
          if not pts:
            continue
          x = np.array([100 * p[0] for p in pts])
          if metric == 'test_error':
            mean = np.array([100 * (1 - p[1]['test_accuracy']['mean']) for p in pts])
            ci = np.array([100 * p[1]['test_accuracy']['ci95'] for p in pts])
          else:
            mean = np.array([p[1][metric]['mean'] for p in pts])
            ci = np.array([p[1][metric]['ci95'] for p in pts])
          line, = ax.plot(x, mean, marker='o', label=sel)
          ax.fill_between(x, mean - ci, mean + ci, color=line.get_color(),
                          alpha=0.2)
        if metric == 'test_error':
          for a in ANCHORS:
            if a['model'] == model and a['error'] is not None:
              ax.plot([100 * a['l']], [a['error']], 'k*', markersize=10,
                      label=f'{a["source"]}')
          for (m, l), target in TARGETS.items():
            if m == model:
              ax.plot([100 * l], [target], 'kv', label=f'target ≤ {target}%')
          ax.set_yscale('log')
        xs = sorted({100 * c[x_name] for c in cells})
        ax.set_xscale('log')
        ax.set_xticks(xs, [f'{v:g}' for v in xs])
        ax.minorticks_off()
        ax.set_xlabel(f'{x_name}/N (%)')
        ax.set_ylabel('test error of β⊙w (%)' if metric == 'test_error'
                      else 'test loss of β⊙w')
        ax.set_title(model + ('' if panel is None else
                              f', {panel_name}/N = {100 * panel:g}%'), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
      fig.suptitle(f'{cfg["dataset"]} / {model} / {opt} / {cfg["protocol"]["mode"]}\n'
                   f'mean and 95% CI over {len(cfg["seeds"])} seeds', fontsize=9)
      fig.tight_layout()
      name = f'{model}_{_file_label(opt)}_loss_vs_{x_name}.png'
      path = os.path.join(output_dir, name)
      fig.savefig(path, dpi=110, metadata={'Software': None})
      plt.close(fig)
      paths.append(path)
  return paths
