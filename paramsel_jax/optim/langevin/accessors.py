# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Accessors for selectors: ``G``, the second moment and the noise keys in a state."""

from __future__ import annotations

from typing import Any

import jax
import optax
from optax._src import transform as _optax_transform

from paramsel_jax.optim.langevin.noise import LangevinNoiseState
from paramsel_jax.optim.langevin.precondition import ScaleByPsgldPreconditionerState

PyTree = Any

# States whose field `nu` is a running average of squared gradients, as stored
# (optax's Adam/AMSGrad/RMSprop `nu` is not bias-corrected).
_SECOND_MOMENT_STATES: tuple[type, ...] = tuple(
    t for t in (
        ScaleByPsgldPreconditionerState,
        optax.ScaleByAdamState,  # adam, adamw, nadam, ...
        optax.ScaleByAmsgradState,
        optax.ScaleByRmsState,  # rmsprop
        optax.ScaleByRStdDevState,  # rmsprop(centered=True)
        # rmsprop(bias_correction=True); not exported by optax.
        getattr(_optax_transform, 'ScaleByRmsWithCountState', None),
    ) if t is not None)


def _find_states(opt_state: optax.OptState, types: tuple[type, ...],
                 caller: str) -> Any | None:
  is_state = lambda x: isinstance(x, types)
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_state)
           if is_state(x)]
  if not found:
    return None
  if len(found) > 1:
    names = ', '.join(type(x).__name__ for x in found)
    raise ValueError(
        f'{caller}: the optimizer state holds {len(found)} candidate states '
        f'({names}); pass the part of the state that holds the one you mean.')
  return found[0]


def preconditioner(opt_state: optax.OptState) -> PyTree | None:
  """Returns pSGLD's preconditioner ``G`` from an optimizer state, or None.

  Looks for the (single) `ScaleByPsgldPreconditionerState` anywhere inside
  ``opt_state``, by type: the state of :func:`psgld` or
  :func:`scale_by_psgld_preconditioner` itself, or wrapped in
  ``paramsel_jax.masked``, ``optax.chain``, ``optax.inject_hyperparams`` or
  any other pytree of states. ``G = 1 / (eps + sqrt(V))`` is the one used by
  the latest update (zeros before the first update). Under
  ``paramsel_jax.masked`` the frozen coordinates keep the ``G`` they had
  when they were frozen.

  Args:
    opt_state: an optimizer state.

  Returns:
    ``G``, a pytree with the params' shapes and dtypes, or ``None`` when the
    state holds no pSGLD preconditioner (e.g. Adam).

  Raises:
    ValueError: when the state holds more than one pSGLD preconditioner.

  Example:
    >>> import jax.numpy as jnp
    >>> from paramsel_jax.optim.langevin import psgld
    >>> from paramsel_jax.optim.masking import masked
    >>> tx = masked(psgld(1e-3, num_data=100, eps=0.0))
    >>> params = {'w': jnp.ones(2)}
    >>> _, state = tx.update({'w': jnp.array([2.0, 4.0])}, tx.init(params),
    ...                      params)
    >>> preconditioner(state)['w'].tolist()
    [0.5, 0.25]
    >>> import optax; print(preconditioner(optax.adam(0.1).init(params)))
    None
  """
  state = _find_states(opt_state, (ScaleByPsgldPreconditionerState,),
                       'preconditioner')
  return None if state is None else state.preconditioner


def second_moment(opt_state: optax.OptState) -> PyTree | None:
  """Returns the running average of squared gradients in a state, or None.

  Selectors use it for Fisher-like scores (``w² ⊙ ν``) and for pSGLD's
  convergence test. Found by state type anywhere inside ``opt_state`` (masked,
  chained, ``inject_hyperparams``-wrapped):

  * ``V`` of :func:`psgld` (`ScaleByPsgldPreconditionerState`),
  * ``nu`` of ``optax.adam``/``adamw``/``nadam``/``amsgrad``
    (``ScaleByAdamState``, ``ScaleByAmsgradState``),
  * ``nu`` of ``optax.rmsprop`` (``ScaleByRmsState``; centered:
    ``ScaleByRStdDevState``, whose ``nu`` is the uncentered average).

  The value is returned as stored: Adam's and RMSprop's ``nu`` start at 0 and
  are *not* bias-corrected (Adam's: divide by ``1 - b2**count`` if needed);
  pSGLD's ``V`` starts from the first squared gradient. Under
  ``paramsel_jax.masked`` frozen coordinates keep the second moment they had
  when they were frozen.

  Args:
    opt_state: an optimizer state.

  Returns:
    A pytree with the params' shapes (leaves of ``optax.masked``'s
    ``MaskedNode`` where an ``optax.masked`` skipped a leaf), or ``None`` when
    the state holds none of the types above (e.g. SGD, SGLD).

  Raises:
    ValueError: when the state holds more than one such state.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = optax.adam(0.1, b2=0.9)
    >>> params = jnp.zeros(2)
    >>> _, state = tx.update(jnp.array([1.0, 2.0]), tx.init(params), params)
    >>> [round(float(x), 3) for x in second_moment(state)]  # (1 - b2) g²
    [0.1, 0.4]
  """
  state = _find_states(opt_state, _SECOND_MOMENT_STATES, 'second_moment')
  return None if state is None else state.nu


def reseed(opt_state: optax.OptState, key: jax.Array) -> optax.OptState:
  """Returns `opt_state` with every Langevin noise key derived from `key`.

  Use it to give each of several vmapped runs its own noise: build the
  optimizer once, `init` it per run, and reseed with that run's key. States
  without Langevin noise come back unchanged.

  Args:
    opt_state: any optimizer state.
    key: a typed PRNG key; the i-th noise state gets `fold_in(key, i)`.

  Returns:
    The state with new noise keys.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from paramsel_jax.optim.langevin import sgld
    >>> tx = sgld(0.1, num_data=10)
    >>> a = reseed(tx.init(jnp.zeros(2)), jax.random.key(1))
    >>> b = reseed(tx.init(jnp.zeros(2)), jax.random.key(2))
    >>> bool((tx.update(jnp.ones(2), a)[0] != tx.update(jnp.ones(2), b)[0]).all())
    True
  """
  is_noise = lambda x: isinstance(x, LangevinNoiseState)
  counter = iter(range(1 << 30))

  def replace(x):
    if is_noise(x):
      return x._replace(rng_key=jax.random.fold_in(key, next(counter)))
    return x

  return jax.tree.map(replace, opt_state, is_leaf=is_noise)
