"""The grid of a sweep: its config, its cells and η1 groups, their keys.

A sweep is a frozen `SweepConfig`. It expands into runs, one per (model,
optimizer), each one call of `protocol.run_protocol`, and into cells, one per
(model, optimizer, selector, k, l). Each cell's key names it and hashes
everything that determines its numbers, so results never mix across settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import re
from typing import Any, Mapping, Sequence

import jax

from paramsel_jax.lab import experiment
from paramsel_jax import models as models_lib
from paramsel_jax.optim import optimizers as optimizers_lib
from paramsel_jax.protocol import protocol
from paramsel_jax.protocol import task as task_lib
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.train.feed import OnDevice
from paramsel_jax.lab.sweep import user_tasks

# Part of every cell key; bump when a cell's meaning changes. 2: masked keeps a
# frozen coordinate's optimizer state (fisher's β) and the random selector's
# keys have their own streams (runner.py), so those cells differ from 1's.
STORE_VERSION = 2

# Selectors for conv nets by default: a conv step is ~10x slower on CPU.
CONV_SELECTORS = ('random', 'topgrad', 'psgld')
# In 'retrain' mode only β matters; these have distinct β rules (topgrad and
# apf keep the top |w| as magnitude does, the psgld variants share psgld's).
RETRAIN_SELECTORS = ('magnitude', 'psgld')


def _check_fractions(name: str, values: Sequence[float]) -> None:
  if not values:
    raise ValueError(f'{name} is empty; give at least one fraction 0 < x <= 1.')
  for v in values:
    if (isinstance(v, bool) or not isinstance(v, numbers.Real)
        or isinstance(v, numbers.Integral) or not 0 < v <= 1):
      raise ValueError(f'{name} contains {v!r}; accepted: fractions of N with '
                       f'0 < {name[:-1]}/N <= 1 (floats: the grid spans '
                       'models of different N).')
  if len(set(values)) != len(values):
    raise ValueError(f'{name}={tuple(values)!r} repeats a value.')


def opt_label(opt: optimizers_lib.OptimizerConfig) -> str:
  """E.g. 'adam(lr=0.001)': how tables and files name an optimizer."""
  return f'{opt.name}(lr={opt.resolved().learning_rate:g})'


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """A grid of selector × k/N × l/N × optimizer × model; checked when made.

  Attributes:
    dataset: a name from `paramsel_jax.data.DATASETS` (unused by the models
      given as user tasks).
    models: names from `paramsel_jax.models.MODELS`, or names that
      `run_sweep` is given a user `Task` for (`tasks=`; checked by
      `validate_sweep`, not here).
    optimizers: one `OptimizerConfig` per optimizer compared.
    selectors: registered selector names (all share each run's η0 phase).
    ks: fractions 0 < k/N <= 1 of coordinates that keep training (unused in
      'retrain' mode).
    ls: fractions 0 < l/N <= 1 of weights kept.
    seeds: one run per seed, in parallel (vmap; sharded over devices).
    protocol: η0, η1, window, batch size, chunk size, seed axis ('auto'
      allowed), mode; its `k` and `l` are ignored (the grid sets them).
    data_dir: the data cache (None: the default).
    synthetic_size, synthetic_shape: for `dataset='synthetic'`.
    task_ids: (model name, identity) of each model run as a user task;
      `run_sweep` sets it from its `tasks` (`with_task_ids`), and the store's
      keys of those models hash it (`user_tasks` states the rule).
  """

  dataset: str = 'mnist'
  models: tuple[str, ...] = ('lenet300',)
  optimizers: tuple[optimizers_lib.OptimizerConfig, ...] = (
      optimizers_lib.OptimizerConfig(),)
  selectors: tuple[str, ...] = ('random', 'topgrad', 'psgld')
  ks: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25)
  ls: tuple[float, ...] = (0.02, 0.05, 0.1)
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  protocol: protocol.ProtocolConfig = protocol.ProtocolConfig()
  data_dir: str | None = None
  synthetic_size: int = 2048
  synthetic_shape: tuple[int, int, int] = (28, 28, 1)
  task_ids: tuple[tuple[str, str], ...] = ()

  def __post_init__(self):
    for field in ('models', 'optimizers', 'selectors', 'seeds'):
      values = getattr(self, field)
      if not values:
        raise ValueError(f'{field} is empty; give at least one.')
      if len(set(values)) != len(values):
        raise ValueError(f'{field}={tuple(values)!r} repeats a value.')
    protocol.check_selector_names(self.selectors)
    protocol.check_seeds(self.seeds)
    labels = [opt_label(opt) for opt in self.optimizers]
    if len(set(labels)) != len(labels):
      raise ValueError(f'optimizers {labels} share a name and learning rate; '
                       'give each optimizer of a sweep its own.')
    if not self.retrain:
      _check_fractions('ks', self.ks)
    _check_fractions('ls', self.ls)

  @property
  def retrain(self) -> bool:
    """Whether the sweep runs the 'retrain' mode (prune, then retrain)."""
    return self.protocol.mode == 'retrain'

  def task_id(self, model: str) -> str | None:
    """The identity of user task ``model`` (`task_ids`), or None."""
    return dict(self.task_ids).get(model)


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
                ls=(0.08, 0.05, 0.02), train_eval_size=10000 if conv else 0)
  if conv:
    return dict(selectors=CONV_SELECTORS, eta0=500, eta1=200, window=100,
                num_seeds=5, ls=(0.02, 0.05, 0.1), train_eval_size=10000)
  return dict(selectors=tuple(sorted(selectors_lib.SELECTORS)), eta0=1000,
              eta1=300, window=100, num_seeds=5, ls=(0.02, 0.05, 0.1),
              train_eval_size=0)


def protocol_of_run(config: SweepConfig) -> protocol.ProtocolConfig:
  """The protocol of every run: every k and l of the grid at once."""
  return dataclasses.replace(
      config.protocol, k=None if config.retrain else tuple(config.ks),
      l=tuple(config.ls))


def experiment_config_of_run(config: SweepConfig, model: str,
                             optimizer: optimizers_lib.OptimizerConfig
                             ) -> experiment.ExperimentConfig:
  """The `ExperimentConfig` of one run of a registry model."""
  proto = protocol_of_run(config)
  return experiment.ExperimentConfig(
      dataset=config.dataset, model=model, selectors=tuple(config.selectors),
      seeds=tuple(config.seeds), optimizer=optimizer, protocol=proto,
      data_dir=config.data_dir, synthetic_size=config.synthetic_size,
      synthetic_shape=tuple(config.synthetic_shape))


def check_model_names(config: SweepConfig,
                      task_names: Sequence[str] = ()) -> None:
  """ValueError unless every model is a registry model or a given task.

  Example:
    >>> check_model_names(SweepConfig(models=('mine',)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Unknown model 'mine'; accepted: ..., or a name given a Task in run_sweep(...).
  """
  for name in config.models:
    if name not in models_lib.MODELS and name not in task_names:
      given = (f' (given: {", ".join(sorted(task_names))})' if task_names
               else '')
      raise ValueError(f'Unknown model {name!r}; accepted: '
                       f'{", ".join(sorted(models_lib.MODELS))}, or a name '
                       f'given a Task in run_sweep(tasks={{name: ...}}){given}.')
  for name in task_names:
    if not re.fullmatch(r'[A-Za-z0-9_.-]+', name):
      raise ValueError(f'task name {name!r}; accepted: letters, digits, '
                       '_ . - (it names the store\'s files).')
  extra = sorted(set(task_names) - set(config.models))
  if extra:
    raise ValueError(f'tasks names {", ".join(map(repr, extra))}, not in '
                     f'models={tuple(config.models)!r}; accepted: a task '
                     'for a model name of the grid.')


def user_task_counts(config: SweepConfig, task: task_lib.Task
                     ) -> tuple[tuple[int | float, ...], tuple[int, ...]]:
  """A user task's resolved k's and l's (checked against its N and data)."""
  n = models_lib.count_params(jax.eval_shape(task.init_fn, jax.random.key(0)))
  data = task.train_data
  return protocol.validate_protocol_config(
      protocol_of_run(config), n,
      data.num_examples if isinstance(data, OnDevice) else None)


def _validate_user_task(config: SweepConfig, model: str,
                        user: user_tasks.UserTask) -> None:
  """The checks of one user task's runs, traced only (nothing computed)."""
  task = user.built_task()
  user_task_counts(config, task)
  task_lib.check(task, jax.random.key(config.seeds[0]))
  for opt in config.optimizers:
    if (opt.name in user_tasks.LANGEVIN_OPTIMIZERS
        and user.resolved_num_data() is None):
      raise ValueError(
          f'optimizer {opt.name!r} scales its noise by the training-set size '
          f'n, which the host batches of task {model!r} do not give; '
          f'accepted: tasks={{{model!r}: UserTask(task, num_data=n)}}, or '
          'OnDevice training data.')


def validate_sweep(config: SweepConfig,
                   tasks: Mapping[str, user_tasks.TaskSpec] | None = None
                   ) -> None:
  """The checks that need each model's N; one ValueError naming the problem.

  Args:
    config: the grid.
    tasks: the user tasks by model name (`run_sweep`'s); a factory is called
      here to check its task.

  Example:
    >>> validate_sweep(SweepConfig(ks=(0.1, 1.5)))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: ks contains 1.5; accepted: fractions of N with 0 < k/N <= 1 (floats: the grid spans
    models of different N).
  """
  users = user_tasks.as_user_tasks(tasks)
  check_model_names(config, tuple(users))
  for model in config.models:
    if model in users:
      _validate_user_task(config, model, users[model].built())
      continue
    for opt in config.optimizers:
      experiment.validate_config(experiment_config_of_run(config, model, opt))


def with_task_ids(config: SweepConfig,
                  tasks: Mapping[str, user_tasks.UserTask]) -> SweepConfig:
  """``config`` with the identities of its built user ``tasks`` (`task_ids`)."""
  return dataclasses.replace(config, task_ids=tuple(
      (name, user_tasks.task_identity(tasks[name]))
      for name in config.models if name in tasks))


def expand_grid(config: SweepConfig) -> list[Cell]:
  """Every cell, in table order: model, optimizer, k, l, selector."""
  ks = (None,) if config.retrain else tuple(config.ks)
  return [Cell(model, opt, sel, k, l)
          for model in config.models for opt in config.optimizers
          for k in ks for l in config.ls for sel in config.selectors]


def expand_groups(config: SweepConfig
                  ) -> list[tuple[str, optimizers_lib.OptimizerConfig, str, float]]:
  """Every η1 phase: (model, optimizer, selector, k) — (…, l) in 'retrain'."""
  counts = config.ls if config.retrain else config.ks
  return [(model, opt, sel, c) for model in config.models
          for opt in config.optimizers for sel in config.selectors
          for c in counts]


def seed_axis(config: SweepConfig, model: str) -> str:
  """The seed axis a model's runs use ('auto' resolved)."""
  if config.task_id(model) is not None:  # a user task: not a registry model.
    return experiment.resolve_seed_axis(config.protocol.seed_axis, None)
  return experiment.resolve_seed_axis(config.protocol.seed_axis, model)


def _optimizer_identity(optimizer: optimizers_lib.OptimizerConfig) -> dict:
  # Fields added after stores were written are left out at their defaults, so
  # those stores stay valid.
  ident = dataclasses.asdict(optimizer.resolved())
  if not ident['decay_steps']:
    del ident['decay_steps']
  return ident


def run_identity(config: SweepConfig, model: str,
                 optimizer: optimizers_lib.OptimizerConfig) -> dict[str, Any]:
  """Everything that determines a run's numbers (not chunk size or paths).

  A user task's run has its `task_id` in place of the data set's name.
  """
  p = config.protocol
  task_id = config.task_id(model)
  ident = {
      'version': STORE_VERSION, 'dataset': config.dataset, 'model': model,
      'optimizer': _optimizer_identity(optimizer), 'mode': p.mode,
      'eta0': p.eta0, 'eta1': p.eta1, 'window': p.window,
      'batch_size': p.batch_size, 'eval_batch_size': p.eval_batch_size,
      'seed_axis': seed_axis(config, model), 'seeds': list(config.seeds)}
  # Settings added later are absent at their defaults: older stores stay valid.
  if p.train_eval_size is not None:
    ident['train_eval_size'] = p.train_eval_size
  if p.prune_rounds != 1:
    ident['prune_rounds'] = p.prune_rounds
  if p.shard_batch:  # changes the order of the gradient's sums.
    ident['shard_batch'] = True
  for name, default in (('granularity', 'element'), ('aggregate', 'mean'),
                        ('budget', 'params'), ('cache_prefix', False)):
    if getattr(p, name) != default:
      ident[name] = getattr(p, name)
  if p.inactive_state == 'reset':  # η1's final optimizer state differs
    ident['inactive_state'] = 'reset'  # ('host' is bit-identical).
  if p.active_step() != 'masked':  # the same numbers to float rounding only.
    ident['step'] = p.active_step()
  if task_id is not None:
    del ident['dataset']
    ident['task'] = task_id
  elif config.dataset == 'synthetic':
    ident['synthetic'] = [config.synthetic_size, list(config.synthetic_shape)]
  return ident


# Run settings that only η1 (or evaluation) reads: η0's state does not
# depend on them.
ETA1_ONLY = ('mode', 'eta1', 'eval_batch_size', 'train_eval_size',
             'prune_rounds', 'granularity', 'aggregate', 'budget',
             'cache_prefix', 'step', 'inactive_state')


def eta0_identity(config: SweepConfig, model: str,
                  optimizer: optimizers_lib.OptimizerConfig) -> dict[str, Any]:
  """Everything that determines a run's state after η0.

  The run's identity without what only η1 reads, plus the selectors: η0's
  window collects the statistics they read.
  """
  ident = {k: v for k, v in run_identity(config, model, optimizer).items()
           if k not in ETA1_ONLY}
  ident['selectors'] = sorted(config.selectors)
  return ident


def _hash(obj: Any) -> str:
  canonical = json.dumps(obj, sort_keys=True, separators=(',', ':'))
  return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def cell_identity(config: SweepConfig, cell: Cell) -> dict[str, Any]:
  """Everything that determines a cell's numbers: its run's identity, selector, k, l."""
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
  """A readable, stable file name of a run: model, optimizer and a hash."""
  return f'{model}-{optimizer.name}-{_hash(run_identity(config, model, optimizer))}'


def group_key(config: SweepConfig, model: str,
              optimizer: optimizers_lib.OptimizerConfig, selector: str,
              fraction: float) -> str:
  """A readable, stable name of an η1 group (`expand_groups`): its claim's.

  Example:
    >>> c = SweepConfig(dataset='synthetic', models=('mlp',))
    >>> group_key(c, *expand_groups(c)[0])[:20]
    'mlp-adam-random-0.01'
  """
  ident = dict(run_identity(config, model, optimizer), selector=selector,
               group=fraction)
  return f'{model}-{optimizer.name}-{selector}-{fraction:g}-{_hash(ident)}'


def group_cells(config: SweepConfig, model: str,
                optimizer: optimizers_lib.OptimizerConfig, selector: str,
                fraction: float) -> list[Cell]:
  """The cells an η1 group gives: every l of (selector, k); one in 'retrain'."""
  if config.retrain:
    return [Cell(model, optimizer, selector, None, fraction)]
  return [Cell(model, optimizer, selector, fraction, l) for l in config.ls]


def checkpoint_identity(config: SweepConfig, model: str,
                        optimizer: optimizers_lib.OptimizerConfig
                        ) -> dict[str, Any]:
  """What a run's in-phase checkpoints depend on: its identity and selectors.

  Its phases are η0 (which reads the selectors' statistics) and one η1 per
  (selector, k) group, each labelled by selector and k.
  """
  return dict(run_identity(config, model, optimizer),
              selectors=sorted(config.selectors))


def checkpoint_name(config: SweepConfig, model: str,
                    optimizer: optimizers_lib.OptimizerConfig) -> str:
  """The directory name of a run's checkpoints (`checkpoint_identity`)."""
  return (f'{model}-{optimizer.name}-'
          f'{_hash(checkpoint_identity(config, model, optimizer))}')
