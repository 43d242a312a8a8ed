# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Langevin samplers as optax transforms: SGLD and pSGLD.

The paper's selector (README, "The protocol") trains with preconditioned stochastic
gradient Langevin dynamics and reads convergence off the preconditioner and the
trajectory. This package provides the samplers, built like optax's named
optimizers from small chained pieces:

* :func:`scale_by_psgld_preconditioner`: the RMSprop-like diagonal
  preconditioner of pSGLD, ``g -> G ⊙ g`` with ``G = 1 / (eps + sqrt(V))``;
  ``V`` starts from the first squared gradient and ``G`` is kept in the state.
* :func:`add_langevin_noise`: adds ``N(0, 2 γ T G / n)`` in parameter units;
  its PRNG key and step count live in a typed state, the key is split on every
  update, so the transform is pure (``jit``, ``lax.scan``, ``vmap``).
* :func:`sgld` and :func:`psgld`: the samplers.
* :func:`preconditioner` and :func:`second_moment`: accessors for selectors,
  which find ``G`` / the running average of squared gradients anywhere inside a
  (masked, chained, ``inject_hyperparams``-wrapped) optimizer state, by type.

Step size and the posterior
---------------------------
Every transform here takes the gradient of a *mean* loss ``L(θ)`` over the
batch, prior included as ``-log p(θ) / n``, where ``n`` (``num_data``) is the
size of the training set::

  L(θ) = -(1/n) log p(θ) - (1/n_b) Σ_{i in batch} log p(x_i | θ).

The target is the tempered posterior ``π_T(θ) ∝ exp(-n L(θ) / T)``; ``T = 1``
is the Bayesian posterior, ``T -> 0`` is optimization. One update is::

  SGLD:   θ ← θ - γ g                + N(0, 2 γ T / n)
  pSGLD:  θ ← θ - γ G ⊙ g            + N(0, 2 γ T G / n)   (elementwise)

with ``g = ∇L`` on the batch and ``γ`` the ``learning_rate``. This is the
Euler–Maruyama step of ``dθ = -(n/T) G ∇L dt + sqrt(2 G) dW`` with time step
``h = γ T / n``. Welling & Teh (2011) write SGLD with the *sum* log-posterior,
``θ ← θ + (ε/2) (∇log p(θ) + (n/n_b) Σ ∇log p(x_i|θ)) + N(0, ε)``; since that
bracket is ``-n g``, their step ``ε`` is ours through::

  γ = n ε / 2,     noise variance 2 γ / n = ε      (T = 1),

and the same holds for Li et al. (2016), whose pSGLD noise ``N(0, ε G)`` is our
``N(0, 2 γ G / n)``.

The package has one module per concern: ``precondition`` (the pSGLD
preconditioner and its state), ``noise`` (the Langevin noise and its key),
``checks`` (the hyper-parameter checks), ``samplers`` (:func:`sgld`, :func:`psgld`) and
``accessors`` (:func:`preconditioner`, :func:`second_moment`, :func:`reseed`).
"""

from paramsel_jax.optim.langevin.accessors import preconditioner
from paramsel_jax.optim.langevin.accessors import reseed
from paramsel_jax.optim.langevin.accessors import second_moment
from paramsel_jax.optim.langevin.noise import add_langevin_noise
from paramsel_jax.optim.langevin.noise import LangevinNoiseState
from paramsel_jax.optim.langevin.precondition import scale_by_psgld_preconditioner
from paramsel_jax.optim.langevin.precondition import ScaleByPsgldPreconditionerState
from paramsel_jax.optim.langevin.samplers import psgld
from paramsel_jax.optim.langevin.samplers import sgld

__all__ = [
    'LangevinNoiseState',
    'ScaleByPsgldPreconditionerState',
    'add_langevin_noise',
    'preconditioner',
    'psgld',
    'reseed',
    'scale_by_psgld_preconditioner',
    'second_moment',
    'sgld',
]
