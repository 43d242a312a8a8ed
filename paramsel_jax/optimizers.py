"""Optimizers chosen by name from a plain config, as in the flax examples."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Which optimizer `T` is, with its hyperparameters.

  Attributes:
    name: one of `OPTIMIZERS`.
    learning_rate: γ.
    momentum: for 'momentum' (heavy ball SGD).
    b1, b2: Adam's decay rates.
    decay: RMSprop's / pSGLD's decay of the squared-gradient average.
    eps: the preconditioner's λ (RMSprop, Adam, pSGLD).
    temperature: the Langevin temperature T (sgld, psgld).
  """

  name: str = 'adam'
  learning_rate: float = 1e-3
  momentum: float = 0.9
  b1: float = 0.9
  b2: float = 0.999
  decay: float = 0.99
  eps: float = 1e-8
  temperature: float = 1.0


def _sgd(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.sgd(c.learning_rate)


def _momentum(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.sgd(c.learning_rate, momentum=c.momentum)


def _adam(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.adam(c.learning_rate, b1=c.b1, b2=c.b2, eps=c.eps)


def _rmsprop(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.rmsprop(c.learning_rate, decay=c.decay, eps=c.eps)


OptimizerFactory = Callable[[OptimizerConfig, int, int],
                            optax.GradientTransformation]

OPTIMIZERS: dict[str, OptimizerFactory] = {
    'sgd': _sgd,
    'momentum': _momentum,
    'adam': _adam,
    'rmsprop': _rmsprop,
}


def validate_optimizer_config(config: OptimizerConfig) -> None:
  """Raises ValueError naming the first bad field and what is accepted."""
  if config.name not in OPTIMIZERS:
    raise ValueError(f'Unknown optimizer {config.name!r}; accepted: '
                     f'{", ".join(OPTIMIZERS)}.')
  for field in ('learning_rate', 'eps'):
    value = getattr(config, field)
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f'{field}={value!r}; accepted: a finite number > 0.')
  for field in ('momentum', 'b1', 'b2', 'decay'):
    value = getattr(config, field)
    if not (math.isfinite(value) and 0 <= value < 1):
      raise ValueError(f'{field}={value!r}; accepted: a number in [0, 1).')
  if not (math.isfinite(config.temperature) and config.temperature >= 0):
    raise ValueError(f'temperature={config.temperature!r}; accepted: a finite '
                     'number >= 0.')


def create_optimizer(
    config: OptimizerConfig, *, num_data: int = 1, seed: int = 0
) -> optax.GradientTransformation:
  """The optax optimizer named by `config.name`.

  Args:
    config: the optimizer's name and hyperparameters.
    num_data: the training-set size n (Langevin noise scales with 1/n).
    seed: seeds the Langevin noise of sgld / psgld.

  Example:
    >>> import jax.numpy as jnp
    >>> tx = create_optimizer(OptimizerConfig('momentum', learning_rate=0.1))
    >>> _ = tx.init(jnp.zeros(3))
  """
  validate_optimizer_config(config)
  return OPTIMIZERS[config.name](config, num_data, seed)
