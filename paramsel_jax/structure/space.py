"""Search spaces: the discrete structure choices that the search relaxes.

A structure search needs one frozen, serialisable description of what may be
chosen, shared by the relaxed supernet, the size regularizer, derivation and
random search. A :class:`SearchSpace` is a stack of :class:`LayerSpace` s
(conv layers first, then dense layers, then a fixed linear classifier); each
layer offers up to five categorical *choices*:

* ``'activation'``: one of :data:`ACTIVATIONS` (relu, tanh, sigmoid, elu,
  gelu, identity);
* ``'width'``: output units (dense) or channels (conv), realised as nested
  masks over the widest candidate: width ``c`` keeps units ``0 .. c-1``;
* ``'present'``: keep the layer (candidate 0) or skip it (candidate 1), where
  a skipped layer passes its input through unchanged (only for layers whose
  widest candidate equals the previous layer's, so the identity fits);
* ``'kernel'`` (conv only): odd kernel sizes, realised as centred masks over
  the largest kernel (a centred 3x3 inside a zero 5x5 is a 3x3 ``'SAME'``
  convolution);
* ``'pool'`` (conv layers followed by a pool): the 2x2 pool's kind, one of
  :data:`POOLS` (max or average).

The ready-made spaces (:func:`~paramsel_jax.structure.presets.mlp_space`,
:func:`~paramsel_jax.structure.presets.conv_space`) are in :mod:`presets`.

A layer with a single candidate for a choice has no such choice. Choices are
named ``'<layer>/<kind>'``, e.g. ``'dense1/width'``; :meth:`SearchSpace.choices`
lists them in a fixed order, which is the order of every structure pytree
(``dict`` name -> vector over the candidates).

Example:
  >>> space = SearchSpace((28, 28, 1), 10, (
  ...     LayerSpace('conv', (4, 8), ('relu',), (3, 5), pool=True,
  ...                pool_types=('max', 'avg')),
  ...     LayerSpace('dense', (64, 128), ('relu', 'tanh')))).validate()
  >>> [name for name, _ in space.choices()]
  ['conv0/width', 'conv0/kernel', 'conv0/pool', 'dense0/activation', \
'dense0/width']
  >>> space == SearchSpace.from_dict(space.to_dict())
  True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from paramsel_jax.protocol import checks
from paramsel_jax import models

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': jax.nn.relu,
    'tanh': jnp.tanh,
    'sigmoid': jax.nn.sigmoid,
    'elu': jax.nn.elu,
    'gelu': jax.nn.gelu,
    'identity': lambda x: x,
}


def avg_pool2d(x: jax.Array, window: int = 2) -> jax.Array:
  """Non-overlapping ``window x window`` average pooling of an NHWC array.

  The average twin of :func:`paramsel_jax.models.max_pool2d` (``'VALID'``:
  trailing rows/columns that do not fill a window are dropped).

  Example:
    >>> avg_pool2d(jnp.arange(16.).reshape(1, 4, 4, 1))[0, :, :, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
  """
  b, h, w, c = x.shape
  ho, wo = h // window, w // window
  x = x[:, :ho * window, :wo * window, :]
  return x.reshape(b, ho, window, wo, window, c).mean(axis=(2, 4))


POOLS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'max': models.max_pool2d,
    'avg': avg_pool2d,
}
LAYER_KINDS = ('dense', 'conv')
CHOICE_KINDS = ('activation', 'width', 'present', 'kernel', 'pool')
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
    pool: conv only: a 2x2 pool follows the layer (whether the layer is
      kept or skipped).
    pool_types: the candidate kinds of that pool, keys of :data:`POOLS`
      (a choice only when ``pool`` and more than one).
  """

  kind: str
  widths: tuple[int, ...]
  activations: tuple[str, ...] = ('relu',)
  kernel_sizes: tuple[int, ...] = ()
  optional: bool = False
  pool: bool = False
  pool_types: tuple[str, ...] = ('max',)

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
    if (not self.pool_types or len(set(self.pool_types)) != len(self.pool_types)
        or any(p not in POOLS for p in self.pool_types)):
      raise ValueError(f'{where}: pool_types {self.pool_types!r} are invalid; '
                       f'accepted: distinct names from {", ".join(POOLS)}.')
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
        'pool_types': list(self.pool_types),
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> LayerSpace:
    """The layer space of a :meth:`to_dict` dict."""
    return cls(kind=d['kind'], widths=tuple(d['widths']),
               activations=tuple(d['activations']),
               kernel_sizes=tuple(d.get('kernel_sizes', ())),
               optional=bool(d.get('optional', False)),
               pool=bool(d.get('pool', False)),
               pool_types=tuple(d.get('pool_types', ('max',))))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """A stack of layers with structure choices, then a linear classifier.

  Build one with :func:`~paramsel_jax.structure.presets.mlp_space` or
  :func:`~paramsel_jax.structure.presets.conv_space`, or directly; call
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
    if layer.pool and len(layer.pool_types) > 1:
      out.append(('pool', tuple(layer.pool_types)))
    if layer.optional:
      out.append(('present', PRESENT_CANDIDATES))
    return out

  def choices(self) -> list[tuple[str, tuple[Any, ...]]]:
    """All choices as ``(name, candidates)``, in the canonical order.

    Example:
      >>> space = SearchSpace((8, 8, 1), 3, (
      ...     LayerSpace('dense', (4, 8), ('relu', 'tanh')),)).validate()
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
      >>> space = SearchSpace((8, 8, 1), 3, (
      ...     LayerSpace('dense', (4, 8)),)).validate()
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
