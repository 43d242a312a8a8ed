# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Checks of the Langevin transforms' hyper-parameters, where they are made.

A concrete number is checked at once, with one message naming it; an array or
a schedule (``inject_hyperparams``, an optax schedule) is left to the caller,
as it may be traced. Unlike :mod:`paramsel_jax.protocol.checks` (the configs'
strict field checks), an int is a fine real number here.

Example:
  >>> check_learning_rate(0.1)
  >>> check_learning_rate(lambda count: 0.1)  # a schedule: not checked here.
  >>> check_nonnegative('temperature', -1.0)
  Traceback (most recent call last):
  ...
  ValueError: temperature=-1.0; accepted: a finite number >= 0.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable


def check_number(name: str, value: Any, ok: Callable[[float], bool],
                 accepted: str) -> None:
  """ValueError naming `value` unless `ok(value)`; a concrete number only.

  Values that are arrays or schedules (`inject_hyperparams`, optax schedules)
  are left to the caller.

  Args:
    name: the hyper-parameter's name in the message.
    value: its value.
    ok: whether a finite value is accepted.
    accepted: what is, for the message (``'a number in [0, 1)'``).

  Example:
    >>> check_number('decay', 1.0, lambda v: 0 <= v < 1, 'a number in [0, 1)')
    Traceback (most recent call last):
    ...
    ValueError: decay=1.0; accepted: a number in [0, 1).
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return
  if not (math.isfinite(value) and ok(float(value))):
    raise ValueError(f'{name}={value!r}; accepted: {accepted}.')


def check_learning_rate(learning_rate: Any) -> None:
  """ValueError unless a concrete `learning_rate` is finite and > 0.

  Example:
    >>> check_learning_rate(0.0)
    Traceback (most recent call last):
    ...
    ValueError: learning_rate=0.0; accepted: a finite number > 0, or an optax schedule.
  """
  check_number('learning_rate', learning_rate, lambda v: v > 0,
               'a finite number > 0, or an optax schedule')


def check_nonnegative(name: str, value: Any) -> None:
  """ValueError unless a concrete `value` is finite and >= 0.

  Example:
    >>> check_nonnegative('eps', float('inf'))
    Traceback (most recent call last):
    ...
    ValueError: eps=inf; accepted: a finite number >= 0.
  """
  check_number(name, value, lambda v: v >= 0, 'a finite number >= 0')
