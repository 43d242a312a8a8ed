# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""How much faster a channel-pruned network trains and evaluates (a measurement).

  uv run experiments/sparsity_benchmark.py                    # LeNet-5, 50%
  uv run experiments/sparsity_benchmark.py --model=lenet300 --channels=0.25

Side by side in one process, on synthetic MNIST-shaped data on the device:

* ``dense``: the unpruned model's train step (Adam, ``--batch_size``), the
  params all trained.
* ``channels``: the same model with ``--channels`` of the units of every
  hidden layer kept (the output layer whole), trained by
  ``sparsity.channels.channel_step``: live units only, a pruned layer's
  output passed on narrow and the next layer's kernel rows sliced to match
  (``narrow=True``).
* ``channels_wide``: the same, ``narrow=False``: only the output side of
  each layer shrinks, the live units are written into zeros.

Which units are pruned: per hidden layer, those of lowest L1 norm (kernel
column and bias) at initialization (seed ``--seed``); the pruned params are
zeroed. Each train case runs ``--steps`` steps as one jitted
``lax.fori_loop`` (batches cycled from ``--num_batches`` pre-made ones);
each eval case, the forward pass over ``--eval_batches`` batches of
``--eval_batch_size`` (one jitted ``lax.map``). Every case is compiled and
run once untimed, then ``--repeats`` interleaved rounds (``train.timing``);
a ratio is the median over rounds of the two rates in the same round.
FLOPs: XLA's cost analysis of one compiled train step and one eval batch.

Writes ``<workdir>/sparsity_<model>.json`` and ``.md`` (atomically) and
prints the table. The machine is shared: read the ratios, not the rates.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence, cast

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import io as io_lib
from paramsel_jax import models as models_lib
from paramsel_jax.freeze import prefix
from paramsel_jax.lab import cli
from paramsel_jax.lab.benchmarks import environment as env_lib
from paramsel_jax.sparsity import channels as channels_lib
from paramsel_jax.train import costs
from paramsel_jax.train import timing

PyTree = Any
MODELS = ('lenet5', 'lenet300', 'mlp1024', 'cifar_cnn')

_MODEL = flags.DEFINE_enum('model', 'lenet5', MODELS, 'The model.')
_CHANNELS = flags.DEFINE_float(
    'channels', 0.5, 'Fraction of the units kept in every hidden layer '
    '(0 < channels <= 1; the output layer keeps all).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Minibatch size.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Train steps per measurement.')
_EVAL_BATCH_SIZE = flags.DEFINE_integer('eval_batch_size', 1000,
                                        'Examples per eval batch.')
_EVAL_BATCHES = flags.DEFINE_integer('eval_batches', 4,
                                     'Eval batches per measurement.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 8,
                                    'Pre-made training batches (cycled).')
_REPEATS = flags.DEFINE_integer('repeats', 7, 'Interleaved timed rounds.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 1e-3, 'Adam step size.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the init and the data.')
RUN_DIR = cli.define_run_dir('results/sparsity_benchmark', checkpoints=False)


def _loss(logits: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def input_shape(model: str) -> tuple[int, ...]:
  """One example's shape: CIFAR-10 for cifar_cnn, MNIST otherwise."""
  return (32, 32, 3) if model == 'cifar_cnn' else (28, 28, 1)


def lowest_l1_mask(params: PyTree, keep: float, output: str) -> PyTree:
  """Prunes, per module but `output`, the units of lowest L1 norm.

  A unit's L1 norm is that of its kernel column and bias; ceil(keep * n)
  units stay (at least one). Returns a params-shaped bool unit mask.
  """
  mask = {}
  for name, leaves in params.items():
    n = leaves['kernel'].shape[-1]
    live = np.ones(n, bool)
    if name != output:
      norm = sum(np.abs(np.asarray(v)).reshape(-1, n).sum(0)
                 for v in leaves.values())
      live[:] = False
      live[np.argsort(-norm, kind='stable')[:max(1, math.ceil(keep * n))]] = True
    mask[name] = {k: np.broadcast_to(live, v.shape) for k, v in leaves.items()}
  return mask


def _train_loop(step, steps: int):
  """`steps` steps of `step` in one jitted fori_loop over cycled batches."""
  def loop(params, opt_state, xs, ys):
    def body(i, carry):
      p, s, total = carry
      j = i % xs.shape[0]
      p, s, loss = step(p, s, xs[j], ys[j])
      return p, s, total + loss
    return jax.lax.fori_loop(0, steps, body, (params, opt_state, 0.0))
  return jax.jit(loop, donate_argnums=(0, 1))


def _eval_loop(forward):
  """Accuracy over the eval batches in one jitted lax.map."""
  def run(params, xs, ys):
    def one(batch):
      x, y = batch
      return (forward(params, x).argmax(-1) == y).sum()
    return jax.lax.map(one, (xs, ys)).sum()
  return jax.jit(run)


def _train_case(name: str, label: str, loop, params, opt_state, xs, ys,
                steps: int) -> timing.Case:
  carry = [params, opt_state]
  def run() -> None:
    p, s, total = loop(carry[0], carry[1], xs, ys)
    jax.block_until_ready(total)
    carry[:] = [p, s]
  return timing.Case(name, label, run, steps=steps,
                     examples=steps * xs.shape[1], group='train')


def _eval_case(name: str, label: str, fn, params, xs, ys) -> timing.Case:
  def run() -> None:
    jax.block_until_ready(fn(params, xs, ys))
  return timing.Case(name, label, run, steps=xs.shape[0],
                     examples=xs.shape[0] * xs.shape[1], group='eval')


def check_config(model: str, keep: float, **counts: int) -> None:
  """One ValueError for a bad setting, before any work."""
  if model not in MODELS:
    raise ValueError(f'model={model!r}; accepted: {", ".join(MODELS)}.')
  if not 0 < keep <= 1:
    raise ValueError(f'channels={keep}; accepted: 0 < channels <= 1.')
  for flag, value in counts.items():
    if value < 1:
      raise ValueError(f'{flag}={value}; accepted: an integer >= 1.')


def run_benchmark(model: str = 'lenet5', keep: float = 0.5,
                  batch_size: int = 128, steps: int = 20,
                  eval_batch_size: int = 1000, eval_batches: int = 4,
                  num_batches: int = 8, repeats: int = 7,
                  learning_rate: float = 1e-3, seed: int = 0,
                  workdir: str | None = None) -> dict[str, Any]:
  """Times and counts dense vs channel-pruned steps; writes JSON and markdown.

  Returns the results dict (also written to `<workdir>/sparsity_<model>.json`
  when `workdir` is given).
  """
  check_config(model, keep, batch_size=batch_size, steps=steps,
               eval_batch_size=eval_batch_size, eval_batches=eval_batches,
               num_batches=num_batches, repeats=repeats)
  env = env_lib.timing_environment()
  net = models_lib.create_model(model)
  shape = input_shape(model)
  key_init, key_x, key_y, key_ex, key_ey = jax.random.split(
      jax.random.key(seed), 5)
  params = models_lib.init_params(net, key_init, shape)

  def apply_fn(p: PyTree, x: jax.Array) -> jax.Array:
    return cast(jax.Array, net.apply({'params': p}, x))

  xs = jax.random.normal(key_x, (num_batches, batch_size, *shape))
  ys = jax.random.randint(key_y, (num_batches, batch_size), 0, 10)
  exs = jax.random.normal(key_ex, (eval_batches, eval_batch_size, *shape))
  eys = jax.random.randint(key_ey, (eval_batches, eval_batch_size), 0, 10)
  order = [m for m in prefix.module_call_order(apply_fn, params, xs[0])
           if m in params]
  mask = lowest_l1_mask(params, keep, output=order[-1])
  pruned = jax.tree.map(lambda p, m: p * m, params, mask)
  tx = optax.adam(learning_rate)

  def dense_step(p, s, x, y):
    loss, g = jax.value_and_grad(lambda p: _loss(apply_fn(p, x), y))(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  variants: dict[str, dict[str, Any]] = {
      'dense': dict(label='dense (all units)', step=dense_step,
                    forward=apply_fn, params=params, plan=None)}
  for name, narrow in (('channels', True), ('channels_wide', False)):
    plan = channels_lib.channel_plan(apply_fn, mask, xs[0], narrow=narrow)
    variants[name] = dict(
        label=f'channels {keep:g}' + ('' if narrow else ' (wide)'),
        step=channels_lib.channel_step(apply_fn, _loss, tx, plan),
        forward=channels_lib.channel_apply(apply_fn, plan),
        params=channels_lib.compact(pruned, plan), plan=plan.describe())

  cases: list[timing.Case] = []
  records: dict[str, dict[str, Any]] = {}
  for name, v in variants.items():
    p, s = v['params'], tx.init(v['params'])
    step = v['step'] if name != 'dense' else jax.jit(v['step'])
    _, train_flops = costs.flops(step, p, s, xs[0], ys[0])
    forward = jax.jit(v['forward'])
    _, eval_flops = costs.flops(forward, p, exs[0])
    records[name] = {'label': v['label'], 'plan': v['plan'],
                     'params': int(sum(np.size(x) for x in jax.tree.leaves(p))),
                     'train_flops': train_flops, 'eval_flops': eval_flops}
    p0, s0 = jax.tree.map(jnp.copy, (p, s))  # the loop donates its inputs.
    cases.append(_train_case(f'{name}/train', v['label'],
                             _train_loop(v['step'], steps), p0, s0, xs, ys,
                             steps))
    cases.append(_eval_case(f'{name}/eval', v['label'],
                            _eval_loop(v['forward']), p, exs, eys))
  timing.warm_up(cases)
  timing.run_rounds(cases, repeats, seed=seed)
  by_name = {c.name: c for c in cases}
  for name, rec in records.items():
    for part in ('train', 'eval'):
      case = by_name[f'{name}/{part}']
      rec[part] = case.record()
      rec[f'{part}_speedup'] = timing.paired_ratio(case, by_name[f'dense/{part}'])
      rec[f'{part}_flops_ratio'] = (records['dense'][f'{part}_flops']
                                    / rec[f'{part}_flops'])
  results = {
      'environment': env,
      'load_average_end': env_lib.load_average(),
      'config': dict(model=model, channels=keep, batch_size=batch_size,
                     steps=steps, eval_batch_size=eval_batch_size,
                     eval_batches=eval_batches, num_batches=num_batches,
                     repeats=repeats, learning_rate=learning_rate, seed=seed,
                     pruned='lowest L1 norm per hidden layer at init'),
      'variants': records,
  }
  table = markdown(results)
  print(table)
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    io_lib.write_json_atomic(results, os.path.join(workdir, f'sparsity_{model}.json'))
    io_lib.write_text_atomic(table, os.path.join(workdir, f'sparsity_{model}.md'))
  return results


def markdown(results: dict[str, Any]) -> str:
  """The results as a markdown table (rates are medians over rounds)."""
  c = results['config']
  env = results['environment']
  lines = [
      f'# Channel sparsity: {c["model"]}, {c["channels"]:g} of the hidden '
      f'units kept', '',
      f'{env["date"]}; {env["machine"]["jax_backend"]} '
      f'({env["machine"]["device"]}), load average '
      f'{env["machine"]["load_average_start"]:.1f} -> '
      f'{results["load_average_end"]:.1f}; batch {c["batch_size"]}, '
      f'{c["steps"]} steps a measurement, eval {c["eval_batches"]} x '
      f'{c["eval_batch_size"]}, {c["repeats"]} interleaved rounds. Speedups: '
      'median over rounds of the paired rate ratios.', '',
      '| variant | params | train steps/s | train speedup | train GFLOP/step '
      '| FLOP ratio | eval batches/s | eval speedup | eval GFLOP/batch '
      '| FLOP ratio |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for rec in results['variants'].values():
    lines.append(
        f'| {rec["label"]} | {rec["params"]:,} '
        f'| {rec["train"]["median_rate"]:.1f} | {rec["train_speedup"]:.2f}x '
        f'| {rec["train_flops"] / 1e9:.3f} '
        f'| {rec["train_flops_ratio"]:.2f}x '
        f'| {rec["eval"]["median_rate"]:.1f} | {rec["eval_speedup"]:.2f}x '
        f'| {rec["eval_flops"] / 1e9:.3f} '
        f'| {rec["eval_flops_ratio"]:.2f}x |')
  plans = [f'- {r["label"]}: {r["plan"]}' for r in results['variants'].values()
           if r['plan']]
  return '\n'.join(lines + ['', 'Plans:'] + plans) + '\n'


def main(argv: Sequence[str]) -> None:
  """Reads the flags, refuses bad ones, runs the benchmark."""
  cli.check_no_arguments(argv)
  run_dir = RUN_DIR()
  counts = dict(batch_size=_BATCH_SIZE.value, steps=_STEPS.value,
                eval_batch_size=_EVAL_BATCH_SIZE.value,
                eval_batches=_EVAL_BATCHES.value,
                num_batches=_NUM_BATCHES.value, repeats=_REPEATS.value)
  try:
    check_config(_MODEL.value, _CHANNELS.value, **counts)
  except ValueError as e:
    cli.fail(str(e))
  run_benchmark(_MODEL.value, _CHANNELS.value, learning_rate=_LEARNING_RATE.value,
                seed=_SEED.value, workdir=run_dir.workdir, **counts)


if __name__ == '__main__':
  cli.run(main)
