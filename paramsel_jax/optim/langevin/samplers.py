# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The samplers: SGLD and pSGLD, chains of the preconditioner, step and noise.

:func:`psgld` differs from Li et al. (2016), stated:

* The correction term ``Γ(θ) = Σ_j ∂G_ij/∂θ_j`` is dropped, as in the paper's
  experiments and code (it is small when ``a`` is close to 1, since then
  ``G`` changes slowly). ``G`` then follows the chain's own fluctuations and
  biases the stationary law on top of the discretisation bias: measured on
  a Gaussian target with full gradients (``tests/test_langevin.py``), the
  variance comes out 15-25% too large at ``decay=0.99`` and 2-3% at
  ``decay=0.999``.
* ``V`` averages the squares of the gradient ``g`` of the mean loss that is
  passed in (prior included when the loss includes it); the paper uses the
  mean log-likelihood gradient. Only the scale of ``λ`` relative to
  ``sqrt(V)`` depends on this.
* ``V`` starts from the first squared gradient (the paper leaves ``V_0``
  open; ``optax.scale_by_rms`` starts at 0 and makes the first step
  ``1/sqrt(1 - a)`` ≈ 10x too large at ``a = 0.99``).
"""

from __future__ import annotations

import jax
import optax

from paramsel_jax.optim.langevin.checks import check_learning_rate
from paramsel_jax.optim.langevin.noise import add_langevin_noise
from paramsel_jax.optim.langevin.precondition import scale_by_psgld_preconditioner


def sgld(
    learning_rate: optax.ScalarOrSchedule,
    *,
    temperature: jax.typing.ArrayLike = 1.0,
    num_data: jax.typing.ArrayLike,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Stochastic gradient Langevin dynamics (Welling & Teh 2011).

  Samples the tempered posterior ``∝ exp(-n L(θ) / T)`` of a *mean* loss
  ``L`` (see the package docstring) with the update::

    θ ← θ - γ g + N(0, 2 γ T / n),     g = ∇L on the batch.

  Welling & Teh's step ``ε`` (sum log-posterior, noise ``N(0, ε)``) is
  ``ε = 2 γ / n``, i.e. ``γ = n ε / 2``. ``T = 0`` is plain SGD.

  The state is a tuple ``(<learning-rate state>, LangevinNoiseState)``, the
  layout of ``optax.chain(optax.scale_by_learning_rate(γ),
  add_langevin_noise(γ, ...))``; updates keep the gradients' dtype.

  Args:
    learning_rate: ``γ``, a scalar or an optax schedule.
    temperature: ``T``; 1 is the Bayesian posterior, 0 turns the noise off.
    num_data: ``n``, the size of the training set.
    seed: an int or a typed key for the noise.

  Returns:
    A ``GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> # L(θ) = θ²/2 with n = 100: the target is N(0, 1/100).
    >>> tx = sgld(0.05, num_data=100, seed=0)
    >>> def step(carry, _):
    ...   theta, state = carry
    ...   u, state = tx.update(theta, state)  # the gradient of θ²/2 is θ
    ...   theta = optax.apply_updates(theta, u)
    ...   return (theta, state), theta
    >>> theta = jnp.zeros(100)
    >>> _, samples = jax.lax.scan(step, (theta, tx.init(theta)), length=400)
    >>> round(float(samples[200:].var()) * 100, 1)
    1.0

  References:
    Welling, Teh, `Bayesian Learning via Stochastic Gradient Langevin
    Dynamics
    <https://www.stats.ox.ac.uk/~teh/research/compstats/WelTeh2011a.pdf>`_,
    ICML 2011.
  """
  return _langevin_chain(None, learning_rate, temperature=temperature,
                         num_data=num_data, seed=seed)


def psgld(
    learning_rate: optax.ScalarOrSchedule,
    *,
    decay: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-5,
    temperature: jax.typing.ArrayLike = 1.0,
    num_data: jax.typing.ArrayLike,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Preconditioned SGLD with the RMSprop preconditioner (Li et al. 2016).

  Samples the tempered posterior ``∝ exp(-n L(θ) / T)`` of a *mean* loss
  ``L`` (see the package docstring). Algorithm 1 of the paper, elementwise::

    V ← a V + (1 - a) g ⊙ g          (V ← g ⊙ g on the first update)
    G = 1 / (λ + sqrt(V))
    θ ← θ - γ G ⊙ g + N(0, 2 γ T G / n)

  The paper's step ``ε`` is ``γ = n ε / 2`` (its noise ``N(0, ε G)`` is
  ``N(0, 2 γ G / n)``). ``T = 0`` is RMSprop with this preconditioner, bit
  for bit the chain of :func:`scale_by_psgld_preconditioner` and
  ``optax.scale_by_learning_rate``. Stated differences from the paper (the
  module docstring): ``Γ(θ)`` is dropped (a Gaussian's variance comes out
  15-25% too large at ``decay=0.99``); ``V`` averages the mean loss's ``g²``
  and starts from the first.

  The state is a tuple ``(ScaleByPsgldPreconditionerState, <learning-rate
  state>, LangevinNoiseState)`` as ``optax.chain`` lays it out
  (:func:`preconditioner` and :func:`second_moment` find ``G`` and ``V``).
  Updates keep the gradients' dtype. Under ``paramsel_jax.masked`` frozen
  coordinates get no drift and no noise and keep their ``V`` and ``G``.

  Args:
    learning_rate: ``γ``, a scalar or an optax schedule.
    decay: ``a``, decay of the running average of squared gradients.
    eps: ``λ``, the preconditioner's damping, ``G <= 1 / λ``.
    temperature: ``T``; 1 is the Bayesian posterior, 0 turns the noise off.
    num_data: ``n``, the size of the training set.
    seed: an int or a typed key for the noise.

  Returns:
    A ``GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from paramsel_jax.optim.langevin import preconditioner
    >>> tx = psgld(1e-3, num_data=60_000, seed=0)
    >>> params = {'w': jnp.array([1.0, -2.0])}
    >>> u, state = tx.update({'w': jnp.array([0.5, -3.0])}, tx.init(params), params)
    >>> u['w'].shape, [round(float(x), 3) for x in preconditioner(state)['w']]
    ((2,), [2.0, 0.333])

  References:
    Li, Chen, Carlson, Carin, `Preconditioned Stochastic Gradient Langevin
    Dynamics for Deep Neural Networks <https://arxiv.org/abs/1512.07666>`_,
    AAAI 2016.
  """
  return _langevin_chain(
      scale_by_psgld_preconditioner(decay=decay, eps=eps), learning_rate,
      temperature=temperature, num_data=num_data, seed=seed)


def _langevin_chain(
    precondition: optax.GradientTransformation | None,
    learning_rate: optax.ScalarOrSchedule,
    *,
    temperature: jax.typing.ArrayLike,
    num_data: jax.typing.ArrayLike,
    seed: int | jax.Array,
) -> optax.GradientTransformationExtraArgs:
  """``optax.chain(precondition, scale_by_learning_rate, add_langevin_noise)``.

  Differs from ``optax.chain`` in two ways: the noise gets the preconditioner
  ``G`` of this very step (Algorithm 1 of Li et al.), and the updates keep the
  gradients' dtype (``optax.scale_by_learning_rate`` promotes bf16 updates to
  f32 when the learning rate is an f32 array, e.g. under
  ``inject_hyperparams(..., hyperparam_dtype=jnp.float32)``).
  """
  check_learning_rate(learning_rate)
  step = optax.with_extra_args_support(
      optax.scale_by_learning_rate(learning_rate))
  noise = add_langevin_noise(learning_rate, temperature=temperature,
                             num_data=num_data, seed=seed)

  def init_fn(params):
    head = () if precondition is None else (precondition.init(params),)
    return head + (step.init(params), noise.init(params))

  def update_fn(grads, state, params=None, **extra_args):
    updates, g_matrix, new_state = grads, None, ()
    if precondition is not None:
      updates, precondition_state = precondition.update(
          updates, state[0], params)
      g_matrix = precondition_state.preconditioner
      new_state = (precondition_state,)
    step_state, noise_state = state[-2:]
    updates, step_state = step.update(updates, step_state, params, **extra_args)
    updates, noise_state = noise.update(
        updates, noise_state, params, preconditioner=g_matrix)
    updates = jax.tree.map(lambda u, g: u.astype(g.dtype), updates, grads)
    return updates, new_state + (step_state, noise_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
