"""What a training phase costs: steps/s, compile time, FLOPs, optimizer bytes.

Every phase of the protocol (η0's `T`, each η1's `T|α`) gets a `PhaseCost`:
the steps it ran and the seconds they took *after* compilation (each chunk
function is compiled ahead of time, `jit(...).lower(...).compile()`, and
that time is kept apart), the FLOPs of one step from XLA's cost analysis of
the compiled chunk (a loop's body is counted once, so the chunk's count is
one step's; divided by the seeds when they are vmapped), and the bytes of
the optimizer's state per seed (the inner optimizer's, without `masked`'s
mask).

  >>> import jax, jax.numpy as jnp
  >>> cost = PhaseCost('T')
  >>> cost.add(500, 0.25)
  >>> cost.record()['steps_per_s']
  2000.0
  >>> round(flops(jax.jit(lambda x: x @ x), jnp.ones((4, 4)))[1])
  128
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from paramsel_jax.optim import masking


@dataclasses.dataclass
class PhaseCost:
  """The running cost of one phase (host side; see the module docstring)."""

  step: str  # what ran: 'T', 'T|α masked', 'T|α active: <plan>'.
  steps: int = 0
  seconds: float = 0.0
  compile_s: float = 0.0
  flops_per_step: float | None = None
  opt_state_bytes: int | None = None

  def add(self, steps: int, seconds: float) -> None:
    """Counts `steps` more steps that took `seconds` (compilation apart)."""
    self.steps += steps
    self.seconds += seconds

  def record(self) -> dict[str, Any]:
    """The cost as plain numbers, for JSON and tables."""
    rate = self.steps / self.seconds if self.seconds > 0 else None
    return {'step': self.step, 'steps': self.steps, 'seconds': self.seconds,
            'steps_per_s': rate, 'compile_s': self.compile_s,
            'flops_per_step': self.flops_per_step,
            'opt_state_bytes': self.opt_state_bytes}


def flops(fn: Any, *args: Any) -> tuple[float, float]:
  """Compiles `fn` (a jitted function) for `args`; returns (seconds, FLOPs).

  The FLOPs are XLA's cost analysis of the compiled program (deterministic);
  a later call of `fn` with arguments of the same shapes finds the compiled
  program in jax's cache.
  """
  tic = time.perf_counter()
  compiled = fn.lower(*args).compile()
  seconds = time.perf_counter() - tic
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return seconds, float((analysis or {}).get('flops', float('nan')))


def signature(args: Any) -> tuple:
  """A hashable key of the shapes and dtypes of `args` (what a compile needs)."""
  leaves, treedef = jax.tree.flatten(args)
  return (treedef, tuple((np.shape(x), str(getattr(x, 'dtype', type(x))))
                         for x in leaves))


def optimizer_bytes(opt_state: Any, num_seeds: int) -> int:
  """Bytes of the inner optimizer state per seed.

  A `masked` state's mask is left out; the whole state counts when there is
  no `masked`.
  """
  is_masked = lambda x: isinstance(x, masking.MaskedState)
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_masked)
           if is_masked(x)]
  inner = found[0].inner_state if found else opt_state
  total = sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize
              for x in jax.tree.leaves(inner) if hasattr(x, 'dtype')
              and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))
  return total // max(num_seeds, 1)
