# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The networks of the experiments: MLPs, LeNet-5 and a small CIFAR CNN."""

from __future__ import annotations

import flax.linen as nn
import jax

from paramsel_jax.models.conv import Conv2D
from paramsel_jax.models.conv import max_pool2d


class MLP(nn.Module):
  """A fully connected ReLU network on flattened inputs.

  Presets: ``lenet300`` (784-300-100-10, 266,610 params on MNIST),
  ``fc400`` (784-400-400-10, the 2x400 net of the pSGLD paper, 478,410
  params on MNIST) and ``mlp1024`` (784-1024-1024-10, 1,863,690 params: a
  wide net, where freezing saves the most).

  Attributes:
    widths: hidden layer widths, input side first.
    num_classes: number of logits.

  Example:
    >>> from paramsel_jax.models import count_params
    >>> from paramsel_jax.models import init_params
    >>> model = MLP(widths=(300, 100))
    >>> params = init_params(model, jax.random.key(0), (28, 28, 1))
    >>> count_params(params)
    266610
  """

  widths: tuple[int, ...] = (300, 100)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits of shape ``(batch, num_classes)`` of the flattened ``x``."""
    x = x.reshape(x.shape[0], -1)
    for width in self.widths:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


class LeNet5(nn.Module):
  """The Caffe LeNet-5 of Han et al. (2015) and the lottery-ticket papers.

  conv 5x5x20 (VALID) -> maxpool 2 -> conv 5x5x50 (VALID) -> maxpool 2 ->
  fc 500 + ReLU -> fc ``num_classes``. As in Caffe's
  ``examples/mnist/lenet_train_test.prototxt`` there is no nonlinearity
  after the convolutions. 431,080 params on 28x28x1 inputs.

  Attributes:
    num_classes: number of logits.
    conv_impl: the :class:`Conv2D` implementation.

  Example:
    >>> from paramsel_jax.models import init_params
    >>> model = LeNet5()
    >>> params = init_params(model, jax.random.key(0), (28, 28, 1))
    >>> params['Conv2D_1']['kernel'].shape
    (5, 5, 20, 50)
  """

  num_classes: int = 10
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits of shape ``(batch, num_classes)`` of NHWC images ``x``."""
    x = Conv2D(20, (5, 5), padding='VALID', impl=self.conv_impl)(x)
    x = max_pool2d(x)
    x = Conv2D(50, (5, 5), padding='VALID', impl=self.conv_impl)(x)
    x = max_pool2d(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(500)(x))
    return nn.Dense(self.num_classes)(x)


class CifarCNN(nn.Module):
  """A small VGG-style CIFAR-10 conv net.

  For each stage width ``c``: ``convs_per_stage`` x (conv 3x3 ``c`` SAME +
  ReLU), then maxpool 2; then fc ``hidden`` + ReLU -> fc ``num_classes``.
  The default, (32, 32, pool, 64, 64, pool, fc 256, fc 10), has 1,116,970
  params on 32x32x3 inputs (1,048,832 of them in the first fc layer).

  Attributes:
    widths: channels of each stage.
    convs_per_stage: convolutions per stage.
    hidden: width of the hidden fc layer.
    num_classes: number of logits.
    conv_impl: the :class:`Conv2D` implementation.

  Example:
    >>> from paramsel_jax.models import count_params
    >>> from paramsel_jax.models import init_params
    >>> model = CifarCNN()
    >>> params = init_params(model, jax.random.key(0), (32, 32, 3))
    >>> count_params(params)
    1116970
  """

  widths: tuple[int, ...] = (32, 64)
  convs_per_stage: int = 2
  hidden: int = 256
  num_classes: int = 10
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits of shape ``(batch, num_classes)`` of NHWC images ``x``."""
    for width in self.widths:
      for _ in range(self.convs_per_stage):
        x = nn.relu(Conv2D(width, (3, 3), impl=self.conv_impl)(x))
      x = max_pool2d(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)
