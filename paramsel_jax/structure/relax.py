"""Gumbel-softmax relaxation of structure choices and temperature schedules.

A structure search keeps one vector of logits per choice (a pytree ``dict``
name -> ``(num_candidates,)``) and, at every step, draws a *relaxed* sample of
each choice: ``softmax((logits + g) / tau)`` with Gumbel noise ``g`` (Jang, Gu
and Poole 2016; Maddison, Mnih and Teh 2016). At a high temperature the sample
is close to uniform; as ``tau -> 0`` it approaches a one-hot vector. With
``hard=True`` the forward value is the one-hot argmax and the gradient is the
soft sample's (straight-through, as in GDAS, Dong and Yang 2019).

Example:
  >>> import jax, jax.numpy as jnp
  >>> y = gumbel_softmax(jax.random.key(0), jnp.zeros(4), 1.0, hard=True)
  >>> float(y.sum()), float(y.max())
  (1.0, 1.0)
  >>> schedule = temperature_schedule('linear', 10.0, 0.1, 100)
  >>> round(float(schedule(0)), 4), round(float(schedule(100)), 4)
  (10.0, 0.1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import optax

from paramsel_jax.protocol import checks
from paramsel_jax.structure.space import SearchSpace

SCHEDULES = ('exponential', 'linear', 'constant')
Structure = dict[str, jax.Array]  # choice name -> (num_candidates,) vector.


def gumbel_softmax(key: jax.Array, logits: ArrayLike, temperature: ArrayLike,
                   *, hard: bool = False, axis: int = -1) -> jax.Array:
  """A Gumbel-softmax sample of a categorical distribution.

  Args:
    key: PRNG key of the Gumbel noise.
    logits: unnormalised log-probabilities over ``axis``.
    temperature: ``tau > 0``; lower is closer to one-hot.
    hard: if True, the value is exactly one-hot (the argmax of the soft
      sample) and the gradient is the soft sample's (straight-through).
    axis: the candidate axis.

  Returns:
    An array of ``logits``' shape; along ``axis`` it is non-negative and sums
    to 1 (exactly one-hot when ``hard``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> y = gumbel_softmax(jax.random.key(1), jnp.array([0., 5.]), 0.01)
    >>> [round(float(v), 3) for v in y]
    [0.0, 1.0]
  """
  logits = jnp.asarray(logits, jnp.float32)
  g = jax.random.gumbel(key, logits.shape, logits.dtype)
  soft = jax.nn.softmax((logits + g) / temperature, axis=axis)
  if not hard:
    return soft
  index = jnp.argmax(soft, axis=axis)
  one_hot = jax.nn.one_hot(index, logits.shape[axis], axis=axis,
                           dtype=soft.dtype)
  # `soft - stop_gradient(soft)` is exactly 0.0, so the value is exactly the
  # one-hot vector, while the gradient is the soft sample's.
  return one_hot + (soft - jax.lax.stop_gradient(soft))


def temperature_schedule(kind: str, tau0: float, tau_min: float,
                         steps: int) -> Callable[[ArrayLike], jax.Array]:
  """A temperature schedule ``step -> tau`` from ``tau0`` to ``tau_min``.

  Built from optax's schedules: ``'exponential'`` is
  ``optax.exponential_decay`` (``tau0 * (tau_min / tau0) ** (step / steps)``,
  held at ``tau_min`` after ``steps``); ``'linear'`` is
  ``optax.linear_schedule`` (``tau0 + (tau_min - tau0) * step / steps``; GDAS
  anneals 10 -> 0.1 linearly); ``'constant'`` is
  ``optax.constant_schedule(tau0)``. A step before 0 gives ``tau0``, one
  after ``steps`` gives ``tau_min``.

  Args:
    kind: one of :data:`SCHEDULES`.
    tau0: the initial temperature, a finite float ``> 0``.
    tau_min: the final temperature, ``0 < tau_min <= tau0``.
    steps: the number of steps from ``tau0`` to ``tau_min``, an int ``>= 1``.

  Returns:
    A jittable function of the (integer) step, returning a float32 scalar.

  Raises:
    ValueError: on an unknown ``kind`` or inconsistent temperatures.

  Example:
    >>> s = temperature_schedule('exponential', 1.0, 0.01, 10)
    >>> round(float(s(5)), 4)
    0.1
  """
  check_temperatures(kind, tau0, tau_min, steps)
  if kind == 'linear':
    schedule = optax.linear_schedule(tau0, tau_min, steps)
  elif kind == 'exponential':
    schedule = optax.exponential_decay(tau0, steps, tau_min / tau0,
                                       end_value=tau_min)
  else:
    schedule = optax.constant_schedule(tau0)
  return lambda step: jnp.asarray(schedule(step), jnp.float32)


def check_temperatures(kind: str, tau0: float, tau_min: float, steps: int,
                       *, prefix: str = '', steps_name: str = 'steps'
                       ) -> None:
  """Raises ValueError unless the schedule settings are consistent.

  Args:
    kind: the schedule's name.
    tau0: the initial temperature.
    tau_min: the final temperature.
    steps: the steps from ``tau0`` to ``tau_min``.
    prefix: prepended to the names in messages (``'SearchConfig.'``).
    steps_name: the name of ``steps`` in messages.

  Example:
    >>> check_temperatures('linear', 1.0, 2.0, 10)
    Traceback (most recent call last):
    ...
    ValueError: tau_min=2.0 > tau0=1.0; accepted: 0 < tau_min <= tau0 (the \
temperature is annealed down).
  """
  checks.one_of(f'{prefix}schedule', kind, SCHEDULES)
  checks.real(f'{prefix}tau0', tau0, above=0)
  checks.real(f'{prefix}tau_min', tau_min, above=0)
  if tau_min > tau0:
    raise ValueError(f'{prefix}tau_min={tau_min!r} > {prefix}tau0={tau0!r}; '
                     'accepted: 0 < tau_min <= tau0 (the temperature is '
                     'annealed down).')
  checks.integer(f'{prefix}{steps_name}', steps, at_least=1)


def init_logits(space: SearchSpace, key: jax.Array | None = None,
                scale: float = 1e-3) -> Structure:
  """Structure logits of ``space``: zeros (uniform), or ``scale * N(0, 1)``.

  Example:
    >>> from paramsel_jax.structure.presets import mlp_space
    >>> logits = init_logits(mlp_space((8, 8, 1), 3, widths=(4, 8), depth=1))
    >>> {k: v.shape for k, v in logits.items()}
    {'dense0/activation': (6,), 'dense0/width': (2,)}
  """
  out = {}
  for i, (name, cands) in enumerate(space.choices()):
    if key is None:
      out[name] = jnp.zeros((len(cands),), jnp.float32)
    else:
      out[name] = scale * jax.random.normal(jax.random.fold_in(key, i),
                                            (len(cands),), jnp.float32)
  return out


def sample_structure(key: jax.Array, logits: Mapping[str, jax.Array],
                     temperature: ArrayLike, *, hard: bool = False
                     ) -> Structure:
  """A Gumbel-softmax sample of every choice, keys folded in by position.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> s = sample_structure(jax.random.key(0), {'a': jnp.zeros(3)}, 1.0,
    ...                      hard=True)
    >>> float(s['a'].sum())
    1.0
  """
  return {
      name: gumbel_softmax(jax.random.fold_in(key, i), logits[name],
                           temperature, hard=hard)
      for i, name in enumerate(sorted(logits))
  }


def probabilities(logits: Mapping[str, jax.Array]) -> Structure:
  """``softmax`` of every choice's logits."""
  return {k: jax.nn.softmax(v) for k, v in logits.items()}


def entropy(probs: Mapping[str, jax.Array]) -> jax.Array:
  """Mean over choices of the entropy (nats) of each choice distribution.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(entropy({'a': jnp.ones(4) / 4, 'b': jnp.eye(2)[0]})), 4)
    0.6931
  """
  terms = [-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)),
                              0.0)) for p in probs.values()]
  if not terms:
    return jnp.zeros((), jnp.float32)
  return jnp.mean(jnp.stack(terms))


def argmax_structure(logits: Mapping[str, Any]) -> dict[str, int]:
  """The most likely candidate index of every choice."""
  return {k: int(jnp.argmax(jnp.asarray(v))) for k, v in logits.items()}
