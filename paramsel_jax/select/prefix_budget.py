"""A FLOPs budget that charges the backward pass a trained group forces.

`granularity.top_groups` with FLOPs costs charges each trained group its own
weight gradient (`weight_grad_flops`), a per-group sum. But a gradient only
reaches layer m through the input gradients (backward through activations)
of every layer above m: with a frozen prefix the backward pass stops at the
lowest trained layer. The backward FLOPs per example of a set S of groups are

  cost(S) = Σ_{g ∈ S} w(g) + Σ_{layers l above m(S)} i(l),

m(S) the lowest layer (in forward order) with a trained group, w the weight
gradient's FLOPs and i(l) layer l's input gradient's (`input_grad_flops`).
The dense backward pass is cost(all groups) (`BackwardCosts.dense`).

Not a per-group sum, so one greedy ranking does not apply. `choose_prefix` tries
every cut m: the budget left after Σ_{l > m} i(l) goes to the groups of
layers ≥ m by `granularity.choose_groups` (the library's greedy rule,
`'at_most'`, ranked by score per FLOP as `granularity.rank`), and the cut
whose set has the highest total score (Σ over the set of the group's
aggregated score × its size: with 'mean', the sum of its elements' scores,
the quantity the per-FLOP ranking spends the budget on) wins. Exact over
cuts, greedy within one: with equal group costs the greedy is optimal, so
the choice is the best set of all; with unequal costs it is a knapsack and
the greedy may miss the best set of a cut.

A cut's greedy set need not use layer m itself; its real cost (its own,
higher cut) is then below what it was charged, so every candidate is within
the budget, and the higher cut's own candidate, charged less, is tried too.

  >>> import numpy as np
  >>> # Layers a (first), b, c; one group each; w = 10 each; i(b) = i(c) = 10.
  >>> costs = BackwardCosts(weight=np.array([10., 10., 10.]),
  ...                       position=np.array([0, 1, 2]),
  ...                       input=np.array([0., 10., 10.]))
  >>> costs.dense  # 3 weight gradients, 2 input gradients
  50.0
  >>> # Layer a scores best, but training it costs 10 + 20: b and c (30) win.
  >>> choose_prefix(np.array([3., 2., 2.]), np.ones(3), costs, 30.).tolist()
  [False, True, True]
  >>> choose_prefix(np.array([3., 2., 2.]), np.ones(3), costs, 50.).tolist()
  [True, True, True]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.select import granularity as granularity_lib

PyTree = Any

__all__ = ['BackwardCosts', 'backward_costs', 'candidates', 'choose_prefix',
           'cost_of', 'input_grad_flops', 'layer_positions',
           'top_prefix_groups', 'top_k_prefix_groups']


def input_grad_flops(params: PyTree, uses_per_module: Sequence[int]
                     ) -> np.ndarray:
  """Per module, the FLOPs per example of its input gradient.

  `2 · uses · size` summed over the module's leaves of rank ≥ 2 (a dense
  kernel `(in, out)`, a conv kernel `(kh, kw, in, out)`, an attention
  projection): the gradient with respect to its input is one matmul of the
  forward one's size (a transposed matmul, a transposed convolution). Rank
  0/1 leaves (biases, a norm's scale) add nothing: their input gradient is
  elementwise, O(activations), and neglected. Approximations: an `Embed`'s
  table counts as a kernel though its input (ids) has no gradient (it is
  normally the first layer, whose input gradient is never charged); the
  parameter-free ops between layers (activations, attention's softmax and
  its Q·Kᵀ and A·V products) are not counted. `uses`: `granularity.
  module_uses`. Modules in the order of `groups(params, ...).module_names`.

  Example:
    >>> import jax.numpy as jnp
    >>> p = {'a': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)},
    ...      'b': {'kernel': jnp.zeros((2, 1)), 'bias': jnp.zeros(1)}}
    >>> input_grad_flops(p, [1, 1]).tolist()
    [12.0, 4.0]
  """
  names = granularity_lib.groups(params, 'layer').module_names
  flops = np.zeros(len(names))
  for path, leaf in zip(granularity_lib.leaf_paths(params),
                        jax.tree.leaves(params)):
    shape = np.shape(leaf)
    if len(shape) >= 2:
      name = granularity_lib.module_name(granularity_lib.module_path(path))
      flops[names.index(name)] += 2.0 * float(np.prod(shape))
  return flops * np.asarray(uses_per_module, np.float64)


def layer_positions(g: granularity_lib.Groups,
                    layer_order: Sequence[str]) -> np.ndarray:
  """Per module of `g`, its position in `layer_order` (0: called first).

  `layer_order`: every module name of `g` exactly once, first layer first
  (`Task.layer_order`, `freeze.forward_layer_order`); ValueError naming the
  unknown, repeated or missing names otherwise.

  Example:
    >>> import jax.numpy as jnp
    >>> g = granularity_lib.groups({'b': {'w': jnp.zeros(2)},
    ...                             'a': {'w': jnp.zeros(3)}}, 'unit')
    >>> g.module_names, layer_positions(g, ['b', 'a']).tolist()
    (('a', 'b'), [1, 0])
  """
  names = g.module_names
  order: list[str] = ([] if isinstance(layer_order, str)
                      else [str(name) for name in layer_order])
  if isinstance(layer_order, str) or sorted(order) != sorted(names):
    unknown = sorted(set(order) - set(names))
    missing = sorted(set(names) - set(order))
    repeated = sorted({n for n in order if order.count(n) > 1})
    raise ValueError(
        f'layer_order={layer_order!r}; accepted: every module name '
        f'{list(names)} exactly once, first layer first (unknown: {unknown}, '
        f'missing: {missing}, repeated: {repeated}).')
  return np.asarray([order.index(name) for name in names], np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class BackwardCosts:
  """The costs `choose_prefix` reads (static, numpy; FLOPs per example).

  Attributes:
    weight: `(num_groups,)` each group's weight-gradient FLOPs, w(g).
    position: `(num_groups,)` the forward position of each group's layer
      (0: the first layer called).
    input: `(num_layers,)` by forward position, each layer's input-gradient
      FLOPs, i(l).
  """

  weight: np.ndarray
  position: np.ndarray
  input: np.ndarray

  @property
  def above(self) -> np.ndarray:
    """`(num_layers,)` per cut m, Σ_{l > m} i(l): what the cut forces."""
    tail = np.cumsum(np.asarray(self.input, np.float64)[::-1])[::-1]
    return np.append(tail[1:], 0.0)

  @property
  def dense(self) -> float:
    """The dense backward pass's FLOPs: cost(all groups)."""
    return float(np.sum(self.weight) + self.above[0])


def backward_costs(params: PyTree, g: granularity_lib.Groups,
                   uses_per_module: Sequence[int],
                   layer_order: Sequence[str]) -> BackwardCosts:
  """The `BackwardCosts` of `g`'s groups over `params` (shapes suffice).

  w from `granularity.weight_grad_flops`, i from `input_grad_flops`, both
  with `uses_per_module` (`granularity.module_uses`), ordered by
  `layer_order` (module names, first layer first).

  Example:
    >>> import jax.numpy as jnp
    >>> p = {'a': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)},
    ...      'b': {'kernel': jnp.zeros((2, 1)), 'bias': jnp.zeros(1)}}
    >>> c = backward_costs(p, granularity_lib.groups(p, 'layer'), [1, 1],
    ...                    ['a', 'b'])
    >>> c.weight.tolist(), c.input.tolist(), c.dense
    ([16.0, 6.0], [12.0, 4.0], 26.0)
  """
  positions = layer_positions(g, layer_order)
  per_module = input_grad_flops(params, uses_per_module)
  by_position = np.zeros(len(positions))
  by_position[positions] = per_module
  return BackwardCosts(
      weight=granularity_lib.weight_grad_flops(g, uses_per_module),
      position=positions[g.modules], input=by_position)


def cost_of(chosen: np.ndarray, costs: BackwardCosts) -> float:
  """cost(S) of the groups `chosen` (bool per group); 0 for none.

  Example:
    >>> c = BackwardCosts(np.array([1., 2.]), np.array([0, 1]),
    ...                   np.array([0., 5.]))
    >>> cost_of(np.array([True, False]), c), cost_of(np.array([False, True]), c)
    (6.0, 2.0)
  """
  chosen = np.asarray(chosen, bool)
  if not chosen.any():
    return 0.0
  cut = int(np.min(np.asarray(costs.position)[chosen]))
  return float(np.sum(np.asarray(costs.weight)[chosen]) + costs.above[cut])


def candidates(rank_by: jax.Array, costs: BackwardCosts,
               budget: jax.typing.ArrayLike) -> jax.Array:
  """`(num_layers, num_groups)` per cut m, its greedy set (jittable).

  The groups of layers ≥ m by `rank_by`, the longest prefix of that ranking
  within `budget - Σ_{l > m} i(l)` (`granularity.choose_groups`, 'at_most').
  """
  weight = jnp.asarray(costs.weight, jnp.float32)
  position = jnp.asarray(costs.position)
  above = np.asarray(costs.above, np.float32)
  return jnp.stack([
      granularity_lib.choose_groups(rank_by, weight, budget - above[m],
                                    'at_most', eligible=position >= m)
      for m in range(above.shape[0])])


def choose_prefix(group_scores: jax.typing.ArrayLike,
                  sizes: jax.typing.ArrayLike,
           costs: BackwardCosts, budget: jax.typing.ArrayLike) -> jax.Array:
  """Bool per group: the best cut's greedy set, cost(S) ≤ `budget`.

  `group_scores`: per group, the aggregated score (`granularity.
  aggregate`); `sizes`: its parameters. Ranked by score per FLOP (`granularity.
  rank` with `costs.weight`); each cut's set (`candidates`) is valued by
  Σ score × size, and the highest value wins (ties to the higher cut, the
  cheaper backward pass). A budget below every group's own cost (w(g) + the
  input gradients above it) takes the one cheapest group, as the parameter
  budget takes at least one. Jittable; `budget` may be traced.
  """
  group_scores = jnp.asarray(group_scores, jnp.float32)
  sizes = jnp.asarray(sizes, jnp.float32)
  rank_by = granularity_lib.rank(group_scores, sizes, costs.weight)
  sets = candidates(rank_by, costs, budget)
  values = jnp.sum(jnp.where(sets, group_scores * sizes, 0.0), axis=1)
  values = jnp.where(jnp.any(sets, axis=1), values, -jnp.inf)
  best = values.shape[0] - 1 - jnp.argmax(values[::-1])  # ties: higher cut.
  alone = (np.asarray(costs.weight, np.float64)
           + costs.above[np.asarray(costs.position)])
  cheapest = jnp.arange(sizes.shape[0]) == int(np.argmin(alone))
  return jnp.where(jnp.any(sets), sets[best], cheapest)


def top_prefix_groups(group_scores: jax.typing.ArrayLike,
                      g: granularity_lib.Groups, costs: BackwardCosts,
                      share: jax.typing.ArrayLike) -> jax.Array:
  """`choose_prefix` within `share` (in (0, 1]) of the dense backward FLOPs.

  The protocol's `budget='backward'`: k is `share`.
  """
  return choose_prefix(group_scores, g.sizes, costs, share * costs.dense)


def top_k_prefix_groups(scores: PyTree, g: granularity_lib.Groups,
                        costs: BackwardCosts, share: jax.typing.ArrayLike,
                        how: str = 'mean') -> PyTree:
  """The element mask of `top_prefix_groups` of the per-element `scores`.

  The scores are aggregated per group (`granularity.aggregate(how)`).
  """
  return granularity_lib.expand(
      top_prefix_groups(granularity_lib.aggregate(scores, g, how), g, costs,
                        share), g)
