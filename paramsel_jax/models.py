# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Flax linen models for the paramsel experiments: MLPs, LeNet-5, a CIFAR CNN.

Parameters are plain pytrees (``variables['params']``). Inputs are float32 NHWC
images in ``[0, 1]``; outputs are logits of shape ``(batch, num_classes)``.

The convolution is our own small module, :class:`Conv2D`, because of a
measured XLA:CPU problem: inside ``lax.scan`` (how this library runs its
training loops) the backward pass of ``lax.conv`` falls back to a naive loop,
and training runs 3-15x slower for LeNet-5 and ~80x slower for
``cifar_cnn`` than in a standalone jitted step (``PERF_NOTES.md``,
``experiments/bench_models.py``). :class:`Conv2D` has the
same parameter shapes as ``flax.linen.Conv`` (``kernel`` of shape
``(kh, kw, cin, cout)``, ``bias`` of shape ``(cout,)``) whatever the
implementation, so a params pytree works with every ``impl``:

* ``'im2col'``: ``kh * kw`` shifted slices concatenated on the channel axis,
  then one matmul; autodiff produces matmuls only.
* ``'xla'``: ``lax.conv_general_dilated`` with autodiff's backward pass.
* ``'xla_vjp'``: ``lax.conv_general_dilated`` with a ``jax.custom_vjp`` whose
  backward convolutions are written with explicit transposes into the
  standard ``NHWC``/``HWIO`` layout. Reverse mode (and forward-over-reverse,
  e.g. Hessian-vector products) works; plain forward mode (``jax.jvp``,
  ``jax.jacfwd``, ``jax.linearize`` of the model itself) raises, as for any
  ``custom_vjp`` function: use ``'im2col'`` or ``'xla'`` there.
* ``'auto'`` (the default): ``'xla'`` on GPU/TPU (fast native
  convolutions); on CPU, per layer, the faster of ``'im2col'`` and
  ``'xla_vjp'`` as measured (``'xla_vjp'`` for kernels of at most 3x3 on 8 or
  more input channels, ``'im2col'`` otherwise; see
  :func:`resolve_conv_impl`). The choice is made at trace time with
  ``jax.default_backend()``.

Measured on the 2-core CPU (Adam, batch 128, a 50-step ``lax.scan``;
``experiments/bench_models.py``): LeNet-5 'im2col' ~20 steps/s, 'xla_vjp'
~0.7-0.9x that, 'xla' ~1 (0.05x); ``cifar_cnn`` 'auto' and 'xla_vjp'
~1.25x 'im2col', 'xla' 0.03 steps/s. Never use 'xla' in a scanned CPU
training loop. In a Python loop of jitted steps, by contrast, 'xla' is
the fastest for LeNet-5 and 'im2col' the slowest (~0.6x).

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
from jax import lax
import jax.numpy as jnp
from jax.typing import ArrayLike

PyTree = Any
Padding = tuple[tuple[int, int], tuple[int, int]]

CONV_IMPLS = ('auto', 'im2col', 'xla', 'xla_vjp')
_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


# --------------------------------------------------------------------------
# Convolution and pooling as functions.
# --------------------------------------------------------------------------


def _cpu_conv_impl(kernel_shape: Sequence[int] | None) -> str:
  """The faster of 'im2col' and 'xla_vjp' on XLA:CPU for one layer.

  Measured inside ``lax.scan`` (batch 128, forward plus both gradients,
  2-core CPU; ``xla_vjp`` steps/s over ``im2col`` steps/s):
  3x3 kernels: cin=3 0.54, cin=8 1.2, cin=16 1.6, cin=32 1.7-1.9;
  5x5 kernels: cin=1 0.84, cin=20 0.53-0.93. im2col wins when the input has
  few channels (its patches are small, Eigen's convolution vectorizes
  badly) and for 5x5 kernels; Eigen's convolution wins for 3x3 kernels on 8
  or more channels.
  """
  if kernel_shape is None:
    return 'im2col'
  kh, kw, cin = kernel_shape[:3]
  return 'xla_vjp' if kh * kw <= 9 and cin >= 8 else 'im2col'


def resolve_conv_impl(impl: str,
                      kernel_shape: Sequence[int] | None = None) -> str:
  """Returns the concrete convolution implementation that ``impl`` names.

  ``'auto'`` resolves, using ``jax.default_backend()`` at trace time, to
  ``'xla'`` on every backend but CPU (GPU and TPU have fast native
  convolutions). On CPU it picks, per layer, the faster of ``'im2col'`` and
  ``'xla_vjp'`` as measured on XLA:CPU: ``'xla_vjp'`` for kernels of at most
  3x3 on 8 or more input channels, else ``'im2col'`` (also when
  ``kernel_shape`` is not given).

  Args:
    impl: one of :data:`CONV_IMPLS`.
    kernel_shape: the ``(kh, kw, cin, cout)`` kernel shape, for ``'auto'``.

  Returns:
    One of ``'im2col'``, ``'xla'``, ``'xla_vjp'``.

  Example:

    >>> resolve_conv_impl('xla')
    'xla'
    >>> resolve_conv_impl('auto', (5, 5, 1, 20)) in ('im2col', 'xla')
    True
  """
  if impl not in CONV_IMPLS:
    raise ValueError(
        f'Unknown conv impl {impl!r}; accepted: {", ".join(CONV_IMPLS)}.')
  if impl == 'auto':
    if jax.default_backend() != 'cpu':
      return 'xla'
    return _cpu_conv_impl(kernel_shape)
  return impl


def _explicit_padding(padding: str, kernel_hw: tuple[int, int]) -> Padding:
  """Stride-1 ``'SAME'``/``'VALID'`` as explicit (low, high) pads, like lax."""
  if padding == 'VALID':
    return ((0, 0), (0, 0))
  if padding == 'SAME':
    # lax's rule for stride 1: total k - 1, the extra pixel on the high side.
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw)
  raise ValueError(f'Unknown padding {padding!r}; accepted: SAME, VALID.')


def _im2col_conv(x: jax.Array, kernel: jax.Array, pads: Padding) -> jax.Array:
  kh, kw, cin, cout = kernel.shape
  if any(p for pair in pads for p in pair):
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  batch, h, w, _ = x.shape
  ho, wo = h - kh + 1, w - kw + 1
  if kh == kw == 1:
    cols = x
  else:
    # Patch feature index (i * kw + j) * cin + c: the row-major flattening
    # of the kernel's (kh, kw, cin) axes.
    cols = jnp.concatenate(
        [x[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)],
        axis=-1)
  y = jnp.dot(cols.reshape(batch * ho * wo, kh * kw * cin),
              kernel.reshape(kh * kw * cin, cout))
  return y.reshape(batch, ho, wo, cout)


def _xla_conv(x: jax.Array, kernel: jax.Array, pads: Padding) -> jax.Array:
  return lax.conv_general_dilated(
      x, kernel, window_strides=(1, 1), padding=pads,
      dimension_numbers=_DIMENSION_NUMBERS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _xla_conv_vjp(x: jax.Array, kernel: jax.Array, pads: Padding) -> jax.Array:
  return _xla_conv(x, kernel, pads)


def _xla_conv_vjp_fwd(x, kernel, pads):
  return _xla_conv(x, kernel, pads), (x, kernel)


def _xla_conv_vjp_bwd(pads, residuals, g):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  (pl, ph), (ql, qh) = pads
  # Input gradient: full correlation of g with the flipped kernel, in/out
  # channels swapped (HWIO -> HWOI read as HWIO).
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = lax.conv_general_dilated(
      g, flipped, window_strides=(1, 1),
      padding=((kh - 1 - pl, kh - 1 - ph), (kw - 1 - ql, kw - 1 - qh)),
      dimension_numbers=_DIMENSION_NUMBERS)
  # Kernel gradient: a convolution whose "batch" is cin and whose
  # "features" are the examples: x as (cin, H, W, B) in NHWC, g as
  # (Ho, Wo, B, cout) in HWIO; the result (cin, kh, kw, cout) goes back to
  # HWIO. Writing the transposes out keeps XLA:CPU on its fast
  # convolution path inside loops.
  dk = lax.conv_general_dilated(
      x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), window_strides=(1, 1),
      padding=pads, dimension_numbers=_DIMENSION_NUMBERS)
  return dx, dk.transpose(1, 2, 0, 3).astype(kernel.dtype)


_xla_conv_vjp.defvjp(_xla_conv_vjp_fwd, _xla_conv_vjp_bwd)


def conv2d(x: ArrayLike, kernel: ArrayLike, *, padding: str = 'SAME',
           impl: str = 'auto') -> jax.Array:
  """Stride-1 2-D convolution (cross-correlation) in NHWC / HWIO layout.

  Every ``impl`` computes ``lax.conv_general_dilated(x, kernel, (1, 1),
  padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`` and its gradients up
  to float rounding; they differ only in speed (see the module docstring).

  Args:
    x: input of shape ``(batch, height, width, cin)``.
    kernel: weights of shape ``(kh, kw, cin, cout)``.
    padding: ``'SAME'`` or ``'VALID'`` (lax's conventions).
    impl: one of :data:`CONV_IMPLS`.

  Returns:
    The output of shape ``(batch, height', width', cout)``.

  Example:

    >>> x, k = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    >>> conv2d(x, k, padding='VALID', impl='im2col').shape
    (2, 6, 6, 4)
  """
  dtype = jnp.result_type(x, kernel)
  x, kernel = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
  if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
    raise ValueError(
        f'conv2d wants x (B, H, W, C) and kernel (kh, kw, C, O); got '
        f'{x.shape} and {kernel.shape}.')
  pads = _explicit_padding(padding, kernel.shape[:2])
  impl = resolve_conv_impl(impl, kernel.shape)
  if impl == 'im2col':
    return _im2col_conv(x, kernel, pads)
  if impl == 'xla':
    return _xla_conv(x, kernel, pads)
  return _xla_conv_vjp(x, kernel, pads)


def max_pool2d(x: ArrayLike, window: int = 2) -> jax.Array:
  """Non-overlapping ``window x window`` max pooling of an NHWC array.

  Equal to ``nn.max_pool(x, (window, window), strides=(window, window))``
  (``'VALID'``: trailing rows/columns that do not fill a window are
  dropped), written as a reshape and a max over the window axes, which is
  the fastest form on XLA:CPU forward and backward. On exact ties inside a
  window the gradient is shared among the tied inputs (``jnp.max``'s rule),
  where ``nn.max_pool`` sends all of it to one input.

  Args:
    x: input of shape ``(batch, height, width, channels)``.
    window: the window size and stride.

  Returns:
    An array of shape ``(batch, height // window, width // window,
    channels)``.

  Example:

    >>> max_pool2d(jnp.arange(16.).reshape(1, 4, 4, 1))[..., 0]
    Array([[[ 5.,  7.],
            [13., 15.]]], dtype=float32)
  """
  x = jnp.asarray(x)
  b, h, w, c = x.shape
  ho, wo = h // window, w // window
  if (ho * window, wo * window) != (h, w):
    x = x[:, :ho * window, :wo * window, :]
  return x.reshape(b, ho, window, wo, window, c).max(axis=(2, 4))


# --------------------------------------------------------------------------
# Modules.
# --------------------------------------------------------------------------


class Conv2D(nn.Module):
  """Stride-1 2-D convolution with a choice of implementation.

  A drop-in for ``nn.Conv(features, kernel_size, padding=...)`` with the same
  parameter names, shapes and default initializers; ``impl`` changes only
  the computation (see :func:`conv2d`), so params trained with one ``impl``
  work with every other.

  Attributes:
    features: number of output channels.
    kernel_size: ``(kh, kw)``.
    padding: ``'SAME'`` or ``'VALID'``.
    use_bias: whether to add a bias.
    impl: one of :data:`CONV_IMPLS`.
    kernel_init: initializer of the ``(kh, kw, cin, features)`` kernel.
    bias_init: initializer of the ``(features,)`` bias.

  Example:

    >>> layer = Conv2D(8, (3, 3), impl='im2col')
    >>> v = layer.init(jax.random.key(0), jnp.ones((1, 5, 5, 2)))
    >>> v['params']['kernel'].shape
    (3, 3, 2, 8)
  """

  features: int
  kernel_size: tuple[int, int] = (3, 3)
  padding: str = 'SAME'
  use_bias: bool = True
  impl: str = 'auto'
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    kernel = self.param('kernel', self.kernel_init,
                        (kh, kw, x.shape[-1], self.features))
    y = conv2d(x, kernel, padding=self.padding, impl=self.impl)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,))
    return y


class MLP(nn.Module):
  """A fully connected ReLU network on flattened inputs.

  Presets: ``lenet300`` (784-300-100-10, 266,610 params on MNIST) and
  ``fc400`` (784-400-400-10, the 2x400 net of the pSGLD paper, 478,410
  params on MNIST).

  Attributes:
    widths: hidden layer widths, input side first.
    num_classes: number of logits.

  Example:

    >>> model = MLP(widths=(300, 100))
    >>> params = init_params(model, jax.random.key(0), (28, 28, 1))
    >>> count_params(params)
    266610
  """

  widths: tuple[int, ...] = (300, 100)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
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

    >>> model = LeNet5()
    >>> params = init_params(model, jax.random.key(0), (28, 28, 1))
    >>> params['Conv2D_1']['kernel'].shape
    (5, 5, 20, 50)
  """

  num_classes: int = 10
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
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
    for width in self.widths:
      for _ in range(self.convs_per_stage):
        x = nn.relu(Conv2D(width, (3, 3), impl=self.conv_impl)(x))
      x = max_pool2d(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)


# --------------------------------------------------------------------------
# Registry.
# --------------------------------------------------------------------------

MODELS: dict[str, Callable[..., nn.Module]] = {
    'mlp': MLP,
    'lenet300': functools.partial(MLP, widths=(300, 100)),
    'fc400': functools.partial(MLP, widths=(400, 400)),
    'lenet5': LeNet5,
    'cifar_cnn': CifarCNN,
}


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
