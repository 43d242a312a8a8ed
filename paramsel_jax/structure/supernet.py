"""The relaxed network: every structure choice as a weighted mixture.

One set of weights, sized for the largest network of the space, is shared by
all structures; a structure (relaxed or one-hot, see :mod:`relax`) weights the
candidates of each choice:

* activation: ``sum_a s_a * act_a(z)``;
* width: the output is multiplied by the nested mask ``m_j = sum_c s_c *
  [j < width_c]`` over the widest layer's units / channels;
* kernel size: the largest kernel is multiplied by ``sum_k s_k *
  [centred k x k square]``, so a small kernel is a ``'SAME'`` convolution
  embedded in the large one;
* presence: ``s_keep * layer(x) + s_skip * x``;
* pool kind: ``sum_p s_p * pool_p(x)`` (max and average pools).

With a one-hot structure the supernet computes exactly the discrete network
of :mod:`derive` whose weights are the corresponding slices (tested).
Convolutions use :func:`paramsel_jax.models.conv2d`, whose ``'auto'`` impl is
im2col on CPU (fast inside ``lax.scan``) and native elsewhere.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from paramsel_jax.structure import presets
  >>> from paramsel_jax.structure import relax
  >>> space = presets.mlp_space((8, 8, 1), 3, widths=(4, 8), depth=2)
  >>> net = Supernet(space)
  >>> structure = relax.probabilities(relax.init_logits(space))
  >>> params = net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)),
  ...                   structure)['params']
  >>> net.apply({'params': params}, jnp.zeros((2, 8, 8, 1)), structure).shape
  (2, 3)
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax import models
from paramsel_jax.structure import regularizer
from paramsel_jax.structure.space import ACTIVATIONS
from paramsel_jax.structure.space import LayerSpace
from paramsel_jax.structure.space import POOLS
from paramsel_jax.structure.space import SearchSpace


def width_mask(layer: LayerSpace, weights: jax.Array | None) -> jax.Array:
  """``(max_width,)`` nested mask ``sum_c weights_c * [j < width_c]``."""
  if weights is None:
    return jnp.ones((layer.max_width,), jnp.float32)
  table = np.arange(layer.max_width)[None, :] < np.asarray(layer.widths)[:, None]
  return jnp.dot(weights, jnp.asarray(table, jnp.float32))


def kernel_mask(layer: LayerSpace, weights: jax.Array | None) -> jax.Array:
  """``(K, K)`` mask ``sum_k weights_k * [centred k x k square]``."""
  big = layer.max_kernel
  if weights is None:
    return jnp.ones((big, big), jnp.float32)
  table = np.zeros((len(layer.kernel_sizes), big, big), np.float32)
  for i, k in enumerate(layer.kernel_sizes):
    lo = (big - k) // 2
    table[i, lo:lo + k, lo:lo + k] = 1.0
  return jnp.tensordot(weights, jnp.asarray(table), axes=1)


def mix_activations(layer: LayerSpace, z: jax.Array,
                    weights: jax.Array | None) -> jax.Array:
  """``sum_a weights_a * act_a(z)`` (the single activation if no choice)."""
  if weights is None:
    return ACTIVATIONS[layer.activations[0]](z)
  out = jnp.zeros_like(z)
  for i, name in enumerate(layer.activations):
    out = out + weights[i] * ACTIVATIONS[name](z)
  return out


def mix_pools(layer: LayerSpace, x: jax.Array,
              weights: jax.Array | None) -> jax.Array:
  """``sum_p weights_p * pool_p(x)`` (the single pool kind if no choice)."""
  if weights is None:
    return POOLS[layer.pool_types[0]](x)
  out = weights[0] * POOLS[layer.pool_types[0]](x)
  for i, name in enumerate(layer.pool_types[1:], 1):
    out = out + weights[i] * POOLS[name](x)
  return out


class _MaskedConv(nn.Module):
  """A ``'SAME'`` conv with the largest kernel, multiplied by a mask."""

  features: int
  kernel_size: int
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    kernel = kernel * mask[:, :, None, None]
    return models.conv2d(x, kernel, padding='SAME', impl=self.impl) + bias


class Supernet(nn.Module):
  """The relaxed network of a :class:`SearchSpace`.

  Call it as ``net.apply({'params': p}, images, structure)`` with float
  images of shape ``(batch, *space.input_shape)`` and ``structure`` a dict
  choice name -> weights over the candidates (a Gumbel-softmax sample, the
  probabilities, or a one-hot vector).

  Attributes:
    space: the search space (validated).
    conv_impl: the :func:`paramsel_jax.models.conv2d` implementation.
  """

  space: SearchSpace
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array,
               structure: Mapping[str, jax.Array]) -> jax.Array:
    """Logits ``(batch, num_classes)`` of ``x`` under the candidate weights ``structure``."""
    names = self.space.layer_names()
    flat = False
    for name, layer in zip(names, self.space.layers):
      get = lambda kind, name=name: structure.get(f'{name}/{kind}')
      if layer.kind == 'dense' and not flat:
        x = x.reshape(x.shape[0], -1)
        flat = True
      if layer.kind == 'conv':
        z = _MaskedConv(layer.max_width, layer.max_kernel, self.conv_impl,
                        name=name)(x, kernel_mask(layer, get('kernel')))
      else:
        z = nn.Dense(layer.max_width, name=name)(x)
      h = mix_activations(layer, z, get('activation'))
      h = h * width_mask(layer, get('width'))
      if layer.optional:
        keep = get('present')  # an optional layer's structure holds its weights.
        h = keep[0] * h + keep[1] * x  # type: ignore[index]
      x = h
      if layer.kind == 'conv' and layer.pool:
        x = mix_pools(layer, x, get('pool'))
    if not flat:
      x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.space.num_classes, name='head')(x)


def init_supernet(space: SearchSpace, key: jax.Array,
                  conv_impl: str = 'auto') -> tuple[Supernet, dict]:
  """The supernet module and its initial params (structure-independent).

  Example:
    >>> from paramsel_jax.structure.presets import mlp_space
    >>> net, params = init_supernet(mlp_space((4, 4, 1), 2, widths=(3, 5)),
    ...                             jax.random.key(0))
    >>> params['dense0']['kernel'].shape
    (16, 5)
  """
  net = Supernet(space, conv_impl)
  structure = regularizer.max_structure(space)
  x = jnp.zeros((1, *space.input_shape), jnp.float32)
  params = jax.jit(net.init)(key, x, structure)['params']
  return net, params
