"""Optimizers chosen by name from a plain config, as in the flax examples."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable

import optax

from paramsel_jax.optim import langevin


# Learning rates used when none is given, chosen on MNIST's validation split
# (LeNet-300-100, batch 128, 2000 steps, 2 seeds; BUILD_NOTES.md, "Default
# learning rates"): SGD at Adam's 1e-3 reached 24% in 200 steps.
DEFAULT_LEARNING_RATES: dict[str, float] = {
    'sgd': 0.3,
    'momentum': 0.03,
    'adam': 1e-3,
    'rmsprop': 1e-3,
    'sgld': 0.1,
    'psgld': 1e-3,
}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Which optimizer `T` is, with its hyperparameters; checked when made.

  Attributes:
    name: one of `OPTIMIZERS`.
    learning_rate: γ; None: the optimizer's default
      (`DEFAULT_LEARNING_RATES`, see `resolved`).
    momentum: for 'momentum' (heavy ball SGD).
    b1, b2: Adam's decay rates.
    decay: RMSprop's / pSGLD's decay of the squared-gradient average.
    eps: the preconditioner's λ (RMSprop, Adam, pSGLD); None: each
      optimizer's usual default (1e-8 for Adam and RMSprop, 1e-5 for pSGLD as
      in Li et al. 2016).
    temperature: the Langevin temperature T (sgld, psgld); 0 turns pSGLD into
      RMSprop with pSGLD's preconditioner, and SGLD into SGD.
    weight_decay: wd; adds wd·w to the gradient before the optimizer (an L2
      penalty ½·wd·|w|² on the mean loss; for sgld / psgld a Gaussian prior
      N(0, 1/(n·wd)) on each weight). 0: none.
    decay_steps: > 0: the learning rate follows a cosine from γ down to 0
      over this many steps, then stays 0 (sgd, momentum, adam, rmsprop; the
      Langevin noise of sgld / psgld is tied to γ, so they take a constant
      γ). 0: constant γ.

  Example:
    >>> OptimizerConfig('sgd').resolved().learning_rate
    0.3
    >>> OptimizerConfig('adam', learning_rate=float('inf'))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: learning_rate=inf; accepted: a finite number > 0, or None for the optimizer's
    default.
  """

  name: str = 'adam'
  learning_rate: float | None = None
  momentum: float = 0.9
  b1: float = 0.9
  b2: float = 0.999
  decay: float = 0.99
  eps: float | None = None
  temperature: float = 1.0
  weight_decay: float = 0.0
  decay_steps: int = 0

  def __post_init__(self):
    validate_optimizer_config(self)

  def resolved(self) -> OptimizerConfig:
    """The same config with the default learning rate filled in."""
    if self.learning_rate is not None:
      return self
    return dataclasses.replace(
        self, learning_rate=DEFAULT_LEARNING_RATES[self.name])


def learning_rate(c: OptimizerConfig) -> optax.ScalarOrSchedule:
  """γ, or its cosine schedule when `c.decay_steps > 0`.

  Example:
    >>> lr = learning_rate(OptimizerConfig(learning_rate=1.0, decay_steps=4))
    >>> [round(float(lr(t)), 6) for t in (0, 2, 4, 9)]
    [1.0, 0.5, 0.0, 0.0]
  """
  if c.decay_steps:
    return optax.cosine_decay_schedule(c.learning_rate, c.decay_steps)
  return c.learning_rate


def _sgd(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.sgd(learning_rate(c))


def _momentum(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.sgd(learning_rate(c), momentum=c.momentum)


def _eps(c: OptimizerConfig, default: float) -> float:
  return default if c.eps is None else c.eps


def _adam(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.adam(learning_rate(c), b1=c.b1, b2=c.b2, eps=_eps(c, 1e-8))


def _rmsprop(c: OptimizerConfig, num_data: int, seed: int):
  del num_data, seed
  return optax.rmsprop(learning_rate(c), decay=c.decay, eps=_eps(c, 1e-8))


def _sgld(c: OptimizerConfig, num_data: int, seed: int):
  return langevin.sgld(c.learning_rate, temperature=c.temperature,
                       num_data=num_data, seed=seed)


def _psgld(c: OptimizerConfig, num_data: int, seed: int):
  return langevin.psgld(c.learning_rate, decay=c.decay, eps=_eps(c, 1e-5),
                        temperature=c.temperature, num_data=num_data, seed=seed)


OptimizerFactory = Callable[[OptimizerConfig, int, int],
                            optax.GradientTransformation]

OPTIMIZERS: dict[str, OptimizerFactory] = {
    'sgd': _sgd,
    'momentum': _momentum,
    'adam': _adam,
    'rmsprop': _rmsprop,
    'sgld': _sgld,
    'psgld': _psgld,
}


def _is_number(value) -> bool:
  return not isinstance(value, bool) and isinstance(value, numbers.Real)


def validate_optimizer_config(config: OptimizerConfig) -> None:
  """Raises ValueError naming the first bad field and what is accepted."""
  if config.name not in OPTIMIZERS:
    raise ValueError(f'Unknown optimizer {config.name!r}; accepted: '
                     f'{", ".join(OPTIMIZERS)}.')
  for field, default in (('learning_rate', "the optimizer's default"),
                         ('eps', "each optimizer's usual λ")):
    value = getattr(config, field)
    if value is None:
      continue
    if not (_is_number(value) and math.isfinite(value) and value > 0):
      raise ValueError(f'{field}={value!r}; accepted: a finite number > 0, or '
                       f'None for {default}.')
  for field in ('momentum', 'b1', 'b2', 'decay'):
    value = getattr(config, field)
    if not (_is_number(value) and math.isfinite(value) and 0 <= value < 1):
      raise ValueError(f'{field}={value!r}; accepted: a number in [0, 1).')
  for field in ('temperature', 'weight_decay'):
    value = getattr(config, field)
    if not (_is_number(value) and math.isfinite(value) and value >= 0):
      raise ValueError(f'{field}={value!r}; accepted: a finite number >= 0.')
  steps = config.decay_steps
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
    raise ValueError(f'decay_steps={steps!r}; accepted: an integer >= 0 '
                     '(0: constant learning rate).')
  if steps and config.name in ('sgld', 'psgld'):
    raise ValueError(f'decay_steps={steps} with optimizer {config.name!r}: '
                     'the Langevin noise is tied to a constant learning rate; '
                     'accepted: decay_steps=0 for sgld and psgld.')


def create_optimizer(
    config: OptimizerConfig, *, num_data: int = 1, seed: int = 0
) -> optax.GradientTransformation:
  """The optax optimizer named by `config.name`.

  Args:
    config: the optimizer's name and hyperparameters.
    num_data: the training-set size n (Langevin noise scales with 1/n).
    seed: seeds the Langevin noise of sgld / psgld (the protocol reseeds it
      per run with `langevin.reseed`).

  Example:
    >>> import jax.numpy as jnp
    >>> tx = create_optimizer(OptimizerConfig('momentum', learning_rate=0.1))
    >>> _ = tx.init(jnp.zeros(3))
  """
  config = config.resolved()
  tx = OPTIMIZERS[config.name](config, num_data, seed)
  if config.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
  return tx
