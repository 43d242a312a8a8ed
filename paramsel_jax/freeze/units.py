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

With `pruned=True` the frozen units are declared *pruned*: their params
are exactly zero (weights and bias), so their outputs are exactly zero and
the module's frozen output is not computed at all: the active units' outputs
are written into zeros (for `attend`, the output is `query[..., idx] @ a.T`).
The call then costs what a `features=k` module costs. Whether the frozen
units really are zero is checked outside jit (`active.check_pruned`).

Which modules qualify is `active_check`'s concern.

  >>> import jax.numpy as jnp
  >>> leaf = jnp.arange(12.).reshape(3, 2, 2)  # (in, heads, head_dim)
  >>> take(leaf, jnp.array([3, 0]), 2)[0].tolist()  # units (1, 1) and (0, 0)
  [3.0, 0.0]
  >>> put(leaf, jnp.zeros((3, 2)), jnp.array([3, 0]), 2)[0].tolist()
  [[0.0, 1.0], [2.0, 0.0]]
"""

from __future__ import annotations

import math
from typing import Any, Callable, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
                 idx: jax.Array, axes: int, busy: list[bool],
                 pruned: bool = False) -> jax.Array:
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
    pruned: the frozen units' params are exactly zero (not checked here:
      `active.check_pruned`): `next_fun` is skipped, the active units'
      outputs are written into zeros.
  """
  if pruned:
    return _call_pruned(module, method, args, kwargs, active, frozen, idx,
                        axes, busy)
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


def _call_pruned(module: nn.Module, method: str, args: tuple, kwargs: dict,
                 active: PyTree, frozen: PyTree, idx: jax.Array, axes: int,
                 busy: list[bool]) -> jax.Array:
  """`call_partial` when the frozen units are exactly zero: no frozen call."""
  k = int(idx.shape[-1])
  busy.append(True)
  try:
    if method == 'attend':
      sub = module.clone(parent=None, features=k)
      query = jnp.take(args[0], idx, axis=-1)
      return cast(jax.Array, sub.apply({'params': active}, query,
                                       *args[1:], method='attend', **kwargs))
    sub = module.clone(parent=None, features=k)
    act = cast(jax.Array, sub.apply({'params': active}, *args, **kwargs))
  finally:
    busy.pop()
  # Every own leaf ends in the unit axes (`granularity.groups`).
  units_shape = tuple(jax.tree.leaves(frozen)[0].shape[-axes:])
  return put_into_zeros(act, idx, units_shape)


def put_into_zeros(units: jax.Array, idx: jax.Array,
                   units_shape: tuple[int, ...]) -> jax.Array:
  """Zeros of unit axes `units_shape` with `units` `(..., k)` at `idx`.

  A concrete `idx` (a constant of the program, not a traced argument) gives
  a concatenation of slices of `units` and zero blocks, one per run of
  consecutive indices (XLA:CPU's scatter, and its gather in the backward
  pass, cost more than the layer itself); a traced `idx`, a scatter.

    >>> put_into_zeros(jnp.array([[1., 2., 3.]]), jnp.array([0, 1, 3]), (5,))
    Array([[1., 2., 0., 3., 0.]], dtype=float32)
  """
  n = math.prod(units_shape)
  shape = units.shape[:-1] + units_shape
  if isinstance(idx, jax.core.Tracer):
    zeros = jnp.zeros(units.shape[:-1] + (n,), units.dtype)
    return zeros.at[..., idx].set(units).reshape(shape)
  where = np.asarray(idx)
  if where.size and (np.diff(where) <= 0).any():  # unsorted: no runs.
    zeros = jnp.zeros(units.shape[:-1] + (n,), units.dtype)
    return zeros.at[..., where].set(units).reshape(shape)
  pieces, at = [], 0
  lead = units.shape[:-1]
  starts = np.flatnonzero(np.diff(where, prepend=-2) != 1)
  ends = np.append(starts[1:], where.size)
  for s, e in zip(starts, ends):
    if where[s] > at:
      pieces.append(jnp.zeros(lead + (int(where[s]) - at,), units.dtype))
    pieces.append(units[..., s:e])
    at = int(where[e - 1]) + 1
  if at < n:
    pieces.append(jnp.zeros(lead + (n - at,), units.dtype))
  out = pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=-1)
  return out.reshape(shape)


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
