# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Which leaves are pruned, and to which sparsity each: the distributions.

A *filter* picks the leaves that are pruned (default: every leaf with more
than one axis, i.e. kernels and embedding tables, not biases or norms, even
attention's 2-D biases); the
others stay dense. A *distribution* spreads the target sparsity over them:

* `'uniform'`: every pruned leaf at the target;
* `'erk'`: Erdős–Rényi-Kernel (Evci et al. 2020): a leaf of shape `(n_1,
  ..., n_d)` keeps a density proportional to `((n_1 + ... + n_d) / (n_1 ...
  n_d))^power_scale`, scaled so the pruned leaves together meet the target;
  a leaf whose density would pass 1 is kept dense and the rest rescaled;
* `'global'`: one threshold over all pruned leaves together (the masks are
  chosen by the scores, so per-leaf sparsities are not known in advance);
* a mapping `{glob: sparsity}` over leaf names (`'Dense_0/kernel'`, first
  match wins; an unmatched leaf stays dense), or a callable `(name, leaf) ->
  sparsity or None`: a custom per-leaf map.

  >>> import jax.numpy as jnp
  >>> params = {'a': {'kernel': jnp.zeros((100, 100)), 'bias': jnp.zeros(100)},
  ...           'b': {'kernel': jnp.zeros((100, 10)), 'bias': jnp.zeros(10)}}
  >>> s = leaf_sparsities(params, 0.9, 'erk')
  >>> s['a']['bias'] is None, round(s['a']['kernel'], 4), round(s['b']['kernel'], 4)
  (True, 0.929, 0.6097)
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, Callable, Mapping, Union

import jax
import numpy as np

from paramsel_jax.select import granularity
from paramsel_jax.sparsity.schedules import check_sparsity

PyTree = Any
LeafFilter = Callable[[str, Any], bool]
Distribution = Union[str, Mapping[str, float],
                     Callable[[str, Any], Union[float, None]]]
DISTRIBUTIONS = ('uniform', 'erk', 'global')


def default_filter(name: str, leaf: Any) -> bool:
  """Prune leaves with more than one axis (kernels, tables), not biases or norms.

  A leaf named `bias` or `scale` is never pruned, whatever its rank:
  attention's `DenseGeneral` biases are `(heads, head_dim)`.

  Example:
    >>> import jax.numpy as jnp
    >>> default_filter('Dense_0/kernel', jnp.zeros((3, 4)))
    True
    >>> default_filter('Dense_0/bias', jnp.zeros(4))
    False
    >>> default_filter('MultiHeadDotProductAttention_0/query/bias',
    ...                jnp.zeros((2, 4)))
    False
  """
  return np.ndim(leaf) > 1 and name.rsplit('/', 1)[-1] not in ('bias', 'scale')


def leaf_names(params: PyTree) -> list[str]:
  """Each leaf's name (`'Dense_0/kernel'`), in `jax.tree.leaves` order."""
  return [granularity.module_name(p) for p in granularity.leaf_paths(params)]


def _leaves(params: PyTree) -> tuple[list[Any], Any]:
  return jax.tree.flatten(params, is_leaf=granularity._is_variable)


def pruned_leaves(params: PyTree, leaf_filter: LeafFilter | None = None
                  ) -> list[bool]:
  """Whether each leaf is pruned, by `leaf_filter` (default `default_filter`).

  Raises ValueError when the filter selects no leaf: nothing would be pruned.
  """
  leaf_filter = leaf_filter or default_filter
  leaves, _ = jax.tree.flatten(params)
  names = leaf_names(params)
  chosen = [bool(leaf_filter(n, x)) for n, x in zip(names, leaves)]
  if not any(chosen):
    raise ValueError(
        f'the leaf filter selects no leaf of {len(leaves)} '
        f'({", ".join(names[:6])}{" ..." if len(names) > 6 else ""}): nothing '
        'would be pruned; accepted: a filter `(name, leaf) -> bool` that is '
        'True for at least one leaf (default: leaves with ndim > 1, except '
        'biases and scales).')
  return chosen


def erk_densities(shapes: list[tuple[int, ...]], density: float,
                  power_scale: float = 1.0) -> list[float]:
  """ERK densities of leaves of `shapes` whose weighted mean is `density`.

  Example:
    >>> [round(d, 4) for d in erk_densities([(100, 100), (100, 10)], 0.1)]
    [0.071, 0.3903]
  """
  sizes = np.array([math.prod(s) for s in shapes], float)
  raw = np.array([(sum(s) / math.prod(s)) ** power_scale for s in shapes])
  dense = np.zeros(len(shapes), bool)
  while True:
    kept = density * sizes.sum() - sizes[dense].sum()
    eps = kept / (raw[~dense] * sizes[~dense]).sum()
    over = ~dense & (eps * raw > 1)
    if not over.any():
      break
    dense |= over & (raw == raw[over].max())  # the densest first, then again.
  return [1.0 if d else float(eps * r) for d, r in zip(dense, raw)]


def _check_distribution(distribution: Distribution) -> None:
  if isinstance(distribution, str):
    if distribution not in DISTRIBUTIONS:
      raise ValueError(f'distribution={distribution!r}; accepted: '
                       f'{", ".join(map(repr, DISTRIBUTIONS))}, a mapping '
                       '{glob: sparsity} or a callable (name, leaf) -> '
                       'sparsity.')
  elif isinstance(distribution, Mapping):
    for pattern, value in distribution.items():
      check_sparsity(value, f'sparsity for {pattern!r}')
  elif not callable(distribution):
    raise ValueError(f'distribution={distribution!r}; accepted: a name, a '
                     'mapping or a callable.')


def leaf_sparsities(params: PyTree, sparsity: float,
                    distribution: Distribution = 'uniform',
                    leaf_filter: LeafFilter | None = None,
                    erk_power_scale: float = 1.0) -> PyTree:
  """Each leaf's sparsity: a float, or None where the leaf stays dense.

  `'global'` gives every pruned leaf the target: the masks then share one
  threshold (`masks.choose`). A mapping or callable gives the per-leaf
  values itself (`sparsity` unused); the filter still applies.

  Example:
    >>> import jax.numpy as jnp
    >>> p = {'conv': {'kernel': jnp.zeros((3, 3, 1, 8))}, 'head': {'kernel': jnp.zeros((8, 10))}}
    >>> leaf_sparsities(p, 0.5, {'conv/*': 0.2})
    {'conv': {'kernel': 0.2}, 'head': {'kernel': None}}
  """
  _check_distribution(distribution)
  if isinstance(distribution, str):
    check_sparsity(sparsity)
  chosen = pruned_leaves(params, leaf_filter)
  leaves, treedef = jax.tree.flatten(params)
  names = leaf_names(params)
  out: list[float | None] = [None] * len(leaves)
  if distribution in ('uniform', 'global'):
    out = [float(sparsity) if c else None for c in chosen]
  elif distribution == 'erk':
    idx = [i for i, c in enumerate(chosen) if c]
    dens = erk_densities([tuple(np.shape(leaves[i])) for i in idx],
                         1.0 - float(sparsity), erk_power_scale)
    for i, d in zip(idx, dens):
      out[i] = max(0.0, 1.0 - d)
  else:
    for i, (name, leaf) in enumerate(zip(names, leaves)):
      if not chosen[i]:
        continue
      if isinstance(distribution, Mapping):
        value = next((v for g, v in distribution.items()
                      if fnmatch.fnmatchcase(name, g)), None)
      else:
        value = distribution(name, leaf)  # type: ignore[operator]
      out[i] = None if value is None else check_sparsity(
          value, f'sparsity of {name}')
    if all(v is None for v in out):
      raise ValueError('the custom distribution gives no leaf a sparsity; '
                       f'leaves: {", ".join(names[:6])}; accepted: a '
                       'sparsity in [0, 1) for at least one leaf.')
  return jax.tree.unflatten(treedef, out)
