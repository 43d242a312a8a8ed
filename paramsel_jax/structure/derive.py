"""Derivation: from structure logits to a plain, discrete network.

After the search, every choice is made discrete by its argmax; the result is
an :class:`Architecture` (frozen, JSON-serialisable, with its exact parameter
count and forward FLOPs per example) and :class:`DiscreteNet` builds it as an
ordinary flax model (dense layers, :class:`paramsel_jax.models.Conv2D`,
pools) that is retrained from scratch.

Example:
  >>> import jax
  >>> from paramsel_jax import models
  >>> from paramsel_jax.structure import presets
  >>> space = presets.mlp_space((28, 28, 1), 10, widths=(100, 300),
  ...                             depth=2, activations=('relu',))
  >>> arch = from_indices(space, {'dense0/width': 1, 'dense1/width': 0,
  ...                             'dense1/present': 0})
  >>> arch.describe()
  'dense300-relu > dense100-relu > fc10'
  >>> arch.num_params(), arch.num_flops()  # 2 * (784*300 + 300*100 + 100*10)
  (266610, 532400)
  >>> params = models.init_params(DiscreteNet(arch), jax.random.key(0),
  ...                             (28, 28, 1))
  >>> models.count_params(params)
  266610
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import json
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from paramsel_jax import models
from paramsel_jax.structure.space import ACTIVATIONS
from paramsel_jax.structure.space import POOLS
from paramsel_jax.structure.space import SearchSpace


@dataclasses.dataclass(frozen=True)
class LayerChoice:
  """One layer of a discrete network.

  Attributes:
    kind: ``'dense'`` or ``'conv'``.
    width: output units / channels.
    activation: a key of :data:`ACTIVATIONS`.
    kernel_size: conv only: odd kernel size (``'SAME'`` padding).
    present: False if the layer is skipped (its pool, if any, stays).
    pool: conv only: a 2x2 pool follows.
    pool_type: that pool's kind, a key of :data:`POOLS`.
  """

  kind: str
  width: int
  activation: str
  kernel_size: int = 1
  present: bool = True
  pool: bool = False
  pool_type: str = 'max'


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A discrete network: layers, then a linear classifier.

  Attributes:
    input_shape: one example's ``(height, width, channels)``.
    num_classes: number of logits.
    layers: one :class:`LayerChoice` per layer of the space (skipped ones
      included, with ``present=False``).
  """

  input_shape: tuple[int, ...]  # (height, width, channels).
  num_classes: int
  layers: tuple[LayerChoice, ...]

  def kept(self) -> list[LayerChoice]:
    """The layers that are present (not skipped), in order."""
    return [l for l in self.layers if l.present]

  def _costs(self) -> tuple[int, int]:
    """``(params, multiply-adds per example)``, layer by layer."""
    h, w, c = self.input_shape
    params = macs = 0
    flat = False
    for layer in self.layers:
      if layer.present:
        if layer.kind == 'conv':  # 'SAME': the output is h x w.
          fan = layer.kernel_size ** 2 * c
          macs += h * w * fan * layer.width
        else:
          fan = c if flat else h * w * c
          flat = True
          macs += fan * layer.width
        params += fan * layer.width + layer.width
        c = layer.width
      if layer.kind == 'conv' and layer.pool:
        h, w = h // 2, w // 2
    fan = c if flat else h * w * c
    return (params + fan * self.num_classes + self.num_classes,
            macs + fan * self.num_classes)

  def num_params(self) -> int:
    """The exact parameter count (weights and biases), by hand."""
    return self._costs()[0]

  def num_flops(self) -> int:
    """Forward FLOPs per example, by hand: 2 per multiply-add.

    Dense and conv layers only (biases, activations and pools are not
    counted), as :func:`paramsel_jax.structure.records.network_flops` counts
    any model.
    """
    return 2 * self._costs()[1]

  def describe(self) -> str:
    """A one-line summary, e.g. ``'conv16k5-relu-pool > dense64-elu > fc10'``."""
    parts = []
    for layer in self.layers:
      if layer.kind == 'conv':
        s = (f'conv{layer.width}k{layer.kernel_size}-{layer.activation}'
             if layer.present else '')
        if layer.pool:
          pool = 'pool' if layer.pool_type == 'max' else f'{layer.pool_type}pool'
          s = f'{s}-{pool}' if s else pool
      else:
        s = f'dense{layer.width}-{layer.activation}' if layer.present else ''
      if s:
        parts.append(s)
    return ' > '.join(parts + [f'fc{self.num_classes}'])

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready dict, with the parameter count and the summary line."""
    return {
        'input_shape': list(self.input_shape),
        'num_classes': self.num_classes,
        'layers': [dataclasses.asdict(l) for l in self.layers],
        'num_params': self.num_params(),
        'num_flops': self.num_flops(),
        'describe': self.describe(),
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> Architecture:
    """The architecture of a :meth:`to_dict` dict (extra keys ignored)."""
    return cls(tuple(d['input_shape']), int(d['num_classes']),
               tuple(LayerChoice(**l) for l in d['layers']))

  def to_json(self, **kwargs: Any) -> str:
    """The :meth:`to_dict` dict as JSON; ``kwargs`` go to ``json.dumps``."""
    return json.dumps(self.to_dict(), **kwargs)

  @classmethod
  def from_json(cls, text: str) -> Architecture:
    """The architecture of a :meth:`to_json` string."""
    return cls.from_dict(json.loads(text))


def from_indices(space: SearchSpace, indices: Mapping[str, int]
                 ) -> Architecture:
  """The architecture picking candidate ``indices[name]`` of every choice.

  Args:
    space: the search space.
    indices: choice name -> candidate index (all of ``space.choices()``).

  Returns:
    The :class:`Architecture`.
  """
  space.one_hot(indices)  # Validates names and ranges.
  layers = []
  for i, (name, layer) in enumerate(zip(space.layer_names(), space.layers)):
    pick = {kind: cands[int(indices[f'{name}/{kind}'])]
            for kind, cands in space.layer_choices(i)}
    layers.append(LayerChoice(
        kind=layer.kind,
        width=int(pick.get('width', layer.widths[0])),
        activation=str(pick.get('activation', layer.activations[0])),
        kernel_size=int(pick.get('kernel', layer.max_kernel)),
        present=bool(pick.get('present', True)),
        pool=layer.pool,
        pool_type=str(pick.get('pool', layer.pool_types[0]))))
  return Architecture(space.input_shape, space.num_classes, tuple(layers))


def derive_architecture(space: SearchSpace, logits: Mapping[str, jax.Array]
           ) -> tuple[Architecture, dict[str, int]]:
  """The argmax architecture of structure ``logits``.

  Returns:
    ``(architecture, indices)`` with ``indices`` choice name -> argmax.
  """
  indices = {name: int(jnp.argmax(jnp.asarray(logits[name])))
             for name, _ in space.choices()}
  return from_indices(space, indices), indices


class DiscreteNet(nn.Module):
  """The plain flax model of an :class:`Architecture`.

  Layers are named like the supernet's (``conv0``, ``dense1``, ``head``);
  skipped layers have no params.

  Attributes:
    arch: the architecture.
    conv_impl: the :class:`paramsel_jax.models.Conv2D` implementation.
  """

  arch: Architecture
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits of shape ``(batch, num_classes)`` of the architecture on ``x``."""
    counts = {'conv': 0, 'dense': 0}
    flat = False
    for layer in self.arch.layers:
      name = f'{layer.kind}{counts[layer.kind]}'
      counts[layer.kind] += 1
      if layer.kind == 'dense' and not flat:
        x = x.reshape(x.shape[0], -1)
        flat = True
      if layer.present:
        if layer.kind == 'conv':
          x = models.Conv2D(layer.width, (layer.kernel_size,) * 2,
                            padding='SAME', impl=self.conv_impl, name=name)(x)
        else:
          x = nn.Dense(layer.width, name=name)(x)
        x = ACTIVATIONS[layer.activation](x)
      if layer.kind == 'conv' and layer.pool:
        x = POOLS[layer.pool_type](x)
    if not flat:
      x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.arch.num_classes, name='head')(x)


def inherit_params(arch: Architecture,
                   supernet_params: Mapping[str, Any]) -> dict[str, Any]:
  """Slices supernet weights into :class:`DiscreteNet` params of ``arch``.

  The supernet evaluated at the one-hot structure of ``arch`` and the
  discrete net with these params compute the same function (up to float
  rounding). Retraining from scratch does not need this; it documents and
  tests what the supernet's masks mean.

  Args:
    arch: an architecture of the supernet's space.
    supernet_params: the :class:`~paramsel_jax.structure.supernet.Supernet`
      params.

  Returns:
    Params for ``DiscreteNet(arch)``.
  """
  out = {}
  sp_h, sp_w, c = arch.input_shape
  c_max = c  # Channels of the supernet's representation (widest layer).
  counts = {'conv': 0, 'dense': 0}
  flat = False

  def rows(kernel):
    # The kernel rows that read the kept channels of the representation.
    if flat:
      return kernel[:c]
    kernel = kernel.reshape(sp_h * sp_w, c_max, -1)[:, :c, :]
    return kernel.reshape(sp_h * sp_w * c, -1)

  for layer in arch.layers:
    name = f'{layer.kind}{counts[layer.kind]}'
    counts[layer.kind] += 1
    p = supernet_params[name]
    if layer.present:
      if layer.kind == 'conv':
        big = p['kernel'].shape[0]
        lo = (big - layer.kernel_size) // 2
        kernel = p['kernel'][lo:lo + layer.kernel_size,
                             lo:lo + layer.kernel_size, :c, :layer.width]
      else:
        kernel = rows(p['kernel'])[:, :layer.width]
      out[name] = {'kernel': kernel, 'bias': p['bias'][:layer.width]}
      c = layer.width
    if layer.kind == 'dense':
      flat = True
    c_max = int(p['bias'].shape[0])
    if layer.kind == 'conv' and layer.pool:
      sp_h, sp_w = sp_h // 2, sp_w // 2
  out['head'] = {'kernel': rows(supernet_params['head']['kernel']),
                 'bias': supernet_params['head']['bias']}
  return out
