# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Stride-1 2-D convolution and max pooling for the models, and :class:`Conv2D`.

The convolution is our own small module, :class:`Conv2D`, because of a
measured XLA:CPU problem: inside ``lax.scan`` (how this library runs its
training loops) the backward pass of ``lax.conv`` falls back to a naive loop,
and training runs 3-15x slower for LeNet-5 and ~80x slower for
``cifar_cnn`` than in a standalone jitted step (BUILD_NOTES.md, "Conv implementations";
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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
from jax.typing import ArrayLike

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


def _explicit_padding(padding: str, kernel_hw: Sequence[int]) -> Padding:
  """Stride-1 ``'SAME'``/``'VALID'`` as explicit (low, high) pads, like lax."""
  if padding == 'VALID':
    return ((0, 0), (0, 0))
  if padding == 'SAME':
    # lax's rule for stride 1: total k - 1, the extra pixel on the high side.
    low_high = lambda k: ((k - 1) // 2, k - 1 - (k - 1) // 2)
    kh, kw = kernel_hw
    return (low_high(kh), low_high(kw))
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
# The module.
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
    """Convolves NHWC ``x`` with the kernel (and adds the bias)."""
    kh, kw = self.kernel_size
    kernel = self.param('kernel', self.kernel_init,
                        (kh, kw, x.shape[-1], self.features))
    y = conv2d(x, kernel, padding=self.padding, impl=self.impl)
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,))
    return y
