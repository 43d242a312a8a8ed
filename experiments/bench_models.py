# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Training speed of each model and conv implementation (a measurement).

For every model and ``Conv2D`` implementation, times Adam training at batch
128 in two ways:

* ``scan``: one jitted ``lax.scan`` chunk of ``--steps`` steps, the state
  donated (how this library's training loops run);
* ``step``: a Python loop of ``--steps`` calls of one jitted, donated step.

Variants are interleaved, in a shuffled order, inside each repeat (the
machine is shared and noisy). The table gives median steps/s over repeats,
the spread, and ratios against stock XLA convolutions in a standalone
jitted step (``xla/step``), in a scan (``xla/scan``), and against
``im2col/scan``; each ratio is the median over repeats of the ratio of the
two variants' rates in the same repeat.

  .venv/bin/python experiments/bench_models.py
  .venv/bin/python experiments/bench_models.py --models=lenet5 --repeats=9
"""

from collections.abc import Callable, Sequence
import statistics
import time
from typing import Any, NamedTuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import models

_MODELS = flags.DEFINE_list(
    'models', ['lenet300', 'lenet5', 'cifar_cnn'], 'Registered model names.')
_IMPLS = flags.DEFINE_list(
    'impls', ['auto', 'im2col', 'xla', 'xla_vjp'],
    'Conv2D implementations (ignored for models without convolutions).')
_MODES = flags.DEFINE_list('modes', ['scan', 'step'], 'scan and/or step.')
_STEPS = flags.DEFINE_integer('steps', 50, 'Steps per timed chunk.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Batch size.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats per variant.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 1e-3, 'Adam step size.')
_SEED = flags.DEFINE_integer('seed', 0, 'PRNG seed.')
_SKIP = flags.DEFINE_list(
    'skip', ['cifar_cnn/xla/scan'],
    'model/impl/mode variants not to run. The default skips stock XLA convs '
    'in a scan on CIFAR: 0.03 steps/s on XLA:CPU (~80x slower than a '
    'standalone step; a 5-step chunk took 158 s with its compilation).')

_INPUT_SHAPES = {'cifar_cnn': (32, 32, 3)}  # Everything else is MNIST-sized.
_CONV_MODELS = ('lenet5', 'cifar_cnn')


class TrainState(NamedTuple):
  params: Any
  opt_state: Any


def make_train_fns(model, optimizer) -> tuple[Callable, Callable]:
  """Returns jitted, state-donating ``(step, chunk)`` functions.

  ``step(state, (x, y)) -> (state, loss)``; ``chunk`` runs ``step`` under
  ``lax.scan`` over a stack of batches and returns the losses.
  """

  def loss_fn(params, x, y):
    logits = model.apply({'params': params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def train_step(state, batch):
    x, y = batch
    loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates),
                      opt_state), loss

  def train_chunk(state, batches):
    return jax.lax.scan(train_step, state, batches)

  return (jax.jit(train_step, donate_argnums=0),
          jax.jit(train_chunk, donate_argnums=0))


class Variant:
  """One (model, impl, mode) with its compiled function and live state."""

  def __init__(self, name, impl, mode, batches, learning_rate, seed):
    self.name, self.impl, self.mode = name, impl, mode
    overrides = {'conv_impl': impl} if name in _CONV_MODELS else {}
    model = models.create_model(name, **overrides)
    optimizer = optax.adam(learning_rate)
    params = models.init_params(model, jax.random.key(seed),
                                batches[0].shape[2:])
    self.state = TrainState(params, optimizer.init(params))
    self.n_params = models.count_params(params)
    step, chunk = make_train_fns(model, optimizer)
    self.batches = batches
    if mode == 'scan':
      self._run = lambda s: chunk(s, self.batches)
    else:
      per_step = [(batches[0][i], batches[1][i])
                  for i in range(batches[0].shape[0])]

      def run(s):
        for batch in per_step:
          s, _ = step(s, batch)
        return s, None
      self._run = run
    self.rates: list[float] = []

  def run_once(self) -> float:
    """Runs one chunk, returns its wall time in seconds."""
    start = time.perf_counter()
    self.state, _ = self._run(self.state)
    jax.block_until_ready(self.state)
    return time.perf_counter() - start


def auto_impls(name: str, shape: Sequence[int]) -> list[str]:
  """What ``conv_impl='auto'`` resolves to for each conv layer of a model."""
  model = models.create_model(name)
  params = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  kernels = [leaf.shape for leaf in jax.tree.leaves(params['params'])
             if len(leaf.shape) == 4]  # In layer order: Conv2D_0, _1, ...
  return [models.resolve_conv_impl('auto', k) for k in kernels]


def fake_batches(steps: int, batch_size: int, shape: Sequence[int],
                 seed: int) -> tuple[jax.Array, jax.Array]:
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (steps, batch_size, *shape), np.uint8)
  y = rng.integers(0, 10, (steps, batch_size), np.int32)
  return jnp.asarray(x, jnp.float32) / 255.0, jnp.asarray(y)


def main(argv: Sequence[str]) -> None:
  del argv
  steps = _STEPS.value
  print(f'jax {jax.__version__}, backend {jax.default_backend()}; '
        f'Adam, batch {_BATCH_SIZE.value}, {steps} steps per chunk, '
        f'{_REPEATS.value} interleaved repeats')
  variants = []
  for name in _MODELS.value:
    shape = _INPUT_SHAPES.get(name, (28, 28, 1))
    batches = fake_batches(steps, _BATCH_SIZE.value, shape, _SEED.value)
    impls = _IMPLS.value if name in _CONV_MODELS else ['-']
    if name in _CONV_MODELS:
      print(f"  {name}: 'auto' picks {auto_impls(name, shape)}")
    for impl in impls:
      for mode in _MODES.value:
        if f'{name}/{impl}/{mode}' in _SKIP.value:
          print(f'  skipped {name}/{impl}/{mode} (--skip)')
          continue
        v = Variant(name, impl, mode, batches, _LEARNING_RATE.value,
                    _SEED.value)
        t = v.run_once()  # Compiles, and warms up.
        print(f'  compiled {name}/{impl}/{mode} ({v.n_params:,} params): '
              f'first chunk {t:.1f} s', flush=True)
        variants.append(v)

  rng = np.random.default_rng(_SEED.value)
  for r in range(_REPEATS.value):
    for i in rng.permutation(len(variants)):  # Interleaved, shuffled order.
      v = variants[i]
      v.rates.append(steps / v.run_once())
    print(f'  repeat {r + 1}/{_REPEATS.value} done', flush=True)
    if r + 1 < _REPEATS.value:
      print_table(variants, final=False)  # Survives an interrupted run.
  print_table(variants, final=True)


def print_table(variants: Sequence[Variant], final: bool) -> None:
  """Prints median steps/s per variant and paired ratios to references."""
  by_key = {(v.name, v.impl, v.mode): v for v in variants}
  refs = (('xla', 'step'), ('xla', 'scan'), ('im2col', 'scan'))
  indent = '' if final else '    '
  print()
  print(indent + f'{"model":10} {"impl":8} {"mode":5} {"steps/s":>8} '
        f'{"min":>7} {"max":>7}'
        + ''.join(f'{"/" + i + "-" + m:>13}' for i, m in refs))
  for v in variants:
    cells = []
    for impl, mode in refs:
      ref = by_key.get((v.name, impl, mode))
      if ref is None:
        cells.append(f'{"-":>13}')
      else:
        paired = [a / b for a, b in zip(v.rates, ref.rates)]
        cells.append(f'{statistics.median(paired):13.2f}')
    print(indent + f'{v.name:10} {v.impl:8} {v.mode:5} '
          f'{statistics.median(v.rates):8.1f} {min(v.rates):7.1f} '
          f'{max(v.rates):7.1f}' + ''.join(cells), flush=True)
  print(flush=True)


if __name__ == '__main__':
  app.run(main)
