# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The JAX training loops the benchmark times, each as a `timing.Case`.

* `runner_case`: the protocol's own loop, `Runner.run_chunk` (one jitted
  `fori_loop` of steps, batches sampled on the device), one seed or several
  (vmapped or in turn);
* `scan_case`: a bare jitted loop of `steps.train_step` with the same
  on-device sampling and the state donated; optionally updating the
  selectors' statistics at every step (`stat_groups`);
* `step_loop_case`: the library's jitted step in a Python loop on
  pre-made batches;
* `matmul_case`: a float32 matmul, the machine's peak.

Every case keeps its training state between calls and continues from it
(global step numbers go on), so each timed call does the same work.

  >>> import optax
  >>> task = synthetic_task('lenet300', synthetic_dataset(64, 16))
  >>> case = scan_case('a', 'bare loop', task, optax.adam(1e-3), 8, 2)
  >>> case.run(); case.steps, case.examples
  (2, 16)
"""

from __future__ import annotations

from collections.abc import Callable
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import data as data_lib
from paramsel_jax.lab import experiment
from paramsel_jax.protocol import protocol
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.train import steps
from paramsel_jax.lab.benchmarks import protocol_stages as stages
from paramsel_jax.train.timing import Case

PyTree = Any
INPUT_SHAPE = (28, 28, 1)  # MNIST-shaped synthetic data.


def synthetic_dataset(num_train: int, num_test: int,
                      seed: int = 0) -> data_lib.Dataset:
  """Synthetic MNIST-shaped uint8 data (`paramsel_jax.data.synthetic`)."""
  return data_lib.synthetic(num_train=num_train, num_test=num_test,
                            image_shape=INPUT_SHAPE, seed=seed)


def synthetic_task(model_name: str, dataset: data_lib.Dataset
                   ) -> protocol.ImageTask:
  """The protocol's Task on a `synthetic_dataset` (`experiment.make_task`)."""
  exp = experiment.ExperimentConfig(dataset='synthetic', model=model_name,
                                    synthetic_size=len(dataset.train.labels))
  return experiment.make_task(exp, dataset)


def chunk_case(name: str, label: str, chunk: Callable[[Any, int], tuple],
               state: Any, num_steps: int, batch_size: int,
               num_seeds: int = 1) -> Case:
  """A case calling `chunk(state, start) -> (state, loss)` on its own state.

  Each call continues from the state the last one left, at step `start` (the
  steps done so far), and waits for the new state and loss.
  """
  box = {'state': state, 'start': 0}

  def run():
    box['state'], loss = chunk(box['state'], box['start'])
    box['start'] += num_steps
    jax.block_until_ready((box['state'], loss))

  return Case(name, label, run, num_steps * num_seeds,
              num_steps * num_seeds * batch_size)


def runner_case(name: str, label: str, runner: protocol.Runner,
                batch_size: int, num_steps: int, seeds: tuple[int, ...] = (0,)
                ) -> Case:
  """The protocol's loop: `Runner.run_chunk` of `num_steps` steps, no stats.

  One `runner` can serve several cases: the chunk length is a traced
  argument, so one compiled chunk serves every length.
  """
  state = stages.initial_state(runner, stages.seed_keys(seeds))
  chunk = lambda s, start: stages.run_chunk(runner, s, start, num_steps)
  return chunk_case(name, label, chunk, state, num_steps, batch_size,
                    len(seeds))


def make_scan_chunk(task: protocol.ImageTask, tx: optax.GradientTransformation,
                    batch_size: int, num_steps: int,
                    stat_groups: frozenset[str] | None = None) -> Callable:
  """A bare jitted loop of `num_steps` steps, the protocol's minus its extras.

  Each step samples its minibatch on the device and calls
  `steps.train_step`, as `Runner` does, without the seed axis and the forced
  `masked` wrapper; with `stat_groups`, it also updates those statistics
  (`stats.update_stats`) at every step. The state `(params, opt_state,
  stats or None)` is donated.

  Returns:
    `chunk(state, key, start) -> (state, loss_sum)`, jitted.
  """
  update = (None if stat_groups is None else
            functools.partial(stats_lib.update_stats, groups=stat_groups))

  def chunk(state, key, start):
    def body(i, carry):
      (params, opt_state, st), loss_sum = carry
      images, labels = steps.sample_batch(
          jax.random.fold_in(key, start + i), task.train_images,
          task.train_labels, batch_size)
      new, opt_state, loss, grads = steps.train_step(
          task.apply_fn, tx, params, opt_state, images, labels)
      if update is not None:
        st = update(st, grads, params, new)
      return (new, opt_state, st), loss_sum + loss
    return jax.lax.fori_loop(0, num_steps, body,
                             (state, jnp.zeros((), jnp.float32)))
  return jax.jit(chunk, donate_argnums=0)


def scan_case(name: str, label: str, task: protocol.ImageTask,
              tx: optax.GradientTransformation, batch_size: int,
              num_steps: int, seed: int = 0,
              stat_groups: frozenset[str] | None = None) -> Case:
  """`make_scan_chunk` as a case, from the weights of `seed`.

  `stat_groups`: e.g. `stats.ALL_GROUPS` (what a run comparing every
  selector collects in its windows) or one selector's `Selector.stats`.
  """
  jitted = make_scan_chunk(task, tx, batch_size, num_steps, stat_groups)
  params = task.init_fn(jax.random.key(seed))
  key = jax.random.key(seed + 1)
  st = None if stat_groups is None else stats_lib.init_stats(params)
  chunk = lambda s, start: jitted(s, key, jnp.asarray(start, jnp.int32))
  return chunk_case(name, label, chunk, (params, tx.init(params), st),
                    num_steps, batch_size)


def fixed_batches(dataset: data_lib.Dataset, batch_size: int,
                  count: int) -> tuple[np.ndarray, np.ndarray]:
  """`count` minibatches (uint8 NHWC images, int32 labels), made in advance.

  Example:
    >>> x, y = fixed_batches(synthetic_dataset(32, 8), 4, 3)
    >>> x.shape, y.dtype
    ((3, 4, 28, 28, 1), dtype('int32'))
  """
  rng = np.random.default_rng(0)
  idx = rng.integers(0, len(dataset.train.labels), (count, batch_size))
  return dataset.train.images[idx], dataset.train.labels[idx].astype(np.int32)


def step_loop_case(name: str, label: str, task: protocol.ImageTask,
                   tx: optax.GradientTransformation, num_steps: int,
                   batches: tuple[np.ndarray, np.ndarray],
                   seed: int = 0) -> Case:
  """The library's jitted step (`steps.make_train_step`) in a Python loop.

  Step `i` of a call takes batch `i % len(batches)` of `fixed_batches`.
  """
  step = steps.make_train_step(task.apply_fn, tx)
  device_batches = [(jnp.asarray(x), jnp.asarray(y)) for x, y in zip(*batches)]
  params = task.init_fn(jax.random.key(seed))
  box = {'params': params, 'opt_state': tx.init(params)}

  def run():
    params, opt_state = box['params'], box['opt_state']
    for i in range(num_steps):
      x, y = device_batches[i % len(device_batches)]
      params, opt_state, loss, _ = step(params, opt_state, x, y)
    box['params'], box['opt_state'] = params, opt_state
    jax.block_until_ready((params, loss))

  return Case(name, label, run, num_steps,
              num_steps * batches[0].shape[1])


def first_batch_loss(task: protocol.ImageTask, params: PyTree,
                     batches: tuple[np.ndarray, np.ndarray]) -> float:
  """The loss of the first of `batches` at `params` (checks a twin model)."""
  x0, y0 = jnp.asarray(batches[0][0]), jnp.asarray(batches[1][0])
  return float(steps.loss_fn(task.apply_fn, params, x0, y0))


def matmul_case(size: int, reps: int, seed: int = 0) -> Case:
  """`reps` float32 `jnp.dot`s of two `size`² matrices per call; FLOPs set.

  Example:
    >>> case = matmul_case(8, 2)
    >>> case.run(); case.name, case.flops
    ('matmul', 2048.0)
  """
  keys = jax.random.split(jax.random.key(seed))
  a = jax.random.normal(keys[0], (size, size), jnp.float32)
  b = jax.random.normal(keys[1], (size, size), jnp.float32)
  dot = jax.jit(jnp.dot)

  def run():
    jax.block_until_ready([dot(a, b) for _ in range(reps)])

  return Case('matmul', f'jnp.dot {size}x{size}x{size} float32, {reps} per '
              'call', run, reps, flops=2.0 * size**3 * reps)


def random_mask(key: jax.Array, params: PyTree, fraction: float) -> PyTree:
  """A bool mask of `params`' shapes, each entry True with prob. `fraction`.

  Example:
    >>> m = random_mask(jax.random.key(0), {'w': jnp.zeros(1000)}, 0.1)
    >>> 50 < int(m['w'].sum()) < 150
    True
  """
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.uniform(k, p.shape) < fraction
                            for p, k in zip(leaves, keys)])
