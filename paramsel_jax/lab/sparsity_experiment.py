# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Sparse training and pruning of an MNIST model, algorithms side by side.

`run(config, workdir)` trains `config.model` with each algorithm of
`config.algorithms` at each sparsity of `config.sparsities`, for
`config.seeds` seeds, through `paramsel_jax.sparsity.sparse`, and writes one
table (markdown and JSON) of the pruned models' test and validation errors
and kept fractions. `experiments/sparsity.py` reads its flags into a
`SparsityConfig`; nothing here reads flags.

The algorithms (`ALGORITHMS`): 'magnitude' (Zhu & Gupta's gradual magnitude
pruning with `--schedule=polynomial`; prune once and fine-tune with
'one_shot'), 'global_magnitude' (the same with one threshold over all
layers), 'random' and 'saliency' (|w ⊙ g|) on the same schedule, 'ste'
(straight-through magnitude masks re-chosen every step, sparse from the
start), 'static' (a fixed random mask), 'set' and 'rigl'
(sparse from the start, drop and regrow every `update_every` steps).

  >>> cfg = SparsityConfig(algorithms=('rigl', 'set'), sparsities=(0.95,),
  ...                      steps=1000)
  >>> validate(cfg).pruner_end('rigl')
  750
  >>> pruner = make_pruner(cfg, 'rigl', 0.95)
  >>> pruner.regrow, pruner.distribution, pruner.schedule.last_step()
  ('gradient', 'erk', 700)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import data as data_lib
from paramsel_jax import io as io_lib
from paramsel_jax import models
from paramsel_jax import report
from paramsel_jax import sparsity as sp
from paramsel_jax.train import steps as steps_lib

PyTree = Any

ALGORITHMS = ('magnitude', 'global_magnitude', 'random', 'saliency', 'ste',
              'static', 'set', 'rigl')
PRUNE_DURING = ('magnitude', 'global_magnitude', 'random', 'saliency')
SPARSE_START = ('ste', 'static', 'set', 'rigl')
SCHEDULES = ('polynomial', 'one_shot')
DISTRIBUTIONS = ('default', 'uniform', 'erk')
MODELS = ('lenet300', 'lenet5')
DATA = ('mnist', 'synthetic')


@dataclasses.dataclass(frozen=True)
class SparsityConfig:
  """One run of `run`: which algorithms, sparsities, model and training.

  Attributes:
    algorithms: names from `ALGORITHMS`.
    sparsities: target fractions of the pruned leaves' (kernels') weights
      set to zero, each in (0, 1).
    model: 'lenet300' (LeNet-300-100) or 'lenet5' (LeNet-5-Caffe).
    data: 'mnist' (train 50,000 / valid 10,000 / test 10,000) or
      'synthetic' (tiny, for tests).
    seeds: seeds 0 .. seeds - 1.
    steps: training steps per seed.
    batch_size: examples per step.
    learning_rate: Adam's, constant (3e-3: chosen on the validation split
      of LeNet-300 at 95%, over 1e-3, for magnitude and RigL).
    weight_decay: L2 coefficient added to the gradient before Adam.
    schedule: the prune-during-training algorithms' schedule: 'polynomial'
      (sparsity rising from 0 at `begin` to the target at `end`) or
      'one_shot' (the target at `end`, then fine-tuning).
    distribution: 'default' (ERK for set, rigl, static; uniform otherwise),
      'uniform' or 'erk' (global_magnitude is always global).
    drop_fraction: SET's / RigL's first drop fraction (cosine-decayed to 0).
    update_every: steps between mask updates (not STE's: every step).
    begin: fraction of `steps` where pruning begins (polynomial).
    end: fraction of `steps` where pruning ends (polynomial, one_shot) or
      where SET / RigL stop updating the masks.
    eval_every: steps between progress lines (0: none).
  """

  algorithms: tuple[str, ...] = ('rigl',)
  sparsities: tuple[float, ...] = (0.95,)
  model: str = 'lenet300'
  data: str = 'mnist'
  seeds: int = 3
  steps: int = 20000
  batch_size: int = 100
  learning_rate: float = 3e-3
  weight_decay: float = 1e-4
  schedule: str = 'polynomial'
  distribution: str = 'default'
  drop_fraction: float = 0.3
  update_every: int = 100
  begin: float = 0.1
  end: float = 0.75
  eval_every: int = 2000

  def pruner_begin(self) -> int:
    """The step where gradual pruning begins."""
    return int(self.begin * self.steps)

  def pruner_end(self, algorithm: str) -> int:
    """The step where pruning (or SET / RigL's mask updates) ends."""
    del algorithm
    return max(int(self.end * self.steps), self.pruner_begin() + 1)


def _choice(name: str, value: Any, accepted: tuple[str, ...]) -> None:
  if value not in accepted:
    raise ValueError(f'--{name}={value}; accepted: {", ".join(accepted)}.')


def validate(config: SparsityConfig) -> SparsityConfig:
  """`config`, or one ValueError naming the first bad value (as a flag)."""
  if not config.algorithms:
    raise ValueError('--algorithm is empty; accepted: a comma list of '
                     f'{", ".join(ALGORITHMS)}.')
  for a in config.algorithms:
    _choice('algorithm', a, ALGORITHMS)
  if not config.sparsities:
    raise ValueError('--sparsity is empty; accepted: fractions in (0, 1).')
  for s in config.sparsities:
    if not 0 < s < 1:
      raise ValueError(f'--sparsity={s}; accepted: fractions in (0, 1) '
                       '(0.95: 95% of the weights pruned).')
  _choice('model', config.model, MODELS)
  _choice('data', config.data, DATA)
  _choice('schedule', config.schedule, SCHEDULES)
  _choice('distribution', config.distribution, DISTRIBUTIONS)
  for name, low in (('seeds', 1), ('steps', 1), ('batch_size', 1),
                    ('update_every', 1), ('eval_every', 0)):
    if getattr(config, name) < low:
      raise ValueError(f'--{name}={getattr(config, name)}; accepted: an '
                       f'integer >= {low}.')
  if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
    raise ValueError(f'--learning_rate={config.learning_rate}; accepted: a '
                     'number > 0.')
  if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
    raise ValueError(f'--weight_decay={config.weight_decay}; accepted: a '
                     'number >= 0.')
  if not 0 <= config.drop_fraction <= 1:
    raise ValueError(f'--drop_fraction={config.drop_fraction}; accepted: a '
                     'number in [0, 1].')
  if not 0 <= config.begin < config.end <= 1:
    raise ValueError(f'--begin={config.begin}, --end={config.end}; '
                     'accepted: 0 <= begin < end <= 1 (fractions of --steps).')
  for a in config.algorithms:  # The pruners' own checks, before any work.
    for s in config.sparsities:
      make_pruner(config, a, s)
  return config


def _distribution(config: SparsityConfig, algorithm: str) -> str:
  if algorithm == 'global_magnitude':
    return 'global'
  if config.distribution != 'default':
    return config.distribution
  return 'erk' if algorithm in ('set', 'rigl', 'static') else 'uniform'


def make_pruner(config: SparsityConfig, algorithm: str,
                sparsity: float) -> sp.Pruner:
  """The `sparsity.Pruner` of `algorithm` at `sparsity` under `config`."""
  dist = _distribution(config, algorithm)
  end = config.pruner_end(algorithm)
  every = config.update_every
  if algorithm in PRUNE_DURING:
    if config.schedule == 'polynomial':
      schedule = sp.polynomial(every=every, begin=config.pruner_begin(),
                               end=end)
    else:
      schedule = sp.one_shot(end)
    score = 'magnitude' if algorithm == 'global_magnitude' else algorithm
    return sp.Pruner(score=score, sparsity=sparsity, schedule=schedule,
                     distribution=dist)
  if algorithm == 'ste':  # Every step: with `every` = 100 the masks swap
    # many weights at once and LeNet-300 at 95% diverged (9-60% error).
    return sp.ste('magnitude', sparsity, sp.periodic(1), distribution=dist)
  if algorithm == 'static':
    return sp.static_sparse(sparsity, distribution=dist)
  make = sp.set_sparse if algorithm == 'set' else sp.rigl
  return make(sparsity, every=every, end=end,
              drop_fraction=config.drop_fraction, distribution=dist)


def load_data(config: SparsityConfig) -> data_lib.Dataset:
  """MNIST (cached, offline after the first fetch) or synthetic data."""
  if config.data == 'synthetic':
    return data_lib.synthetic(num_train=512, num_test=256, valid_size=256)
  return data_lib.load('mnist', valid_size=10000)


def _error_fn(apply: Callable[..., Any], batch: int
              ) -> Callable[[PyTree, Any, Any], float]:
  """The error rate of a split (`train.steps.make_evaluate`'s accuracy)."""
  evaluate = steps_lib.make_evaluate(
      lambda params, x: apply({'params': params}, x), batch_size=batch)
  return lambda params, images, labels: 1.0 - float(
      evaluate(params, images, labels)[1])


def _train_chunk_fn(apply: Callable[..., Any],
                    tx: optax.GradientTransformation, is_ste: bool):
  """A jitted scan of training steps over rows of batch indices."""

  def loss_fn(params, state, x, y):
    if is_ste:
      params = sp.ste_params(params, state)
    logits = apply({'params': params}, steps_lib.to_float(x))
    return steps_lib.cross_entropy(logits, y)

  @jax.jit
  def chunk(params, state, images, labels, idx):
    def step(carry, rows):
      params, state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, state, images[rows],
                                                labels[rows])
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), loss
    (params, state), losses = jax.lax.scan(step, (params, state), idx)
    return params, state, jnp.mean(losses)
  return chunk


def _inner(config: SparsityConfig) -> optax.GradientTransformation:
  return optax.chain(optax.add_decayed_weights(config.weight_decay),
                     optax.adam(config.learning_rate))


def train_one(config: SparsityConfig, algorithm: str, sparsity: float,
              dataset: data_lib.Dataset, log: Callable[[str], None] = print,
              ) -> list[dict[str, Any]]:
  """Trains `config.seeds` seeds of one (algorithm, sparsity); their results.

  The step compiles once: `sparse`'s update reads the PRNG key from its
  state, so each seed's state comes from `sparse(..., key=seed).init`.
  """
  model = models.create_model(config.model)
  pruner = make_pruner(config, algorithm, sparsity)
  inner = _inner(config)
  tx = sp.sparse(inner, pruner, key=0)
  chunk = _train_chunk_fn(model.apply, tx, pruner.ste)
  error = _error_fn(model.apply, 1000)
  images = jnp.asarray(dataset.train.images)
  labels = jnp.asarray(dataset.train.labels)
  n = len(dataset.train)
  every = config.eval_every or config.steps
  rows = []
  for seed in range(config.seeds):
    start = time.perf_counter()
    params = models.init_params(model, jax.random.key(seed),
                                dataset.image_shape)
    state = sp.sparse(inner, pruner, key=seed).init(params)
    params = sp.apply_masks(params, state)
    rng = np.random.default_rng(seed)
    order = np.zeros((0,), np.int32)
    done = 0
    while done < config.steps:
      k = min(every, config.steps - done)
      need = k * config.batch_size
      while order.size < need:  # Epochs of shuffled examples, end to end.
        order = np.concatenate([order, rng.permutation(n).astype(np.int32)])
      idx, order = order[:need].reshape(k, config.batch_size), order[need:]
      params, state, loss = chunk(params, state, images, labels,
                                  jnp.asarray(idx))
      done += k
      if config.eval_every and done < config.steps:
        pruned, _ = sp.export(params, state)
        valid = error(pruned, dataset.valid.images, dataset.valid.labels)
        log(f'  {algorithm} {sparsity:g} seed {seed}: step {done}/'
            f'{config.steps}, train loss {float(loss):.4f}, valid error '
            f'{100 * valid:.2f}% '
            f'({time.perf_counter() - start:.0f} s)')
    pruned, counts = sp.export(params, state)
    if not all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(pruned)):
      raise FloatingPointError(f'{algorithm} {sparsity} seed {seed}: '
                               'non-finite weights after training.')
    test = error(pruned, dataset.test.images, dataset.test.labels)
    valid = error(pruned, dataset.valid.images, dataset.valid.labels)
    wall = time.perf_counter() - start
    total = models.count_params(params)
    masks = sp.get_masks(state)
    kernel_total = sum(int(np.size(m)) for m, t in zip(
        jax.tree.leaves(masks), jax.tree.leaves(pruned)) if np.ndim(t) > 1)
    kernel_kept = sum(int(np.count_nonzero(t)) for t in jax.tree.leaves(pruned)
                      if np.ndim(t) > 1)
    mask_kept = sum(int(np.count_nonzero(m)) for m, t in zip(
        jax.tree.leaves(masks), jax.tree.leaves(pruned)) if np.ndim(t) > 1)
    row: dict[str, Any] = {
        'algorithm': algorithm, 'sparsity': sparsity, 'seed': seed,
        'test_error': test, 'valid_error': valid,
        'nonzero': int(sum(counts.values())), 'params': total,
        'kept': sum(counts.values()) / total,
        'kernel_kept': kernel_kept / kernel_total,
        'mask_kept': mask_kept / kernel_total,
        'steps': config.steps, 'wall_s': wall,
        'steps_per_s': config.steps / wall}
    log(f'{algorithm} {sparsity:g} seed {seed}: test error '
        f'{100 * row["test_error"]:.2f}%, valid error '
        f'{100 * row["valid_error"]:.2f}%, kept {100 * row["kept"]:.2f}% of '
        f'{total} params, {wall:.0f} s ({row["steps_per_s"]:.0f} steps/s)')
    rows.append(row)
  return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """One summary per (algorithm, sparsity), in the order first seen."""
  out = []
  keys = list(dict.fromkeys((r['algorithm'], r['sparsity']) for r in rows))
  for a, s in keys:
    group = [r for r in rows if (r['algorithm'], r['sparsity']) == (a, s)]
    out.append({'algorithm': a, 'sparsity': s, 'seeds': len(group),
                **{k: report.summarize([r[k] for r in group]) for k in (
                    'test_error', 'valid_error', 'kept', 'kernel_kept',
                    'wall_s')},
                'steps': group[0]['steps']})
  return out


def format_table(summary: list[dict[str, Any]]) -> str:
  """The markdown table: errors in %, mean ± std over seeds.

  Example:
    >>> row = {'algorithm': 'rigl', 'sparsity': 0.95, 'seeds': 1,
    ...        'test_error': {'mean': 0.02, 'std': 0.0},
    ...        'valid_error': {'mean': 0.021, 'std': 0.0},
    ...        'kept': {'mean': 0.051, 'std': 0.0},
    ...        'kernel_kept': {'mean': 0.05, 'std': 0.0},
    ...        'wall_s': {'mean': 12.0, 'std': 0.0}, 'steps': 100}
    >>> print(format_table([row]).splitlines()[2])
    | rigl | 0.95 | 1 | 2.00 ± 0.00 | 2.10 ± 0.00 | 5.10 | 5.00 | 100 | 12 |
  """
  lines = ['| algorithm | sparsity | seeds | test error % | valid error % | '
           'kept % (all params) | kept % (kernels) | steps | wall s / seed |',
           '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
  for r in summary:
    te, ve = r['test_error'], r['valid_error']
    lines.append(
        f'| {r["algorithm"]} | {r["sparsity"]:g} | {r["seeds"]} | '
        f'{100 * te["mean"]:.2f} ± {100 * te["std"]:.2f} | '
        f'{100 * ve["mean"]:.2f} ± {100 * ve["std"]:.2f} | '
        f'{100 * r["kept"]["mean"]:.2f} | '
        f'{100 * r["kernel_kept"]["mean"]:.2f} | {r["steps"]} | '
        f'{r["wall_s"]["mean"]:.0f} |')
  return '\n'.join(lines) + '\n'


def results_name(config: SparsityConfig) -> str:
  """The file stem of a run's table: model, data, algorithms, sparsities."""
  algos = '-'.join(config.algorithms)
  sparsities = '-'.join(f'{s:g}' for s in config.sparsities)
  return f'sparsity_{config.model}_{config.data}_{algos}_{sparsities}'


def run(config: SparsityConfig, workdir: str,
        log: Callable[[str], None] = print) -> dict[str, Any]:
  """Trains every (algorithm, sparsity, seed); writes and returns the table.

  Writes `<workdir>/<results_name>.json` (config, per-seed rows, summary)
  and `.md` (the table), each atomically, after every (algorithm,
  sparsity), so a long run's finished rows are on disk.
  """
  validate(config)
  dataset = load_data(config)
  os.makedirs(workdir, exist_ok=True)
  stem = os.path.join(workdir, results_name(config))
  rows: list[dict[str, Any]] = []
  results: dict[str, Any] = {}
  started = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
  for algorithm in config.algorithms:
    for sparsity in config.sparsities:
      rows += train_one(config, algorithm, sparsity, dataset, log)
      summary = summarize(rows)
      results = {'config': dataclasses.asdict(config), 'started': started,
                 'finished': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                 'backend': jax.default_backend(), 'rows': rows,
                 'summary': summary}
      io_lib.write_json_atomic(results, stem + '.json')
      io_lib.write_text_atomic(format_table(summary), stem + '.md')
  log(format_table(results['summary']))
  log(f'wrote {stem}.json and {stem}.md')
  return results
