"""Optimizer state on the device during an active phase, per `inactive_state`.

What `experiments/active_memory.py` measures (a test runs it small): a model
trained at layer granularity with a given active set; for each
`inactive_state` (`phase.run_phase`), the optimizer state held on the device
inside the phase, against dense Adam's, and, as a check, the device bytes the
phase holds beyond those held before it (`memory.device_bytes`, from
`jax.live_arrays()`).
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.optim import masking
from paramsel_jax.protocol import protocol
from paramsel_jax.train import costs as costs_lib
from paramsel_jax.train import memory
from paramsel_jax.train import phase as phase_lib
from paramsel_jax.train import runner as runner_lib


def active_sets(block: int) -> dict[str, Callable[[str], bool]]:
  """Name → predicate on a parameter's path string: does it train?"""
  in_block = lambda path: f"'blocks'][{block}]" in path
  edges = lambda path: any(f"['{m}']" in path for m in
                           ('token_embed', 'pos_embed', 'head', 'ln_f'))
  return {'one block (BAdam-like)': in_block,
          'embeddings + head + one block (LISA-like)':
              lambda path: in_block(path) or edges(path)}


def measure(task: Any, trains: Callable[[str], bool], steps: int = 4
            ) -> dict[str, dict[str, Any]]:
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
    before, seen = memory.device_bytes(), []  # type: tuple[int, list[int]]

    def log(_: str, seen: list[int] = seen, before: int = before) -> None:
      seen.append(memory.device_bytes() - before)
    phase_lib.run_phase(runner, phase, start, 0, steps, 0, log, 'x',
                        consume=True)
    kept = mode == 'device'
    out[mode] = {'adam_on_device': active_adam + kept * full_adam,
                 'mask_on_device': active_mask + kept * full_mask,
                 'dense_adam': full_adam, 'dense_mask': full_mask,
                 'phase_extra_live': max(seen), 'peak': memory.peak_bytes()}
  return out
