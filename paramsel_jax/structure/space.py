"""Search spaces: the discrete structure choices that the search relaxes.

A structure search needs one frozen, serialisable description of what may be
chosen, shared by the relaxed supernet, the size regularizer, derivation and
random search. A :class:`SearchSpace` is a stack of :class:`LayerSpace` s
(conv layers first, then dense layers, then a fixed linear classifier); each
layer offers up to four categorical *choices*:

* ``'activation'``: one of :data:`ACTIVATIONS` (relu, tanh, sigmoid, elu,
  gelu, identity);
* ``'width'``: output units (dense) or channels (conv), realised as nested
  masks over the widest candidate: width ``c`` keeps units ``0 .. c-1``;
* ``'present'``: keep the layer (candidate 0) or skip it (candidate 1), where
  a skipped layer passes its input through unchanged (only for layers whose
  widest candidate equals the previous layer's, so the identity fits);
* ``'kernel'`` (conv only): odd kernel sizes, realised as centred masks over
  the largest kernel (a centred 3x3 inside a zero 5x5 is a 3x3 ``'SAME'``
  convolution).

A layer with a single candidate for a choice has no such choice. Choices are
named ``'<layer>/<kind>'``, e.g. ``'dense1/width'``; :meth:`SearchSpace.choices`
lists them in a fixed order, which is the order of every structure pytree
(``dict`` name -> vector over the candidates).

Example:
  >>> space = mlp_space((28, 28, 1), 10, widths=(64, 128), depth=2)
  >>> [name for name, _ in space.choices()]
  ['dense0/activation', 'dense0/width', 'dense1/activation', 'dense1/width', \
'dense1/present']
  >>> space == SearchSpace.from_dict(space.to_dict())
  True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from paramsel_jax import checks

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': jax.nn.relu,
    'tanh': jnp.tanh,
    'sigmoid': jax.nn.sigmoid,
    'elu': jax.nn.elu,
    'gelu': jax.nn.gelu,
    'identity': lambda x: x,
}
LAYER_KINDS = ('dense', 'conv')
CHOICE_KINDS = ('activation', 'width', 'present', 'kernel')
PRESENT_CANDIDATES = (True, False)  # index 0 keeps the layer, 1 skips it.


@dataclasses.dataclass(frozen=True)
class LayerSpace:
  """The choices offered by one layer.

  Attributes:
    kind: ``'dense'`` or ``'conv'``.
    widths: candidate output units / channels, strictly increasing.
    activations: candidate activation names, keys of :data:`ACTIVATIONS`.
    kernel_sizes: conv only: candidate odd kernel sizes, increasing.
    optional: whether the layer may be skipped.
    pool: conv only: a 2x2 max-pool follows the layer (whether the layer is
      kept or skipped).
  """

  kind: str
  widths: tuple[int, ...]
  activations: tuple[str, ...] = ('relu',)
  kernel_sizes: tuple[int, ...] = ()
  optional: bool = False
  pool: bool = False

  @property
  def max_width(self) -> int:
    """The widest candidate."""
    return max(self.widths)

  @property
  def max_kernel(self) -> int:
    """The largest candidate kernel size (1 for a dense layer)."""
    return max(self.kernel_sizes) if self.kernel_sizes else 1

  def check(self, where: str) -> None:
    """Raises ValueError (prefixed ``where``) on a bad candidate list."""
    if self.kind not in LAYER_KINDS:
      raise ValueError(f'{where}: unknown kind {self.kind!r}; accepted: '
                       f'{", ".join(LAYER_KINDS)}.')
    if not self.widths:
      raise ValueError(f'{where}: widths is empty; accepted: one or more '
                       'positive ints, increasing.')
    if (any(not checks.is_int(c) or c < 1 for c in self.widths)
        or list(self.widths) != sorted(set(self.widths))):
      raise ValueError(f'{where}: widths {self.widths!r} are invalid; '
                       'accepted: positive ints, strictly increasing.')
    if not self.activations:
      raise ValueError(f'{where}: activations is empty; accepted: one or '
                       f'more of {", ".join(ACTIVATIONS)}.')
    for a in self.activations:
      if a not in ACTIVATIONS:
        raise ValueError(f'{where}: unknown activation {a!r}; accepted: '
                         f'{", ".join(ACTIVATIONS)}.')
    if len(set(self.activations)) != len(self.activations):
      raise ValueError(f'{where}: activations {self.activations!r} '
                       'repeat; accepted: distinct names.')
    if self.kind == 'dense' and (self.kernel_sizes or self.pool):
      raise ValueError(f'{where}: kernel_sizes/pool are for conv layers; '
                       'accepted for dense: kernel_sizes=(), pool=False.')
    if self.kind == 'conv' and not self.kernel_sizes:
      raise ValueError(f'{where}: kernel_sizes is empty; accepted: one '
                       'or more odd positive ints, increasing.')
    if (any(not checks.is_int(k) or k < 1 or k % 2 == 0
            for k in self.kernel_sizes)
        or list(self.kernel_sizes) != sorted(set(self.kernel_sizes))):
      raise ValueError(f'{where}: kernel_sizes {self.kernel_sizes!r} '
                       'are invalid; accepted: odd positive ints, strictly '
                       'increasing.')

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready dict of the layer's choices."""
    return {
        'kind': self.kind,
        'widths': list(self.widths),
        'activations': list(self.activations),
        'kernel_sizes': list(self.kernel_sizes),
        'optional': self.optional,
        'pool': self.pool,
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> LayerSpace:
    """The layer space of a :meth:`to_dict` dict."""
    return cls(kind=d['kind'], widths=tuple(d['widths']),
               activations=tuple(d['activations']),
               kernel_sizes=tuple(d.get('kernel_sizes', ())),
               optional=bool(d.get('optional', False)),
               pool=bool(d.get('pool', False)))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """A stack of layers with structure choices, then a linear classifier.

  Build one with :func:`mlp_space` or :func:`conv_space`, or directly; call
  :meth:`validate` (the constructors do) before use.

  Attributes:
    input_shape: one example's shape, ``(height, width, channels)``.
    num_classes: number of logits of the fixed output layer.
    layers: the searchable layers, conv layers before dense layers.
  """

  input_shape: tuple[int, ...]  # checked by `validate`: 3 positive ints.
  num_classes: int
  layers: tuple[LayerSpace, ...]

  # ------------------------------------------------------------------
  # Naming and shapes.
  # ------------------------------------------------------------------

  def layer_names(self) -> list[str]:
    """``conv0, conv1, ..., dense0, dense1, ...`` in layer order."""
    counts = {k: 0 for k in LAYER_KINDS}
    names = []
    for layer in self.layers:
      names.append(f'{layer.kind}{counts[layer.kind]}')
      counts[layer.kind] += 1
    return names

  def layer_choices(self, index: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The ``(kind, candidates)`` pairs that layer ``index`` offers."""
    layer = self.layers[index]
    out: list[tuple[str, tuple[Any, ...]]] = []
    if len(layer.activations) > 1:
      out.append(('activation', tuple(layer.activations)))
    if len(layer.widths) > 1:
      out.append(('width', tuple(layer.widths)))
    if layer.kind == 'conv' and len(layer.kernel_sizes) > 1:
      out.append(('kernel', tuple(layer.kernel_sizes)))
    if layer.optional:
      out.append(('present', PRESENT_CANDIDATES))
    return out

  def choices(self) -> list[tuple[str, tuple[Any, ...]]]:
    """All choices as ``(name, candidates)``, in the canonical order.

    Example:
      >>> space = mlp_space((8, 8, 1), 3, widths=(4, 8), depth=1,
      ...                   activations=('relu', 'tanh'))
      >>> space.choices()
      [('dense0/activation', ('relu', 'tanh')), ('dense0/width', (4, 8))]
    """
    out = []
    for i, name in enumerate(self.layer_names()):
      out += [(f'{name}/{kind}', cands)
              for kind, cands in self.layer_choices(i)]
    return out

  def num_candidates(self) -> dict[str, int]:
    """Choice name -> number of candidates."""
    return {name: len(c) for name, c in self.choices()}

  def spatial_shapes(self) -> list[tuple[int, int]]:
    """Input ``(height, width)`` of each layer (dense layers: after flatten)."""
    h, w = self.input_shape[:2]
    out = []
    for layer in self.layers:
      out.append((h, w))
      if layer.kind == 'conv' and layer.pool:
        h, w = h // 2, w // 2
    return out

  def flat_spatial(self) -> int:
    """Spatial positions that feed the first dense layer (or classifier).

    For an MLP this is ``height * width`` of the input: the flattened input
    is ``flat_spatial() * channels`` features.
    """
    h, w = self.input_shape[:2]
    for layer in self.layers:
      if layer.kind == 'conv' and layer.pool:
        h, w = h // 2, w // 2
    return h * w

  # ------------------------------------------------------------------
  # Validation and serialisation.
  # ------------------------------------------------------------------

  def validate(self) -> SearchSpace:
    """Raises ValueError naming the first bad setting; returns ``self``."""
    if (len(self.input_shape) != 3
        or any(int(d) != d or d < 1 for d in self.input_shape)):
      raise ValueError(
          f'input_shape {self.input_shape!r} is invalid; accepted: '
          '(height, width, channels), positive ints.')
    if int(self.num_classes) != self.num_classes or self.num_classes < 2:
      raise ValueError(
          f'num_classes={self.num_classes!r} is invalid; accepted: an int '
          '>= 2.')
    if not self.layers:
      raise ValueError('layers is empty; accepted: at least one LayerSpace.')
    seen_dense = False
    h, w = self.input_shape[:2]
    prev = None
    for i, layer in enumerate(self.layers):
      where = f'layer {i} ({layer.kind})'
      layer.check(where)
      if layer.kind == 'conv' and seen_dense:
        raise ValueError(f'{where}: conv layers must come before dense '
                         'layers.')
      seen_dense |= layer.kind == 'dense'
      if layer.pool and (h < 2 or w < 2):
        raise ValueError(f'{where}: pool on a {h}x{w} map; accepted: '
                         'maps of at least 2x2.')
      if layer.pool:
        h, w = h // 2, w // 2
      if layer.optional and (prev is None or prev.kind != layer.kind
                             or prev.max_width != layer.max_width):
        raise ValueError(
            f'{where}: optional=True needs a previous {layer.kind} layer '
            f'whose widest candidate equals this one ({layer.max_width}), '
            'so that skipping is the identity; got previous '
            f'{prev.kind if prev else "input"} of width '
            f'{prev.max_width if prev else None}.')
      prev = layer
    return self

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready dict of the space."""
    return {
        'input_shape': list(self.input_shape),
        'num_classes': self.num_classes,
        'layers': [layer.to_dict() for layer in self.layers],
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
    """The search space of a :meth:`to_dict` dict."""
    return cls(input_shape=tuple(d['input_shape']),
               num_classes=int(d['num_classes']),
               layers=tuple(LayerSpace.from_dict(l) for l in d['layers']))

  # ------------------------------------------------------------------
  # Structures as index dicts.
  # ------------------------------------------------------------------

  def num_structures(self) -> int:
    """The number of distinct choice assignments in the space."""
    return math.prod(len(c) for _, c in self.choices())

  def one_hot(self, indices: Mapping[str, int]) -> dict[str, jax.Array]:
    """A structure as one-hot vectors, from ``name -> candidate index``.

    Example:
      >>> space = mlp_space((8, 8, 1), 3, widths=(4, 8), depth=1,
      ...                   activations=('relu',))
      >>> space.one_hot({'dense0/width': 1})['dense0/width'].tolist()
      [0.0, 1.0]
    """
    out = {}
    for name, cands in self.choices():
      if name not in indices:
        raise ValueError(f'structure lacks choice {name!r}; it needs all of '
                         f'{[n for n, _ in self.choices()]}.')
      i = int(indices[name])
      if not 0 <= i < len(cands):
        raise ValueError(f'{name}: index {i} out of range; accepted: 0 .. '
                         f'{len(cands) - 1}.')
      out[name] = jax.nn.one_hot(i, len(cands), dtype=jnp.float32)
    return out


ALL_ACTIVATIONS = tuple(ACTIVATIONS)


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
    conv_widths: Sequence[Sequence[int]] = ((8, 16, 32), (16, 32, 64),
                                            (16, 32, 64)),
    kernel_sizes: Sequence[int] = (3, 5),
    pools: Sequence[bool] = (True, True, False),
    optional: Sequence[bool] = (False, False, True),
    dense_widths: Sequence[int] = (32, 64, 128),
    activations: Sequence[str] = ALL_ACTIVATIONS,
) -> SearchSpace:
  """A small conv-net space: conv layers (with pools), one dense layer.

  The default: conv {8,16,32} k{3,5} + pool, conv {16,32,64} k{3,5} + pool,
  optional conv {16,32,64} k{3,5}, dense {32,64,128}, classifier.

  Args:
    input_shape: one example's ``(height, width, channels)``.
    num_classes: number of logits.
    conv_widths: candidate channels of each conv layer.
    kernel_sizes: candidate kernel sizes of every conv layer.
    pools: whether a 2x2 max-pool follows each conv layer.
    optional: whether each conv layer may be skipped.
    dense_widths: candidate widths of the dense layer (empty: none).
    activations: candidate activations of every layer.

  Returns:
    A validated :class:`SearchSpace`.

  Example:
    >>> len(conv_space((32, 32, 3), 10).choices())
    12
  """
  if not (len(conv_widths) == len(pools) == len(optional)):
    raise ValueError(
        f'conv_widths, pools, optional have lengths {len(conv_widths)}, '
        f'{len(pools)}, {len(optional)}; accepted: equal lengths.')
  layers = [
      LayerSpace('conv', tuple(w), tuple(activations), tuple(kernel_sizes),
                 optional=bool(o), pool=bool(p))
      for w, p, o in zip(conv_widths, pools, optional)]
  if dense_widths:
    layers.append(LayerSpace('dense', tuple(dense_widths), tuple(activations)))
  return SearchSpace(tuple(input_shape), num_classes, tuple(layers)).validate()
