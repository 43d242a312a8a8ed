# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""A mask from module names: "freeze these modules" without a hand-built tree.

`mask_by_name(params, freeze=[...])` (or `train=[...]`) gives the bool pytree
α of the params' structure (True = trains) that `masked` and `set_mask` take.

The matching rule, one for every kind of params (flax linen dicts, flax NNX
params as a plain dict or as an `nnx.State`, hand-written nested dicts, lists
and tuples):

* A leaf's *path* is its key path joined by '/': dict keys, list and tuple
  indices and attribute names, e.g. 'Dense_0/kernel' (linen),
  'blocks/0/attn/query/kernel' (NNX), 'layers/1/w' (a list of dicts). An
  `nnx.State` leaf's trailing `.value` attribute (an `nnx.Param`'s array) is
  dropped, so its paths are the plain dict's. (Only the attribute: a module
  *named* 'value', the GPT's 'attn/value', stays.)
* A pattern is a glob per component, split on '/': `*`, `?` and `[0-3]` match
  within one component (`fnmatch.fnmatchcase`, case-sensitive), and a
  component `**` matches any number of components (none included).
* A pattern matches a leaf when it matches the first components of its path:
  naming a module (or any subtree above it) names every leaf below it. So
  'Dense_0' is all of Dense_0, 'blocks/[0-1]' the first two blocks (not
  'blocks/10'), '**/bias' every bias, 'head/kernel' one leaf.

Patterns that name modules or subtrees give each module all-True or
all-False: an α at layer granularity (`granularity.groups(params, 'layer')`).
A pattern naming single leaves (a kernel but not its bias) splits a module.

This is the precedent of optax's `multi_transform` labels and flax NNX's path
filters (`nnx.PathContains`), as globs on whole paths.

  >>> import jax.numpy as jnp
  >>> params = {'Dense_0': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)},
  ...           'Dense_1': {'kernel': jnp.zeros((2, 1)), 'bias': jnp.zeros(1)}}
  >>> mask = mask_by_name(params, freeze=['Dense_0'])
  >>> mask['Dense_0']['kernel'].tolist(), mask['Dense_1']['bias'].tolist()
  ([[False, False], [False, False], [False, False]], [True])
"""

from __future__ import annotations

from collections.abc import Sequence
import fnmatch
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.select import granularity as granularity_lib

PyTree = Any
Patterns = str | Sequence[str]
__all__ = ['leaf_names', 'mask_by_name', 'path_matches']


def _component(key: Any) -> str:
  """One key of a jax key path as a path component (no brackets, no dot)."""
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def leaf_names(params: PyTree) -> list[str]:
  """Every leaf's '/'-joined path, in `jax.tree.leaves` order.

  The paths are `granularity.leaf_paths`': an `nnx.Variable`'s wrapper key
  (its `.value`) is not part of a name.

  Example:
    >>> import jax.numpy as jnp
    >>> leaf_names({'layers': [{'w': jnp.zeros(2)}], 'b': jnp.zeros(1)})
    ['b', 'layers/0/w']
  """
  return ['/'.join(_component(k) for k in path)
          for path in granularity_lib.leaf_paths(params)]


def _split(pattern: str) -> list[str]:
  parts = pattern.split('/')
  if not pattern or any(not p for p in parts):
    raise ValueError(
        f'mask_by_name: pattern {pattern!r} has an empty component; accepted: '
        "globs of '/'-joined names, e.g. 'Dense_0', 'blocks/[0-1]', '**/bias'.")
  return parts


def _match_prefix(pattern: list[str], path: list[str]) -> bool:
  """Whether `pattern` matches the first len(≥1) components of `path`."""
  if not pattern:
    return True  # Matched a prefix (the whole pattern is used up).
  head, rest = pattern[0], pattern[1:]
  if head == '**':
    return any(_match_prefix(rest, path[i:]) for i in range(len(path) + 1))
  return bool(path) and fnmatch.fnmatchcase(path[0], head) and (
      _match_prefix(rest, path[1:]))


def path_matches(pattern: str, path: str) -> bool:
  """Whether glob `pattern` names the leaf at `path` or a subtree above it.

  Example:
    >>> path_matches('blocks/[0-1]', 'blocks/1/attn/query/kernel')
    True
    >>> path_matches('blocks/1', 'blocks/10/ln1/scale')
    False
    >>> path_matches('**/bias', 'Dense_0/bias'), path_matches('*', 'a/b')
    (True, True)
  """
  return _match_prefix(_split(pattern), path.split('/'))


def _as_patterns(patterns: Patterns | None, what: str) -> tuple[str, ...]:
  if patterns is None:
    return ()
  if isinstance(patterns, str):
    patterns = [patterns]
  patterns = tuple(patterns)
  for p in patterns:
    if not isinstance(p, str):
      raise TypeError(
          f'mask_by_name: {what}= holds {p!r} ({type(p).__name__}); accepted: '
          "a glob string or a sequence of them, e.g. ['Dense_0', 'blocks/*'].")
    _split(p)
  return patterns


def _modules(paths: list[str], limit: int = 12) -> str:
  """The modules (leaf paths without their last name), some of them."""
  names = list(dict.fromkeys(p.rsplit('/', 1)[0] for p in paths))
  more = f' and {len(names) - limit} more' if len(names) > limit else ''
  return ', '.join(repr(n) for n in names[:limit]) + more


def _matches(patterns: tuple[str, ...], paths: list[str], what: str,
             ) -> list[list[str]]:
  """Per leaf, the patterns that match it; ValueError for unused patterns."""
  hits: list[list[str]] = [[] for _ in paths]
  unused = []
  for pattern in patterns:
    found = False
    for i, path in enumerate(paths):
      if path_matches(pattern, path):
        hits[i].append(pattern)
        found = True
    if not found:
      unused.append(pattern)
  if unused:
    raise ValueError(
        f'mask_by_name: {what} pattern(s) {unused} match no leaf; the params\' '
        f'modules: {_modules(paths)}. A pattern is a glob per '
        "'/'-separated component ('*', '?', '[0-3]'; '**' for any number of "
        "components) matching the start of a leaf's path, e.g. 'Dense_0', "
        "'blocks/[0-1]', '**/bias'.")
  return hits


def _check_cover(paths: list[str], train_hits: list, freeze_hits: list, *,
                 both_given: bool) -> None:
  """ValueError for a leaf named by both sides, or (both given) by neither."""
  both = [f'{path!r} (train {t}, freeze {f})'
          for path, t, f in zip(paths, train_hits, freeze_hits) if t and f]
  if both:
    raise ValueError(
        f'mask_by_name: {len(both)} leaves are matched by both train= and '
        f'freeze=: {"; ".join(both[:5])}{" ..." if len(both) > 5 else ""}. '
        'accepted: patterns that name disjoint leaves.')
  if both_given:
    neither = [p for p, t, f in zip(paths, train_hits, freeze_hits)
               if not t and not f]
    if neither:
      raise ValueError(
          f'mask_by_name: with both train= and freeze=, every leaf must be '
          f'named by one of them; named by neither: {neither[:8]}'
          f'{" ..." if len(neither) > 8 else ""}. Accepted: patterns covering '
          'every leaf, or only one of train= / freeze=.')


def mask_by_name(params: PyTree, *, train: Patterns | None = None,
                 freeze: Patterns | None = None) -> PyTree:
  """The α that trains or freezes the modules that glob patterns name.

  See the module docstring for the matching rule: globs per '/'-separated
  component, matching the start of each leaf's path ('Dense_0', 'blocks/[0-1]',
  '**/bias'). Everything is checked before the mask is built.

  Args:
    params: the params (or their shapes: `jax.eval_shape` output works): flax
      linen's dict, flax NNX's dict or `nnx.State`, or any pytree.
    train: patterns of what trains; with `train` alone everything else is
      frozen.
    freeze: patterns of what is frozen; with `freeze` alone everything else
      trains. With both, every leaf must be named by exactly one of them.

  Returns:
    A pytree of the params' structure (an `nnx.State` for one) of bool arrays
    of the params' shapes: True = trains, for `masked(tx, mask)` and
    `set_mask(opt_state, mask)`.

  Raises:
    ValueError: neither `train` nor `freeze` given; a pattern that matches no
      leaf (naming it and listing the params' modules); a leaf matched by both
      a `train` and a `freeze` pattern; with both given, a leaf neither
      names; an empty pattern or component.
    TypeError: a pattern that is not a string.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> import paramsel_jax
    >>> params = {'embed': {'embedding': jnp.ones((5, 2))},
    ...           'blocks': [{'w': jnp.ones((2, 2))} for _ in range(3)],
    ...           'head': {'kernel': jnp.ones((2, 5))}}
    >>> tx = paramsel_jax.masked(optax.adam(1e-3))
    >>> state = tx.init(params)
    >>> layer_mask = mask_by_name(params, freeze=['embed', 'blocks/[0-1]'])
    >>> state = paramsel_jax.set_mask(state, layer_mask)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)
    >>> [bool(u.any()) for u in jax.tree.leaves(updates)]  # blocks 0-1, embed
    [False, False, True, False, True]
    >>> mask_by_name(params, train='head')['blocks'][2]['w'].any().item()
    False
  """
  if train is None and freeze is None:
    raise ValueError(
        'mask_by_name: give train= (what trains, the rest is frozen) or '
        'freeze= (what is frozen, the rest trains), or both; got neither.')
  train_p = _as_patterns(train, 'train')
  freeze_p = _as_patterns(freeze, 'freeze')
  paths = leaf_names(params)
  train_hits = _matches(train_p, paths, 'train')
  freeze_hits = _matches(freeze_p, paths, 'freeze')
  _check_cover(paths, train_hits, freeze_hits,
               both_given=train is not None and freeze is not None)
  if train is None:
    flags = [not f for f in freeze_hits]
  else:
    flags = [bool(t) for t in train_hits]
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(treedef, [
      jnp.full(getattr(x, 'shape', None) or np.shape(x), flag, bool)
      for x, flag in zip(leaves, flags)])
