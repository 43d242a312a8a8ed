# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The frozen prefix of the active step: the modules before the first that trains.

When every module with params called before the first one that trains is
frozen, that module's inputs are a function of the data alone: `T|α` can
read them from a cache (`active.forward(cache=...)`) and skip the prefix.
`module_call_order` says the order, `cacheable_prefix` which module, and
`module_input` computes its inputs. Re-exported by `active`.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax

from paramsel_jax.freeze.active_check import trace

PyTree = Any
PACKED = 'packed'


def module_call_order(apply_fn: Callable[[PyTree, jax.Array], jax.Array],
                      params: PyTree, example: jax.Array) -> list[str]:
  """The flax modules (names) in the order a forward pass first calls them.

  Names as `granularity.module_name` gives them ('(root)' for the model).
  """
  return list(trace(apply_fn, params, example).order)


def cacheable_prefix(p: Any, call_order: list[str]) -> str | None:
  """The module whose input can be cached, or None.

  The first module with params, in call order, that trains, when every
  module with params called before it is frozen (None: none can, e.g. the
  first one trains, α is packed, or a module that trains was not seen in
  the call order, so where it sits is unknown). Modules without params (the
  model's root, activations) do not count.
  """
  if p.mode == PACKED:
    return None
  kind = dict(zip(p.modules, p.kinds))
  if any(k != 'frozen' and m not in call_order for m, k in kind.items()):
    return None
  with_params = [path for path in call_order if path in kind]
  for i, path in enumerate(with_params):
    if kind[path] != 'frozen':
      return path if i > 0 else None
  return None


def module_input(apply_fn: Callable[[PyTree, jax.Array], jax.Array],
                 params: PyTree, x: jax.Array, path: str) -> jax.Array:
  """The input of module `path` in a forward pass on `x`.

  The rest of the forward pass is dead code for XLA.
  """
  seen: list[jax.Array] = []

  def capture(next_fun, args, kwargs, ctx):
    if ctx.method_name == '__call__' and '/'.join(ctx.module.path) == path and not seen:
      seen.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(capture):
    apply_fn(params, x)
  return seen[0]
