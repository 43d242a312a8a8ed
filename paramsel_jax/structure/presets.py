"""Ready-made search spaces: an MLP space and a LeNet-5-like conv space.

:func:`mlp_space` stacks dense layers, all but the first optional;
:func:`conv_space` stacks conv layers (each followed by an optional 2x2 pool
of a chosen kind), then dense layers, all but the first optional. Both return
a validated :class:`~paramsel_jax.structure.space.SearchSpace`.

Example:
  >>> space = mlp_space((28, 28, 1), 10, widths=(64, 128), depth=2)
  >>> [name for name, _ in space.choices()]
  ['dense0/activation', 'dense0/width', 'dense1/activation', 'dense1/width', \
'dense1/present']
  >>> len(conv_space((28, 28, 1), 10).choices())
  17
"""

from __future__ import annotations

from collections.abc import Sequence

from paramsel_jax.structure.space import ALL_ACTIVATIONS
from paramsel_jax.structure.space import LayerSpace
from paramsel_jax.structure.space import SearchSpace

# The LeNet-5-like conv space of MNIST (README "Structure search"): two conv
# layers with pools, an optional third conv, two dense layers (the second
# optional). It holds networks below L0's 20-25-45-462 LeNet-5 in parameters
# and FLOPs (e.g. conv16k3-pool > conv32k3-pool > dense16: 30,074 params,
# 2.08 MFLOPs) and networks ~10x their cost.
CONV_WIDTHS = ((4, 8, 16), (8, 16, 32), (8, 16, 32))
CONV_POOLS = (True, True, False)
CONV_OPTIONAL = (False, False, True)
KERNEL_SIZES = (3, 5)
POOL_TYPES = ('max', 'avg')
DENSE_WIDTHS = (16, 32, 64)
DENSE_DEPTH = 2


def mlp_space(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    widths: Sequence[int] = (32, 64, 128, 256, 512),
    depth: int = 3,
    activations: Sequence[str] = ALL_ACTIVATIONS,
    optional_layers: bool = True,
) -> SearchSpace:
  """An MLP space: ``depth`` hidden layers, all after the first optional.

  Args:
    input_shape: one example's ``(height, width, channels)``.
    num_classes: number of logits.
    widths: candidate widths of every hidden layer.
    depth: number of hidden layers (the first is always kept).
    activations: candidate activations of every hidden layer.
    optional_layers: whether layers after the first may be skipped.

  Returns:
    A validated :class:`SearchSpace`.

  Example:
    >>> mlp_space((28, 28, 1), 10).num_structures()  # (6 * 5)^3 * 2^2
    108000
  """
  if depth < 1:
    raise ValueError(f'depth={depth}; accepted: an int >= 1.')
  layers = tuple(
      LayerSpace('dense', tuple(widths), tuple(activations),
                 optional=optional_layers and i > 0)
      for i in range(depth))
  return SearchSpace(tuple(input_shape), num_classes, layers).validate()


def conv_space(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    conv_widths: Sequence[Sequence[int]] = CONV_WIDTHS,
    kernel_sizes: Sequence[int] = KERNEL_SIZES,
    pools: Sequence[bool] = CONV_POOLS,
    optional: Sequence[bool] = CONV_OPTIONAL,
    pool_types: Sequence[str] = POOL_TYPES,
    dense_widths: Sequence[int] = DENSE_WIDTHS,
    dense_depth: int = DENSE_DEPTH,
    activations: Sequence[str] = ALL_ACTIVATIONS,
) -> SearchSpace:
  """A LeNet-5-like conv space: conv layers (with pools), dense layers.

  The default: conv {4,8,16} k{3,5} + {max,avg}-pool, conv {8,16,32} k{3,5}
  + {max,avg}-pool, optional conv {8,16,32} k{3,5}, dense {16,32,64},
  optional dense {16,32,64}, classifier; every layer's activation from
  :data:`~paramsel_jax.structure.space.ACTIVATIONS`.

  Args:
    input_shape: one example's ``(height, width, channels)``.
    num_classes: number of logits.
    conv_widths: candidate channels of each conv layer.
    kernel_sizes: candidate kernel sizes of every conv layer.
    pools: whether a 2x2 pool follows each conv layer.
    optional: whether each conv layer may be skipped.
    pool_types: candidate kinds of every pool (``'max'``, ``'avg'``).
    dense_widths: candidate widths of the dense layers (empty: none).
    dense_depth: dense layers (all but the first optional), ``>= 0``.
    activations: candidate activations of every layer.

  Returns:
    A validated :class:`SearchSpace`.

  Example:
    >>> space = conv_space((32, 32, 3), 10, dense_depth=1)
    >>> space.num_structures()  # conv0, conv1: 6*3*2*2; conv2: 6*3*2*2; dense
    6718464
  """
  if not (len(conv_widths) == len(pools) == len(optional)):
    raise ValueError(
        f'conv_widths, pools, optional have lengths {len(conv_widths)}, '
        f'{len(pools)}, {len(optional)}; accepted: equal lengths.')
  if dense_depth < 0:
    raise ValueError(f'dense_depth={dense_depth}; accepted: an int >= 0.')
  layers = [
      LayerSpace('conv', tuple(w), tuple(activations), tuple(kernel_sizes),
                 optional=bool(o), pool=bool(p), pool_types=tuple(pool_types))
      for w, p, o in zip(conv_widths, pools, optional)]
  if dense_widths:
    layers += [LayerSpace('dense', tuple(dense_widths), tuple(activations),
                          optional=i > 0) for i in range(dense_depth)]
  return SearchSpace(tuple(input_shape), num_classes, tuple(layers)).validate()
