# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""A partly active linen module's call, differentiated only w.r.t. its units.

`active.forward` runs the model under a flax method interceptor; for each
module some of whose units train, the interceptor calls `call_partial`: the
module's own (frozen) output with the active units' outputs written in,
computed by a clone with `features=k` applied to the active slices. So
autodiff builds the weight gradient of the active units only. A unit is an
index into the module's unit axes flattened (`granularity.groups`): the
last axis of a `Dense`, `Conv` or `Embed`, the `(heads, head_dim)` axes of
attention's query/key/value `DenseGeneral`.

* `__call__` of `Dense`, `Conv`, `DenseGeneral` (int or tuple features) and
  `paramsel_jax.models.Conv2D`, and an `Embed`'s lookup: the clone's output
  `(..., k)` is written into the frozen output's flattened unit axes.
* `Embed.attend` (a tied output head, `query @ embedding.T`): an embedding
  feature is an *input* of attend, so no clone computes it alone; the output
  is computed from the merged (constant) table, plus
  `query[..., idx] @ (a - stop_gradient(a)).T`, exactly zero in value, whose
  gradient is the active columns' weight gradient `δᵀ query[..., idx]`.

Which modules qualify is `active_check`'s concern.

  >>> import jax.numpy as jnp
  >>> leaf = jnp.arange(12.).reshape(3, 2, 2)  # (in, heads, head_dim)
  >>> take(leaf, jnp.array([3, 0]), 2)[0].tolist()  # units (1, 1) and (0, 0)
  [3.0, 0.0]
  >>> put(leaf, jnp.zeros((3, 2)), jnp.array([3, 0]), 2)[0].tolist()
  [[0.0, 1.0], [2.0, 0.0]]
"""

from __future__ import annotations

from typing import Any, Callable, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any


def flat_units(x: jax.Array, axes: int = 1) -> jax.Array:
  """`x` with its last `axes` axes (the unit axes) flattened into one."""
  if axes == 1:
    return x
  return x.reshape(x.shape[:x.ndim - axes] + (-1,))


def take(leaf: jax.Array, idx: jax.Array, axes: int = 1) -> jax.Array:
  """The units `idx` of `leaf`: `(..., len(idx))`."""
  return jnp.take(flat_units(leaf, axes), idx, axis=-1)


def put(leaf: jax.Array, units: jax.Array, idx: jax.Array,
        axes: int = 1) -> jax.Array:
  """`leaf` with its units `idx` set to `units` (the inverse of `take`)."""
  return flat_units(leaf, axes).at[..., idx].set(units).reshape(leaf.shape)


def call_partial(module: nn.Module, method: str, next_fun: Callable[..., Any],
                 args: tuple, kwargs: dict, active: PyTree, frozen: PyTree,
                 idx: jax.Array, axes: int, busy: list[bool]) -> jax.Array:
  """One call of a partly active module (see the module docstring).

  Args:
    module: the bound module being called (the interceptor's `ctx.module`).
    method: the method called ('__call__' or 'attend').
    next_fun: the interceptor's `next_fun`: the call on the frozen params.
    args: the call's positional arguments.
    kwargs: the call's keyword arguments.
    active: the module's active params (its own leaves, sliced by `take`).
    frozen: the module's params at entry (constants).
    idx: the active units' indices `(k,)` into the flattened unit axes.
    axes: the module's unit axes (`Plan.unit_axes`).
    busy: the interceptor's flag stack; the clone's own calls run while it
      is set, so they are not intercepted.
  """
  out = None if method == 'attend' else next_fun(*args, **kwargs)
  busy.append(True)
  try:
    if out is None:
      return _attend(module, args, kwargs, active, frozen, idx)
    sub = module.clone(parent=None, features=int(idx.shape[-1]))
    act = cast(jax.Array, sub.apply({'params': active}, *args, **kwargs))
  finally:
    busy.pop()
  return put(out, act.astype(out.dtype), idx, axes)


def _attend(module: nn.Module, args: tuple, kwargs: dict, active: PyTree,
            frozen: PyTree, idx: jax.Array) -> jax.Array:
  """`Embed.attend` with a gradient for the active columns only."""
  a = active['embedding']
  table = jax.lax.stop_gradient(put(frozen['embedding'], a, idx))
  out = cast(jax.Array, module.clone(parent=None).apply(
      {'params': {'embedding': table}}, *args, method='attend', **kwargs))
  query = jnp.take(args[0], idx, axis=-1).astype(a.dtype)
  zero = jnp.einsum('...k,vk->...v', query, a - jax.lax.stop_gradient(a))
  return out + zero.astype(out.dtype)
