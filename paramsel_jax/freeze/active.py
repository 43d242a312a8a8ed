"""The active set of `T|α`: a step whose cost follows α.

`masked` computes the dense step and zeroes frozen updates, so a frozen
parameter costs as much as a trained one. Here the params are split into the
full tree, carried as a constant of the step (no gradient is built for it),
and the *active* tree, the only thing differentiated and optimized:

* at unit/layer granularity (`Plan.mode == 'units'`), the active tree has the
  params' structure, each leaf sliced along its unit axes (the last axis;
  attention's q/k/v `(heads, head_dim)` flattened: `Plan.unit_axes`) to the
  module's active units: the whole leaf for a module that trains fully, a
  zero-size slice for a frozen one, `leaf[..., idx]` for a partly active one.
  The forward pass of a partly active module is its frozen output with the
  active units' outputs written in (`out.at[..., idx].set(...)`, a flax
  method interceptor, `units.call_partial`), so autodiff builds the weight
  gradient `xᵀ δ[:, idx]` of the active units only, and no backward pass at
  all below the lowest module that trains. The optimizer's state has the
  active tree's shapes. What can be partly active: `active_check`.
* at element granularity (`'packed'`), the active tree is one vector of the
  k active scalars: the step is dense (gather, inner update, scatter), but
  the optimizer's state is O(k), not O(N).

Several seeds share one program, so every seed's slices have one size per
module: the largest count over the seeds. Slots beyond a seed's own count are
padding, filled with frozen units, whose updates (and optimizer state) are
held at zero by `masked` over the active tree (`live`). Changing α within the
same sizes changes only the index arrays: no recompilation.

  >>> import jax, jax.numpy as jnp
  >>> params = {'Dense_0': {'kernel': jnp.ones((3, 4)), 'bias': jnp.zeros(4)}}
  >>> alpha = {'Dense_0': {'kernel': jnp.array([[0, 1, 0, 1]] * 3, bool),
  ...                      'bias': jnp.array([0, 1, 0, 1], bool)}}
  >>> p, arrays = plan(alpha, 'unit', batched=False)  # one model, no seed axis
  >>> p.kinds, p.slots, arrays['idx']['Dense_0'].tolist()
  (('partial',), (2,), [1, 3])
  >>> active = split(params, p, {'Dense_0': jnp.array([1, 3])})
  >>> jax.tree.map(jnp.shape, active)
  {'Dense_0': {'bias': (2,), 'kernel': (3, 2)}}
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.freeze import units as units_lib
from paramsel_jax.freeze.active_check import inner_leaves
from paramsel_jax.freeze.active_check import own_leaves
from paramsel_jax.freeze.active_check import SPLITTABLE
from paramsel_jax.freeze.active_check import unsplittable
# The frozen prefix's cache, re-exported (its home: `prefix`).
from paramsel_jax.freeze.prefix import cacheable_prefix  # noqa: F401
from paramsel_jax.freeze.prefix import module_call_order  # noqa: F401
from paramsel_jax.freeze.prefix import module_input  # noqa: F401

PyTree = Any
PACKED = 'packed'


@dataclasses.dataclass(frozen=True)
class Plan:
  """The static shape of an active set (what a compiled step depends on).

  Attributes:
    mode: 'units' (unit or layer granularity) or 'packed' (element).
    modules: module names (`granularity.module_name`), in leaf order.
    kinds: per module 'frozen', 'full' or 'partial' ('units' mode).
    slots: per module, the active units' slot count (the unit count for
      'full', 0 for 'frozen').
    packed: 'packed' mode: the number of active scalars.
    unit_axes: per module, its unit axes (`Groups.module_unit_axes`; empty:
      1 each, the last axis).
  """

  mode: str
  modules: tuple[str, ...] = ()
  kinds: tuple[str, ...] = ()
  slots: tuple[int, ...] = ()
  packed: int = 0
  unit_axes: tuple[int, ...] = ()

  def axes(self) -> dict[str, int]:
    """Per module name, its unit axes."""
    return dict(zip(self.modules, self.unit_axes or (1,) * len(self.modules)))

  def describe(self) -> str:
    """E.g. 'Dense_0 frozen, Dense_1 30 units, Dense_2 full'."""
    if self.mode == PACKED:
      return f'{self.packed} scalars packed'
    return ', '.join(
        f'{m} {k}' if k != 'partial' else f'{m} {s} units'
        for m, k, s in zip(self.modules, self.kinds, self.slots))


def _module_of_leaf(params: PyTree) -> list[str]:
  return [granularity_lib.module_name(granularity_lib.module_path(p))
          for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _unit_flags(alpha: PyTree, g: granularity_lib.Groups) -> list[np.ndarray]:
  """Per module, `(seeds, units)` bool: is the unit active.

  Checks that α is whole units (every scalar of a unit equal).
  """
  leaves = [np.asarray(a) for a in jax.tree.leaves(alpha)]
  names = _module_of_leaf(jax.tree.map(lambda a: a[0], alpha))
  flags = []
  for m, name in enumerate(g.module_names):
    mine = [a for a, n in zip(leaves, names) if n == name]
    per_leaf = [a.reshape(a.shape[0], -1, g.module_units[m]) for a in mine]
    units = per_leaf[0][:, 0, :]
    for a in per_leaf:
      if not ((a == units[:, None, :]).all()):
        raise ValueError(
            f'alpha is not made of whole units in module {name!r}: some unit '
            'has both trained and frozen scalars; accepted: an α chosen at '
            "granularity 'unit' or 'layer' (granularity.top_k_groups).")
    flags.append(units.astype(bool))
  return flags


def plan(alpha: PyTree, granularity: str, batched: bool = True,
         buckets: int = 0, unit_axes: dict[str, int] | None = None
         ) -> tuple[Plan, dict[str, Any]]:
  """The active set of an element mask α (host side, concrete).

  `batched`: α has a leading seed axis (as in the protocol); False: one
  model's α, and the arrays come back without the seed axis. `buckets` > 0:
  slot counts are rounded up to a multiple of 1/buckets of the module's units
  (of N when packed), so that a run whose α keeps changing compiles only a
  few different steps; a module rounded up to all its units trains as a
  whole, its frozen units held by the mask. `unit_axes`: as in
  `granularity.groups` (the same map α was chosen with).

  Returns:
    The static `Plan` and its seed-batched arrays: for 'units', `{'idx':
    {module: (seeds, slots) int32}, 'live': {module: (seeds, slots) bool}}`
    over the partial modules; for 'packed', `{'idx': (seeds, k), 'live':
    (seeds, k)}` flat indices into the concatenated leaves.
  """
  granularity_lib.check_granularity(granularity)
  if not batched:
    p, arrays = plan(jax.tree.map(lambda a: np.asarray(a)[None], alpha),
                     granularity, buckets=buckets, unit_axes=unit_axes)
    return p, jax.tree.map(lambda a: a[0], arrays)
  if granularity == 'element':
    flat = np.concatenate([np.asarray(a).reshape(np.shape(a)[0], -1)
                           for a in jax.tree.leaves(alpha)], axis=1)
    counts = flat.sum(1)
    k = _bucket(int(counts.max()), flat.shape[1], buckets)
    idx = np.stack([_padded(np.flatnonzero(row), k, flat.shape[1]) for row in flat])
    live = np.arange(k)[None, :] < counts[:, None]
    return Plan(PACKED, packed=k), {'idx': idx.astype(np.int32), 'live': live}
  g = granularity_lib.groups(jax.tree.map(lambda a: a[0], alpha), 'unit',
                            unit_axes)
  kinds: list[str] = []
  slots: list[int] = []
  unit_idx: dict[str, np.ndarray] = {}
  unit_live: dict[str, np.ndarray] = {}
  for name, n_units, flags in zip(g.module_names, g.module_units,
                                  _unit_flags(alpha, g)):
    counts = flags.sum(1)
    k = _bucket(int(counts.max()), n_units, buckets)
    if counts.max() == 0:
      kinds.append('frozen')
      slots.append(0)
    elif counts.min() == n_units or k >= n_units:
      kinds.append('full')
      slots.append(n_units)
    else:
      kinds.append('partial')
      slots.append(k)
      unit_idx[name] = np.stack([_padded(np.flatnonzero(f), k, n_units)
                                 for f in flags]).astype(np.int32)
      unit_live[name] = np.arange(k)[None, :] < counts[:, None]
  return (Plan('units', g.module_names, tuple(kinds), tuple(slots),
               unit_axes=g.module_unit_axes),
          {'idx': unit_idx, 'live': unit_live})


def _bucket(count: int, n: int, buckets: int) -> int:
  """`count` rounded up to a multiple of ceil(n / buckets) (capped at n)."""
  if buckets <= 0 or count == 0:
    return count
  step = -(-n // buckets)
  return min(n, -(-count // step) * step)


def _padded(active: np.ndarray, k: int, n: int) -> np.ndarray:
  """`active` indices, padded to `k` with the lowest indices not in it."""
  if active.size == k:
    return active
  frozen = np.setdiff1d(np.arange(n), active)[:k - active.size]
  return np.concatenate([active, frozen])


def _slice_leaf(leaf: jax.Array, kind: str, idx: jax.Array | None,
                axes: int) -> jax.Array:
  if kind == 'full':
    return leaf
  if kind == 'frozen' or idx is None:
    return units_lib.flat_units(leaf, axes)[..., :0]
  return units_lib.take(leaf, idx, axes)


def split(params: PyTree, p: Plan, idx: Any) -> PyTree:
  """The active tree of one seed's `params` (see the module docstring)."""
  if p.mode == PACKED:
    return {PACKED: _flat(params)[idx]}
  kind, axes = dict(zip(p.modules, p.kinds)), p.axes()
  names = _module_of_leaf(params)
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(treedef, [_slice_leaf(x, kind[n], idx.get(n), axes[n])
                            for x, n in zip(leaves, names)])


def merge(params: PyTree, active: PyTree, p: Plan, idx: Any) -> PyTree:
  """`params` with the active tree written back.

  Padding slots hold the frozen values, so writing them back changes nothing.
  """
  if p.mode == PACKED:
    flat = _flat(params).at[idx].set(active[PACKED])
    return _unflat(flat, params)
  kind, axes = dict(zip(p.modules, p.kinds)), p.axes()
  names = _module_of_leaf(params)
  def one(x, a, n):
    if kind[n] == 'full':
      return a
    if kind[n] == 'frozen':
      return x
    return units_lib.put(x, a, idx[n], axes[n])
  return jax.tree.map(one, params, active, treedef_names(params, names))


def treedef_names(params: PyTree, names: list[str]) -> PyTree:
  """A params-shaped tree of module names (for `jax.tree.map`)."""
  return jax.tree.unflatten(jax.tree.structure(params), names)


def _flat(tree: PyTree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _unflat(flat: jax.Array, like: PyTree) -> PyTree:
  leaves, treedef = jax.tree.flatten(like)
  sizes = [math.prod(np.shape(x)) for x in leaves]
  parts = jnp.split(flat, np.cumsum(sizes)[:-1])
  return jax.tree.unflatten(treedef, [q.reshape(np.shape(x)).astype(x.dtype)
                            for q, x in zip(parts, leaves)])


def live_mask(active: PyTree, p: Plan, live: Any) -> PyTree:
  """A bool tree of the active tree's shapes: False on padding slots."""
  if p.mode == PACKED:
    return {PACKED: live}
  kind = dict(zip(p.modules, p.kinds))
  names = _module_of_leaf(active)
  def one(a, n):
    if kind[n] != 'partial':
      return jnp.ones(a.shape, bool)
    return jnp.broadcast_to(live[n], a.shape)
  return jax.tree.map(one, active, treedef_names(active, names))


def forward(apply_fn: Callable[[PyTree, jax.Array], jax.Array], p: Plan,
            params: PyTree, active: PyTree, idx: Any, x: jax.Array,
            cache: tuple[str, jax.Array] | None = None,
            pruned: bool = False) -> jax.Array:
  """`apply_fn` of the merged params, cheap to differentiate w.r.t. `active`.

  Autodiff w.r.t. `active` computes only the active part (module docstring).

  `pruned`: the frozen units of the partly active modules are pruned, their
  params exactly zero, so their outputs are known zeros: the frozen output
  is not computed, and a partly active module costs (forward and backward)
  what its active units cost (`units.call_partial`). The caller vouches for
  the zeros: check them once, outside jit, with `check_pruned`; a nonzero
  frozen unit would be silently dropped.

  `cache`: `(module path, inputs)`: that module's input is replaced by the
  given (cached) inputs, so the frozen prefix that computes it is dead code.
  """
  if p.mode == PACKED:
    return apply_fn(merge(params, active, p, idx), x)
  kind, axes = dict(zip(p.modules, p.kinds)), p.axes()
  names = _module_of_leaf(params)
  spliced = jax.tree.map(lambda x0, a, n: a if kind[n] == 'full' else x0,
                         params, active, treedef_names(params, names))
  partial = {n for n, k in kind.items() if k == 'partial'}
  own = own_leaves(params)
  busy: list[bool] = []
  reached: set[str] = set()

  def intercept(next_fun, args, kwargs, ctx):
    path = granularity_lib.module_name(ctx.module.path)
    if busy or ctx.method_name == 'setup':
      return next_fun(*args, **kwargs)
    if path in partial:  # refuse what would train wrong, at trace time.
      reason = unsplittable(ctx.module, {ctx.method_name}, own[path],
                            inner_leaves(ctx.module), axes[path])
      if reason:
        raise ValueError(f'active.forward: module {path} is partly active '
                         f'but cannot be split into units ({reason}); '
                         f'accepted: {SPLITTABLE} (`active_check.check_active_step`).')
      reached.add(path)
    if ctx.method_name == '__call__' and cache is not None and path == cache[0]:
      args = (cache[1],) + tuple(args[1:])
    if path not in partial or ctx.method_name not in ('__call__', 'attend'):
      return next_fun(*args, **kwargs)
    return units_lib.call_partial(
        ctx.module, ctx.method_name, next_fun, args, kwargs,
        _module_subtree(active, path), _module_subtree(params, path),
        idx[path], axes[path], busy, pruned=pruned)

  with nn.intercept_methods(intercept):
    out = apply_fn(spliced, x)
  if partial - reached:
    raise ValueError(
        'active.forward: the partly active modules '
        f'{sorted(partial - reached)} were not called through flax linen\'s '
        'method interceptor (a hand-written apply_fn or an NNX module?): '
        f'their units would get a gradient of exactly zero; accepted: '
        f'{SPLITTABLE} (`active_check.check_active_step`).')
  return out


def check_pruned(params: PyTree, alpha: PyTree,
                 unit_axes: dict[str, int] | None = None) -> None:
  """Raises ValueError unless every frozen unit of `alpha` is exactly zero.

  What `forward(..., pruned=True)` relies on, checked on the host (concrete
  arrays, outside jit): for every module, every unit that α freezes has all
  its params (kernel columns, bias, ...) equal to zero. α must be whole
  units (one model's α, no seed axis; `unit_axes` as in `plan`).

    >>> import jax.numpy as jnp
    >>> params = {'Dense_0': {'kernel': jnp.ones((3, 2)).at[:, 1].set(0.),
    ...                       'bias': jnp.array([0.5, 0.])}}
    >>> alpha = {'Dense_0': {'kernel': jnp.array([[True, False]] * 3),
    ...                      'bias': jnp.array([True, False])}}
    >>> check_pruned(params, alpha)  # unit 1 is frozen and zero: fine
    >>> check_pruned({'Dense_0': {**params['Dense_0'],
    ...                           'bias': jnp.array([0.5, 1.])}}, alpha)
    Traceback (most recent call last):
    ...
    ValueError: check_pruned: unit 1 of module 'Dense_0' is frozen (pruned) \
but its params are not all zero (bias has a nonzero entry); accepted: frozen \
units whose params are exactly zero (zero them first, e.g. params * alpha).
  """
  if jax.tree.structure(params) != jax.tree.structure(alpha):  # type: ignore[operator]  # PyTreeDef's alias is not resolvable as a type.
    raise ValueError(
        'check_pruned: alpha is not params-shaped: '
        f'{jax.tree.structure(alpha)} against {jax.tree.structure(params)}.')
  for x, a in zip(jax.tree.leaves(params), jax.tree.leaves(alpha)):
    if np.shape(x) != np.shape(a):
      raise ValueError(f'check_pruned: alpha leaf of shape {np.shape(a)} '
                       f'against a param of shape {np.shape(x)}.')
  g = granularity_lib.groups(alpha, 'unit', unit_axes)
  flags = _unit_flags(jax.tree.map(lambda a: np.asarray(a)[None], alpha), g)
  names = _module_of_leaf(params)
  keys = [str(getattr(p[-1], 'key', getattr(p[-1], 'name', p[-1])))
          for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for m, name in enumerate(g.module_names):
    frozen = ~flags[m][0]
    if not frozen.any():
      continue
    for x, n, key in zip(jax.tree.leaves(params), names, keys):
      if n != name:
        continue
      per_unit = np.asarray(x).reshape(-1, g.module_units[m])
      bad = np.flatnonzero(frozen & (per_unit != 0).any(0))
      if bad.size:
        raise ValueError(
            f'check_pruned: unit {int(bad[0])} of module {name!r} is frozen '
            f'(pruned) but its params are not all zero ({key} has a '
            'nonzero entry); accepted: frozen units whose params are exactly '
            'zero (zero them first, e.g. params * alpha).')


def _like(reference: PyTree) -> Callable[[Any], bool]:
  """A predicate: is a node a tree of `reference`'s structure and shapes?"""
  treedef = jax.tree.structure(reference)
  shapes = [np.shape(x) for x in jax.tree.leaves(reference)]
  def like(node: Any) -> bool:
    try:
      return (jax.tree.structure(node) == treedef and  # type: ignore[operator]  # PyTreeDef's alias is not resolvable as a type.
              [np.shape(x) for x in jax.tree.leaves(node)] == shapes)
    except (TypeError, ValueError):
      return False
  return like


def state_to_active(state: Any, params: PyTree, p: Plan, idx: Any) -> Any:
  """An optimizer state of `params` → the same state of the active tree.

  Every params-shaped part (a `masked` mask, Adam's μ and ν, momentum, ...)
  is sliced like the params (`split`); the rest (step counts, keys) is kept.
  A `masked` mask sliced this way is the active tree's live mask (padding
  slots are frozen units).
  """
  like = _like(params)
  parts, treedef = jax.tree.flatten(state, is_leaf=like)
  return jax.tree.unflatten(treedef, [split(x, p, idx) if like(x) else x for x in parts])


def state_to_full(full: Any, active: Any, params: PyTree, p: Plan, idx: Any) -> Any:
  """The inverse of `state_to_active`.

  The active state's params-shaped parts are written back into `full`
  (`merge`); the rest is taken from `active`.
  """
  like = _like(params)
  like_active = _like(split(params, p, idx))
  parts, treedef = jax.tree.flatten(full, is_leaf=like)
  active_parts = jax.tree.flatten(active, is_leaf=like_active)[0]
  return jax.tree.unflatten(treedef, [merge(f, a, p, idx) if like(f) else a
                            for f, a in zip(parts, active_parts)])


def _module_subtree(tree: PyTree, name: str) -> PyTree:
  node = tree
  for key in name.split('/'):
    node = node[key]
  return node
