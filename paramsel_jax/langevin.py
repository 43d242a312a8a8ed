# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Langevin samplers as optax transforms: SGLD and pSGLD.

The paper's selector (README, "The protocol") trains with preconditioned stochastic
gradient Langevin dynamics and reads convergence off the preconditioner and the
trajectory. This module provides the samplers, built like optax's named
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
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax._src import transform as _optax_transform

PyTree = Any

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


# ---------------------------------------------------------------------------
# The preconditioner.


class ScaleByPsgldPreconditionerState(NamedTuple):
  """State of `scale_by_psgld_preconditioner`."""

  count: jax.Array  # shape=(), dtype=jnp.int32: updates done so far.
  nu: PyTree  # the params' shapes and dtypes: V, running mean of g².
  preconditioner: PyTree  # the params' shapes and dtypes: G = 1/(eps+sqrt(V)).


def scale_by_psgld_preconditioner(
    decay: jax.typing.ArrayLike = 0.99,
    eps: jax.typing.ArrayLike = 1e-5,
) -> optax.GradientTransformation:
  r"""Scales updates by pSGLD's diagonal RMSprop preconditioner.

  The drift preconditioner of pSGLD (Li et al. 2016, Algorithm 1)::

    V ← a V + (1 - a) g ⊙ g,    G = 1 / (λ + sqrt(V)),    update = G ⊙ g

  with ``a = decay`` and ``λ = eps``. Unlike ``optax.scale_by_rms``, which
  starts ``V`` at 0 so that the first update is ``g / sqrt((1-a) g²)``, about
  ``10 sign(g)`` at ``a = 0.99``, ``V`` is initialised with the *first*
  squared gradient: the first update is ``g / (λ + |g|) ≈ sign(g)``.

  ``V`` and ``G`` are both kept in the state (``G`` costs one extra copy of
  the params) so that the Langevin noise and the selectors read the ``G``
  that was actually used (see :func:`preconditioner`). They have the params'
  dtype, as in optax.

  Chained with ``optax.scale_by_learning_rate`` this is RMSprop with the pSGLD
  preconditioner, i.e. :func:`psgld` at temperature 0.

  Args:
    decay: ``a``, the decay rate of the running average of squared gradients.
    eps: ``λ``, added to ``sqrt(V)`` (outside the square root, as in the
      paper); it bounds ``G`` by ``1 / λ``.

  Returns:
    A ``GradientTransformation`` whose state is a
    `ScaleByPsgldPreconditionerState`.

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
  _check('decay', decay, lambda v: 0 <= v < 1, 'a number in [0, 1)')
  _check_nonnegative('eps', eps)

  def init_fn(params):
    return ScaleByPsgldPreconditionerState(
        count=jnp.zeros([], jnp.int32),
        nu=jax.tree.map(jnp.zeros_like, params),
        preconditioner=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    first = state.count == 0

    def new_nu(g, v):
      g2 = g * g
      # On the first update V = g², exactly; afterwards the running average.
      return jnp.where(first, g2, decay * v + (1 - decay) * g2).astype(v.dtype)

    nu = jax.tree.map(new_nu, updates, state.nu)
    precond = jax.tree.map(
        lambda v: (1 / (eps + jnp.sqrt(v))).astype(v.dtype), nu)
    updates = jax.tree.map(
        lambda p, g: (p * g).astype(g.dtype), precond, updates)
    return updates, ScaleByPsgldPreconditionerState(
        count=optax.safe_increment(state.count), nu=nu, preconditioner=precond)

  return optax.GradientTransformation(init_fn, update_fn)


# ---------------------------------------------------------------------------
# The Langevin noise.


class LangevinNoiseState(NamedTuple):
  """State of `add_langevin_noise`."""

  count: jax.Array  # shape=(), dtype=jnp.int32: updates done so far.
  rng_key: jax.Array  # shape=(), a typed PRNG key; split on every update.


def _canonical_key(seed: int | jax.Array) -> jax.Array:
  """A typed PRNG key from an int seed (possibly traced) or a key."""
  if isinstance(seed, jax.Array) and jnp.issubdtype(
      seed.dtype, jax.dtypes.prng_key):
    return seed
  seed = jnp.asarray(seed)
  if seed.dtype == jnp.uint32 and seed.shape == (2,):  # jax.random.PRNGKey
    return jax.random.wrap_key_data(seed)
  if not jnp.issubdtype(seed.dtype, jnp.integer):
    # inject_hyperparams(hyperparam_dtype=float) turns an int seed into a float.
    seed = seed.astype(jnp.int32)
  return jax.random.key(seed)


def _check(name: str, value: Any, ok: Callable[[float], bool],
           accepted: str) -> None:
  """ValueError naming `value` unless `ok(value)`; a concrete number only.

  Values that are arrays or schedules (`inject_hyperparams`, optax schedules)
  are left to the caller.
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return
  if not (math.isfinite(value) and ok(float(value))):
    raise ValueError(f'{name}={value!r}; accepted: {accepted}.')


def _check_learning_rate(learning_rate: Any) -> None:
  _check('learning_rate', learning_rate, lambda v: v > 0,
         'a finite number > 0, or an optax schedule')


def _check_nonnegative(name: str, value: Any) -> None:
  _check(name, value, lambda v: v >= 0, 'a finite number >= 0')


def add_langevin_noise(
    learning_rate: optax.ScalarOrSchedule,
    *,
    temperature: jax.typing.ArrayLike = 1.0,
    num_data: jax.typing.ArrayLike,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Adds the Langevin noise of (p)SGLD to updates in parameter units.

  Put it *after* ``optax.scale_by_learning_rate`` in a chain: it adds::

    N(0, 2 γ_t T G / n)    elementwise,

  where ``γ_t`` is ``learning_rate`` (a schedule is evaluated at the same count
  as ``scale_by_learning_rate`` uses), ``T = temperature``, ``n = num_data``
  and ``G`` the diagonal preconditioner, passed as the keyword extra argument
  ``preconditioner`` (a pytree like the updates) to ``update``; without it
  ``G = 1`` (SGLD). :func:`psgld` passes the ``G`` of
  :func:`scale_by_psgld_preconditioner`.

  The PRNG key lives in the state and is split on every update, so the
  transform is a pure function: under ``vmap`` over states with different keys
  each chain gets its own noise. With ``temperature=0`` (a Python number) the
  updates pass through unchanged, bit for bit; the key is still split.

  Args:
    learning_rate: ``γ``, a scalar or an optax schedule of the step count.
    temperature: ``T`` of the target ``∝ exp(-n L / T)``.
    num_data: ``n``, the size of the training set that the mean loss ``L``
      averages over.
    seed: an int (may be traced, e.g. under ``vmap``) or a key
      (``jax.random.key``, or a raw ``jax.random.PRNGKey``); the state holds
      a typed key.

  Returns:
    A ``GradientTransformationExtraArgs`` whose state is a
    `LangevinNoiseState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = optax.chain(optax.scale_by_learning_rate(0.1),
    ...                  add_langevin_noise(0.1, num_data=10, seed=0))
    >>> g = {'w': jnp.zeros(10_000)}
    >>> u, state = tx.update(g, tx.init(g))
    >>> round(float(u['w'].var()), 2)  # 2 γ T / n = 0.02
    0.02
  """
  _check_learning_rate(learning_rate)
  _check_nonnegative('temperature', temperature)
  _check('num_data', num_data, lambda v: v > 0,
         'the training-set size, a number > 0')
  no_noise = isinstance(temperature, (int, float)) and temperature == 0

  def init_fn(params):
    del params
    return LangevinNoiseState(
        count=jnp.zeros([], jnp.int32), rng_key=_canonical_key(seed))

  def update_fn(updates, state, params=None, *, preconditioner=None,
                **extra_args):
    del params, extra_args
    rng_key, sample_key = jax.random.split(state.rng_key)
    new_state = LangevinNoiseState(
        count=optax.safe_increment(state.count), rng_key=rng_key)
    if no_noise:
      return updates, new_state
    lr = (learning_rate(state.count) if callable(learning_rate)
          else learning_rate)
    scale = jnp.sqrt(2 * lr * temperature / num_data)  # a scalar
    noise = optax.tree.random_like(sample_key, updates, jax.random.normal)
    if preconditioner is None:
      std = jax.tree.map(lambda _: scale, updates)
    else:
      std = jax.tree.map(lambda p: scale * jnp.sqrt(p), preconditioner)
    updates = jax.tree.map(
        lambda u, s, z: (u + s * z).astype(u.dtype), updates, std, noise)
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------------------
# The samplers.


def sgld(
    learning_rate: optax.ScalarOrSchedule,
    *,
    temperature: jax.typing.ArrayLike = 1.0,
    num_data: jax.typing.ArrayLike,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Stochastic gradient Langevin dynamics (Welling & Teh 2011).

  Samples the tempered posterior ``∝ exp(-n L(θ) / T)`` of a *mean* loss
  ``L`` (see the module docstring) with the update::

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
  ``L`` (see the module docstring). Algorithm 1 of the paper, elementwise::

    V ← a V + (1 - a) g ⊙ g          (V ← g ⊙ g on the first update)
    G = 1 / (λ + sqrt(V))
    θ ← θ - γ G ⊙ g + N(0, 2 γ T G / n)

  with ``a = decay``, ``λ = eps``, ``γ = learning_rate``, ``T =
  temperature``, ``n = num_data``. The paper's step ``ε`` is ``γ = n ε / 2``
  (its noise ``N(0, ε G)`` is ``N(0, 2 γ G / n)``). ``T = 0`` is RMSprop with
  this preconditioner (bit for bit the chain of
  :func:`scale_by_psgld_preconditioner` and ``optax.scale_by_learning_rate``).

  Differences from the paper, stated:

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

  The state is a tuple ``(ScaleByPsgldPreconditionerState, <learning-rate
  state>, LangevinNoiseState)``, the layout of ``optax.chain`` of the three
  pieces; :func:`preconditioner` and :func:`second_moment` find ``G`` and
  ``V`` in it. Updates keep the gradients' dtype. Under
  ``paramsel_jax.masked`` frozen coordinates get no drift and no noise, and
  keep the ``V`` and ``G`` they had when they were frozen.

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
    >>> tx = psgld(1e-3, num_data=60_000, seed=0)
    >>> params = {'w': jnp.array([1.0, -2.0])}
    >>> state = tx.init(params)
    >>> u, state = tx.update({'w': jnp.array([0.5, -3.0])}, state, params)
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
  _check_learning_rate(learning_rate)
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


# ---------------------------------------------------------------------------
# Accessors for selectors.

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
    >>> from paramsel_jax.masking import masked
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
