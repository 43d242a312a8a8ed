# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Which trailing axes of a module's params index its units ('unit' α).

A unit is one output feature of a module: its fan-in weights and its bias.
For a `Dense` (kernel `(in, n)`, bias `(n,)`), a `Conv` (kernel `(..., in,
n)`) or an `Embed` (table `(vocab, n)`) that is an index along every leaf's
last axis: the module has 1 *unit axis*. Other modules, by their params'
names and shapes alone:

* attention's query/key/value `DenseGeneral(features=(heads, head_dim))`,
  kernel `(in, heads, head_dim)` and bias `(heads, head_dim)`: a unit is one
  `(head, d)` pair, an output feature; its unit axes are the bias's 2 axes
  (`heads · head_dim` units). Read from the bias: WITHOUT a bias the kernel
  looks like a 1-D conv's, so its output axes cannot be read from shapes
  (pass them: `active_check.unit_axes` traces the model).
* a norm (`LayerNorm`, `RMSNorm`, `BatchNorm`: leaves `scale` and maybe
  `bias`, nothing else) has 0 unit axes: the module is one unit, trained or
  frozen whole, so a partly active norm is never planned.

Everything else (kernels, biases, tables) keeps the last axis: the groups
of plain Dense/Conv params are exactly as before.

  >>> default_unit_axes({'kernel': (4, 2, 8), 'bias': (2, 8)})  # q/k/v
  2
  >>> default_unit_axes({'kernel': (2, 8, 4), 'bias': (4,)})  # out projection
  1
  >>> default_unit_axes({'scale': (8,), 'bias': (8,)})  # LayerNorm
  0
  >>> unit_shape('attn/query', {'kernel': (4, 2, 8), 'bias': (2, 8)}, 2)
  (2, 8)
"""

from __future__ import annotations

from typing import Mapping

NORM_LEAVES = frozenset({'scale', 'bias'})


def default_unit_axes(leaves: Mapping[str, tuple[int, ...]]) -> int:
  """A module's unit axes read from its own leaves' names and shapes.

  Args:
    leaves: the module's own params' shapes, by leaf name.

  Returns:
    0 for a norm (leaves `scale` and maybe `bias`); the bias's rank when the
    bias has 2+ axes that end every leaf (a multi-axis `DenseGeneral`); 1
    otherwise (the last axis).
  """
  names = set(leaves)
  if 'scale' in names and names <= NORM_LEAVES:
    return 0
  bias = tuple(leaves.get('bias', ()))
  if len(bias) >= 2 and all(tuple(s)[len(s) - len(bias):] == bias
                            for s in leaves.values()):
    return len(bias)
  return 1


def unit_shape(name: str, leaves: Mapping[str, tuple[int, ...]],
               axes: int) -> tuple[int, ...]:
  """The shape of the unit axes shared by all of a module's leaves.

  ValueError, naming the module, when its leaves do not share them.
  """
  shapes = [tuple(s) for s in leaves.values()]
  ends = {s[len(s) - axes:] if axes else () for s in shapes}
  if len(ends) != 1 or any(len(s) < axes for s in shapes):
    which = 'last axes' if axes == 1 else f'last {axes} axes'
    raise ValueError(
        f"granularity='unit': module {name!r} has leaves of shapes {shapes} "
        f'whose {which} differ; accepted: leaves that share their last axis as the unit axis '
        '(a kernel (..., n) and a bias (n,)), a multi-axis DenseGeneral with '
        "its bias (..., h, d) and (h, d), or granularity='layer'.")
  return ends.pop()
