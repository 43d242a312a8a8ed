# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Flax linen models for the paramsel experiments: MLPs, LeNet-5, a CIFAR CNN.

Parameters are plain pytrees (``variables['params']``). Inputs are float32 NHWC
images in ``[0, 1]``; outputs are logits of shape ``(batch, num_classes)``.

The package has one module per concern: ``conv`` (the stride-1 convolution
and the pooling as functions, :func:`conv2d` and :func:`max_pool2d`, with their
implementations and the measurements behind ``'auto'``; the :class:`Conv2D`
module) and ``nets`` (:class:`MLP`, :class:`LeNet5`, :class:`CifarCNN`). The
registry :data:`MODELS`, :func:`create_model`, :func:`init_params` and
:func:`count_params` live here.

``gpt`` (:mod:`paramsel_jax.models.gpt`) is a character-level language model
in flax NNX, not an image classifier, so it is not in :data:`MODELS`:
``create_model`` gives a linen module taking ``num_classes`` and
``init_params`` initializes it on an image shape, where the GPT takes a
vocabulary and a context and is initialized by ``gpt.init(config, key)``
(its params a plain nested dict, which :func:`count_params` counts too).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from paramsel_jax import models
  >>> model = models.create_model('lenet5')
  >>> params = models.init_params(model, jax.random.key(0), (28, 28, 1))
  >>> models.count_params(params)
  431080
  >>> model.apply({'params': params}, jnp.zeros((2, 28, 28, 1))).shape
  (2, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from paramsel_jax.models.conv import CONV_IMPLS
from paramsel_jax.models.conv import Conv2D
from paramsel_jax.models.conv import conv2d
from paramsel_jax.models.conv import max_pool2d
from paramsel_jax.models.conv import resolve_conv_impl
from paramsel_jax.models import gpt
from paramsel_jax.models.nets import CifarCNN
from paramsel_jax.models.nets import LeNet5
from paramsel_jax.models.nets import MLP

PyTree = Any

MODELS: dict[str, Callable[..., nn.Module]] = {
    'mlp': MLP,
    'lenet300': functools.partial(MLP, widths=(300, 100)),
    'fc400': functools.partial(MLP, widths=(400, 400)),
    'mlp1024': functools.partial(MLP, widths=(1024, 1024)),
    'lenet5': LeNet5,
    'cifar_cnn': CifarCNN,
}
CONV_MODELS = ('lenet5', 'cifar_cnn')  # the registered models with convolutions.


def create_model(name: str, *, num_classes: int = 10,
                 **overrides: Any) -> nn.Module:
  """Builds the model registered under ``name`` in :data:`MODELS`.

  Args:
    name: a key of :data:`MODELS`.
    num_classes: number of logits.
    **overrides: other fields of the model's dataclass, e.g. ``widths`` or
      ``conv_impl``.

  Returns:
    An unbound flax module.

  Raises:
    ValueError: when ``name`` is not registered.

  Example:
    >>> create_model('fc400').widths
    (400, 400)
    >>> create_model('lenet5', conv_impl='xla').conv_impl
    'xla'
  """
  if name not in MODELS:
    raise ValueError(
        f'Unknown model {name!r}; accepted: {", ".join(sorted(MODELS))}.')
  return MODELS[name](num_classes=num_classes, **overrides)


def init_params(model: nn.Module, key: jax.Array,
                input_shape: Sequence[int]) -> PyTree:
  """Initializes ``model``'s params for inputs of shape ``input_shape``.

  Args:
    model: a flax module taking ``(batch, *input_shape)`` arrays.
    key: a PRNG key.
    input_shape: one example's shape without the batch axis, e.g.
      ``(28, 28, 1)``.

  Returns:
    The params pytree, ``variables['params']``.

  Example:
    >>> params = init_params(create_model('lenet300'), jax.random.key(0),
    ...                      (28, 28, 1))
    >>> params['Dense_0']['kernel'].shape
    (784, 300)
  """
  x = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.jit(model.init)(key, x)['params']


def count_params(params: PyTree) -> int:
  """Returns the number of scalars in a params pytree.

  Works on arrays and on abstract shapes (``jax.ShapeDtypeStruct``, e.g. from
  ``jax.eval_shape(model.init, ...)``).

  Example:
    >>> count_params({'w': jnp.zeros((3, 4)), 'b': jnp.zeros(4)})
    16
  """
  return sum(math.prod(leaf.shape) if hasattr(leaf, 'shape') else 1
             for leaf in jax.tree.leaves(params))
