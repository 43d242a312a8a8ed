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
import textwrap
from typing import Any, NamedTuple

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.lab import cli
from paramsel_jax import models
from paramsel_jax.lab import progress
from paramsel_jax import report
from paramsel_jax.train import timing

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
  """The state of one benchmark run: params and optimizer state."""
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


def variant_case(name: str, impl: str, mode: str,
                 batches: tuple[jax.Array, jax.Array], learning_rate: float,
                 seed: int) -> tuple[timing.Case, int]:
  """One (model, impl, mode) as a timed case on its own live state.

  Returns:
    The case (named 'model/impl/mode', one group of its own, so the rounds
    shuffle every variant) and the model's number of parameters.
  """
  overrides: dict[str, Any] = {'conv_impl': impl} if name in _CONV_MODELS else {}
  model = models.create_model(name, **overrides)
  optimizer = optax.adam(learning_rate)
  params = models.init_params(model, jax.random.key(seed),
                              batches[0].shape[2:])
  step, chunk = make_train_fns(model, optimizer)
  if mode == 'scan':
    advance = lambda s: chunk(s, batches)[0]
  else:
    per_step = [(batches[0][i], batches[1][i])
                for i in range(batches[0].shape[0])]

    def advance(s):
      for batch in per_step:
        s, _ = step(s, batch)
      return s
  box = {'state': TrainState(params, optimizer.init(params))}

  def run():
    box['state'] = advance(box['state'])
    jax.block_until_ready(box['state'])

  key = f'{name}/{impl}/{mode}'
  num_steps, batch_size = batches[0].shape[:2]
  return (timing.Case(key, key, run, num_steps, num_steps * batch_size,
                      group=key), models.count_params(params))


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
  """``steps`` random uint8-valued batches as float images in [0, 1] and labels."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (steps, batch_size, *shape), np.uint8)
  y = rng.integers(0, 10, (steps, batch_size), np.int32)
  return jnp.asarray(x, jnp.float32) / 255.0, jnp.asarray(y)


def main(argv: Sequence[str]) -> None:
  """Times every model / implementation / mode variant and prints the table."""
  cli.check_no_arguments(argv)
  steps, repeats = _STEPS.value, _REPEATS.value
  print(f'jax {jax.__version__}, backend {jax.default_backend()}; '
        f'Adam, batch {_BATCH_SIZE.value}, {steps} steps per chunk, '
        f'{repeats} interleaved repeats')
  cases = []
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
        case, n_params = variant_case(name, impl, mode, batches,
                                      _LEARNING_RATE.value, _SEED.value)
        case.warm_up()  # Compiles, and warms up.
        print(f'  compiled {case.name} ({n_params:,} params): first chunk '
              f'{case.first_s:.1f} s', flush=True)
        cases.append(case)

  rounds = progress.Progress(repeats, lambda s: print(s, flush=True),
                             unit='repeat', prefix='  timed: ')

  def after_round(r: int, seconds: float) -> None:
    rounds.update(1, f'this one {seconds:.1f} s')
    if r + 1 < repeats:
      print_table(cases, final=False)  # Survives an interrupted run.

  timing.run_rounds(cases, repeats, _SEED.value, after_round)
  print_table(cases, final=True)


_REFS = (('xla', 'step'), ('xla', 'scan'), ('im2col', 'scan'))


def print_table(cases: Sequence[timing.Case], final: bool) -> None:
  """Prints median steps/s per variant and paired ratios to references."""
  by_name = {c.name: c for c in cases}
  rows = []
  for c in cases:
    name = c.name.split('/')[0]
    cells = []
    for impl, mode in _REFS:
      ref = by_name.get(f'{name}/{impl}/{mode}')
      cells.append('-' if ref is None else
                   f'{timing.paired_ratio(c, ref):.2f}')
    rows.append((*c.name.split('/'), f'{c.median_rate:.1f}',
                 f'{min(c.rates):.1f}', f'{max(c.rates):.1f}', *cells))
  table = report.format_table(
      ('model', 'impl', 'mode', 'steps/s', 'min', 'max',
       *(f'/{i}-{m}' for i, m in _REFS)), rows)
  print()
  print(table if final else textwrap.indent(table, '    '))
  print(flush=True)


if __name__ == '__main__':
  cli.run(main)
