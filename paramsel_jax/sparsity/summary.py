# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""What a sparse model holds: per-leaf summary, mask intersection, export.

>>> import jax.numpy as jnp
>>> params = {'Dense_0': {'kernel': jnp.array([[1., 0.], [0., 2.]]),
...                       'bias': jnp.zeros(2)}}
>>> print(format_summary(summarize(params)))  # doctest: +NORMALIZE_WHITESPACE
leaf              shape   size  nonzero  sparsity
Dense_0/bias      (2,)       2        0   100.00%
Dense_0/kernel    (2, 2)     4        2    50.00%
total                        6        2    66.67%
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.optim import masking
from paramsel_jax.sparsity import distributions as dist_lib
from paramsel_jax.sparsity import transform

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LeafSummary:
  """One leaf: its name, shape, size and nonzero count."""

  name: str
  shape: tuple[int, ...]
  size: int
  nonzero: int

  @property
  def sparsity(self) -> float:
    """The fraction of the leaf that is zero."""
    return 1.0 - self.nonzero / self.size if self.size else 0.0


def summarize(params: PyTree, masks: PyTree | None = None) -> list[LeafSummary]:
  """Per leaf: size and nonzeros (of `params`, or the True count of `masks`).

  Example:
    >>> import jax.numpy as jnp
    >>> [s.nonzero for s in summarize({'w': jnp.array([0., 3.])})]
    [1]
  """
  counted = params if masks is None else masks
  if masks is not None:
    masking.check_tree(masks, params, 'masks')
  names = dist_lib.leaf_names(params)
  return [LeafSummary(n, tuple(np.shape(x)), int(np.size(x)),
                      int(np.count_nonzero(np.asarray(x))))
          for n, x in zip(names, jax.tree.leaves(counted))]


def format_summary(rows: list[LeafSummary]) -> str:
  """A plain-text table of `summarize`'s rows, with a total line."""
  width = max([len(r.name) for r in rows] + [len('total')]) + 2
  shape = max([len(str(r.shape)) for r in rows] + [len('shape')]) + 2
  size, nonzero = sum(r.size for r in rows), sum(r.nonzero for r in rows)
  total = 1.0 - nonzero / size if size else 0.0
  digits = max(len(str(size)), len('size')) + 2
  lines = [f'{"leaf":<{width}}{"shape":<{shape}}{"size":>{digits}}'
           f'{"nonzero":>{digits + 3}}{"sparsity":>10}']
  lines += [f'{r.name:<{width}}{str(r.shape):<{shape}}{r.size:>{digits}}'
            f'{r.nonzero:>{digits + 3}}{r.sparsity:>10.2%}' for r in rows]
  lines.append(f'{"total":<{width}}{"":<{shape}}{size:>{digits}}'
               f'{nonzero:>{digits + 3}}{total:>10.2%}')
  return '\n'.join(lines)


def intersect(*masks: PyTree) -> PyTree:
  """The masks' logical AND (kept where every mask keeps).

  Example:
    >>> import jax.numpy as jnp
    >>> intersect({'w': jnp.array([1, 1, 0])}, {'w': jnp.array([True, False, True])})['w'].tolist()
    [True, False, False]
  """
  if not masks:
    raise ValueError('intersect needs at least one mask.')
  for m in masks[1:]:
    masking.check_tree(m, masks[0], 'mask')
  return functools.reduce(
      lambda a, b: jax.tree.map(lambda x, y: jnp.logical_and(x, y), a, b),
      [jax.tree.map(lambda x: jnp.asarray(x) != 0, m) for m in masks])


def export(params: PyTree, opt_state_or_masks: Any
           ) -> tuple[PyTree, dict[str, int]]:
  """The pruned model: params with their masks applied, and nonzeros per leaf.

  Example:
    >>> import jax.numpy as jnp
    >>> p, counts = export({'w': jnp.array([1., 2.])}, {'w': jnp.array([True, False])})
    >>> p['w'].tolist(), counts
    ([1.0, 0.0], {'w': 1})
  """
  pruned = transform.apply_masks(params, opt_state_or_masks)
  return pruned, {r.name: r.nonzero for r in summarize(pruned)}
