# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""`sparse`: any optax optimizer, trained sparse by a `Pruner`.

The masks live in the optimizer state (`SparseState.masks`, also the mask
of the `masked` inside it), so they change without recompiling. At a
schedule's update step the masks are re-chosen (`jax.lax.cond`: the scores
are computed on update steps only); every step the update of a pruned
weight is `-w`, so a weight pruned at this step becomes exactly 0 and one
pruned before stays exactly 0, whatever the optimizer (`masked` gives it a
zero update and keeps its state). Regrown weights (SET, RigL) that were
pruned before the update restart at 0 with their per-element optimizer state
reset to `inner.init`'s; one dropped and regrown in the same update keeps its
value and state, as in RigL.

  >>> import jax, jax.numpy as jnp, optax
  >>> from paramsel_jax import sparsity as sp
  >>> params = {'w': jnp.arange(1., 9.).reshape(2, 4)}
  >>> tx = sp.sparse(optax.sgd(0.0), sp.magnitude(0.5))
  >>> state = tx.init(params)
  >>> updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
  >>> optax.apply_updates(params, updates)['w'].tolist()
  [[0.0, 0.0, 0.0, 0.0], [5.0, 6.0, 7.0, 8.0]]

Under `vmap` with a batched step count, `lax.cond` runs both branches: the
scores are then computed every step. Run seeds in a Python loop, or vmap
inside the step with the count unbatched.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.optim import masking
from paramsel_jax.select import granularity
from paramsel_jax.select import selectors
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.sparsity import distributions as dist_lib
from paramsel_jax.sparsity import structures as struct_lib
from paramsel_jax.sparsity.pruners import Pruner

PyTree = Any


class SparseState(NamedTuple):
  """State of `sparse`."""

  step: jax.Array  # int32: steps taken (the schedule's step).
  key: jax.Array  # PRNG key of random scores and regrowth.
  masks: PyTree  # bool, the params' shapes: True = kept.
  inner_state: optax.OptState  # masked(inner)'s (inner's own for STE).


def _is_leaf_none(x: Any) -> bool:
  return x is None


def _check_leaves(pruner: Pruner, params: PyTree, targets: PyTree) -> None:
  names = dist_lib.leaf_names(params)
  for name, leaf, target in zip(names, jax.tree.leaves(params),
                                jax.tree.leaves(targets, is_leaf=_is_leaf_none)):
    if target is not None:
      pruner.structure.check(name, tuple(jnp.shape(leaf)))
  if isinstance(pruner.structure, struct_lib.Channel):
    _unit_followers(params, jax.tree.leaves(targets, is_leaf=_is_leaf_none))


def _scores(pruner: Pruner, params: PyTree, grads: PyTree, opt_state: Any,
            key: jax.Array) -> PyTree:
  """The pruner's scores (larger: kept), its selector's β."""
  stats = stats_lib.init_stats(params)._replace(
      count=jnp.ones((), jnp.int32), grad_mean=grads,
      grad_abs_sum=jax.tree.map(jnp.abs, grads))
  ctx = selectors.SelectionContext(params, stats, opt_state, key)
  if callable(pruner.score):
    return pruner.score(ctx)
  return selectors.get_selector(pruner.score).beta_scores(ctx)


def _siblings(params: PyTree) -> list[list[int]]:
  """For each leaf, the other leaves of its module (channel pruning's biases)."""
  modules = [granularity.module_path(p) for p in granularity.leaf_paths(params)]
  return [[j for j, m in enumerate(modules) if m == mi and j != i]
          for i, mi in enumerate(modules)]


def _unit_followers(tree: PyTree, tgt: list) -> dict[int, int]:
  """Channel pruning: each dense leaf that follows a pruned leaf's units.

  A dense sibling (same module) whose last axis has the pruned leaf's unit
  count is its bias. Raises ValueError when two pruned leaves of one module
  claim the same dense leaf (a flat dict of several layers: which bias is
  whose is not in the structure), instead of masking it by the wrong one.
  """
  leaves = jax.tree.leaves(tree)
  names = dist_lib.leaf_names(tree)
  followers: dict[int, int] = {}
  for i, sibs in enumerate(_siblings(tree)):
    if tgt[i] is None:
      continue
    units = jnp.shape(leaves[i])[-1:]
    for j in sibs:
      if tgt[j] is None and jnp.shape(leaves[j])[-1:] == units:
        if j in followers:
          raise ValueError(
              f'channel pruning: {names[j]} could be the bias of '
              f'{names[followers[j]]} or of {names[i]} (same module, same '
              'unit count); accepted: params with each layer in its own '
              "module ({'layer1': {'kernel', 'bias'}, ...}), or a leaf "
              'filter that prunes one leaf per module.')
        followers[j] = i
  return followers


def choose_masks(pruner: Pruner, scores: PyTree, targets: PyTree,
                 step: jax.typing.ArrayLike, within: PyTree | None = None
                 ) -> PyTree:
  """The masks at `step`: each pruned leaf at its scheduled sparsity.

  `targets`: per-leaf final sparsities (None: dense). `within`: the current
  masks; weights outside them rank last, so pruning is monotone.
  """
  leaves, treedef = jax.tree.flatten(scores)
  tgt = jax.tree.leaves(targets, is_leaf=_is_leaf_none)
  if within is not None:
    leaves = [jnp.where(m, s, -jnp.inf)
              for s, m in zip(leaves, jax.tree.leaves(within))]
  out = [jnp.ones(jnp.shape(s), bool) for s in leaves]
  pruned = [i for i, t in enumerate(tgt) if t is not None]
  sparsity = lambda t: pruner.schedule.sparsity(step, t)
  if pruner.distribution == 'global':
    flat = jnp.concatenate([jnp.ravel(leaves[i]) for i in pruned])
    keep = struct_lib.rank_mask(flat, struct_lib.keep_count(
        sparsity(pruner.sparsity), flat.size))
    sizes = [math.prod(jnp.shape(leaves[i])) for i in pruned]
    parts = jnp.split(keep, list(itertools.accumulate(sizes))[:-1])
    for i, part in zip(pruned, parts):
      out[i] = part.reshape(jnp.shape(leaves[i]))
    return jax.tree.unflatten(treedef, out)
  for i in pruned:
    out[i] = pruner.structure.mask(leaves[i], sparsity(tgt[i]))
  if isinstance(pruner.structure, struct_lib.Channel):
    for j, i in _unit_followers(scores, tgt).items():
      units = out[i].reshape(-1, out[i].shape[-1])[0]
      out[j] = jnp.broadcast_to(units, jnp.shape(leaves[j]))
  return jax.tree.unflatten(treedef, out)


def _drop_fraction(pruner: Pruner, step: jax.Array) -> jax.Array:
  """The cosine-decayed drop fraction at `step` (RigL's schedule)."""
  s = pruner.schedule
  assert s.end is not None
  frac = jnp.clip((step - s.begin) / (s.end - s.begin), 0.0, 1.0)
  return pruner.drop_fraction * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


def _first(scores: jax.Array, count: jax.Array, most: int) -> jax.Array:
  """True at the `count` (traced, <= `most`) largest `scores`.

  `lax.top_k` with the static bound `most`, then the first `count` of
  those: a fraction of the cost of ranking every score (argsort).
  """
  flat = jnp.ravel(scores).astype(jnp.float32)
  _, top = jax.lax.top_k(jnp.where(jnp.isnan(flat), -jnp.inf, flat), most)
  chosen = jnp.zeros(flat.shape, bool).at[top].set(jnp.arange(most) < count)
  return chosen.reshape(jnp.shape(scores))


def _drop_and_grow(pruner: Pruner, masks: PyTree, params: PyTree,
                   grads: PyTree, targets: PyTree, key: jax.Array,
                   step: jax.Array) -> tuple[PyTree, PyTree]:
  """SET / RigL: each pruned leaf drops its smallest kept |w| and regrows as many.

  Returns the new masks and the regrown weights (`grown`); a leaf's count
  of kept weights never changes (it is `init`'s: `keep_count` of the
  leaf's target), so at most `floor(drop_fraction * kept)` move.
  """
  fraction = _drop_fraction(pruner, step)
  leaves, treedef = jax.tree.flatten(masks)
  tgt = jax.tree.leaves(targets, is_leaf=_is_leaf_none)
  w, g = jax.tree.leaves(params), jax.tree.leaves(grads)
  keys = jax.random.split(key, len(leaves))
  new, grown = list(leaves), [jnp.zeros(jnp.shape(m), bool) for m in leaves]
  for i, t in enumerate(tgt):
    if t is None:
      continue
    m = leaves[i]
    kept = struct_lib.keep_count(t, math.prod(jnp.shape(m)))
    most = math.floor(pruner.drop_fraction * kept)
    if most == 0:
      continue
    drop = jnp.floor(fraction * jnp.sum(m)).astype(jnp.int32)
    dropped = _first(jnp.where(m, -jnp.abs(w[i]), -jnp.inf), drop, most)
    stay = m & ~dropped
    if pruner.regrow == 'gradient':
      grow_score = jnp.abs(g[i]).astype(jnp.float32)
    else:
      grow_score = jax.random.uniform(keys[i], jnp.shape(m))
    grow = _first(jnp.where(stay, -jnp.inf, grow_score), drop, most)
    # As RigL: only connections off before the update restart at 0; one
    # dropped and regrown at once keeps its value and state.
    new[i], grown[i] = stay | grow, grow & ~m
  return jax.tree.unflatten(treedef, new), jax.tree.unflatten(treedef, grown)


def _all(tree: PyTree, value: bool) -> PyTree:
  return jax.tree.map(lambda x: jnp.full(jnp.shape(x), value), tree)


def sparse(inner: optax.GradientTransformation, pruner: Pruner,
           key: jax.Array | int = 0) -> optax.GradientTransformationExtraArgs:
  """`inner`, trained sparse: masks chosen, applied and evolved by `pruner`.

  Args:
    inner: any optax optimizer that works under `paramsel_jax.masked`.
    pruner: the algorithm (`magnitude`, `rigl`, ... or a `Pruner`).
    key: a PRNG key or an int seed, for random scores and regrowth.

  Returns:
    A `GradientTransformationExtraArgs` whose state is a `SparseState`; its
    `update` needs `params`. Before the first step, `apply_masks` zeroes
    the weights an initial (random) mask prunes; otherwise the first update
    does it.

  Raises (at `init`, before any step) ValueError for a leaf filter that
  selects nothing or a structure that does not fit a pruned leaf.
  """
  if not isinstance(pruner, Pruner):
    raise ValueError(f'pruner={pruner!r}; accepted: a paramsel_jax.sparsity '
                     'Pruner (magnitude(...), rigl(...), ...).')
  if isinstance(key, int):
    key = jax.random.key(key)
  base = key
  tx = inner if pruner.ste else masking.masked(inner)
  inner_x = optax.with_extra_args_support(inner)

  def targets_of(params):
    return dist_lib.leaf_sparsities(
        params, pruner.sparsity, pruner.distribution, pruner.leaf_filter,
        pruner.erk_power_scale)

  def init_fn(params):
    targets = targets_of(params)
    _check_leaves(pruner, params, targets)
    masks = _all(params, True)
    if pruner.init == 'random':
      init_key = jax.random.fold_in(base, 0)
      masks = choose_masks(
          pruner, selectors.get_selector('random').beta_scores(
              selectors.SelectionContext(params, None, None, init_key)),
          targets, pruner.schedule.last_step() or 0)
    state = tx.init(params)
    if not pruner.ste:
      state = masking.set_mask(state, masks)
    return SparseState(jnp.zeros((), jnp.int32), base, masks, state)

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError('sparse: update needs params (the weights it scores '
                       'and zeroes); call tx.update(grads, state, params).')
    targets = targets_of(params)
    step = state.step
    key = jax.random.fold_in(state.key, step + 1)
    no_growth = _all(params, False)

    def rechoose():
      if pruner.regrow is not None:
        return _drop_and_grow(pruner, state.masks, params, updates, targets,
                              key, step)
      scores = _scores(pruner, params, updates, state.inner_state, key)
      within = None if pruner.ste else state.masks
      return choose_masks(pruner, scores, targets, step, within), no_growth

    if pruner.schedule.updates:
      masks, grown = jax.lax.cond(
          pruner.schedule.is_update(step), rechoose,
          lambda: (state.masks, no_growth))
    else:
      masks, grown = state.masks, no_growth
    inner_state = state.inner_state
    if pruner.ste:
      new_updates, inner_state = tx.update(updates, inner_state, params,
                                           **extra_args)
    else:
      inner_state = masking.set_mask(inner_state, masks)
      new_updates, inner_state = tx.update(updates, inner_state, params,
                                           **extra_args)
      new_updates = jax.tree.map(
          lambda m, u, w: jnp.where(m, u, -w), masks, new_updates, params)
      if pruner.regrow is not None:  # only on update steps: a cond, not a where.

        def restart(args):
          new_updates, inner_state = args
          new_updates = jax.tree.map(lambda r, u, w: jnp.where(r, -w, u),
                                     grown, new_updates, params)
          fresh = inner_x.init(params)
          return new_updates, inner_state._replace(
              inner_state=masking.reset_state(
                  inner_x, inner_state.inner_state, fresh, grown))

        new_updates, inner_state = jax.lax.cond(
            pruner.schedule.is_update(step), restart, lambda args: args,
            (new_updates, inner_state))
    return new_updates, SparseState(step + 1, state.key, masks, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_sparse_state(x: Any) -> bool:
  return isinstance(x, SparseState)


def get_masks(opt_state: optax.OptState) -> PyTree:
  """The masks of the (first) `SparseState` inside `opt_state`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from paramsel_jax import sparsity as sp
    >>> s = sp.sparse(optax.sgd(0.1), sp.magnitude(0.5)).init({'w': jnp.ones((2, 2))})
    >>> sp.get_masks(s)['w'].all().item()
    True
  """
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_sparse_state)
           if _is_sparse_state(s)]
  if not found:
    raise ValueError('the optimizer state contains no SparseState; build the '
                     'optimizer with paramsel_jax.sparsity.sparse(...).')
  return found[0].masks


def apply_masks(params: PyTree, opt_state_or_masks: Any) -> PyTree:
  """`params` with pruned weights set to exactly 0.

  Takes the optimizer state (of `sparse`) or the masks themselves.
  """
  holds_state = any(_is_sparse_state(s) for s in jax.tree.leaves(
      opt_state_or_masks, is_leaf=_is_sparse_state))
  masks = get_masks(opt_state_or_masks) if holds_state else opt_state_or_masks
  masking.check_tree(masks, params, 'masks')
  return jax.tree.map(lambda m, w: jnp.where(m, w, jnp.zeros_like(w)),
                      masks, params)


def ste_params(params: PyTree, opt_state: optax.OptState) -> PyTree:
  """The weights an STE forward pass reads: masked, gradient straight through.

  Their value is `w ⊙ mask`; their gradient reaches every dense weight.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from paramsel_jax import sparsity as sp
    >>> p = {'w': jnp.array([[1., -3.], [2., 0.5]])}
    >>> tx = sp.sparse(optax.sgd(0.1), sp.ste('magnitude', 0.5))
    >>> s = tx.init(p)
    >>> _, s = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
    >>> sp.ste_params(p, s)['w'].tolist()
    [[0.0, -3.0], [2.0, 0.0]]
    >>> jax.grad(lambda q: sp.ste_params(q, s)['w'].sum())(p)['w'].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
  """
  masks = get_masks(opt_state)
  return jax.tree.map(
      lambda m, w: w + jax.lax.stop_gradient(jnp.where(m, w, 0) - w),
      masks, params)
