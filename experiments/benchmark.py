# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""How fast paramsel_jax trains, side by side with PyTorch (a measurement).

  .venv/bin/python experiments/benchmark.py
  .venv/bin/python experiments/benchmark.py --parts=throughput,peak --repeats=9
  .venv/bin/python experiments/benchmark.py --nouse_torch   # JAX only

Every variant below is set up and compiled first; then ``--repeats`` rounds
each run every variant once (the machine is shared and noisy): the variants
that are compared with each other back to back, forwards in even rounds and
backwards in odd ones, the groups in a shuffled order. A table gives each variant's median rate and spread; each ratio is the
median over rounds of the two variants' rates *in the same round*. All numbers
go, with the date, the machine and the versions, to
``--output_dir/benchmark_<backend>_<time>.json`` (written atomically).

Parts (``--parts``):

* ``throughput``: Adam at batch ``--batch_size`` on synthetic MNIST-shaped
  uint8 data on the device, for LeNet-300-100 and LeNet-5 (``--models``):
  the protocol's own training loop (``Runner.run_chunk``: one jitted
  ``fori_loop`` of steps, batches sampled on the device; here one seed, which
  the Runner runs as the plain program); a bare scanned loop of
  ``steps.train_step`` (the same on-device
  sampling, state donated; the loop of the ``masked`` part); the library's
  jitted step (``steps.make_train_step``) called in a Python loop on
  pre-made batches; and the same model (same initial weights, copied), batch
  and optimizer in PyTorch, eager, ``torch.optim.Adam`` default and
  ``fused=True``.
* ``peak``: a ``--matmul_size``-cubed float32 matmul in JAX, GFLOP/s; the
  fraction of it that a training step reaches, from the exact matmul FLOPs
  counted from the layer shapes.
* ``masked``: ``masked(adam)`` (with a 10% α) vs ``adam`` in the same scanned
  loop.
* ``protocol``: the whole protocol (η0, α, η1, β, the evaluations of w and
  β⊙w; one selector, one seed, as ``run_protocol`` runs them: seeds mapped,
  only the selector's statistics, no dense evaluation after η0) with one warm
  ``Runner``, vs the same number of bare training steps in the same chunks of
  the same loop; the overhead is split into its parts.
* ``seeds``: ``--num_seeds`` seeds vmapped vs in turn (``lax.map``), in the
  protocol's loop.
* ``diagnose`` (not run by default): the bare loop updating the selectors'
  statistics at every step, all of ``TrajectoryStats`` (what a run comparing
  every selector collects in its windows) vs only topgrad's Σ|g|: what the
  statistics cost per step.

PyTorch is optional (``pip install -e '.[bench]'``); without it the PyTorch
columns are skipped and the script says so. PyTorch runs on CUDA when it has
a GPU, otherwise on the CPU with one thread per usable core; the table says
which. On a busy CPU (load average >= cores) ``--omp_wait_policy=auto`` sets
``OMP_WAIT_POLICY=PASSIVE`` for PyTorch's OpenMP threads, whose default
spin-waiting collapses there (50x slower measured); the header says which
policy ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import datetime
import functools
import math
import os
import platform
import statistics
import sys
import time
from typing import Any

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import data as data_lib
from paramsel_jax import experiment
from paramsel_jax import io as io_lib
from paramsel_jax import masking
from paramsel_jax import models as models_lib
from paramsel_jax import protocol
from paramsel_jax import selectors as selectors_lib
from paramsel_jax import stats as stats_lib
from paramsel_jax import steps

PARTS = ('throughput', 'peak', 'masked', 'protocol', 'seeds', 'diagnose')
DEFAULT_PARTS = PARTS[:-1]
OMP_WAIT_POLICIES = ('auto', 'passive', 'active', 'unset')
TORCH_MODELS = ('lenet300', 'lenet5')

_PARTS = flags.DEFINE_list(
    'parts', list(DEFAULT_PARTS),
    f'Any of {", ".join(PARTS)}. diagnose (not by default): the cost per '
    'step of the selectors\' statistics, all of them vs only topgrad\'s, in '
    'the bare loop.')
_MODELS = flags.DEFINE_list(
    'models', list(TORCH_MODELS),
    'Models for throughput, masked and seeds (lenet300, lenet5).')
_REPEATS = flags.DEFINE_integer('repeats', 7, 'Interleaved timed rounds.')
_MLP_STEPS = flags.DEFINE_integer(
    'mlp_steps', 200, 'Training steps per measurement (one jitted chunk), '
    'MLPs.')
_CONV_STEPS = flags.DEFINE_integer(
    'conv_steps', 20, 'Training steps per measurement, conv nets.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Minibatch size.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 1e-3, 'Adam step size.')
_NUM_TRAIN = flags.DEFINE_integer(
    'num_train', 50000, 'Synthetic training examples (MNIST: 50000).')
_NUM_TEST = flags.DEFINE_integer(
    'num_test', 10000, 'Synthetic test examples (MNIST: 10000).')
_MATMUL_SIZE = flags.DEFINE_integer('matmul_size', 2048, 'n of the n³ matmul.')
_MATMUL_REPS = flags.DEFINE_integer('matmul_reps', 5,
                                    'Matmuls per measurement.')
_PROTOCOL_MODEL = flags.DEFINE_string('protocol_model', 'lenet300',
                                      'Model of the protocol part.')
_SELECTOR = flags.DEFINE_string('selector', 'topgrad',
                                'Selector of the protocol part.')
_ETA0 = flags.DEFINE_integer('eta0', 500, 'Protocol: steps of T.')
_ETA1 = flags.DEFINE_integer('eta1', 1500, 'Protocol: steps of T|α.')
_WINDOW = flags.DEFINE_integer('window', 100, 'Protocol: statistics window.')
_CHUNK_SIZE = flags.DEFINE_integer('chunk_size', 500,
                                   'Protocol: steps per jitted call.')
_K = flags.DEFINE_float('k', 0.1, 'Protocol: fraction (or count) in α.')
_L = flags.DEFINE_float('l', 0.2, 'Protocol: fraction (or count) in β.')
_TRAIN_EVAL_SIZE = flags.DEFINE_integer(
    'train_eval_size', 0, 'Protocol: train metrics on the first this many '
    'training examples (0: all of them, as the paper reports L(β⊙w, D)).')
_COLD_PROTOCOL = flags.DEFINE_bool(
    'cold_protocol', True, 'Also run protocol.run_protocol itself once (it '
    'compiles its own Runner) and check the warm copy gives its metrics.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', 4, 'Seeds of the seeds part.')
_SEED_MLP_STEPS = flags.DEFINE_integer(
    'seed_mlp_steps', 50, 'Seeds part: steps per seed per measurement, MLPs.')
_SEED_CONV_STEPS = flags.DEFINE_integer(
    'seed_conv_steps', 10,
    'Seeds part: steps per seed per measurement, conv nets.')
_USE_TORCH = flags.DEFINE_bool('use_torch', True,
                               'Compare with PyTorch when it is installed.')
_TORCH_THREADS = flags.DEFINE_integer(
    'torch_threads', 0, 'PyTorch CPU threads; 0: one per usable core.')
_OMP_WAIT_POLICY = flags.DEFINE_enum(
    'omp_wait_policy', 'auto', OMP_WAIT_POLICIES,
    "OMP_WAIT_POLICY of PyTorch's OpenMP threads. auto: PASSIVE when the load "
    'average is at least the number of cores (spinning threads collapse '
    'there), else the OpenMP default; unset: the OpenMP default.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the data, inits and order.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'results/benchmark',
                                  'Where the JSON goes.')


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """Everything one benchmark run needs (the flags, as plain values)."""

  parts: tuple[str, ...] = DEFAULT_PARTS
  models: tuple[str, ...] = TORCH_MODELS
  repeats: int = 7
  mlp_steps: int = 200
  conv_steps: int = 20
  batch_size: int = 128
  learning_rate: float = 1e-3
  num_train: int = 50000
  num_test: int = 10000
  matmul_size: int = 2048
  matmul_reps: int = 5
  protocol_model: str = 'lenet300'
  selector: str = 'topgrad'
  eta0: int = 500
  eta1: int = 1500
  window: int = 100
  chunk_size: int = 500
  k: float = 0.1
  l: float = 0.2
  train_eval_size: int = 0
  cold_protocol: bool = True
  num_seeds: int = 4
  seed_mlp_steps: int = 50
  seed_conv_steps: int = 10
  use_torch: bool = True
  torch_threads: int = 0
  omp_wait_policy: str = 'auto'
  seed: int = 0


def validate(config: BenchmarkConfig) -> None:
  """Raises ValueError naming the first bad setting and what is accepted."""
  for part in config.parts:
    if part not in PARTS:
      raise ValueError(f'Unknown part {part!r}; accepted: {", ".join(PARTS)}.')
  for model in config.models:
    if model not in TORCH_MODELS:
      raise ValueError(f'Unknown model {model!r}; accepted: '
                       f'{", ".join(TORCH_MODELS)}.')
  if config.protocol_model not in models_lib.MODELS:
    raise ValueError(f'Unknown protocol_model {config.protocol_model!r}; '
                     f'accepted: {", ".join(models_lib.MODELS)}.')
  selectors_lib.get_selector(config.selector)
  for name in ('repeats', 'mlp_steps', 'conv_steps', 'batch_size', 'num_train',
               'num_test', 'matmul_size', 'matmul_reps', 'num_seeds',
               'seed_mlp_steps', 'seed_conv_steps'):
    if getattr(config, name) < 1:
      raise ValueError(f'{name}={getattr(config, name)}; accepted: >= 1.')
  if config.omp_wait_policy not in OMP_WAIT_POLICIES:
    raise ValueError(f'omp_wait_policy={config.omp_wait_policy!r}; accepted: '
                     f'{", ".join(OMP_WAIT_POLICIES)}.')
  if config.torch_threads < 0:
    raise ValueError(f'torch_threads={config.torch_threads}; accepted: >= 0.')
  if 'protocol' in config.parts:
    protocol.validate_protocol_config(
        _protocol_config(config), 10**9, config.num_train)


def _protocol_config(config: BenchmarkConfig,
                     seed_axis: str = 'vmap') -> protocol.ProtocolConfig:
  as_count = lambda v: int(v) if v >= 1 else v
  return protocol.ProtocolConfig(
      eta0=config.eta0, eta1=config.eta1, k=as_count(config.k),
      l=as_count(config.l), window=config.window, batch_size=config.batch_size,
      chunk_size=config.chunk_size, seed_axis=seed_axis,
      train_eval_size=config.train_eval_size or None)


# --------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
  """One timed variant: `run()` does the work and waits for it.

  Attributes:
    name: a unique key, e.g. 'lenet300/jax/runner'.
    label: what the table prints.
    run: does one measurement's work, blocks until done, and returns None or
      a dict of named sub-timings in seconds.
    steps: training steps (or matmuls) per `run()`.
    examples: examples per `run()` (0: not a training case).
    flops: FLOPs per `run()` (0: not counted).
    seconds: wall time of each timed `run()`, one per round.
    parts: sub-timings per round, when `run` returns them.
    first_s: the first, untimed call (tracing, compilation, warm-up).
    group: cases compared with each other; a round runs them back to back.
  """

  name: str
  label: str
  run: Callable[[], dict[str, float] | None]
  steps: int
  examples: int = 0
  flops: float = 0.0
  group: str = ''
  seconds: list[float] = dataclasses.field(default_factory=list)
  parts: list[dict[str, float]] = dataclasses.field(default_factory=list)
  first_s: float = float('nan')

  def time_once(self) -> float:
    tic = time.perf_counter()
    parts = self.run()
    seconds = time.perf_counter() - tic
    if parts:
      self.parts.append(parts)
    return seconds

  def warm_up(self) -> None:
    self.first_s = self.time_once()
    self.parts.clear()

  def measure(self) -> None:
    self.seconds.append(self.time_once())

  @property
  def rates(self) -> list[float]:
    """Steps (or matmuls) per second, per round."""
    return [self.steps / s for s in self.seconds]

  @property
  def compile_s(self) -> float:
    """First call minus a typical call: tracing + compilation (+ warm-up)."""
    return self.first_s - statistics.median(self.seconds)


def paired_ratio(a: Case, b: Case) -> float:
  """Median over rounds of a's rate / b's rate in the same round."""
  return statistics.median(x / y for x, y in zip(a.rates, b.rates))


# --------------------------------------------------------------------------
# FLOPs.
# --------------------------------------------------------------------------


def matmul_flops(model, params, input_shape: Sequence[int],
                 batch_size: int) -> dict[str, float]:
  """Exact multiply-add FLOPs of one training step, from the layer shapes.

  Every Dense and Conv2D layer does `macs` multiply-adds per example in the
  forward pass (Dense: in·out; Conv2D: Ho·Wo·kh·kw·cin·cout). The backward
  pass does the same again for the weight gradients, and again for the input
  gradients of every layer but the first (its input is the data). Biases,
  activations, the loss and the optimizer are not counted (O(params), not
  O(params · batch)).

  Returns:
    `{'forward', 'backward', 'step'}` FLOPs per step, and `'layers'`.
  """
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  _, state = jax.eval_shape(
      lambda p, x: model.apply({'params': p}, x, capture_intermediates=True,
                               mutable=['intermediates']), params, x)
  outputs = state['intermediates']
  macs = []
  for name, layer in params.items():  # In creation order: input side first.
    if 'kernel' not in layer:
      continue
    out_shape = outputs[name]['__call__'][0].shape
    spatial = math.prod(out_shape[1:-1])  # Ho·Wo for convs, 1 for Dense.
    macs.append((name, spatial * math.prod(layer['kernel'].shape)))
  forward = 2 * batch_size * sum(m for _, m in macs)
  backward = forward + 2 * batch_size * sum(m for _, m in macs[1:])
  return {'forward': forward, 'backward': backward,
          'step': forward + backward, 'layers': dict(macs)}


# --------------------------------------------------------------------------
# JAX variants.
# --------------------------------------------------------------------------

INPUT_SHAPE = (28, 28, 1)


def make_dataset(config: BenchmarkConfig) -> data_lib.Dataset:
  return data_lib.synthetic(num_train=config.num_train,
                            num_test=config.num_test, image_shape=INPUT_SHAPE,
                            seed=config.seed)


def make_task(model_name: str, dataset: data_lib.Dataset) -> protocol.Task:
  """The protocol's Task, built as `experiments/mnist.py` builds it."""
  exp = experiment.ExperimentConfig(dataset='synthetic', model=model_name,
                                    synthetic_size=len(dataset.train.labels))
  return experiment.make_task(exp, dataset)


def _block(tree) -> None:
  jax.block_until_ready(tree)


def runner_case(name: str, label: str, task: protocol.Task,
                tx: optax.GradientTransformation, config: BenchmarkConfig,
                num_steps: int, num_seeds: int = 1, seed_axis: str = 'vmap',
                runner: protocol.Runner | None = None) -> Case:
  """The protocol's loop: `Runner.run_chunk` of `num_steps` steps, no stats.

  `runner`: reuse this one's compiled chunk (the chunk length is a traced
  argument, so one compiled chunk serves every length).
  """
  if runner is None:
    runner = protocol.Runner(task, tx, _protocol_config(config, seed_axis))
  keys = jax.vmap(jax.random.key)(
      jnp.arange(config.seed, config.seed + num_seeds, dtype=jnp.uint32))
  box = {'state': runner.init(keys), 'start': 0}
  n = jnp.asarray(num_steps, jnp.int32)

  def run():
    start = jnp.asarray(box['start'], jnp.int32)
    box['state'], loss = runner.run_chunk(box['state'], start, n)
    box['start'] += num_steps
    _block((box['state'], loss))

  return Case(name, label, run, num_steps * num_seeds,
              num_steps * num_seeds * config.batch_size)


def make_scan_chunk(task: protocol.Task, tx: optax.GradientTransformation,
                    batch_size: int, num_steps: int) -> Callable:
  """A bare jitted loop of `num_steps` steps, the protocol's minus its extras.

  Each step samples its minibatch on the device and calls
  `steps.train_step`, as `Runner` does, without the seed axis, the
  statistics and the forced `masked` wrapper; params and optimizer state are
  donated.
  """
  def chunk(params, opt_state, key, start):
    def body(i, carry):
      params, opt_state, loss_sum = carry
      images, labels = steps.sample_batch(
          jax.random.fold_in(key, start + i), task.train_images,
          task.train_labels, batch_size)
      params, opt_state, loss, _ = steps.train_step(
          task.apply_fn, tx, params, opt_state, images, labels)
      return params, opt_state, loss_sum + loss
    return jax.lax.fori_loop(0, num_steps, body,
                             (params, opt_state, jnp.zeros((), jnp.float32)))
  return jax.jit(chunk, donate_argnums=(0, 1))


def scan_case(name: str, label: str, task: protocol.Task,
              tx: optax.GradientTransformation, config: BenchmarkConfig,
              num_steps: int) -> Case:
  chunk = make_scan_chunk(task, tx, config.batch_size, num_steps)
  params = task.init_fn(jax.random.key(config.seed))
  key = jax.random.key(config.seed + 1)
  box = {'params': params, 'opt_state': tx.init(params), 'start': 0}

  def run():
    box['params'], box['opt_state'], loss = chunk(
        box['params'], box['opt_state'], key,
        jnp.asarray(box['start'], jnp.int32))
    box['start'] += num_steps
    _block((box['params'], loss))

  return Case(name, label, run, num_steps, num_steps * config.batch_size)


def stats_case(name: str, label: str, task: protocol.Task,
               tx: optax.GradientTransformation, config: BenchmarkConfig,
               num_steps: int, which: str) -> Case:
  """The bare loop, updating the selectors' statistics at every step.

  `which='all'`: `stats.update_stats` of every `TrajectoryStats` field (what
  a run comparing all selectors collects in its windows); `'topgrad'`: only
  what topgrad reads (Σ|g|), as `Runner` collects for topgrad alone.
  """
  groups = (stats_lib.ALL_GROUPS if which == 'all'
            else selectors_lib.get_selector(which).stats)
  update = functools.partial(stats_lib.update_stats, groups=groups)

  def chunk(params, opt_state, st, key, start):
    def body(i, carry):
      params, opt_state, st, loss_sum = carry
      images, labels = steps.sample_batch(
          jax.random.fold_in(key, start + i), task.train_images,
          task.train_labels, config.batch_size)
      new, opt_state, loss, grads = steps.train_step(
          task.apply_fn, tx, params, opt_state, images, labels)
      st = update(st, grads, params, new)
      return new, opt_state, st, loss_sum + loss
    return jax.lax.fori_loop(0, num_steps, body, (
        params, opt_state, st, jnp.zeros((), jnp.float32)))

  jitted = jax.jit(chunk, donate_argnums=(0, 1, 2))
  params = task.init_fn(jax.random.key(config.seed))
  key = jax.random.key(config.seed + 1)
  box = {'params': params, 'opt_state': tx.init(params),
         'stats': stats_lib.init_stats(params), 'start': 0}

  def run():
    box['params'], box['opt_state'], box['stats'], loss = jitted(
        box['params'], box['opt_state'], box['stats'], key,
        jnp.asarray(box['start'], jnp.int32))
    box['start'] += num_steps
    _block((box['params'], loss))

  return Case(name, label, run, num_steps, num_steps * config.batch_size)


def fixed_batches(dataset: data_lib.Dataset, batch_size: int,
                  count: int) -> tuple[np.ndarray, np.ndarray]:
  """`count` minibatches (uint8 NHWC images, int32 labels), made in advance."""
  rng = np.random.default_rng(0)
  idx = rng.integers(0, len(dataset.train.labels), (count, batch_size))
  return dataset.train.images[idx], dataset.train.labels[idx].astype(np.int32)


def step_loop_case(name: str, label: str, task: protocol.Task,
                   tx: optax.GradientTransformation, config: BenchmarkConfig,
                   num_steps: int, batches) -> Case:
  """The library's jitted step (`steps.make_train_step`) in a Python loop."""
  step = steps.make_train_step(task.apply_fn, tx)
  device_batches = [(jnp.asarray(x), jnp.asarray(y)) for x, y in zip(*batches)]
  params = task.init_fn(jax.random.key(config.seed))
  box = {'params': params, 'opt_state': tx.init(params)}

  def run():
    params, opt_state = box['params'], box['opt_state']
    for i in range(num_steps):
      x, y = device_batches[i % len(device_batches)]
      params, opt_state, loss, _ = step(params, opt_state, x, y)
    box['params'], box['opt_state'] = params, opt_state
    _block((params, loss))

  return Case(name, label, run, num_steps, num_steps * config.batch_size)


def matmul_case(config: BenchmarkConfig) -> Case:
  n, reps = config.matmul_size, config.matmul_reps
  keys = jax.random.split(jax.random.key(config.seed))
  a = jax.random.normal(keys[0], (n, n), jnp.float32)
  b = jax.random.normal(keys[1], (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)

  def run():
    outs = [dot(a, b) for _ in range(reps)]
    _block(outs)

  return Case('matmul', f'jnp.dot {n}x{n}x{n} float32, {reps} per call', run,
              reps, flops=2.0 * n**3 * reps)


# --------------------------------------------------------------------------
# The protocol, warm.
# --------------------------------------------------------------------------


def protocol_cases(task: protocol.Task, tx: optax.GradientTransformation,
                   config: BenchmarkConfig) -> tuple[Case, Case, dict]:
  """The protocol with one warm Runner, and the same steps bare.

  `protocol_run` makes the calls that `protocol.run_protocol` makes for one
  selector, one k, one l and one seed (prune_at_end mode), on a Runner that
  has compiled everything once, and times each stage. `raw_run` runs the
  same η0 + η1 steps through the same compiled chunk, in the same chunks,
  with no statistics, selection or evaluation.
  """
  # As run_protocol runs it: only the statistics the selector reads; no
  # evaluation of the dense w after η0 (not in the paper).
  proto = dataclasses.replace(_protocol_config(config),
                              evaluate_after_eta0=False)
  selector = selectors_lib.get_selector(config.selector)
  n = models_lib.count_params(jax.eval_shape(task.init_fn,
                                              jax.random.key(0)))
  (k,), (l,) = protocol.validate_protocol_config(
      proto, n, int(task.train_images.shape[0]))
  runner = protocol.Runner(task, tx, proto, stat_groups=selector.stats)
  keys = jax.vmap(jax.random.key)(jnp.asarray([config.seed], jnp.uint32))
  noop = lambda msg: None
  results = {}

  def protocol_run() -> dict[str, float]:
    t = {'train': 0.0, 'evaluate': 0.0, 'select': 0.0, 'other': 0.0}
    def stage(part, fn, *args):
      tic = time.perf_counter()
      out = fn(*args)
      _block(out)
      t[part] += time.perf_counter() - tic
      return out
    metrics = lambda params: protocol._to_lists(runner.evaluate(params))
    state0 = stage('other', runner.init, keys)
    state0 = stage('train', runner.train, state0, 0, proto.eta0, proto.window,
                   noop, 'eta0')
    alpha = stage('select', runner.select, state0, selector, 'alpha', k,
                  state0.stats)
    start = stage('other', runner.start_phase1, state0, alpha)
    state = stage('train', runner.train, start, proto.eta0, proto.eta1,
                  proto.window, noop, 'eta1')
    stage('evaluate', metrics, state.params)
    beta = stage('select', runner.select, state, selector, 'beta', l,
                 state0.stats)
    stage('other', lambda: (np.asarray(protocol._count(alpha)).tolist(),
                            np.asarray(protocol._count(beta)).tolist(),
                            protocol._any_frozen_moved(alpha, state.params,
                                                       start.params)))
    pruned = stage('other', steps.prune, state.params, beta)
    results['pruned'] = stage('evaluate', metrics, pruned)
    return t

  def raw_run() -> dict[str, float]:
    tic = time.perf_counter()
    state = runner.init(keys)
    for first, count in ((0, proto.eta0), (proto.eta0, proto.eta1)):
      done = 0
      while done < count:
        m = min(proto.chunk_size, count - done)
        state, loss = runner.run_chunk(
            state, jnp.asarray(first + done, jnp.int32),
            jnp.asarray(m, jnp.int32))
        np.asarray(loss)  # waits, as Runner.train does.
        done += m
    return {'train': time.perf_counter() - tic}

  total = proto.eta0 + proto.eta1
  label = (f'{config.selector}, η0={proto.eta0}, η1={proto.eta1}, '
           f'window={proto.window}, chunk={proto.chunk_size}, train metrics '
           f'on {proto.train_eval_size or "all"} examples')
  return (Case('protocol/full', f'full protocol ({label})', protocol_run,
               total, total * config.batch_size),
          Case('protocol/raw', f'same {total} steps, bare chunks', raw_run,
               total, total * config.batch_size),
          {'runner': runner, 'results': results, 'k': k, 'l': l, 'n': n})


# --------------------------------------------------------------------------
# PyTorch.
# --------------------------------------------------------------------------


def set_omp_wait_policy(policy: str) -> str:
  """Sets OMP_WAIT_POLICY for PyTorch's OpenMP threads; says what it did.

  PyTorch's CPU ops run on OpenMP threads that, by default, spin while they
  wait. On an oversubscribed machine (more runnable threads than cores) the
  spinning threads steal the cores the working ones need: on this 2-core
  machine at a load average of ~12, LeNet-300-100 with fused Adam ran 5
  steps/s with the default policy, 240 with PASSIVE, 40-70 with one thread.
  'auto' sets PASSIVE only when the 1-minute load average is at least the
  number of usable cores. It must run before torch is imported.
  """
  current = os.environ.get('OMP_WAIT_POLICY')
  if 'torch' in sys.modules:
    return f'{current or "unset"} (torch already imported; not changed)'
  if policy == 'auto':
    if current is not None:
      return f'{current} (from the environment)'
    load = _load_average()
    if not load >= usable_cores():
      return f'unset, OpenMP default (load average {load:.1f})'
    os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'
    return (f'PASSIVE (auto: load average {load:.1f} >= {usable_cores()} '
            'cores; spinning OpenMP threads would starve each other)')
  if policy == 'unset':
    os.environ.pop('OMP_WAIT_POLICY', None)
    return 'unset, OpenMP default'
  os.environ['OMP_WAIT_POLICY'] = policy.upper()
  return policy.upper()


def load_torch(config: BenchmarkConfig):
  """(torch or None, why not, the OpenMP wait policy used)."""
  if not config.use_torch:
    return None, 'PyTorch not used (--nouse_torch)', None
  policy = set_omp_wait_policy(config.omp_wait_policy)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, ("PyTorch is not installed: the PyTorch columns are skipped "
                  "(install it with: pip install -e '.[bench]')"), None
  return torch, '', policy


def torch_device(torch) -> str:
  return 'cuda' if torch.cuda.is_available() else 'cpu'


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def torch_model(torch, name: str, params) -> Any:
  """The PyTorch twin of a flax model, with the flax initial weights copied.

  NCHW layouts: conv kernels HWIO → OIHW, dense kernels (in, out) → (out,
  in), and LeNet-5's first dense kernel has its rows permuted from the
  NHWC flattening order to the NCHW one.
  """
  nn = torch.nn
  t = lambda a: torch.from_numpy(np.array(a, np.float32))
  if name == 'lenet300':
    dense = [params[f'Dense_{i}'] for i in range(3)]
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(),
                        nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    linears = [net[1], net[3], net[5]]
    kernels = [np.asarray(d['kernel']) for d in dense]
  elif name == 'lenet5':
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2),
                        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    for conv, key in ((net[0], 'Conv2D_0'), (net[2], 'Conv2D_1')):
      with torch.no_grad():
        conv.weight.copy_(t(np.asarray(params[key]['kernel']).transpose(3, 2, 0, 1)))
        conv.bias.copy_(t(params[key]['bias']))
    dense = [params['Dense_0'], params['Dense_1']]
    linears = [net[5], net[7]]
    k0 = np.asarray(dense[0]['kernel'])  # rows: (h, w, c), 4 x 4 x 50.
    k0 = k0.reshape(4, 4, 50, -1).transpose(2, 0, 1, 3).reshape(800, -1)
    kernels = [k0, np.asarray(dense[1]['kernel'])]
  else:
    raise ValueError(f'No PyTorch twin of {name!r}; accepted: '
                     f'{", ".join(TORCH_MODELS)}.')
  with torch.no_grad():
    for linear, kernel, d in zip(linears, kernels, dense):
      linear.weight.copy_(t(kernel.T))
      linear.bias.copy_(t(d['bias']))
  return net


def torch_case(torch, name: str, label: str, model_name: str, params,
               config: BenchmarkConfig, num_steps: int, batches,
               fused: bool) -> tuple[Case, float]:
  """Eager PyTorch training: Adam (default or fused), pre-made batches.

  Returns the case and the loss of the first batch at the initial weights
  (to check that the twin computes what the flax model computes).
  """
  device = torch_device(torch)
  net = torch_model(torch, model_name, params).to(device)
  opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate,
                         fused=fused)
  xs = torch.from_numpy(np.ascontiguousarray(
      batches[0].transpose(0, 1, 4, 2, 3))).to(device)  # NHWC → NCHW
  ys = torch.from_numpy(batches[1].astype(np.int64)).to(device)
  device_batches = [(xs[i], ys[i]) for i in range(xs.shape[0])]
  loss_fn = torch.nn.functional.cross_entropy
  with torch.no_grad():
    x, y = device_batches[0]
    first_loss = float(loss_fn(net(x.float() / 255.0), y))

  def run():
    for i in range(num_steps):
      x, y = device_batches[i % len(device_batches)]
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(net(x.float() / 255.0), y)
      loss.backward()
      opt.step()
    loss.item()  # waits (CUDA).

  return (Case(name, label, run, num_steps, num_steps * config.batch_size),
          first_loss)


# --------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------


def _steps_for(model: str, config: BenchmarkConfig, seeds: bool = False) -> int:
  conv = model in experiment.CONV_MODELS
  if seeds:
    return config.seed_conv_steps if conv else config.seed_mlp_steps
  return config.conv_steps if conv else config.mlp_steps


def _load_average() -> float:
  """The 1-minute load average (NaN where the OS has none)."""
  return os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')


def environment(torch) -> dict[str, Any]:
  """Date, machine and versions."""
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  cpu = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  except OSError:
    pass
  device = jax.devices()[0]
  env = {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'machine': {'cores': os.cpu_count(), 'usable_cores': usable_cores(),
                  'load_average_start': _load_average(),
                  'cpu': cpu, 'platform': platform.platform(),
                  'jax_backend': jax.default_backend(),
                  'device': getattr(device, 'device_kind', str(device)),
                  'device_count': jax.device_count()},
      'versions': {'python': platform.python_version(), 'jax': jax.__version__,
                   'jaxlib': jaxlib.__version__, 'flax': flax.__version__,
                   'optax': optax.__version__, 'numpy': np.__version__,
                   'torch': None},
  }
  if torch is not None:
    env['versions']['torch'] = torch.__version__
    env['machine']['torch_device'] = torch_device(torch)
    env['machine']['torch_threads'] = torch.get_num_threads()
  return env


def build_cases(config: BenchmarkConfig, torch, log) -> tuple[list[Case], dict]:
  """Sets up every variant of the selected parts (most compile on first use)."""
  dataset = make_dataset(config)
  adam = optax.adam(config.learning_rate)
  cases, info = [], {'flops': {}, 'init_loss': {}}
  models = list(config.models)
  if 'peak' in config.parts and 'lenet300' not in models:
    models.insert(0, 'lenet300')  # The peak fraction is LeNet-300-100's.
  needed = set(models)
  if 'protocol' in config.parts:
    needed.add(config.protocol_model)
  tasks = {m: make_task(m, dataset) for m in sorted(needed)}
  shared_runner = {}  # model -> the protocol part's Runner, reused.
  protocol_group = []
  if 'protocol' in config.parts:
    full, raw, extra = protocol_cases(tasks[config.protocol_model], adam,
                                      config)
    protocol_group = [full, raw]
    info['protocol'] = extra
    shared_runner[config.protocol_model] = extra['runner']
  torch_label = ''
  if torch is not None:
    dev = torch_device(torch)
    torch_label = (f'PyTorch {dev}' if dev == 'cuda' else
                   f'PyTorch cpu, {torch.get_num_threads()} threads')
  for m in models:
    task = tasks[m]
    params = task.init_fn(jax.random.key(config.seed))
    info['flops'][m] = matmul_flops(models_lib.create_model(m), params,
                                    INPUT_SHAPE, config.batch_size)
    n = _steps_for(m, config)
    parts = set(config.parts) if m in config.models else {'peak'}
    group = []
    if 'throughput' in parts or 'peak' in parts and m == 'lenet300':
      group.append(runner_case(f'{m}/jax/runner',
                               f'{m} paramsel_jax Runner chunk', task, adam,
                               config, n, runner=shared_runner.get(m)))
    if parts & {'throughput', 'peak', 'masked', 'diagnose'}:
      group.append(scan_case(f'{m}/jax/scan_adam', f'{m} bare loop, adam',
                             task, adam, config, n))
    if 'masked' in parts:
      mask = jax.tree.map(
          lambda p, key: jax.random.uniform(key, p.shape) < 0.1, params,
          _split_like(jax.random.key(config.seed + 7), params))
      group.append(scan_case(f'{m}/jax/scan_masked',
                             f'{m} bare loop, masked(adam), α=10%', task,
                             masking.masked(adam, mask), config, n))
    if 'diagnose' in parts:
      for which in ('all', 'topgrad'):
        group.append(stats_case(f'{m}/jax/stats_{which}',
                                f'{m} bare loop + {which} stats every step',
                                task, adam, config, n, which))
    if 'throughput' in parts:
      batches = fixed_batches(dataset, config.batch_size, min(n, 64))
      group.append(step_loop_case(f'{m}/jax/step_loop',
                                  f'{m} jitted step, Python loop', task, adam,
                                  config, n, batches))
      if torch is not None:
        for fused in (False, True):
          kind = 'fused' if fused else 'default'
          case, loss0 = torch_case(
              torch, f'{m}/torch/{kind}', f'{m} {torch_label}, Adam {kind}',
              m, params, config, n, batches, fused)
          group.append(case)
          info['init_loss'].setdefault(m, {})['torch'] = loss0
        x0, y0 = jnp.asarray(batches[0][0]), jnp.asarray(batches[1][0])
        info['init_loss'][m]['jax'] = float(
            steps.loss_fn(task.apply_fn, params, x0, y0))
    if 'seeds' in parts:
      s, n_seed = config.num_seeds, _steps_for(m, config, seeds=True)
      for axis in ('vmap', 'map'):
        case = runner_case(
            f'{m}/seeds/{axis}', f'{m} {s} seeds, {axis}, Runner chunk', task,
            adam, config, n_seed, num_seeds=s, seed_axis=axis)
        case.group = f'{m}/seeds'
        group.append(case)
    for case in group:
      case.flops = info['flops'][m]['step'] * case.steps
      case.group = case.group or m
    if 'peak' in config.parts and m == 'lenet300':
      # Right after the Runner chunk whose fraction of it is reported.
      group.insert(1, dataclasses.replace(matmul_case(config), group=m))
    cases.extend(group)
  for case in protocol_group:
    case.group = 'protocol'
  cases.extend(protocol_group)
  log(f'{len(cases)} variants set up')
  return cases, info


def _split_like(key: jax.Array, tree) -> Any:
  leaves, treedef = jax.tree.flatten(tree)
  return treedef.unflatten(list(jax.random.split(key, len(leaves))))


def run_benchmark(config: BenchmarkConfig, output_dir: str | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
  """Sets up, compiles and times every variant, prints tables, writes JSON.

  Args:
    config: what to run; validated first.
    output_dir: where the JSON goes; None writes nothing.
    log: where the progress and the tables go.

  Returns:
    The results that were written.
  """
  validate(config)
  torch, why_no_torch, omp_policy = load_torch(config)
  if torch is not None:
    torch.set_num_threads(config.torch_threads or usable_cores())
  env = environment(torch)
  mach = env['machine']
  mach['omp_wait_policy'] = omp_policy
  log(f'{env["date"]}  {mach["cpu"]}, {mach["usable_cores"]} usable cores, '
      f'load average {mach["load_average_start"]:.1f}; jax {jax.__version__} '
      f'on {mach["jax_backend"]} ({mach["device"]}); '
      + (f'torch {torch.__version__} on {mach["torch_device"]} '
         f'({mach["torch_threads"]} threads, OMP_WAIT_POLICY {omp_policy})'
         if torch else why_no_torch))
  cases, info = build_cases(config, torch, log)
  for case in cases:
    case.warm_up()
    log(f'  first call {case.first_s:7.2f} s  {case.label}')

  extra = info.get('protocol')
  if extra is not None and config.cold_protocol:
    tic = time.perf_counter()
    cold = protocol.run_protocol(
        extra['runner'].task, optax.adam(config.learning_rate),
        _protocol_config(config), [config.selector], [config.seed],
        log=lambda msg: None)
    extra['cold_s'] = time.perf_counter() - tic
    extra['matches'] = (cold['cells'][0]['pruned'] == extra['results']['pruned'])
    log(f'  protocol.run_protocol itself, cold (compiles a new Runner): '
        f'{extra["cold_s"]:.2f} s; the warm copy gives the same metrics: '
        f'{extra["matches"]}')

  # Each round runs the groups in a shuffled order, each group's cases back
  # to back (so the cases a ratio pairs are timed seconds apart), forwards in
  # even rounds and backwards in odd ones (so no case always goes first).
  groups = {}
  for case in cases:
    groups.setdefault(case.group, []).append(case)
  names = list(groups)
  order = np.random.default_rng(config.seed)
  for r in range(config.repeats):
    tic = time.perf_counter()
    for g in order.permutation(len(names)):
      members = groups[names[g]]
      for case in (members if r % 2 == 0 else members[::-1]):
        case.measure()
    log(f'  round {r + 1}/{config.repeats}: {time.perf_counter() - tic:.1f} s')
  mach['load_average_end'] = _load_average()

  by_name = {c.name: c for c in cases}
  ratios, targets, notes = summarize(config, by_name, info, torch, why_no_torch)
  notes += load_notes(env)
  log('')
  log(format_tables(config, cases, ratios, targets, notes, info, env))
  results = {
      'environment': env,
      'config': dataclasses.asdict(config),
      'cases': {c.name: {'label': c.label, 'steps': c.steps,
                         'examples': c.examples, 'flops': c.flops,
                         'seconds': c.seconds, 'first_call_s': c.first_s,
                         'compile_s': c.compile_s, 'parts': c.parts,
                         'median_rate': statistics.median(c.rates)}
                for c in cases},
      'flops_per_step': info['flops'],
      'init_loss': info['init_loss'],
      'ratios': ratios,
      'targets': targets,
      'notes': notes,
  }
  if extra is not None and config.cold_protocol:
    results['protocol_cold_s'] = extra['cold_s']
    results['protocol_warm_matches_cold'] = extra['matches']
  if output_dir is not None:
    stamp = env['date'].replace(':', '').replace('-', '').replace('+0000', 'Z')
    path = os.path.join(output_dir,
                        f'benchmark_{mach["jax_backend"]}_{stamp}.json')
    io_lib.write_json_atomic(results, path)
    log(f'results written to {path}')
  return results


# --------------------------------------------------------------------------
# Ratios, targets, tables.
# --------------------------------------------------------------------------


def summarize(config, by_name, info, torch, why_no_torch):
  """Paired ratios, the targets (met / missed, with margins) and notes."""
  ratios, targets, notes = {}, [], []

  def target(name, value, threshold, higher_is_better, unit, why=''):
    if value is None:
      targets.append({'target': name, 'value': None, 'threshold': threshold,
                      'met': None, 'margin': None, 'note': why})
      return
    met = value >= threshold if higher_is_better else value <= threshold
    margin = value - threshold if higher_is_better else threshold - value
    targets.append({'target': name, 'value': value, 'threshold': threshold,
                    'met': met, 'margin': margin, 'unit': unit, 'note': why})

  for m in config.models:
    runner = by_name.get(f'{m}/jax/runner')
    for kind in ('default', 'fused'):
      t = by_name.get(f'{m}/torch/{kind}')
      if runner and t:
        ratios[f'{m}: Runner / PyTorch Adam {kind}'] = paired_ratio(runner, t)
    bare = by_name.get(f'{m}/jax/scan_adam')
    t = by_name.get(f'{m}/torch/fused')
    if bare and t:
      ratios[f'{m}: bare loop / PyTorch Adam fused'] = paired_ratio(bare, t)
    for other in ('scan_adam', 'step_loop'):
      o = by_name.get(f'{m}/jax/{other}')
      if runner and o:
        ratios[f'{m}: Runner / {other}'] = paired_ratio(runner, o)
    masked = by_name.get(f'{m}/jax/scan_masked')
    plain = by_name.get(f'{m}/jax/scan_adam')
    if masked and plain:
      ratios[f'{m}: masked overhead %'] = 100 * (1 / paired_ratio(masked, plain) - 1)
    vmap, lmap = by_name.get(f'{m}/seeds/vmap'), by_name.get(f'{m}/seeds/map')
    if vmap and lmap:
      ratios[f'{m}: {config.num_seeds} seeds vmap / map'] = paired_ratio(vmap, lmap)
    for which in ('all', 'topgrad'):
      st = by_name.get(f'{m}/jax/stats_{which}')
      if st and plain:
        ratios[f'{m}: {which} stats, extra cost per step %'] = 100 * (
            1 / paired_ratio(st, plain) - 1)

  if 'throughput' in config.parts:
    if 'lenet300' in config.models:
      r = ratios.get('lenet300: Runner / PyTorch Adam fused')
      target('LeNet-300-100 Runner >= 2.0x PyTorch fused Adam', r, 2.0, True,
             'x', '' if r is not None else why_no_torch)
    if 'lenet5' in config.models:
      r = ratios.get('lenet5: Runner / PyTorch Adam default')
      target('LeNet-5 Runner >= 1.0x PyTorch default Adam', r, 1.0, True, 'x',
             '' if r is not None else why_no_torch)
  if 'peak' in config.parts:
    mm, runner = by_name['matmul'], by_name['lenet300/jax/runner']
    frac = statistics.median(
        (runner.flops / a) / (mm.flops / b)
        for a, b in zip(runner.seconds, mm.seconds))
    ratios['lenet300: Runner GFLOP/s / matmul peak %'] = 100 * frac
    scan = by_name['lenet300/jax/scan_adam']
    ratios['lenet300: bare loop GFLOP/s / matmul peak %'] = 100 * statistics.median(
        (scan.flops / a) / (mm.flops / b)
        for a, b in zip(scan.seconds, mm.seconds))
    target('LeNet-300-100 Runner >= 60% of the matmul peak', 100 * frac, 60.0,
           True, '%')
  for m in config.models:
    if f'{m}: masked overhead %' in ratios:
      target(f'{m}: masked(adam) overhead <= 3%',
             ratios[f'{m}: masked overhead %'], 3.0, False, '%')
  if 'protocol' in config.parts:
    full, raw = by_name['protocol/full'], by_name['protocol/raw']
    overhead = 100 * (statistics.median(
        a / b for a, b in zip(full.seconds, raw.seconds)) - 1)
    ratios['protocol overhead %'] = overhead
    # Each part as % of the bare steps' time in the same round, medians.
    share = lambda fn: 100 * statistics.median(
        fn(p, r) / r for p, r in zip(full.parts, raw.seconds))
    ratios['protocol overhead: stats %'] = share(lambda p, r: p['train'] - r)
    for key in ('select', 'evaluate', 'other'):
      ratios[f'protocol overhead: {key} %'] = share(lambda p, r: p[key])
    ratios['protocol overhead without the evaluations %'] = share(
        lambda p, r: p['train'] - r + p['select'] + p['other'])
    target('protocol overhead <= 10%', overhead, 10.0, False, '%')
    proto = _protocol_config(config)
    in_window = 2 * proto.window / (proto.eta0 + proto.eta1)
    m = config.protocol_model
    for which in ('all', 'topgrad'):
      key = f'{m}: {which} stats, extra cost per step %'
      if key in ratios:
        ratios[f'protocol: stats overhead predicted from {which} stats %'] = (
            ratios[key] * in_window)
  if torch is None:
    notes.append(why_no_torch)
  elif (torch_device(torch) == 'cpu') != (jax.default_backend() == 'cpu'):
    notes.append(f'JAX ran on {jax.default_backend()}, PyTorch on '
                 f'{torch_device(torch)}: the PyTorch ratios compare two '
                 'different devices, not two frameworks.')
  return ratios, targets, notes


def load_notes(env) -> list[str]:
  """A warning when the machine was busy with other work."""
  mach = env['machine']
  load = max(mach['load_average_start'], mach['load_average_end'])
  if not load >= mach['usable_cores']:
    return []
  return [f'the load average reached {load:.1f} on {mach["usable_cores"]} '
          'cores: other processes shared the cores, every rate here is lower '
          'than on an idle machine and the spread is wide; compare only the '
          'ratios, which pair variants measured in the same round.']


def _table(header, rows) -> str:
  widths = [max(len(str(r[i])) for r in rows + [header])
            for i in range(len(header))]
  fmt = lambda row: '  '.join(
      str(c).ljust(w) if i == 0 else str(c).rjust(w)
      for i, (c, w) in enumerate(zip(row, widths)))
  return '\n'.join([fmt(header), fmt(['-' * w for w in widths])]
                   + [fmt(r) for r in rows])


def explain_protocol_overhead(config, ratios, extra) -> list[str]:
  """What the protocol adds to its training steps, in words and numbers."""
  proto = _protocol_config(config)
  total = proto.eta0 + proto.eta1
  n_eval = (proto.train_eval_size or config.num_train) + config.num_test
  pct = lambda key: ratios[f'protocol overhead: {key} %']
  groups = sorted(selectors_lib.get_selector(config.selector).stats)
  lines = [
      f"Protocol overhead ({ratios['protocol overhead %']:.1f}% in all), as % "
      f"of the time of the same {total} bare steps:",
      f"  {pct('stats'):6.1f}%  statistics: in the last {proto.window} steps "
      f'of each phase ({2 * proto.window} of {total} steps) every step also '
      f'updates what {config.selector} reads ({", ".join(groups) or "nothing"})',
      f"  {pct('select'):6.1f}%  selection: α and β, each a top-k over "
      f"all N = {extra['n']:,} scores (k = {extra['k']:,}, l = "
      f"{extra['l']:,})",
      f"  {pct('evaluate'):6.1f}%  evaluation: 2 passes (w and β⊙w after η1), "
      f'each over {proto.train_eval_size or config.num_train:,} train + '
      f'{config.num_test:,} test examples, {2 * n_eval:,} forward passes in '
      f'all (training: {total * config.batch_size:,} examples, forward + '
      'backward)',
      f"  {pct('other'):6.1f}%  the rest: init, the start of η1, pruning, "
      'mask counts, the frozen-weights check, host transfers',
      f"  without the evaluations: "
      f"{ratios['protocol overhead without the evaluations %']:.1f}%",
  ]
  for which in ('all', 'topgrad'):
    key = f'protocol: stats overhead predicted from {which} stats %'
    if key in ratios:
      lines.append(f'  statistics share predicted from the diagnose part '
                   f'({which} stats): {ratios[key]:.1f}%')
  if 'cold_s' in extra:
    lines.append(f"  protocol.run_protocol itself, cold (compiles its own "
                 f"Runner): {extra['cold_s']:.1f} s; the warm copy timed here "
                 f"gives the same metrics: {extra['matches']}")
  return lines


def format_tables(config, cases, ratios, targets, notes, info, env) -> str:
  mach = env['machine']
  torch_part = (f'torch {env["versions"]["torch"]} on {mach["torch_device"]} '
                f'({mach["torch_threads"]} threads, OMP_WAIT_POLICY '
                f'{mach["omp_wait_policy"]})' if env['versions']['torch']
                else 'no torch')
  lines = [
      f'Benchmark {env["date"]}: {mach["cpu"]} ({mach["usable_cores"]} usable '
      f'cores, load average {mach["load_average_start"]:.1f} at the start, '
      f'{mach["load_average_end"]:.1f} at the end), jax '
      f'{env["versions"]["jax"]} on {mach["jax_backend"]} ({mach["device"]}), '
      f'{torch_part}; Adam, batch {config.batch_size}, {config.repeats} '
      'interleaved rounds, medians.',
      '']
  rows = []
  for c in cases:
    rate = statistics.median(c.rates)
    spread = f'{min(c.rates):.0f}-{max(c.rates):.0f}'
    if c.examples:
      ex = f'{statistics.median(c.examples / s for s in c.seconds):,.0f}'
    else:
      ex = '-'
    gflops = (f'{statistics.median(c.flops / s for s in c.seconds) / 1e9:.1f}'
              if c.flops else '-')
    rows.append((c.label, f'{rate:.1f}', spread, ex, gflops,
                 f'{c.steps}', f'{c.compile_s:.2f}'))
  lines.append(_table(('variant', 'steps/s', 'min-max', 'examples/s',
                       'GFLOP/s', 'steps/call', 'compile s'), rows))
  lines.append('  (matmul rows: "steps" are matmuls; seeds rows: seed-steps; '
               'compile s = first call minus a median call: tracing and '
               'compilation for JAX, warm-up for PyTorch; GFLOP/s: the exact '
               'matmul FLOPs below.)')
  lines.append('')
  for m, f in info['flops'].items():
    layers = ', '.join(f'{k} {v:,}' for k, v in f['layers'].items())
    lines.append(
        f'{m}: exact matmul FLOPs per step at batch {config.batch_size}: '
        f'forward {f["forward"] / 1e6:.1f} M + backward {f["backward"] / 1e6:.1f}'
        f' M = {f["step"] / 1e6:.1f} MFLOP ({f["step"] / config.batch_size / 1e6:.3f}'
        f' MFLOP per example; multiply-adds per example: {layers})')
  for m, losses in info['init_loss'].items():
    lines.append(f'{m}: loss of the first batch at the shared initial '
                 f'weights: jax {losses["jax"]:.5f}, torch {losses["torch"]:.5f}')
  lines.append('')
  lines.append(_table(('ratio (median of per-round ratios)', 'value'),
                      [(k, f'{v:.3f}') for k, v in ratios.items()]))
  if 'protocol' in config.parts:
    lines.append('')
    lines.extend(explain_protocol_overhead(config, ratios, info['protocol']))
  lines.append('')
  trows = []
  for t in targets:
    if t['met'] is None:
      trows.append((t['target'], '-', 'not measured', 'see the note below'))
      continue
    unit = t['unit']
    trows.append((t['target'], f'{t["value"]:.2f}{unit}',
                  'met' if t['met'] else 'MISSED',
                  f'margin {t["margin"]:+.2f}{unit}'))
  if trows:
    lines.append(_table(('target', 'measured', 'status', 'margin'), trows))
  for note in notes:
    lines.append(f'Note: {note}')
  return '\n'.join(lines)


def config_from_flags() -> BenchmarkConfig:
  return BenchmarkConfig(
      parts=tuple(_PARTS.value), models=tuple(_MODELS.value),
      repeats=_REPEATS.value, mlp_steps=_MLP_STEPS.value,
      conv_steps=_CONV_STEPS.value, batch_size=_BATCH_SIZE.value,
      learning_rate=_LEARNING_RATE.value, num_train=_NUM_TRAIN.value,
      num_test=_NUM_TEST.value, matmul_size=_MATMUL_SIZE.value,
      matmul_reps=_MATMUL_REPS.value, protocol_model=_PROTOCOL_MODEL.value,
      selector=_SELECTOR.value, eta0=_ETA0.value, eta1=_ETA1.value,
      window=_WINDOW.value, chunk_size=_CHUNK_SIZE.value, k=_K.value,
      l=_L.value, train_eval_size=_TRAIN_EVAL_SIZE.value,
      cold_protocol=_COLD_PROTOCOL.value,
      num_seeds=_NUM_SEEDS.value,
      seed_mlp_steps=_SEED_MLP_STEPS.value,
      seed_conv_steps=_SEED_CONV_STEPS.value, use_torch=_USE_TORCH.value,
      torch_threads=_TORCH_THREADS.value,
      omp_wait_policy=_OMP_WAIT_POLICY.value, seed=_SEED.value)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    config = config_from_flags()
    validate(config)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  run_benchmark(config, _OUTPUT_DIR.value,
                log=functools.partial(print, flush=True))


if __name__ == '__main__':
  app.run(main)
