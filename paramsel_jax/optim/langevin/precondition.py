# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""pSGLD's diagonal RMSprop preconditioner as an optax transform."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.optim.langevin.checks import check_nonnegative
from paramsel_jax.optim.langevin.checks import check_number

PyTree = Any


class ScaleByPsgldPreconditionerState(NamedTuple):
  """State of `scale_by_psgld_preconditioner`."""

  # The field `count` (optax's name) shadows tuple.count, which mypy reports.
  count: jax.Array  # type: ignore[assignment]  # shape=(), dtype=jnp.int32: updates done so far.
  nu: PyTree  # the params' shapes and dtypes: V, running mean of g².
  preconditioner: PyTree  # the params' shapes and dtypes: G = 1/(eps+sqrt(V)).


def scale_by_psgld_preconditioner(
    decay: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-5,
) -> optax.GradientTransformation:
  r"""Scales updates by pSGLD's diagonal RMSprop preconditioner.

  The drift preconditioner of pSGLD (Li et al. 2016, Algorithm 1)::

    V ← a V + (1 - a) g ⊙ g,    G = 1 / (λ + sqrt(V)),    update = G ⊙ g

  Unlike ``optax.scale_by_rms``, whose ``V`` starts at 0 (a first update
  ``g / sqrt((1-a) g²)``, about ``10 sign(g)`` at ``a = 0.99``), ``V`` starts
  from the *first* squared gradient: the first update is ``g / (λ + |g|) ≈
  sign(g)``. Chained with ``optax.scale_by_learning_rate`` this is RMSprop
  with the pSGLD preconditioner, i.e. :func:`psgld` at temperature 0.

  ``V`` and ``G`` are both kept in the state, in the params' dtype as in
  optax (``G`` costs one extra copy of the params), so that the Langevin noise
  and the selectors read the ``G`` actually used (:func:`preconditioner`).

  Args:
    decay: ``a``, the decay rate of the running average of squared gradients.
    eps: ``λ``, added to ``sqrt(V)`` outside the root, as in the paper: ``G <= 1 / λ``.

  Returns:
    A ``GradientTransformation`` whose state is a `ScaleByPsgldPreconditionerState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = scale_by_psgld_preconditioner(decay=0.99, eps=1e-5)
    >>> g = {'w': jnp.array([4.0, -0.5])}
    >>> u, state = tx.update(g, tx.init(g))
    >>> u['w'].round(4).tolist()  # g / (eps + |g|) on the first step
    [1.0, -1.0]

  References:
    Li, Chen, Carlson, Carin, `Preconditioned Stochastic Gradient Langevin
    Dynamics for Deep Neural Networks <https://arxiv.org/abs/1512.07666>`_,
    AAAI 2016.
  """
  check_number('decay', decay, lambda v: 0 <= v < 1, 'a number in [0, 1)')
  check_nonnegative('eps', eps)

  def init_fn(params):
    return ScaleByPsgldPreconditionerState(
        count=jnp.zeros([], jnp.int32),
        nu=jax.tree.map(jnp.zeros_like, params),
        preconditioner=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    nu = _second_moment(updates, state.nu, state.count == 0, decay)
    precond = jax.tree.map(
        lambda v: (1 / (eps + jnp.sqrt(v))).astype(v.dtype), nu)
    updates = jax.tree.map(
        lambda p, g: (p * g).astype(g.dtype), precond, updates)
    return updates, ScaleByPsgldPreconditionerState(
        count=optax.safe_increment(state.count), nu=nu, preconditioner=precond)

  return optax.GradientTransformation(init_fn, update_fn)


def _second_moment(grads: PyTree, nu: PyTree, first: jax.Array,
                   decay: jax.typing.ArrayLike) -> PyTree:
  """The new ``V``: ``a V + (1 - a) g²``, or exactly ``g²`` on the first update."""

  def new_nu(g, v):
    g2 = g * g
    return jnp.where(first, g2, decay * v + (1 - decay) * g2).astype(v.dtype)

  return jax.tree.map(new_nu, grads, nu)
