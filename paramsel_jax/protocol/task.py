"""What the protocol trains: a classifier and its data, checked where they enter.

A :class:`Task` is a model (``init_fn(key) -> params``, any pytree, e.g. a
flax module's ``params``; ``apply_fn(params, images) -> logits``) and two
labelled splits, each ``(images, labels)``: the training data ``D`` and the
held-out split the protocol reports. The images have a leading example axis
and any shape after it. Everything is checked when the task is made, with
one message naming the bad value:

- numpy arrays are accepted and moved to the device (the protocol samples
  minibatches inside its jitted loop);
- images are ``uint8`` (``0..255``, scaled to ``[0, 1]`` by the step) or
  floats already in ``[0, 1]``, which are used as they are, never divided by
  255 again;
- labels are a 1-D integer array, one per image, ``>= 0``.

What needs the model is checked by :func:`check_model` (``run_protocol``
calls it before any work): the output is one row of logits per image, every
label is below the number of logits, and the output is not probabilities
(the loss applies log-softmax itself). With the active step at unit
granularity, ``run_protocol`` also checks, before η0, that every module with
params is a flax linen layer it can split into units
(:func:`paramsel_jax.freeze.active_check.check_active_step`): a hand-written ``apply_fn``
or an NNX module trains there with ``step='masked'`` or at ``'layer'`` or
``'element'`` granularity.

Example:
  >>> import numpy as np
  >>> images = np.zeros((4, 2, 2, 1), np.float32)
  >>> Task(lambda key: {}, lambda p, x: x, images, np.array([0, 1, 2, 3]),
  ...      images * 2 - 1, np.zeros(4, np.int32))
  Traceback (most recent call last):
  ...
  ValueError: test_images: float values in [-1, -1]; accepted: uint8 \
(0..255) or floats in [0, 1] (used as they are, never divided by 255).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax import models
from paramsel_jax.train import steps

PyTree = Any
# How many images check_model runs the model on.
CHECK_EXAMPLES = 16


def _images(name: str, images: Any) -> jax.Array:
  """``images`` as a device array; ValueError unless uint8 or [0, 1] floats."""
  if not isinstance(images, (np.ndarray, jax.Array)):
    raise ValueError(f'{name} is a {type(images).__name__}; accepted: a numpy '
                     'or jax array with a leading example axis.')
  if images.ndim < 2 or images.shape[0] < 1:
    raise ValueError(f'{name} has shape {tuple(images.shape)}; accepted: '
                     '(examples, ...) with at least one example.')
  dtype = np.dtype(images.dtype)
  if np.issubdtype(dtype, np.floating):
    lo, hi = float(jnp.min(images)), float(jnp.max(images))
    if not (0.0 <= lo and hi <= 1.0):
      raise ValueError(f'{name}: float values in [{lo:g}, {hi:g}]; accepted: '
                       'uint8 (0..255) or floats in [0, 1] (used as they are, '
                       'never divided by 255).')
  elif dtype != np.uint8:
    raise ValueError(f'{name} has dtype {dtype}; accepted: uint8 (0..255) or '
                     'floats in [0, 1].')
  return jnp.asarray(images)


def _labels(name: str, labels: Any, num_images: int) -> jax.Array:
  """``labels`` as a device array; ValueError unless 1-D ints >= 0."""
  if not isinstance(labels, (np.ndarray, jax.Array)):
    raise ValueError(f'{name} is a {type(labels).__name__}; accepted: a numpy '
                     'or jax array of int labels.')
  if labels.shape != (num_images,):
    raise ValueError(f'{name} has shape {tuple(labels.shape)}; accepted: '
                     f'({num_images},), one label per image.')
  if not np.issubdtype(np.dtype(labels.dtype), np.integer):
    raise ValueError(f'{name} has dtype {labels.dtype}; accepted: integer '
                     'class labels.')
  if int(jnp.min(labels)) < 0:
    raise ValueError(f'{name} holds {int(jnp.min(labels))}; accepted: class '
                     'labels >= 0.')
  return jnp.asarray(labels)


@dataclasses.dataclass(frozen=True)
class Task:
  """A classifier and its data, as device arrays and pure functions.

  Attributes:
    init_fn: ``key -> params`` (any pytree of float arrays).
    apply_fn: ``(params, float images in [0, 1]) -> logits``.
    train_images, train_labels: the training data ``D``: uint8 images or
      float images in ``[0, 1]``, and int labels (numpy accepted).
    test_images, test_labels: the held-out split, likewise.
  """

  init_fn: Callable[[jax.Array], PyTree]
  apply_fn: Callable[[PyTree, jax.Array], jax.Array]
  train_images: jax.Array
  train_labels: jax.Array
  test_images: jax.Array
  test_labels: jax.Array

  def __post_init__(self):
    for name in ('init_fn', 'apply_fn'):
      if not callable(getattr(self, name)):
        raise ValueError(f'{name}={getattr(self, name)!r}; accepted: a '
                         'function.')
    for split in ('train', 'test'):
      images = _images(f'{split}_images', getattr(self, f'{split}_images'))
      labels = _labels(f'{split}_labels', getattr(self, f'{split}_labels'),
                       images.shape[0])
      object.__setattr__(self, f'{split}_images', images)
      object.__setattr__(self, f'{split}_labels', labels)
    if self.train_images.shape[1:] != self.test_images.shape[1:]:
      raise ValueError(f'test_images have shape {self.test_images.shape[1:]} '
                       'per example; accepted: the training images\' '
                       f'{self.train_images.shape[1:]}.')


def linen_task(model: nn.Module, input_shape: Sequence[int],
               train: tuple[Any, Any], test: tuple[Any, Any]) -> Task:
  """The `Task` of a flax linen classifier and two `(images, labels)` splits.

  ``init_fn`` is ``models.init_params`` for inputs of ``input_shape`` (one
  example's shape), ``apply_fn`` applies the module to ``{'params': params}``.

  Example:
    >>> import numpy as np, flax.linen as nn
    >>> x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])
    >>> task = linen_task(nn.Dense(2), (3,), (x, y), (x, y))
    >>> task.apply_fn(task.init_fn(jax.random.key(0)), task.train_images).shape
    (4, 2)
  """
  shape = tuple(input_shape)
  return Task(
      init_fn=lambda key: models.init_params(model, key, shape),
      # flax types `apply` as returning (output, state) too, for `mutable`.
      apply_fn=lambda params, x: model.apply(  # type: ignore[arg-type, return-value]
          {'params': params}, x),
      train_images=train[0], train_labels=train[1],
      test_images=test[0], test_labels=test[1])


def check_model(task: Task, key: jax.Array) -> int:
  """The number of classes; ValueError if the model does not fit the data.

  Runs ``init_fn`` and ``apply_fn`` once, on the first
  :data:`CHECK_EXAMPLES` training images.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((4, 3), jnp.uint8)
    >>> task = Task(lambda key: {'w': jnp.ones((3, 5))},
    ...             lambda p, x: jax.nn.softmax(x @ p['w']),
    ...             x, jnp.array([0, 1, 2, 3]), x, jnp.array([0, 1, 2, 3]))
    >>> check_model(task, jax.random.key(0))
    Traceback (most recent call last):
    ...
    ValueError: apply_fn returns probabilities (every row is >= 0 and sums \
to 1); accepted: logits (the loss applies log-softmax itself).
  """
  params = task.init_fn(key)
  x = steps.to_float(task.train_images[:CHECK_EXAMPLES])
  out = task.apply_fn(params, x)
  if getattr(out, 'ndim', None) != 2 or out.shape[0] != x.shape[0]:
    raise ValueError(f'apply_fn returns shape {getattr(out, "shape", out)} '
                     f'for {x.shape[0]} images; accepted: ({x.shape[0]}, '
                     'classes) logits.')
  classes = int(out.shape[1])
  for split in ('train', 'test'):
    top = int(jnp.max(getattr(task, f'{split}_labels')))
    if top >= classes:
      raise ValueError(f'{split}_labels hold {top}; accepted: labels below '
                       f'the model\'s {classes} logits.')
  rows = np.asarray(out, np.float64)
  if (classes > 1 and rows.min() >= 0
      and np.allclose(rows.sum(axis=1), 1.0, atol=1e-4)):
    raise ValueError('apply_fn returns probabilities (every row is >= 0 and '
                     'sums to 1); accepted: logits (the loss applies '
                     'log-softmax itself).')
  return classes
