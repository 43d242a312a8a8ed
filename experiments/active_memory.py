"""Optimizer state on the device during an active phase, per `inactive_state`.

A char-GPT (NNX, `protocol.char_lm`) on synthetic tokens, trained at layer
granularity with one block active (BAdam-like) and with the embeddings, the
head and one block active (LISA-like). For each `inactive_state` it prints
the optimizer state held on the device inside the phase and its share of
dense Adam's, and, as a check, the device bytes the phase holds beyond those
held before it (`memory.device_bytes`, from `jax.live_arrays()`).

  python experiments/active_memory.py --layers=4 --embed_dim=64
"""

from __future__ import annotations

import argparse
import dataclasses
import gc

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.lab import lm_data
from paramsel_jax.models import gpt
from paramsel_jax.optim import masking
from paramsel_jax.protocol import char_lm
from paramsel_jax.protocol import protocol
from paramsel_jax.train import costs as costs_lib
from paramsel_jax.train import memory
from paramsel_jax.train import phase as phase_lib
from paramsel_jax.train import runner as runner_lib


def active_sets(block: int) -> dict[str, callable]:
  """Name → predicate on a parameter's path string: does it train?"""
  in_block = lambda path: f"'blocks'][{block}]" in path
  edges = lambda path: any(f"['{m}']" in path for m in
                           ('token_embed', 'pos_embed', 'head', 'ln_f'))
  return {'one block (BAdam-like)': in_block,
          'embeddings + head + one block (LISA-like)':
              lambda path: in_block(path) or edges(path)}


def measure(task, trains, steps: int = 4) -> dict[str, dict[str, float]]:
  """Per `inactive_state`, bytes on the device inside one active phase.

  One Runner for the three modes (one compilation; the phase reads the
  mode from its config), each phase from a copy of the same state.
  """
  config = protocol.ProtocolConfig(eta0=steps, eta1=steps, window=1,
                                   batch_size=8, chunk_size=steps,
                                   granularity='layer', step='active')
  runner = runner_lib.Runner(task, optax.adam(1e-3), config,
                             stat_groups=frozenset(), seeds=(0,))
  state = runner.init(jax.vmap(jax.random.key)(jnp.zeros(1, jnp.uint32)))
  alpha = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.full(x.shape, trains(jax.tree_util.keystr(path)),
                               bool), state.params)
  state = runner.set_alpha(state, alpha)
  p, arrays = active_lib.plan(jax.device_get(alpha), 'layer')
  phase = phase_lib.active(runner, p, arrays['idx'])
  inner = phase_lib.enter(phase, state)
  active_adam = costs_lib.optimizer_bytes(inner.opt_state, 1)
  active_mask = memory.device_bytes(masking.get_mask(inner.opt_state))
  full_adam = costs_lib.optimizer_bytes(state.opt_state, 1)
  full_mask = memory.device_bytes(masking.get_mask(state.opt_state))
  del inner
  out = {}
  for mode in phase_lib.INACTIVE_STATES:
    runner.config = dataclasses.replace(config, inactive_state=mode)
    start = state._replace(opt_state=jax.tree.map(jnp.copy, state.opt_state))
    gc.collect()
    before, seen = memory.device_bytes(), []
    phase_lib.run_phase(
        runner, phase, start, 0, steps, 0,
        lambda _, seen=seen, before=before: seen.append(
            memory.device_bytes() - before), 'x', consume=True)
    kept = mode == 'device'
    out[mode] = {'adam_on_device': active_adam + kept * full_adam,
                 'mask_on_device': active_mask + kept * full_mask,
                 'dense_adam': full_adam, 'dense_mask': full_mask,
                 'phase_extra_live': max(seen), 'peak': memory.peak_bytes()}
  return out


def main() -> None:
  """Reads the flags, prints one line per active set and mode."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--layers', type=int, default=4)
  parser.add_argument('--embed_dim', type=int, default=64)
  parser.add_argument('--vocab_size', type=int, default=65)
  parser.add_argument('--block', type=int, default=1)
  args = parser.parse_args()
  data = lm_data.synthetic_data('scratch', vocab_size=args.vocab_size)
  config = gpt.GPTConfig(vocab_size=args.vocab_size, context=32,
                         num_layers=args.layers, embed_dim=args.embed_dim,
                         num_heads=4)
  task = char_lm.char_lm_task(config, data.task.train,
                              {'val': data.task.val}, batch_size=8,
                              eval_windows_per_split=8)
  print(f'backend {jax.default_backend()}; host memory kind: '
        f'{memory.host_memory_kind()}; GPT {args.layers} blocks, '
        f'd={args.embed_dim}, vocab {args.vocab_size}')
  for name, trains in active_sets(args.block).items():
    for mode, m in measure(task, trains).items():
      share = m['adam_on_device'] / m['dense_adam']
      vs_plain = ((m['adam_on_device'] + m['mask_on_device'])
                  / m['dense_adam'])
      print(f'{name:44s} {mode:6s}: Adam state on device '
            f'{m["adam_on_device"] / 1024:7.1f} KiB = {100 * share:5.1f}% of '
            f'dense Adam ({m["dense_adam"] / 1024:.1f} KiB); + masked\'s mask '
            f'{m["mask_on_device"] / 1024:.1f} KiB = {100 * vs_plain:5.1f}% '
            f'of plain optax.adam\'s; the phase holds '
            f'+{m["phase_extra_live"] / 1024:.1f} KiB live; peak {m["peak"]}')
  print(f'1/L = {100 / args.layers:.1f}%')


if __name__ == '__main__':
  main()
