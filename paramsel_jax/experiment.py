"""One experiment: data + model + optimizer + protocol → a results table and JSON.

`experiments/mnist.py` turns its flags into an `ExperimentConfig` and calls
`run_experiment`; the sweep and tests call it directly.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax import data as data_lib
from paramsel_jax.io import write_json_atomic
from paramsel_jax import models as models_lib
from paramsel_jax import optimizers
from paramsel_jax import protocol
from paramsel_jax import selectors as selectors_lib

CONV_MODELS = ('lenet5', 'cifar_cnn')
SEED_AXES = ('auto',) + protocol.SEED_AXES


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one run of the protocol needs; plain values only.

  Attributes:
    dataset: a name from `paramsel_jax.data.DATASETS`.
    model: a name from `paramsel_jax.models.MODELS`.
    selectors: registered selector names; all share the η0 phase.
    seeds: one run per seed.
    optimizer: which `T`.
    protocol: η0, η1, k, l, window, batch size, ...; its `seed_axis` may be
      'auto': 'map' for conv nets on CPU (vmap of convs is ~2.6x slower there,
      PERF_NOTES.md), 'vmap' otherwise.
    data_dir: the data cache (None: `paramsel_jax.data.default_data_dir()`).
    synthetic_size: for `dataset='synthetic'`: number of training examples.
    synthetic_shape: for `dataset='synthetic'`: the image shape (H, W, C).
  """

  dataset: str = 'mnist'
  model: str = 'lenet300'
  selectors: tuple[str, ...] = ('topgrad',)
  seeds: tuple[int, ...] = (0, 1, 2)
  optimizer: optimizers.OptimizerConfig = optimizers.OptimizerConfig()
  protocol: protocol.ProtocolConfig = protocol.ProtocolConfig(seed_axis='auto')
  data_dir: str | None = None
  synthetic_size: int = 2048
  synthetic_shape: tuple[int, int, int] = (28, 28, 1)


def validate_config(config: ExperimentConfig) -> tuple[int, int]:
  """Checks every setting before any data is loaded; raises ValueError.

  Returns:
    The resolved `(k, l)` counts.
  """
  if config.dataset not in data_lib.DATASETS:
    raise ValueError(f'Unknown dataset {config.dataset!r}; accepted: '
                     f'{", ".join(data_lib.DATASETS)}.')
  if config.model not in models_lib.MODELS:
    raise ValueError(f'Unknown model {config.model!r}; accepted: '
                     f'{", ".join(models_lib.MODELS)}.')
  if not config.selectors:
    raise ValueError('No selector given; accepted: '
                     f'{", ".join(sorted(selectors_lib.SELECTORS))} or all.')
  for name in config.selectors:
    selectors_lib.get_selector(name)
  if not config.seeds or len(set(config.seeds)) != len(config.seeds):
    raise ValueError(f'seeds={config.seeds!r}; accepted: distinct integers, '
                     'at least one.')
  if config.protocol.seed_axis not in SEED_AXES:
    raise ValueError(f'seed_axis={config.protocol.seed_axis!r}; accepted: '
                     f'{", ".join(SEED_AXES)}.')
  optimizers.validate_optimizer_config(config.optimizer)
  image_shape, num_classes, num_train = _data_shape(config)
  model = models_lib.create_model(config.model, num_classes=num_classes)
  n = models_lib.count_params(jax.eval_shape(
      lambda key: models_lib.init_params(model, key, image_shape),
      jax.random.key(0)))
  proto = dataclasses.replace(
      config.protocol,
      seed_axis=resolve_seed_axis(config.protocol.seed_axis, config.model))
  return protocol.validate_protocol_config(proto, n, num_train)


def _data_shape(config: ExperimentConfig) -> tuple[tuple[int, ...], int, int]:
  """(image shape, classes, training-set size), without loading the data."""
  if config.dataset == 'synthetic':
    if config.synthetic_size < 1:
      raise ValueError(f'synthetic_size={config.synthetic_size}; accepted: >= 1.')
    return tuple(config.synthetic_shape), 10, config.synthetic_size
  info = data_lib.info(config.dataset)
  return info.image_shape, info.num_classes, info.num_train


def resolve_seed_axis(seed_axis: str, model: str) -> str:
  """'auto' → 'map' for conv nets on CPU, else 'vmap'."""
  if seed_axis != 'auto':
    return seed_axis
  on_cpu = jax.default_backend() == 'cpu'
  return 'map' if on_cpu and model in CONV_MODELS else 'vmap'


def load_dataset(config: ExperimentConfig, log: Callable[[str], None]) -> data_lib.Dataset:
  if config.dataset == 'synthetic':
    return data_lib.synthetic(num_train=config.synthetic_size,
                              num_test=max(config.synthetic_size // 4, 1),
                              image_shape=tuple(config.synthetic_shape))
  return data_lib.load(config.dataset, data_dir=config.data_dir,
                       verbose=True)


def make_task(config: ExperimentConfig, dataset: data_lib.Dataset) -> protocol.Task:
  """The protocol's `Task`: the model's init/apply and the data on device."""
  model = models_lib.create_model(config.model,
                                  num_classes=dataset.num_classes)
  image_shape = tuple(dataset.train.images.shape[1:])
  return protocol.Task(
      init_fn=lambda key: models_lib.init_params(model, key, image_shape),
      apply_fn=lambda params, x: model.apply({'params': params}, x),
      train_images=jnp.asarray(dataset.train.images),
      train_labels=jnp.asarray(dataset.train.labels),
      test_images=jnp.asarray(dataset.test.images),
      test_labels=jnp.asarray(dataset.test.labels))


def summarize(values: Sequence[float]) -> dict[str, float]:
  """Mean, sample std and 95% t-interval half-width over seeds.

  Example:
    >>> summarize([1.0, 3.0])['mean']
    2.0
  """
  x = np.asarray(values, np.float64)
  std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
  return {'mean': float(x.mean()), 'std': std,
          'ci95': _t975(len(x) - 1) * std / math.sqrt(len(x)) if len(x) > 1 else 0.0}


def _t975(dof: int) -> float:
  """Student-t 97.5% quantile (two-sided 95%)."""
  table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
           7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086,
           30: 2.042}
  if dof in table:
    return table[dof]
  return table[max(d for d in table if d <= dof)] if dof > 1 else 12.706


def _pm(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
  s = summarize(values)
  return f'{s["mean"] * scale:.{digits}f} ± {s["std"] * scale:.{digits}f}'


def cell_label(cell: dict[str, Any], results: dict[str, Any]) -> str:
  """`selector`, plus k and l (as % of N) when a run has several of them."""
  n, parts = results['num_params'], [cell['selector']]
  if len(results['ks']) > 1 and results.get('mode') != 'retrain':
    parts.append(f'k={cell["k"] / n:.1%}')
  if len(results['ls']) > 1:
    parts.append(f'l={cell["l"] / n:.1%}')
  return ' '.join(parts)


def format_table(results: dict[str, Any]) -> str:
  """The results as a readable text table (mean ± std over seeds)."""
  header = ('selector', 'test acc w %', 'test acc β⊙w %', 'test loss w',
            'test loss β⊙w', 'train acc β⊙w %', 'train loss β⊙w')
  rows = []
  eta0 = results['after_eta0']
  if eta0 is not None:
    rows.append(('(after η0, dense)', _pm(eta0['test_accuracy'], 100), '-',
                 _pm(eta0['test_loss'], digits=4), '-', '-', '-'))
  for cell in results['cells']:
    w, b = cell['w'], cell['pruned']
    rows.append((cell_label(cell, results),
                 _pm(w['test_accuracy'], 100), _pm(b['test_accuracy'], 100),
                 _pm(w['test_loss'], digits=4), _pm(b['test_loss'], digits=4),
                 _pm(b['train_accuracy'], 100), _pm(b['train_loss'], digits=4)))
  widths = [max(len(str(row[i])) for row in rows + [header])
            for i in range(len(header))]
  line = lambda row: '  '.join(str(c).ljust(w) for c, w in zip(row, widths))
  return '\n'.join([line(header), '  '.join('-' * w for w in widths)]
                   + [line(row) for row in rows])


def _percent_list(counts: Sequence[int], n: int) -> str:
  return ', '.join(f'{c} ({c / n:.1%})' for c in counts)


def results_path(config: ExperimentConfig, output_dir: str) -> str:
  selectors = 'all' if len(config.selectors) > 1 else config.selectors[0]
  name = f'{config.model}_{config.optimizer.name}_{selectors}.json'
  return os.path.join(output_dir, config.dataset, name)


def _print(msg: str) -> None:
  print(msg, flush=True)


def run_experiment(
    config: ExperimentConfig,
    output_dir: str | None = None,
    log: Callable[[str], None] = _print,
) -> dict[str, Any]:
  """Runs the protocol as configured, prints the table, writes the JSON.

  Args:
    config: the experiment; validated before any data is loaded.
    output_dir: results go to `output_dir/<dataset>/<model>_<opt>_<sel>.json`;
      None writes nothing.
    log: where progress and the table go.

  Returns:
    The results dict that was written (config, per-seed metrics, summary).
  """
  validate_config(config)
  seed_axis = resolve_seed_axis(config.protocol.seed_axis, config.model)
  proto = dataclasses.replace(config.protocol, seed_axis=seed_axis)
  start = time.perf_counter()
  dataset = load_dataset(config, log)
  task = make_task(config, dataset)
  tx = optimizers.create_optimizer(config.optimizer,
                                   num_data=len(dataset.train.labels))
  log(f'{config.dataset} ({len(dataset.train.labels)} train / '
      f'{len(dataset.test.labels)} test), model {config.model}, optimizer '
      f'{config.optimizer.name} (lr {config.optimizer.learning_rate:g}), '
      f'selectors {", ".join(config.selectors)}, backend {jax.default_backend()}')
  results = protocol.run_protocol(task, tx, proto, config.selectors,
                                  config.seeds, log=log)
  results['wall_s'] = time.perf_counter() - start
  results['config'] = dataclasses.asdict(config)
  results['config']['protocol']['seed_axis'] = seed_axis
  results['environment'] = {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'jax': jax.__version__, 'backend': jax.default_backend(),
      'devices': [str(d) for d in jax.devices()]}
  for cell in results['cells']:
    cell['summary'] = {part: {m: summarize(v) for m, v in cell[part].items()}
                       for part in ('w', 'pruned')}
  n = results['num_params']
  log('')
  log(f'{config.dataset} / {config.model} / {config.optimizer.name} / '
      f'{proto.mode}: N = {n}, k = {_percent_list(results["ks"], n)}, '
      f'l = {_percent_list(results["ls"], n)}, eta0 = {proto.eta0}, '
      f'eta1 = {proto.eta1}, {len(config.seeds)} seeds, '
      f'{results["wall_s"]:.1f} s')
  log(format_table(results))
  if output_dir is not None:
    path = results_path(config, output_dir)
    write_json_atomic(results, path)
    log(f'results written to {path}')
  return results
