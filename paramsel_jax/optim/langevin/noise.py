# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The Langevin noise of (p)SGLD and its PRNG key.

The key lives in the transform's state and is split on every update, so the
transform is a pure function: under ``vmap`` over states with different keys
each chain gets its own noise.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.optim.langevin.checks import check_learning_rate
from paramsel_jax.optim.langevin.checks import check_nonnegative
from paramsel_jax.optim.langevin.checks import check_number


class LangevinNoiseState(NamedTuple):
  """State of `add_langevin_noise`."""

  # The field `count` (optax's name) shadows tuple.count, which mypy reports.
  count: jax.Array  # type: ignore[assignment]  # shape=(), dtype=jnp.int32: updates done so far.
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


def add_langevin_noise(
    learning_rate: optax.ScalarOrSchedule,
    *,
    temperature: jax.typing.ArrayLike = 1.0,
    num_data: jax.typing.ArrayLike,
    seed: int | jax.Array = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""Adds the Langevin noise of (p)SGLD to updates in parameter units.

  Put it *after* ``optax.scale_by_learning_rate`` in a chain: it adds
  ``N(0, 2 γ_t T G / n)`` elementwise (``γ_t`` at the count of
  ``scale_by_learning_rate``). ``G``, the diagonal preconditioner, is the
  pytree extra argument ``preconditioner`` of ``update`` (:func:`psgld` passes
  it); without it ``G = 1`` (SGLD). ``temperature=0`` (a Python number) passes
  the updates through bit for bit; the key is still split.

  Args:
    learning_rate: ``γ``, a scalar or an optax schedule of the step count.
    temperature: ``T`` of the target ``∝ exp(-n L / T)``.
    num_data: ``n``, the training-set size the mean loss ``L`` averages over.
    seed: an int (may be traced, e.g. under ``vmap``) or a key (typed, or a
      raw ``jax.random.PRNGKey``); the state holds a typed key.

  Returns:
    A ``GradientTransformationExtraArgs`` whose state is a `LangevinNoiseState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> tx = optax.chain(optax.scale_by_learning_rate(0.1),
    ...                  add_langevin_noise(0.1, num_data=10, seed=0))
    >>> g = {'w': jnp.zeros(10_000)}
    >>> u, state = tx.update(g, tx.init(g))
    >>> round(float(u['w'].var()), 2)  # 2 γ T / n = 0.02
    0.02
  """
  check_learning_rate(learning_rate)
  check_nonnegative('temperature', temperature)
  check_number('num_data', num_data, lambda v: v > 0,
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
    variance = 2 * lr * temperature / num_data  # a scalar
    return _add_noise(updates, sample_key, variance, preconditioner), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _add_noise(updates: optax.Updates, key: jax.Array, variance: jax.Array,
               preconditioner: optax.Updates | None) -> optax.Updates:
  """``updates + sqrt(variance) · sqrt(G) · z``, ``z`` standard normal, dtypes kept."""
  scale = jnp.sqrt(variance)
  noise = optax.tree.random_like(key, updates, jax.random.normal)
  if preconditioner is None:
    std = jax.tree.map(lambda _: scale, updates)
  else:
    std = jax.tree.map(lambda p: scale * jnp.sqrt(p), preconditioner)
  return jax.tree.map(
      lambda u, s, z: (u + s * z).astype(u.dtype), updates, std, noise)
