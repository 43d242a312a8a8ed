# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""When the masks change, and to which sparsity: the pruning schedules.

A schedule answers two questions about a step `t` (a traced int is fine):
`is_update(t)`, whether the masks are re-chosen at `t`, and `sparsity(t,
target)`, the sparsity they are re-chosen to. All four schedules of
jaxpruner, with the same meaning:

* `one_shot(step)`: the target, once, at `step`;
* `periodic(every, begin, end)`: the target at `begin`, `begin + every`, ...
  while `< end` (re-chosen masks at a constant sparsity: SET, RigL);
* `polynomial(every, begin, end, initial, power)`: Zhu & Gupta (2017)'s
  gradual pruning, `s_t = s + (s_0 - s) (1 - (t - begin) / (end - begin))^3`,
  at `begin`, `begin + every`, ... and at `end`, where it reaches the target;
* `no_update()`: never; the masks are those chosen at `init`.

  >>> s = polynomial(every=10, begin=0, end=100)
  >>> [round(float(s.sparsity(t, 0.9)), 4) for t in (0, 50, 100, 200)]
  [0.0, 0.7875, 0.9, 0.9]
  >>> [bool(s.is_update(t)) for t in (0, 5, 10, 100, 110)]
  [True, False, True, True, False]
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp


def _integer(name: str, value: object, at_least: int) -> int:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value < at_least):
    raise ValueError(f'{name}={value!r}; accepted: an integer >= {at_least}.')
  return int(value)


def check_sparsity(value: object, name: str = 'sparsity') -> float:
  """`value` as a float in [0, 1); ValueError naming it otherwise.

  Example:
    >>> check_sparsity(0.95)
    0.95
    >>> check_sparsity(1.0)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: sparsity=1.0 is outside [0, 1); accepted: the fraction of
    weights pruned, 0 <= sparsity < 1 (1 would prune every weight).
  """
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not 0 <= float(value) < 1):
    raise ValueError(f'{name}={value!r} is outside [0, 1); accepted: the '
                     f'fraction of weights pruned, 0 <= {name} < 1 (1 would '
                     'prune every weight).')
  return float(value)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Base: updates at `begin, begin + every, ...` while `< end`, and at `end`.

  Attributes:
    every: steps between two mask updates (0: only at `begin`).
    begin: the first update's step.
    end: the last update's step (None: no last one).
  """

  every: int = 0
  begin: int = 0
  end: int | None = None

  def __post_init__(self):
    _integer('begin', self.begin, 0)
    _integer('every', self.every, 0)
    if self.end is not None:
      _integer('end', self.end, 0)
      if self.end <= self.begin:
        raise ValueError(
            f'{type(self).__name__}: end={self.end} is not after '
            f'begin={self.begin}; accepted: end > begin (the schedule would '
            'end before it begins).')

  def is_update(self, step: jax.typing.ArrayLike) -> jax.Array:
    """Whether the masks are re-chosen at `step` (a bool array)."""
    step = jnp.asarray(step)
    since = step - self.begin
    on_grid = (since == 0) if self.every == 0 else (since % self.every == 0)
    hit = (since >= 0) & on_grid
    if self.end is not None:
      hit = (hit & (step < self.end)) | (step == self.end)
    return hit

  def sparsity(self, step: jax.typing.ArrayLike, target: float
               ) -> jax.Array | float:
    """The sparsity the masks are re-chosen to at `step`: the target.

    A Python float where it does not depend on the step (a static count).
    """
    del step
    return float(target)

  @property
  def updates(self) -> bool:
    """False for `no_update`: the masks never change after `init`."""
    return True

  def last_step(self) -> int | None:
    """The step of the last update (None: updates go on for ever)."""
    if self.end is not None:
      return self.end
    return self.begin if self.every == 0 else None


@dataclasses.dataclass(frozen=True)
class OneShot(Schedule):
  """The target at one step."""

  def __post_init__(self):
    super().__post_init__()
    if self.every or self.end is not None:
      raise ValueError('one_shot takes only `step`.')


@dataclasses.dataclass(frozen=True)
class Periodic(Schedule):
  """The target at `begin`, `begin + every`, ... while `< end`."""

  def __post_init__(self):
    super().__post_init__()
    _integer('every', self.every, 1)

  def is_update(self, step: jax.typing.ArrayLike) -> jax.Array:
    """Whether the masks are re-chosen at `step`."""
    step = jnp.asarray(step)
    since = step - self.begin
    hit = (since >= 0) & (since % self.every == 0)
    return hit if self.end is None else hit & (step < self.end)

  def last_step(self) -> int | None:
    """The step of the last update (None: never or for ever)."""
    if self.end is None:
      return None
    return self.begin + (self.end - 1 - self.begin) // self.every * self.every


@dataclasses.dataclass(frozen=True)
class Polynomial(Schedule):
  """Zhu & Gupta's gradual sparsity, from `initial` at `begin` to the target at `end`."""

  initial: float = 0.0
  power: float = 3.0

  def __post_init__(self):
    super().__post_init__()
    _integer('every', self.every, 1)
    if self.end is None:
      raise ValueError('polynomial needs end=, the step where it reaches the '
                       'target; accepted: an integer > begin.')
    check_sparsity(self.initial, 'initial')
    if not isinstance(self.power, numbers.Real) or self.power <= 0:
      raise ValueError(f'power={self.power!r}; accepted: a number > 0 (3: '
                       'Zhu & Gupta).')

  def sparsity(self, step: jax.typing.ArrayLike, target: float
               ) -> jax.Array | float:
    """The sparsity at `step` for a final `target`."""
    assert self.end is not None
    frac = jnp.clip((jnp.asarray(step, jnp.float32) - self.begin)
                    / (self.end - self.begin), 0.0, 1.0)
    return (target + (self.initial - target) * (1.0 - frac) ** self.power
            ).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class NoUpdate(Schedule):
  """Never: the masks stay those chosen at `init`."""

  def is_update(self, step: jax.typing.ArrayLike) -> jax.Array:
    """Whether the masks are re-chosen at `step`."""
    return jnp.zeros(jnp.shape(step), bool)

  @property
  def updates(self) -> bool:
    """Whether the masks ever change after `init`."""
    return False

  def last_step(self) -> int | None:
    """The step of the last update (None: never or for ever)."""
    return None


def one_shot(step: int = 0) -> Schedule:
  """Prune to the target once, at `step`.

  Example:
    >>> [bool(one_shot(3).is_update(t)) for t in range(5)]
    [False, False, False, True, False]
  """
  return OneShot(begin=step)


def periodic(every: int, begin: int = 0, end: int | None = None) -> Schedule:
  """Re-choose the masks at the target every `every` steps in `[begin, end)`.

  Example:
    >>> [t for t in range(12) if periodic(4, begin=2, end=10).is_update(t)]
    [2, 6]
  """
  return Periodic(every=every, begin=begin, end=end)


def polynomial(every: int, begin: int, end: int, initial: float = 0.0,
               power: float = 3.0) -> Schedule:
  """Zhu & Gupta (2017): sparsity rising from `initial` to the target.

  Updates at `begin, begin + every, ...` and at `end`, where the sparsity
  reaches the target; after `end` nothing changes.

  Example:
    >>> polynomial(every=10, begin=100, end=50)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: Polynomial: end=50 is not after begin=100; accepted: end >
    begin (the schedule would end before it begins).
  """
  return Polynomial(every=every, begin=begin, end=end, initial=initial,
                    power=power)


def no_update() -> Schedule:
  """Never update: the masks are those `init` chose (static sparse training).

  Example:
    >>> bool(no_update().is_update(0))
    False
  """
  return NoUpdate()
