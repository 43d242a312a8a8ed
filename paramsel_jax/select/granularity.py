"""Granularity of α: which scalars are chosen (or frozen) together.

* `'element'`: every scalar on its own (the paper's α).
* `'unit'`: one output unit of a layer: an output neuron of a dense layer or
  an output channel of a conv, i.e. its fan-in weights and its bias. A
  *module* is the parent dict of param leaves (a flax module's `{'kernel',
  'bias'}`); the unit axis is every leaf's last axis (flax's `Dense` kernels
  are `(in, out)`, `Conv` kernels `(kh, kw, in, out)`, biases `(out,)`).
  Attention's query/key/value `DenseGeneral` (bias `(heads, head_dim)`) has
  one unit per `(head, d)` pair and a norm (`scale`, `bias`) is one unit
  (`unit_axes`); `groups(..., unit_axes=)` overrides this per module.
* `'layer'`: a whole module.

Params may be a plain nested dict (linen, `nnx.to_pure_dict`) or flax NNX
state (`nnx.state(model, nnx.Param)`, `nnx.split`): an NNX leaf's path ends
in its `nnx.Variable`'s `GetAttrKey('value')`, which is the wrapper's, not
part of the parameter's name, so `hidden/kernel/value` is the leaf `kernel`
of the module `hidden`, the same groups as its pure dict. A dict entry
named 'value' (`DictKey`, e.g. an attention's `value` projection) is a real
name and is kept. NNX's `Linear`, `Conv`, `Embed` and `LayerNorm` keep
linen's shapes, so their unit axis is the same last axis.

A selector scores elements; its scores are aggregated per group (`aggregate`:
the mean by default, so a group's score is its score per parameter) and whole
groups are taken, best first by that score, until their parameters reach the
budget `k`: the prefix whose size is *nearest* to k (ties to the larger), so
k is met to within half a group, never exactly unless the group sizes allow
it. With a FLOPs budget (`costs=`), groups are taken by score per FLOP: a
group ranks by its aggregated score over its cost per parameter, `score ·
size / cost` (with 'mean', its total score per FLOP), until their cost is
nearest to the given budget. Without costs the cost is the size, so both
budgets rank by the same formula (`rank`).

  >>> import jax.numpy as jnp
  >>> params = {'Dense_0': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)},
  ...           'Dense_1': {'kernel': jnp.zeros((2, 1)), 'bias': jnp.zeros(1)}}
  >>> g = groups(params, 'unit')
  >>> g.num_groups, g.sizes.tolist()
  (3, [4, 4, 3])
  >>> scores = {'Dense_0': {'kernel': jnp.array([[1., 9.]] * 3),
  ...                       'bias': jnp.array([1., 9.])},
  ...           'Dense_1': {'kernel': jnp.ones((2, 1)), 'bias': jnp.ones(1)}}
  >>> mask = top_k_groups(scores, 4, g)
  >>> mask['Dense_0']['kernel'][:, 1].tolist(), bool(mask['Dense_1']['bias'][0])
  ([True, True, True], False)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.select import unit_axes as unit_axes_lib

PyTree = Any

GRANULARITIES = ('element', 'unit', 'layer')
AGGREGATIONS = ('mean', 'sum', 'max', 'rms')


def check_granularity(granularity: str) -> str:
  """`granularity` if known; ValueError naming the accepted ones otherwise."""
  if granularity not in GRANULARITIES:
    raise ValueError(f'granularity={granularity!r}; accepted: '
                     f'{", ".join(GRANULARITIES)}.')
  return granularity


_VARIABLE_KEY = jax.tree_util.GetAttrKey('value')


def _is_variable(x: Any) -> bool:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  return isinstance(x, nnx.Variable)


def unwrap(path: tuple) -> tuple:
  """A leaf's path without a trailing NNX variable key (`GetAttrKey('value')`).

  The attribute through which `jax.tree_util` reaches an `nnx.Variable`'s
  array is not part of the parameter's name. Only an attribute key is
  dropped: a dict entry named 'value' (`DictKey('value')`) is a name.

  Example:
    >>> from jax.tree_util import DictKey, GetAttrKey
    >>> unwrap((DictKey('fc'), DictKey('kernel'), GetAttrKey('value')))
    (DictKey(key='fc'), DictKey(key='kernel'))
    >>> unwrap((DictKey('attn'), DictKey('value')))
    (DictKey(key='attn'), DictKey(key='value'))
  """
  path = tuple(path)
  return path[:-1] if path and path[-1] == _VARIABLE_KEY else path


def leaf_paths(params: PyTree) -> list[tuple]:
  """Each leaf's parameter path, in `jax.tree.leaves` order.

  The paths of `jax.tree_util.tree_flatten_with_path`, except that the keys
  inside an `nnx.Variable` (the wrapper's `value`, whatever key type the
  flax version uses for it) are dropped: a variable's path names the
  parameter. Read from the tree's structure, so no real name is dropped.

  Example:
    >>> from flax import nnx
    >>> state = nnx.state(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Param)
    >>> [module_name(p) for p in leaf_paths(state)]
    ['bias', 'kernel']
    >>> [module_name(p) for p in leaf_paths({'attn': {'value': jnp.ones(2)}})]
    ['attn/value']
  """
  flat = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_variable)[0]
  paths = []
  for path, node in flat:
    inner = jax.tree_util.tree_flatten_with_path(node)[0]
    if _is_variable(node) and len(inner) == 1:
      paths.append(tuple(path))
    else:
      paths += [tuple(path) + tuple(sub) for sub, _ in inner]
  return paths


def module_path(path: tuple) -> tuple:
  """The module a leaf belongs to: its path without the last key.

  A trailing NNX variable key is dropped first (`unwrap`), so a leaf path
  of NNX state (`fc/kernel/value`) belongs to the same module (`fc`) as
  its pure dict's (`fc/kernel`).
  """
  return unwrap(path)[:-1]


def module_name(path: tuple) -> str:
  """A readable module name, e.g. 'Dense_0' or 'block/Conv2D_1'.

  A trailing NNX variable key is not part of it (`unwrap`).
  """
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k)))
                  for k in unwrap(path)) or '(root)'


@dataclasses.dataclass(frozen=True, eq=False)
class Groups:
  """A partition of the params' scalars into groups (static, numpy).

  Attributes:
    granularity: 'element', 'unit' or 'layer'.
    ids: a pytree of the params' shapes; each entry the group of its scalar.
    sizes: `(num_groups,)` scalars per group.
    modules: per group, the index of its module in `module_names`.
    units: per group, its unit index within the module (-1 for 'layer',
      the flat index for 'element').
    module_names: the modules, in `jax.tree.leaves` order.
    module_units: the number of units of each module.
    module_unit_axes: per module, how many trailing axes of its leaves index
      a unit (`unit_axes`; 1 at 'element' and 'layer').
  """

  granularity: str
  ids: PyTree
  sizes: np.ndarray
  modules: np.ndarray
  units: np.ndarray
  module_names: tuple[str, ...]
  module_units: tuple[int, ...]
  module_unit_axes: tuple[int, ...] = ()

  @property
  def num_groups(self) -> int:
    """The number of groups."""
    return int(self.sizes.shape[0])


def _modules(params: PyTree) -> tuple[list[tuple], dict[tuple, list[int]]]:
  """Leaf paths, and for each module path the indices of its leaves."""
  paths = leaf_paths(params)
  members: dict[tuple, list[int]] = {}
  for i, path in enumerate(paths):
    members.setdefault(module_path(path), []).append(i)
  return paths, members


def groups(params: PyTree, granularity: str,
           unit_axes: Mapping[str, int] | None = None) -> Groups:
  """The groups of `params` at `granularity`.

  Reads shapes only: works on `jax.eval_shape` output too. `unit_axes`: per
  module name, how many trailing axes of its leaves index a unit (their
  product is the unit count; 0: the module is one unit), for the modules
  whose own params do not say it (`unit_axes.default_unit_axes`), e.g. a
  multi-axis `DenseGeneral` without a bias (`active_check.unit_axes`
  traces them). Unnamed modules keep the default.
  """
  check_granularity(granularity)
  leaves, treedef = jax.tree.flatten(params)
  shapes = [tuple(np.shape(x)) for x in leaves]
  paths, members = _modules(params)
  ids: list[np.ndarray | None] = [None] * len(leaves)
  sizes, modules, units, names, counts, all_axes = [], [], [], [], [], []
  offset = 0
  for m, (mpath, idxs) in enumerate(members.items()):
    name = module_name(mpath)
    names.append(name)
    own = {module_name(paths[i][-1:]): shapes[i] for i in idxs}
    axes = 1
    if granularity == 'element':
      shape: tuple[int, ...] = (sum(math.prod(shapes[i]) for i in idxs),)
    elif granularity == 'layer':
      shape = ()
    else:
      axes = (unit_axes or {}).get(name, unit_axes_lib.default_unit_axes(own))
      shape = unit_axes_lib.unit_shape(name, own, axes)
    n = math.prod(shape)
    for i in idxs:
      if granularity == 'element':
        ids[i] = offset + np.arange(math.prod(shapes[i])).reshape(shapes[i])
        offset += math.prod(shapes[i])
      else:
        ids[i] = np.broadcast_to(offset + np.arange(n).reshape(shape),
                                 shapes[i]).copy()
    offset += 0 if granularity == 'element' else n
    size = sum(math.prod(shapes[i]) for i in idxs) // n
    sizes += [1 if granularity == 'element' else size] * n
    modules += [m] * n
    if granularity == 'element':  # the flat index within each leaf.
      units += [u for i in idxs for u in range(math.prod(shapes[i]))]
    else:
      units += list(range(n)) if granularity == 'unit' else [-1]
    counts.append(n)
    all_axes.append(axes)
  return Groups(granularity, jax.tree.unflatten(treedef, ids),
                np.asarray(sizes, np.int64), np.asarray(modules, np.int32),
                np.asarray(units, np.int32), tuple(names), tuple(counts),
                tuple(all_axes))


def _flat(tree: PyTree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x).astype(jnp.float32)
                          for x in jax.tree.leaves(tree)])


def aggregate(scores: PyTree, g: Groups, how: str = 'mean') -> jax.Array:
  """Per-group scores `(num_groups,)` from per-element `scores`.

  'mean' (the default): the group's score per parameter, which makes
  greedy selection under a parameter budget pick the most score per
  parameter spent; 'sum' favours big groups; 'max' a group's best scalar;
  'rms' the root mean square. NaN scores count as -inf (they rank last).
  """
  if how not in AGGREGATIONS:
    raise ValueError(f'how={how!r}; accepted: {", ".join(AGGREGATIONS)}.')
  flat = _flat(scores)
  ids = jnp.asarray(np.concatenate([np.ravel(x) for x in jax.tree.leaves(g.ids)]))
  n = g.num_groups
  if how == 'max':
    flat = jnp.where(jnp.isnan(flat), -jnp.inf, flat)
    return jax.ops.segment_max(flat, ids, num_segments=n)
  sizes = jnp.asarray(g.sizes, jnp.float32)
  if how == 'rms':
    total = jax.ops.segment_sum(flat ** 2, ids, num_segments=n)
    out = jnp.sqrt(total / sizes)
  else:
    total = jax.ops.segment_sum(flat, ids, num_segments=n)
    out = total / sizes if how == 'mean' else total
  return jnp.where(jnp.isnan(out), -jnp.inf, out)


BUDGET_RULES = ('nearest', 'at_most')


def rank(group_scores: jax.Array, sizes: jax.typing.ArrayLike,
         costs: jax.typing.ArrayLike | None = None) -> jax.Array:
  """What groups are ranked by under a budget: score per unit of cost.

  A group's aggregated score over its cost per parameter, `group_scores ·
  sizes / costs`. Without `costs` (a parameter budget) that is the
  aggregated score itself: with 'mean', the score per parameter. With
  `costs` in FLOPs and 'mean', the group's total score per FLOP.

  Example:
    >>> rank(jnp.array([2., 1.]), jnp.array([11, 3])).tolist()
    [2.0, 1.0]
    >>> rank(jnp.array([2., 1.]), jnp.array([11, 3]),
    ...      costs=jnp.array([22., 3.])).tolist()  # 2 FLOPs per parameter
    [1.0, 1.0]
  """
  group_scores = jnp.asarray(group_scores, jnp.float32)
  if costs is None:
    return group_scores
  per_param = (jnp.asarray(costs, jnp.float32)
               / jnp.asarray(sizes, jnp.float32))
  return group_scores / per_param


def choose_groups(rank_by: jax.Array, costs: jax.typing.ArrayLike,
                  budget: jax.typing.ArrayLike, rule: str = 'nearest',
                  eligible: jax.Array | None = None) -> jax.Array:
  """Bool per group: the best groups by `rank_by`, a prefix to `budget`.

  The one greedy budget rule of the library (selection and freezing).
  Groups are ranked by `rank_by`, highest first (ties to the lower index;
  see `rank`), and a prefix of that ranking is taken:

  * `rule='nearest'` (the protocol's k): the prefix whose total cost is
    nearest to `budget` (ties to the larger prefix; at least one group).
  * `rule='at_most'` (a cap, `FreezingPolicy.max_frozen`): the longest
    prefix whose total cost does not exceed `budget` (possibly none).

  `eligible`: only these groups are ranked and taken. Jittable; `budget`
  may be traced.

  Example:
    >>> choose_groups(jnp.array([1., 3., 2.]), jnp.ones(3), 2).tolist()
    [False, True, True]
    >>> choose_groups(jnp.array([1., 3., 2.]), jnp.array([1., 1., 2.]), 2.5,
    ...               'at_most').tolist()
    [False, True, False]
  """
  if rule not in BUDGET_RULES:
    raise ValueError(f'rule={rule!r}; accepted: {", ".join(BUDGET_RULES)}.')
  rank_by = jnp.asarray(rank_by)
  costs = jnp.broadcast_to(jnp.asarray(costs, jnp.float32), rank_by.shape)
  if eligible is None:
    eligible = jnp.ones(rank_by.shape, bool)
  order = jnp.argsort(-jnp.where(eligible, rank_by, -jnp.inf), stable=True)
  cum = jnp.cumsum(jnp.where(eligible, costs, 0.0)[order])
  positions = jnp.arange(cum.shape[0])
  if rule == 'nearest':
    distance = jnp.abs(cum - budget)
    # The first prefix at the smallest distance, preferring the larger on ties.
    best = jnp.max(jnp.where(distance == jnp.min(distance), positions, -1))
    chosen_sorted = positions <= best
  else:
    chosen_sorted = cum <= budget
  chosen = jnp.zeros(rank_by.shape, bool).at[order].set(chosen_sorted)
  return chosen & eligible


def expand(group_mask: jax.Array, g: Groups) -> PyTree:
  """The element mask (a pytree of the params' shapes) of a group mask."""
  return jax.tree.map(lambda ids: group_mask[jnp.asarray(ids)], g.ids)


def top_groups(group_scores: jax.Array, k: jax.typing.ArrayLike, g: Groups,
               costs: jax.Array | np.ndarray | None = None,
               budget: jax.typing.ArrayLike = 0.0) -> jax.Array:
  """Bool per group: the best groups, `k` parameters' worth (nearest).

  Ranked by `rank` (the aggregated score; with `costs`, per unit of cost per
  parameter). With `costs` (per group, e.g. `weight_grad_flops`) and
  `budget` (in the same units), the budget is on the cost instead of on the
  parameters and `k` is unused.
  """
  sizes = jnp.asarray(g.sizes, jnp.float32)
  if costs is None:
    return choose_groups(rank(group_scores, sizes), sizes, k)
  costs = jnp.asarray(costs, jnp.float32)
  return choose_groups(rank(group_scores, sizes, costs), costs, budget)


def top_k_groups(scores: PyTree, k: int, g: Groups, how: str = 'mean',
                 costs: jax.Array | np.ndarray | None = None,
                 budget: float = 0.0) -> PyTree:
  """The element mask of the best groups, `k` parameters' worth (nearest).

  The per-element `scores` are aggregated per group (`aggregate(how)`) and
  the groups chosen by `top_groups`. With `costs` (per group, e.g.
  `weight_grad_flops`) and `budget` (in the same units), the budget is on
  the cost instead of on the parameters.
  """
  return expand(top_groups(aggregate(scores, g, how), k, g, costs, budget), g)


def weight_grad_flops(g: Groups, uses_per_module: Sequence[int]) -> np.ndarray:
  """Per group, the FLOPs per example of its weight gradient.

  `2 · uses · size`, `uses` being how many times per example its module
  applies each weight (1 for a dense layer, the output positions of a conv).
  """
  uses = np.asarray(uses_per_module, np.float64)[g.modules]
  return 2.0 * uses * g.sizes


def module_uses(apply_fn: Callable[..., Any], params: PyTree,
                example: jax.Array) -> list[int]:
  """How many times per example each module applies its weights.

  Traced once (shapes only) with a flax interceptor that records each
  module's output shape: a dense layer's output `(B, n)` applies each weight
  once, a conv's `(B, H, W, n)` H·W times. Modules in the order of
  `groups(...).module_names`; a module the trace never calls counts 1.
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  seen: dict[str, int] = {}

  def record(next_fun, args, kwargs, ctx):
    out = next_fun(*args, **kwargs)
    if ctx.method_name == '__call__' and hasattr(out, 'shape'):
      path = '/'.join(ctx.module.path) if ctx.module.path else ''
      seen.setdefault(path, int(math.prod(out.shape[1:-1])))
    return out

  def run(p, x):
    with nn.intercept_methods(record):
      return apply_fn(p, x)

  jax.eval_shape(run, params, example)
  names = groups(params, 'layer').module_names
  return [seen.get(name, 1) for name in names]
