"""Field checks of the configs: one ``ValueError`` per bad field.

The configs (the structure search's :class:`~.structure.search.SearchConfig`,
:class:`~.structure.training.TrainConfig`, ..., and the protocol's seeds)
check their fields in ``__post_init__`` with these functions, so a bad value
is rejected where the config is made, with one message that names the field,
the bad value and what is accepted.
The rules are strict on purpose:

* an int is an int: a float (even ``2.0``) or a bool is not one;
* a float is a finite real number (an int is fine; a bool, ``nan`` or
  ``inf`` is not);
* a bool is a bool (``1`` or ``2`` is not one);
* a seed is an int in ``[0, 2**32)``, the range of ``jax.random.key``'s
  uint32 seed.

Example:
  >>> integer('TrainConfig.steps', 2.0, at_least=1)
  Traceback (most recent call last):
  ...
  ValueError: TrainConfig.steps=2.0; accepted: an int >= 1.
  >>> real('SearchConfig.tau0', float('inf'), above=0)
  Traceback (most recent call last):
  ...
  ValueError: SearchConfig.tau0=inf; accepted: a finite float > 0.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
import math
import numbers
from typing import Any, NoReturn

import numpy as np

SEED_LIMIT = 2**32  # Seeds are uint32.


def _fail(name: str, value: Any, accepted: str) -> NoReturn:
  raise ValueError(f'{name}={value!r}; accepted: {accepted}.')


def _bounds(at_least: float | None = None, above: float | None = None,
            below: float | None = None) -> str:
  parts = [f'{op} {v}' for op, v in (('>=', at_least), ('>', above),
                                      ('<', below)) if v is not None]
  return ' and '.join(parts)


def _in_bounds(v: float, at_least: float | None = None,
               above: float | None = None, below: float | None = None) -> bool:
  return ((at_least is None or v >= at_least) and (above is None or v > above)
          and (below is None or v < below))


def is_int(value: Any) -> bool:
  """Whether ``value`` is an int (numpy ints too), not a bool or a float.

  Example:
    >>> is_int(3), is_int(3.0), is_int(True)
    (True, False, False)
  """
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
  """Whether ``value`` is a finite real number, not a bool.

  Example:
    >>> is_real(1), is_real(0.5), is_real(float('nan')), is_real(False)
    (True, True, False, False)
  """
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


def is_bool(value: Any) -> bool:
  """Whether ``value`` is a bool (numpy's too), not an int.

  Example:
    >>> is_bool(True), is_bool(1)
    (True, False)
  """
  return isinstance(value, (bool, np.bool_))


def integer(name: str, value: Any, *, at_least: int | None = None,
            below: int | None = None, optional: bool = False) -> None:
  """Raises unless ``value`` is an int in bounds (or None, if ``optional``).

  Example:
    >>> integer('random_samples', None, at_least=0, optional=True)
    >>> integer('steps', 0, at_least=1)
    Traceback (most recent call last):
    ...
    ValueError: steps=0; accepted: an int >= 1.
  """
  if optional and value is None:
    return
  if not (is_int(value) and _in_bounds(value, at_least, below=below)):
    bounds = _bounds(at_least, below=below)
    _fail(name, value, ('None or ' if optional else '') + 'an int'
          + (f' {bounds}' if bounds else ''))


def real(name: str, value: Any, *, at_least: float | None = None,
         above: float | None = None, below: float | None = None) -> None:
  """Raises unless ``value`` is a finite real number in bounds.

  Example:
    >>> real('arch_b1', 1.0, at_least=0, below=1)
    Traceback (most recent call last):
    ...
    ValueError: arch_b1=1.0; accepted: a finite float >= 0 and < 1.
  """
  if not (is_real(value) and _in_bounds(value, at_least, above, below)):
    bounds = _bounds(at_least, above, below)
    _fail(name, value, 'a finite float' + (f' {bounds}' if bounds else ''))


def boolean(name: str, value: Any) -> None:
  """Raises unless ``value`` is a bool.

  Example:
    >>> boolean('hard', 2)
    Traceback (most recent call last):
    ...
    ValueError: hard=2; accepted: True or False.
  """
  if not is_bool(value):
    _fail(name, value, 'True or False')


def one_of(name: str, value: Any, accepted: Collection[str], *,
           optional: bool = False) -> None:
  """Raises unless ``value`` is one of ``accepted`` (or None, if ``optional``).

  Example:
    >>> one_of('space', 'rnn', ('mlp', 'conv'))
    Traceback (most recent call last):
    ...
    ValueError: space='rnn'; accepted: mlp, conv.
  """
  if (optional and value is None) or (isinstance(value, str)
                                      and value in accepted):
    return
  _fail(name, value, ('None or one of ' if optional else '')
        + ', '.join(accepted))


def instance(name: str, value: Any, cls: type) -> None:
  """Raises unless ``value`` is a ``cls``."""
  if not isinstance(value, cls):
    _fail(name, value, f'a {cls.__name__}')


def _sequence(name: str, values: Any, ok: Callable[[Any], bool],
              accepted: str) -> None:
  if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence)
      or not all(ok(v) for v in values)):
    _fail(name, values, accepted)


def integers(name: str, values: Any) -> None:
  """Raises unless ``values`` is a sequence of ints.

  Their range is the search space's to check.

  Example:
    >>> integers('mlp_widths', (8, 16.0))
    Traceback (most recent call last):
    ...
    ValueError: mlp_widths=(8, 16.0); accepted: a sequence of ints.
  """
  _sequence(name, values, is_int, 'a sequence of ints')


def integer_lists(name: str, values: Any) -> None:
  """Raises unless ``values`` is a sequence of sequences of ints."""
  _sequence(name, values,
            lambda v: isinstance(v, Sequence) and not isinstance(v, str)
            and all(is_int(c) for c in v),
            'a sequence of sequences of ints (one per layer)')


def booleans(name: str, values: Any) -> None:
  """Raises unless ``values`` is a sequence of bools.

  Example:
    >>> booleans('conv_pools', (True, 2))
    Traceback (most recent call last):
    ...
    ValueError: conv_pools=(True, 2); accepted: a sequence of bools.
  """
  _sequence(name, values, is_bool, 'a sequence of bools')


def strings(name: str, values: Any) -> None:
  """Raises unless ``values`` is a sequence of strings."""
  _sequence(name, values, lambda v: isinstance(v, str), 'a sequence of str')


def reals(name: str, values: Any, *, at_least: float | None = None) -> None:
  """Raises unless ``values`` is a sequence of finite floats in bounds.

  Example:
    >>> reals('input_sigmas', (0.1, -0.1), at_least=0)
    Traceback (most recent call last):
    ...
    ValueError: input_sigmas=(0.1, -0.1); accepted: a sequence of finite \
floats >= 0.
  """
  bounds = _bounds(at_least)
  _sequence(name, values, lambda v: is_real(v) and _in_bounds(v, at_least),
            'a sequence of finite floats' + (f' {bounds}' if bounds else ''))


def seeds(name: str, values: Any) -> None:
  """Raises unless ``values`` are distinct ints in ``[0, 2**32)``, at least one.

  Example:
    >>> seeds('seeds', (0, 1, 2**32 - 1))
    >>> seeds('seeds', (-1,))
    Traceback (most recent call last):
    ...
    ValueError: seeds=(-1,); accepted: one or more distinct ints in \
[0, 2**32).
  """
  accepted = 'one or more distinct ints in [0, 2**32)'
  _sequence(name, values, lambda s: is_int(s) and 0 <= s < SEED_LIMIT,
            accepted)
  if not values or len(set(values)) != len(values):
    _fail(name, values, accepted)


def fields(config: Any, names: Sequence[str], check: Callable[..., None],
           **kwargs: Any) -> None:
  """``check('<Class>.<field>', value, **kwargs)`` for each named field.

  Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...   steps: int = 1
    ...   def __post_init__(self):
    ...     fields(self, ('steps',), integer, at_least=1)
    >>> Config(steps=-3)
    Traceback (most recent call last):
    ...
    ValueError: Config.steps=-3; accepted: an int >= 1.
  """
  for field in names:
    check(f'{type(config).__name__}.{field}', getattr(config, field), **kwargs)
