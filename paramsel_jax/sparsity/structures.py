# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""What is pruned together: unstructured, N:M, block and channel sparsity.

A structure turns one leaf's element scores into a bool mask with a given
sparsity. The count kept may be traced (a schedule's sparsity at a traced
step), so masks are chosen by rank, not by `lax.top_k`:

* `unstructured()`: single scalars;
* `n_by_m(n, m)`: in every run of `m` consecutive weights along the fan-in
  axis (the second-to-last: a `Dense` kernel's inputs, a `Conv` kernel's
  input channels), exactly `n` are kept; the sparsity is `1 - n / m`;
* `block(h, w)`: blocks of `h x w` over the leaf's last two axes (for a conv
  kernel, at every spatial tap), ranked by their mean score;
* `channel()`: whole output units (the last axis: a neuron of a `Dense`, an
  output channel of a `Conv`), ranked by their mean score; the unit's bias
  (a sibling leaf with that last axis) is pruned with it, so a pruned unit
  outputs exactly zero and `paramsel_jax.sparsity.channels` can skip it.

  >>> import jax.numpy as jnp
  >>> scores = jnp.array([[4., 1., 3., 2.], [1., 2., 3., 4.]]).T  # (4, 2)
  >>> n_by_m(1, 2).mask(scores, None).astype(int).T.tolist()
  [[1, 0, 1, 0], [0, 1, 0, 1]]
  >>> channel().mask(scores, 0.5).astype(int).T.tolist()
  [[1, 1, 1, 1], [0, 0, 0, 0]]
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


def rank_mask(scores: jax.Array, count: jax.typing.ArrayLike) -> jax.Array:
  """True at the `count` largest scores of `scores` (any shape; `count` may be traced).

  Ties go to the lower flat index; NaN ranks last.

  Example:
    >>> rank_mask(jnp.array([3., 1., 2., 5.]), 2).tolist()
    [True, False, False, True]
  """
  flat = jnp.ravel(scores).astype(jnp.float32)
  flat = jnp.where(jnp.isnan(flat), -jnp.inf, flat)
  if isinstance(count, int):  # a static count: lax.top_k, ~6x a full sort.
    _, top = jax.lax.top_k(flat, count)
    return jnp.zeros(flat.shape, bool).at[top].set(True).reshape(
        jnp.shape(scores))
  order = jnp.argsort(-flat, stable=True)
  chosen = jnp.arange(flat.size) < count
  return jnp.zeros(flat.shape, bool).at[order].set(chosen).reshape(
      jnp.shape(scores))


def keep_count(sparsity: jax.typing.ArrayLike | float, n: int
               ) -> jax.Array | int:
  """How many of `n` to keep at `sparsity`: `round((1 - s) n)`, at least 1.

  A Python int when `sparsity` is a Python number (a static count).
  """
  if isinstance(sparsity, (int, float)):
    return min(max(int(round((1.0 - sparsity) * n)), 1), n)
  return jnp.clip(jnp.round((1.0 - jnp.asarray(sparsity, jnp.float32)) * n),
                  1, n).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Structure:
  """Base: element-wise (unstructured) masks."""

  name = 'unstructured'
  fixed_sparsity: float | None = None  # set by the structure (N:M), not by the pruner.

  def check(self, name: str, shape: tuple[int, ...]) -> None:
    """ValueError when a leaf of `shape` cannot take this structure."""
    del name, shape

  def mask(self, scores: jax.Array, sparsity: jax.typing.ArrayLike
           ) -> jax.Array:
    """A mask of `scores`' shape at `sparsity` (the largest scores kept)."""
    return rank_mask(scores, keep_count(sparsity, math.prod(scores.shape)))


@dataclasses.dataclass(frozen=True)
class NByM(Structure):
  """Exactly `n` of every `m` consecutive fan-in weights kept."""

  n: int = 2
  m: int = 4
  name = 'n_by_m'

  def __post_init__(self):
    for field in ('n', 'm'):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{field}={value!r}; accepted: an integer >= 1.')
    if self.n > self.m:
      raise ValueError(f'N:M sparsity with N={self.n} > M={self.m}: a group '
                       f'of {self.m} cannot keep {self.n}; accepted: 1 <= N '
                       '<= M.')
    object.__setattr__(self, 'fixed_sparsity', 1.0 - self.n / self.m)

  def check(self, name: str, shape: tuple[int, ...]) -> None:
    """ValueError when a leaf of `shape` cannot take this structure."""
    if len(shape) < 2 or shape[-2] % self.m:
      raise ValueError(
          f'N:M sparsity ({self.n}:{self.m}) on {name} of shape {shape}: the '
          f'fan-in axis (second-to-last, size {shape[-2] if len(shape) > 1 else "-"})'
          f' is not a multiple of M={self.m}; accepted: leaves with ndim >= 2 '
          'whose second-to-last axis M divides (exclude others with the '
          'leaf filter).')

  def mask(self, scores: jax.Array, sparsity: jax.typing.ArrayLike
           ) -> jax.Array:
    """A mask of `scores`' shape (the largest scores kept)."""
    del sparsity  # always 1 - n / m.
    moved = jnp.moveaxis(scores, -2, -1)
    groups = moved.reshape(moved.shape[:-1] + (-1, self.m))
    groups = jnp.where(jnp.isnan(groups), -jnp.inf, groups)
    order = jnp.argsort(-groups, axis=-1, stable=True)
    ranks = jnp.argsort(order, axis=-1, stable=True)
    keep = (ranks < self.n).reshape(moved.shape)
    return jnp.moveaxis(keep, -1, -2)


@dataclasses.dataclass(frozen=True)
class Block(Structure):
  """Blocks of `h x w` over the last two axes, by their mean score."""

  h: int = 1
  w: int = 1
  name = 'block'

  def __post_init__(self):
    for field in ('h', 'w'):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'block {field}={value!r}; accepted: an integer >= 1.')

  def check(self, name: str, shape: tuple[int, ...]) -> None:
    """ValueError when a leaf of `shape` cannot take this structure."""
    if len(shape) < 2 or shape[-2] % self.h or shape[-1] % self.w:
      raise ValueError(
          f'block ({self.h}, {self.w}) does not divide {name} of shape '
          f'{shape}: its last two axes must be multiples of ({self.h}, '
          f'{self.w}); accepted: a block shape dividing every pruned leaf\'s '
          'last two axes (exclude others with the leaf filter).')

  def mask(self, scores: jax.Array, sparsity: jax.typing.ArrayLike
           ) -> jax.Array:
    """A mask of `scores`' shape (the largest scores kept)."""
    *lead, a, b = scores.shape
    blocks = scores.reshape(*lead, a // self.h, self.h, b // self.w, self.w)
    pooled = blocks.astype(jnp.float32).mean(axis=(-3, -1))
    keep = rank_mask(pooled, keep_count(sparsity, pooled.size))
    keep = jnp.repeat(jnp.repeat(keep, self.h, axis=-2), self.w, axis=-1)
    return keep.reshape(scores.shape)


@dataclasses.dataclass(frozen=True)
class Channel(Structure):
  """Whole output units (the last axis), by their mean score."""

  name = 'channel'

  def mask(self, scores: jax.Array, sparsity: jax.typing.ArrayLike
           ) -> jax.Array:
    """A mask of `scores`' shape (the largest scores kept)."""
    units = self.unit_mask(scores, sparsity)
    return jnp.broadcast_to(units, scores.shape)

  def unit_mask(self, scores: jax.Array, sparsity: jax.typing.ArrayLike
                ) -> jax.Array:
    """The kept output units (the last axis), by mean score."""
    pooled = scores.astype(jnp.float32).reshape(-1, scores.shape[-1]).mean(0)
    return rank_mask(pooled, keep_count(sparsity, pooled.size))


def unstructured() -> Structure:
  """Single weights (the default)."""
  return Structure()


def n_by_m(n: int, m: int) -> Structure:
  """`n` of every `m` consecutive fan-in weights (e.g. 2:4).

  Example:
    >>> n_by_m(3, 2)
    Traceback (most recent call last):
    ...
    ValueError: N:M sparsity with N=3 > M=2: a group of 2 cannot keep 3; accepted: 1 <= N <= M.
  """
  return NByM(n=n, m=m)


def block(h: int, w: int) -> Structure:
  """Blocks of `h x w` over each pruned leaf's last two axes."""
  return Block(h=h, w=w)


def channel() -> Structure:
  """Whole output units (neurons, conv output channels), with their biases."""
  return Channel()

