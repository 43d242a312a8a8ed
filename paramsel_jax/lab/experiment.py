"""One experiment: data + model + optimizer + protocol → a results table and JSON.

`experiments/mnist.py` turns its flags into an `ExperimentConfig` and calls
`run_experiment`; the sweep and tests call it directly. Every setting is
checked before any data is loaded (`validate_config`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import subprocess
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from paramsel_jax import data as data_lib
from paramsel_jax import io as io_lib
from paramsel_jax import models as models_lib
from paramsel_jax.optim import optimizers
from paramsel_jax.protocol import protocol
from paramsel_jax.protocol import task as task_lib
from paramsel_jax import report
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.train import distributed
from paramsel_jax.train.mesh import resolve_seed_axis  # the lab's callers use it here.

CONV_MODELS = models_lib.CONV_MODELS
EVAL_SPLITS = ('test', 'valid')
SEED_AXES = protocol.SEED_AXES


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one run of the protocol needs; plain values, checked when made.

  Attributes:
    dataset: a name from `paramsel_jax.data.DATASETS`.
    model: a name from `paramsel_jax.models.MODELS`.
    selectors: registered selector names; all share the η0 phase.
    seeds: one run per seed (distinct integers in [0, 2**32)).
    optimizer: which `T`.
    protocol: η0, η1, k, l, window, batch size, ...; its `seed_axis` may be
      'auto': 'map' for conv nets on CPU (vmap of convs is ~2.6x slower there,
      BUILD_NOTES.md), 'vmap' otherwise.
    data_dir: the data cache (None: `paramsel_jax.data.default_data_dir()`,
      i.e. `$PARAMSEL_DATA_DIR` or `~/.cache/paramsel_jax`).
    synthetic_size: for `dataset='synthetic'`: number of training examples.
    synthetic_shape: for `dataset='synthetic'`: the image shape (H, W, C).
    eval_split: the held-out split the metrics called 'test' are computed
      on: 'test', or 'valid' (the validation split, carved from the training
      set; training then uses the rest) to choose settings without reading
      the test split. The table says which.

  Example:
    >>> ExperimentConfig(seeds=(2.5,))
    Traceback (most recent call last):
    ...
    ValueError: seeds=(2.5,); accepted: one or more distinct ints in [0, 2**32).
  """

  dataset: str = 'mnist'
  model: str = 'lenet300'
  selectors: tuple[str, ...] = ('topgrad',)
  seeds: tuple[int, ...] = (0, 1, 2)
  optimizer: optimizers.OptimizerConfig = optimizers.OptimizerConfig()
  protocol: protocol.ProtocolConfig = protocol.ProtocolConfig()
  data_dir: str | None = None
  synthetic_size: int = 2048
  synthetic_shape: tuple[int, ...] = (28, 28, 1)
  eval_split: str = 'test'

  def __post_init__(self):
    if self.dataset not in data_lib.DATASETS:
      raise ValueError(f'Unknown dataset {self.dataset!r}; accepted: '
                       f'{", ".join(data_lib.DATASETS)}.')
    if self.model not in models_lib.MODELS:
      raise ValueError(f'Unknown model {self.model!r}; accepted: '
                       f'{", ".join(models_lib.MODELS)}.')
    protocol.check_selector_names(self.selectors)
    protocol.check_seeds(self.seeds)
    if self.eval_split not in EVAL_SPLITS:
      raise ValueError(f'eval_split={self.eval_split!r}; accepted: '
                       f'{", ".join(EVAL_SPLITS)}.')
    if not isinstance(self.optimizer, optimizers.OptimizerConfig):
      raise ValueError(f'optimizer={self.optimizer!r}; accepted: an '
                       'OptimizerConfig.')
    if not isinstance(self.protocol, protocol.ProtocolConfig):
      raise ValueError(f'protocol={self.protocol!r}; accepted: a '
                       'ProtocolConfig.')
    if self.dataset == 'synthetic' and (
        isinstance(self.synthetic_size, bool) or
        not isinstance(self.synthetic_size, int) or self.synthetic_size < 1):
      raise ValueError(f'synthetic_size={self.synthetic_size!r}; accepted: an '
                       'integer >= 1.')


def validate_config(config: ExperimentConfig
                    ) -> tuple[tuple[int | float, ...], tuple[int, ...]]:
  """The checks that need N and the data's shape, without loading the data.

  Returns:
    The resolved k's and l's (counts; k's stay fractions with a FLOPs budget).
  """
  n = models_lib.count_params(param_shapes(config))
  return protocol.validate_protocol_config(config.protocol, n,
                                           _data_shape(config)[2])


def param_shapes(config: ExperimentConfig) -> Any:
  """The model's params as `jax.ShapeDtypeStruct`s, without loading the data.

  Example:
    >>> shapes = param_shapes(ExperimentConfig(model='lenet300'))
    >>> shapes['Dense_0']['kernel'].shape
    (784, 300)
  """
  return model_outline(config)[1]


def model_outline(config: ExperimentConfig) -> tuple[Any, Any, Any]:
  """`(apply_fn, param shapes, an example batch's shape)`, without the data.

  Enough to trace the model (`jax.eval_shape`): its layers' forward order,
  the checks of the cheap step.

  Example:
    >>> apply_fn, shapes, example = model_outline(
    ...     ExperimentConfig(model='lenet300'))
    >>> example.shape, jax.eval_shape(apply_fn, shapes, example).shape
    ((1, 28, 28, 1), (1, 10))
  """
  image_shape, num_classes, _ = _data_shape(config)
  model = models_lib.create_model(config.model, num_classes=num_classes)
  shapes = jax.eval_shape(
      lambda key: models_lib.init_params(model, key, image_shape),
      jax.random.key(0))
  apply_fn = lambda params, x: model.apply({'params': params}, x)
  return apply_fn, shapes, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)


def _data_shape(config: ExperimentConfig) -> tuple[tuple[int, ...], int, int]:
  """(image shape, classes, training-set size), without loading the data."""
  if config.dataset == 'synthetic':
    return tuple(config.synthetic_shape), 10, config.synthetic_size
  info = data_lib.info(config.dataset)
  return info.image_shape, info.num_classes, info.num_train


def resolved(config: ExperimentConfig) -> ExperimentConfig:
  """`config` with every default made explicit.

  Those are the optimizer's learning rate, the seed axis and the data
  directory.
  """
  return dataclasses.replace(
      config, optimizer=config.optimizer.resolved(),
      protocol=dataclasses.replace(
          config.protocol,
          seed_axis=resolve_seed_axis(config.protocol.seed_axis, config.model)),
      data_dir=(None if config.dataset == 'synthetic' else
                config.data_dir or data_lib.default_data_dir()))


def load_dataset(config: ExperimentConfig) -> data_lib.Dataset:
  """The data set `config` names (synthetic data are generated)."""
  if config.dataset == 'synthetic':
    return data_lib.synthetic(num_train=config.synthetic_size,
                              num_test=max(config.synthetic_size // 4, 1),
                              image_shape=tuple(config.synthetic_shape))
  return data_lib.load(config.dataset, data_dir=config.data_dir, verbose=True)


def make_task(config: ExperimentConfig, dataset: data_lib.Dataset) -> protocol.ImageTask:
  """The protocol's `Task`: the model's init/apply and the data on device.

  The held-out split is `config.eval_split`'s (the test split by default).
  """
  model = models_lib.create_model(config.model,
                                  num_classes=dataset.num_classes)
  held_out = getattr(dataset, config.eval_split)
  return task_lib.linen_task(
      model, dataset.train.images.shape[1:],
      (jnp.asarray(dataset.train.images), jnp.asarray(dataset.train.labels)),
      (jnp.asarray(held_out.images), jnp.asarray(held_out.labels)))


def cell_label(cell: dict[str, Any], results: dict[str, Any]) -> str:
  """`selector`, plus k and l (as % of N) when a run has several of them."""
  n, parts = results['num_params'], [cell['selector']]
  if len(results['ks']) > 1 and results.get('mode') != 'retrain':
    parts.append(_k_text(cell['k'], n))
  if len(results['ls']) > 1:
    parts.append(f'l={cell["l"] / n:.1%}')
  return ' '.join(parts)


def _k_text(k: int | float, n: int) -> str:
  """'k=10.0%' of N, or 'k=10% of FLOPs' for a FLOPs budget (a float)."""
  return f'k={k:.0%} of FLOPs' if isinstance(k, float) else f'k={k / n:.1%}'


def format_costs(results: dict[str, Any]) -> str:
  """The cost of every phase, as a text table.

  Steps/s after compilation, compile seconds, MFLOP per step and seed (XLA's
  cost analysis), optimizer state per seed.
  """
  header = ('phase', 'steps/s', 'compile s', 'MFLOP/step', 'opt. state MB',
            'step')
  rows = []
  for label, c in results['timing']['phases'].items():
    rate = '-' if c['steps_per_s'] is None else f'{c["steps_per_s"]:.0f}'
    flops = '-' if c['flops_per_step'] is None else f'{c["flops_per_step"] / 1e6:.1f}'
    mem = '-' if c['opt_state_bytes'] is None else f'{c["opt_state_bytes"] / 2 ** 20:.2f}'
    rows.append((label, rate, f'{c["compile_s"]:.1f}', flops, mem, c['step']))
  return report.format_table(header, rows)


def format_results_table(results: dict[str, Any]) -> str:
  """The results as a text table: mean ± sample std over the finite seeds."""
  split = results.get('config', {}).get('eval_split', 'test')
  header = ('selector', f'{split} acc w %', f'{split} acc β⊙w %',
            f'{split} loss w', f'{split} loss β⊙w', 'train acc β⊙w %',
            'train loss β⊙w')
  pm = lambda values, scale=1.0, digits=2: report.plus_minus(
      report.summarize(values), scale, digits)
  rows = []
  eta0 = results['after_eta0']
  if eta0 is not None:
    rows.append(('(after η0, dense)', pm(eta0['test_accuracy'], 100), '-',
                 pm(eta0['test_loss'], digits=4), '-', '-', '-'))
  for cell in results['cells']:
    w, b = cell['w'], cell['pruned']
    rows.append((cell_label(cell, results),
                 pm(w['test_accuracy'], 100), pm(b['test_accuracy'], 100),
                 pm(w['test_loss'], digits=4), pm(b['test_loss'], digits=4),
                 pm(b['train_accuracy'], 100), pm(b['train_loss'], digits=4)))
  return report.format_table(header, rows)


def divergence_notes(results: dict[str, Any]) -> list[str]:
  """One line per diverged seed: where its loss stopped being finite."""
  seeds, notes, seen = results['seeds'], [], set()
  for cell in results['cells']:
    for seed, d in zip(seeds, cell['diverged']):
      if d is None:
        continue
      where = (d['phase'], d['step']) if d['phase'] == 'eta0' else (
          cell_label(cell, results), d['phase'], d['step'])
      if (seed, where) not in seen:
        seen.add((seed, where))
        what = 'eta0' if d['phase'] == 'eta0' else f'eta1 of {where[0]}'
        notes.append(f'seed {seed} diverged in {what} at global step '
                     f'{d["step"]}: its numbers are left out (n/N after a '
                     'value: seeds it covers).')
  return notes


def results_path(config: ExperimentConfig, output_dir: str) -> str:
  """`<output_dir>/<dataset>/<model>_<opt>_<selectors>_<hash>.json`.

  The selectors are joined by '+' ('all' when they are every registered
  one); the hash covers the whole resolved config, so runs with other
  settings or selectors never overwrite each other.
  """
  names = ('all' if sorted(config.selectors) == sorted(selectors_lib.SELECTORS)
           else '+'.join(config.selectors))
  digest = hashlib.sha256(json.dumps(
      dataclasses.asdict(config), sort_keys=True, default=str).encode()
                          ).hexdigest()[:8]
  name = f'{config.model}_{config.optimizer.name}_{names}_{digest}.json'
  return os.path.join(output_dir, config.dataset, name)


def _git_commit() -> str | None:
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, timeout=10,
                            capture_output=True, text=True, check=True)
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           cwd=here, timeout=10, capture_output=True, text=True,
                           check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return commit.stdout.strip() + ('-dirty' if dirty.stdout.strip() else '')


def environment() -> dict[str, Any]:
  """Date, versions, git commit and devices, for the results JSON."""
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import numpy  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'git_commit': _git_commit(), 'python': platform.python_version(),
      'jax': jax.__version__, 'jaxlib': jaxlib.__version__,
      'flax': flax.__version__, 'optax': optax.__version__,
      'numpy': numpy.__version__, 'backend': jax.default_backend(),
      'device_kinds': sorted({d.device_kind for d in jax.devices()}),
      'devices': [str(d) for d in jax.devices()],
      'processes': jax.process_count()}


def _summaries(results: dict[str, Any]) -> None:
  for cell in results['cells']:
    cell['summary'] = {part: {m: report.summarize(v)
                              for m, v in cell[part].items()}
                       for part in ('w', 'pruned')}


def _print(msg: str) -> None:
  print(msg, flush=True)


def run_experiment(
    config: ExperimentConfig,
    output_dir: str | None = None,
    log: Callable[[str], None] = _print,
    checkpointer: Any = None,
) -> dict[str, Any]:
  """Runs the protocol as configured, prints the table, writes the JSON.

  Args:
    config: the experiment; validated before any data is loaded.
    output_dir: results go to `results_path(config, output_dir)`; None writes
      nothing.
    log: where progress and the table go.
    checkpointer: a `checkpoints.Checkpointer` whose identity is this run's
      (resolved) config: the phases save and resume (`run_protocol`), and
      the results say which resumed (`'resumed'`).

  Returns:
    The results dict that was written (config, per-seed metrics, summary,
    `'all_diverged'`: whether every seed of every cell diverged).
  """
  validate_config(config)
  config = resolved(config)
  proto = config.protocol
  start = time.perf_counter()
  dataset = load_dataset(config)
  task = make_task(config, dataset)
  tx = optimizers.create_optimizer(config.optimizer,
                                   num_data=len(dataset.train.labels))
  log(f'{config.dataset} ({len(dataset.train.labels)} train / '
      f'{len(getattr(dataset, config.eval_split).labels)} '
      f'{config.eval_split}), model {config.model}, optimizer '
      f'{config.optimizer.name} (lr {config.optimizer.learning_rate:g}), '
      f'selectors {", ".join(config.selectors)}, backend {jax.default_backend()}')
  results = protocol.run_protocol(task, tx, proto, config.selectors,
                                  config.seeds, log=log,
                                  checkpointer=checkpointer)
  results['wall_s'] = time.perf_counter() - start
  results['config'] = dataclasses.asdict(config)
  results['environment'] = environment()
  results['all_diverged'] = protocol.all_diverged(results)
  _summaries(results)
  n = results['num_params']
  flops = ('at most {:.0%} of the dense backward FLOPs'
           if proto.budget == 'backward'
           else '{:.0%} of the weight-gradient FLOPs')
  counts = lambda cs: ', '.join(
      flops.format(c) if isinstance(c, float) else f'{c} ({c / n:.1%})'
      for c in cs)
  log('')
  log(f'{config.dataset} / {config.model} / {config.optimizer.name} / '
      f'{proto.mode}: N = {n}, k = {counts(results["ks"]) or "- (= l)"}, '
      f'l = {counts(results["ls"])}, eta0 = {proto.eta0}, '
      f'eta1 = {proto.eta1}, granularity {proto.granularity}, '
      f'{len(config.seeds)} seeds, {results["wall_s"]:.1f} s')
  log(format_results_table(results))
  log('')
  log(format_costs(results))
  for note in divergence_notes(results):
    log(note)
  if results['all_diverged']:
    log(f'EVERY SEED DIVERGED: the training loss of all {len(config.seeds)} '
        'seeds became non-finite (see the WARNING lines above); there are no '
        'numbers to report. Try a smaller learning rate.')
  if output_dir is not None and distributed.is_writer():  # process 0 only.
    path = results_path(config, output_dir)
    io_lib.write_json_atomic(results, path)
    log(f'results written to {path}')
  return results

