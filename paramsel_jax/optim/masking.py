"""Element-wise masked updates: the `T|α` of the paper as an optax transform.

`optax.masked` takes a static, per-leaf mask and passes the masked-out leaves'
raw gradients through. Selecting which *scalars* keep training needs something
else: an element-wise mask that lives as arrays in the optimizer state (so a new
α never recompiles the step) and frozen coordinates whose update is exactly
zero, whatever the inner optimizer does (momentum, weight decay, noise).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any


class MaskedState(NamedTuple):
  """State of `masked`."""

  mask: PyTree  # bool, the params' shapes: True = keeps training.
  inner_state: optax.OptState


def _as_bool(mask: PyTree) -> PyTree:
  # convert_element_type drops the weak type that `!= 0` gives a bool array; a
  # weak-typed mask would retrace every step that takes the state.
  return jax.tree.map(
      lambda m: jax.lax.convert_element_type(jnp.asarray(m) != 0, jnp.bool_),
      mask)


def _key_paths(tree: PyTree) -> list[str]:
  return [jax.tree_util.keystr(path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _name_some(paths: list[str], limit: int = 5) -> str:
  more = f' and {len(paths) - limit} more' if len(paths) > limit else ''
  return ', '.join(paths[:limit]) + more


def _tree_difference(tree: PyTree, params: PyTree, what: str) -> str:
  """Names the key paths `tree` lacks or adds with respect to `params`."""
  have, want = _key_paths(tree), _key_paths(params)
  have_set, want_set = set(have), set(want)
  missing = [p for p in want if p not in have_set]
  extra = [p for p in have if p not in want_set]
  if not missing and not extra:  # Same keys, other containers (list/tuple).
    return (f'{what} has the params\' key paths in other containers: '
            f'{str(jax.tree.structure(tree))[:200]} vs the params\' '
            f'{str(jax.tree.structure(params))[:200]}')
  parts = []
  if missing:
    parts.append(f'{what} is missing {_name_some(missing)} (present in the '
                 'params)')
  if extra:
    parts.append(f'extra: {_name_some(extra)}')
  return '; '.join(parts)


def check_tree(tree: PyTree, params: PyTree, what: str) -> None:
  """Raises ValueError unless `tree` has the structure and shapes of `params`.

  `what` names `tree` in the message (e.g. 'updates (gradients)', 'beta').

  Example:
    >>> import jax.numpy as jnp
    >>> check_tree({'v': jnp.zeros(2)}, {'w': jnp.zeros(2), 'b': jnp.zeros(1)},
    ...            'grads')  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: grads tree structure does not match the params': grads is missing
    ['b'], ['w'] (present in the params); extra: ['v']. grads must be a pytree
    of the params' shapes.
  """
  tree_def, params_def = jax.tree.structure(tree), jax.tree.structure(params)
  # jax annotates tree structures with an alias mypy cannot resolve as a type.
  if tree_def != params_def:  # type: ignore[operator]
    raise ValueError(
        f'{what} tree structure does not match the params\': '
        f'{_tree_difference(tree, params, what)}. {what} must be a pytree of '
        'the params\' shapes.')
  for (path, m), p in zip(jax.tree_util.tree_flatten_with_path(tree)[0],
                          jax.tree.leaves(params)):
    if jnp.shape(m) != jnp.shape(p):
      raise ValueError(
          f'{what} leaf {jax.tree_util.keystr(path)} has shape {jnp.shape(m)}, '
          f'but the param there has shape {jnp.shape(p)}.')


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_mask(mask: PyTree, params: PyTree, what: str = 'mask') -> None:
  """Raises ValueError unless `mask` is a 0/1 pytree of the params' shapes.

  A mask is bool, or numbers that are all 0 or 1 (checked when the values
  are concrete; under `jit` only the structure and shapes can be checked).

  Example:
    >>> import jax.numpy as jnp
    >>> check_mask({'w': jnp.ones(3, bool)}, {'w': jnp.zeros(3)})
    >>> check_mask({'w': jnp.array([1.0, 0.5, 0.0])},
    ...            {'w': jnp.zeros(3)})  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: mask leaf ['w'] holds 0.5, which is neither 0 nor 1; accepted: a bool mask, or 0/1
    values.
  """
  check_tree(mask, params, what)
  for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]:
    m = jnp.asarray(m)
    if m.dtype == jnp.bool_ or not _is_concrete(m):
      continue
    bad = m[(m != 0) & (m != 1)]
    if bad.size:
      raise ValueError(
          f'{what} leaf {jax.tree_util.keystr(path)} holds {bad[0].item()!r}, '
          'which is neither 0 nor 1; accepted: a bool mask, or 0/1 values.')


def _where_mask(mask: PyTree, tree: PyTree) -> PyTree:
  # -0.0 is the exact identity of IEEE addition (x + -0.0 == x bit for bit,
  # +0.0 and -0.0 included), so a frozen coordinate never changes, while the
  # update still compares equal to 0.0.
  return jax.tree.map(
      lambda m, t: jnp.where(m, t, jnp.asarray(-0.0, t.dtype)), mask, tree)


def masked(
    inner: optax.GradientTransformation,
    mask: PyTree | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Restricts any optax optimizer to the coordinates where `mask` is True.

  This is the paper's `T|α`: where the mask is False the update is exactly
  zero (no gradient step, momentum, weight decay or noise), whatever the inner
  optimizer, so frozen values stay bit-identical over any number of steps; the
  inner optimizer sees a zero gradient there and its update there is discarded.
  Its state:

  - per-element state (a leaf with its param's shape where optax's
    `tree_map_params` finds the params: Adam's μ and ν, momentum, pSGLD's V)
    is kept at frozen coordinates: one unfrozen later resumes from it;
  - any other leaf (Adafactor's factored rows and columns, novograd's
    per-leaf norm, sm3's and muon's accumulators, step counts, PRNG keys),
    and all the state of an optimizer `tree_map_params` cannot map (lbfgs),
    advances as the inner optimizer computes it from the masked gradient.

  Optimizers whose update mixes coordinates (muon, lbfgs, LAMB's trust
  ratio) give trainable coordinates the update of the masked gradient (and of
  the state frozen coordinates hold); every optax optimizer is tested under
  `masked` (tests/test_masking_optax.py). The mask is held as arrays in the
  state: `set_mask` replaces it without recompiling the step.

  Args:
    inner: the optax optimizer to restrict (any `GradientTransformation`).
    mask: the initial mask, a pytree of bool (or 0/1) arrays with the params'
      shapes, or a callable `params -> mask`; `None` (default): all train (`T`).

  Returns:
    A `GradientTransformationExtraArgs` whose state is a `MaskedState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> params = {'w': jnp.array([1.0, 2.0, 3.0])}
    >>> tx = masked(optax.adam(0.1))
    >>> state = set_mask(tx.init(params), {'w': jnp.array([True, False, True])})
    >>> updates, state = tx.update({'w': jnp.ones(3)}, state, params)
    >>> new = optax.apply_updates(params, updates)
    >>> bool(new['w'][1] == 2.0), bool(new['w'][0] < 1.0)
    (True, True)
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return MaskedState(mask=_initial_mask(mask, params),
                       inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    check_tree(updates, state.mask, 'updates (gradients)')
    updates = _where_mask(state.mask, updates)
    updates, inner_state = inner.update(
        updates, state.inner_state, params, **extra_args)
    inner_state = _keep_frozen_state(inner, state.mask, inner_state,
                                     state.inner_state)
    return _where_mask(state.mask, updates), MaskedState(state.mask, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _initial_mask(mask: PyTree | Callable[[PyTree], PyTree] | None,
                  params: PyTree) -> PyTree:
  """`mask` (or `mask(params)`), checked, as bool arrays; None: all True."""
  if mask is None:
    return jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
  init_mask = mask(params) if callable(mask) else mask
  check_mask(init_mask, params)
  return _as_bool(init_mask)


def _keep_frozen_state(inner: optax.GradientTransformation, mask: PyTree,
                       new: optax.OptState, old: optax.OptState
                       ) -> optax.OptState:
  """`new`, with its per-element state kept at `old` where `mask` is False.

  A frozen coordinate's per-element state (Adam's μ and ν, pSGLD's V,
  momentum) stays as it was when it was frozen, so a score read off it
  (fisher's ν) is not biased by the freeze and a coordinate unfrozen later
  resumes where it stopped. `optax.tree_utils.tree_map_params` finds the
  parts of the state that sit where the inner optimizer puts a params tree;
  inside them, a leaf is per-element only if it is an array of exactly its
  param's shape. Everything else advances as the inner optimizer computes it
  from the masked gradient: step counts and PRNG keys, Adafactor's factored
  rows and columns, novograd's per-leaf norms, sm3's and muon's differently
  shaped accumulators, GaLore's projections, and all of an optimizer whose
  state `tree_map_params` cannot map (lbfgs, whose params-shaped last
  gradient is a memory of past steps, not per-element state).
  """
  masks = _per_element_masks(inner, mask, new)
  if masks is None:
    return new
  return jax.tree.map(
      lambda m, n, o: n if m is None else jnp.where(m, n, o), masks, new, old,
      is_leaf=lambda x: x is None)


def _per_element_masks(inner: optax.GradientTransformation, mask: PyTree,
                       state: optax.OptState) -> PyTree | None:
  """`state`'s tree with `mask`'s leaf at each per-element leaf, None elsewhere.

  None (and a warning, once per trace) when optax cannot map the state.
  """
  mask_leaves = jax.tree.leaves(mask)
  mask_def: Any = jax.tree.structure(mask)  # mypy cannot resolve jax's alias.

  def per_element(sub: PyTree) -> PyTree:
    # `sub` sits where the inner optimizer's init put the params; its leaves
    # may still differ from the params' (sm3's lists, muon's MaskedNode).
    try:
      parts = mask_def.flatten_up_to(sub)
    except (TypeError, ValueError):
      return None
    # Below a param's position (sm3 keeps a list per param), a leaf is
    # per-element only if it has exactly that param's shape.
    return mask_def.unflatten([
        jax.tree.map(lambda x, m=m: m if _same_shape_array(x, m) else None,
                     part)
        for part, m in zip(parts, mask_leaves)])

  try:
    return optax.tree_utils.tree_map_params(
        inner, per_element, state, transform_non_params=lambda _: None,
        is_leaf=lambda _: True)
  except Exception as error:  # pylint: disable=broad-except
    # init on optax's placeholder params failed (lbfgs). Nothing is known to
    # be per-element, so nothing is restored; said once per trace, not silent.
    warnings.warn(
        'masked: optax.tree_utils.tree_map_params cannot map this '
        f'optimizer\'s state ({type(error).__name__}: {error}); its state at '
        'frozen coordinates advances from the masked gradient instead of being '
        'kept (frozen params still stay bit-identical).', stacklevel=3)
    return None


def reset_state(inner: optax.GradientTransformation, state: optax.OptState,
                fresh: optax.OptState, where: PyTree) -> optax.OptState:
  """`state` (of `inner`) with its per-element state set to `fresh`'s where `where`.

  The per-element leaves are those `masked` keeps for frozen coordinates
  (Adam's μ and ν, momentum); step counts, keys and factored or mixed state
  are left as they are. RigL uses it to restart regrown weights' moments.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = optax.adam(0.1)
    >>> p = {'w': jnp.ones(2)}
    >>> _, s = tx.update({'w': jnp.ones(2)}, tx.init(p), p)
    >>> r = reset_state(tx, s, tx.init(p), {'w': jnp.array([True, False])})
    >>> r[0].mu['w'].tolist(), int(r[0].count)
    ([0.0, 0.10000000149011612], 1)
  """
  masks = _per_element_masks(inner, where, state)
  if masks is None:
    return state
  return jax.tree.map(
      lambda m, s, f: s if m is None else jnp.where(m, f, s), masks, state,
      fresh, is_leaf=lambda x: x is None)


def _same_shape_array(x: Any, m: jax.Array) -> bool:
  return isinstance(x, (jax.Array, np.ndarray)) and (
      jnp.shape(x) == jnp.shape(m))


def _is_masked_state(x: Any) -> bool:
  return isinstance(x, MaskedState)


def set_mask(opt_state: optax.OptState, mask: PyTree) -> optax.OptState:
  """Returns `opt_state` with the mask of every `MaskedState` in it replaced.

  Works on the state of `masked(...)` itself and on any state that contains one
  (e.g. inside `optax.chain`). Pure and jittable; the new mask must have the
  old one's structure and shapes.

  Args:
    opt_state: an optimizer state containing at least one `MaskedState`.
    mask: a pytree of bool (or 0/1) arrays with the params' shapes.

  Returns:
    The state with the new mask.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> state = masked(optax.sgd(0.1)).init({'w': jnp.zeros(2)})
    >>> get_mask(set_mask(state, {'w': jnp.array([1, 0])}))['w'].tolist()
    [True, False]
  """
  found = []

  def replace(x):
    if _is_masked_state(x):
      check_mask(mask, x.mask)
      found.append(True)
      return x._replace(mask=_as_bool(mask))
    return x

  new_state = jax.tree.map(replace, opt_state, is_leaf=_is_masked_state)
  if not found:
    raise ValueError(
        'set_mask: the optimizer state contains no MaskedState; build the '
        'optimizer with paramsel_jax.masked(...).')
  return new_state


def get_mask(opt_state: optax.OptState) -> PyTree:
  """Returns the mask of the (first) `MaskedState` inside `opt_state`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> state = masked(optax.sgd(0.1)).init({'w': jnp.zeros(2)})
    >>> get_mask(state)['w'].tolist()
    [True, True]
  """
  states = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_masked_state)
            if _is_masked_state(s)]
  if not states:
    raise ValueError('get_mask: the optimizer state contains no MaskedState.')
  return states[0].mask


def count_true(mask: PyTree) -> chex.Numeric:
  """Number of True entries over all leaves of a mask.

  Example:
    >>> import jax.numpy as jnp
    >>> int(count_true({'a': jnp.array([True, False]), 'b': jnp.ones(3, bool)}))
    4
  """
  return sum(jnp.sum(m) for m in jax.tree.leaves(mask))
