"""Structure regularizer: expected size and cost, and discreteness.

The search minimises, over structure logits ``theta``, the validation loss
plus a regularizer that calibrates the network's complexity and how discrete
the structure distribution is:

  R(theta) = size_weight * size_term + flops_weight * flops_term
             + entropy_weight * mean_c H(p_c)

with ``p_c = softmax(theta_c)`` for every choice ``c``. ``size_term`` is
``E[params] / params_max`` (penalty mode) or, when ``target_params`` is set,
``max(0, log(E[params] / target_params))`` (target mode: no pressure below the
target, a constant pull in log-size above it); ``flops_term`` likewise with
``E[FLOPs]``, ``FLOPs_max`` and ``target_flops``. ``params_max`` and
``FLOPs_max`` are those of the largest network of the space, so the weights
are scale-free. A positive ``entropy_weight`` is the discreteness term: it
pulls every choice towards one candidate.

``E[params]`` is exact, not a Monte Carlo estimate: the choices are
independent, so with ``e_l`` the (random) number of channels leaving layer
``l`` (``e_l = w_l`` if kept, else ``e_{l-1}``), the kept probability ``q_l``,
``E[w_l]`` and ``E[k_l^2]``,

  E[params_l] = q_l * (E[k_l^2] * s_l * E[e_{l-1}] * E[w_l] + E[w_l])
  E[e_l]      = q_l * E[w_l] + (1 - q_l) * E[e_{l-1}]

(``k = 1`` for dense layers; ``s_l`` is the number of spatial positions that
are flattened into a dense layer's input, else 1), and likewise for FLOPs
(``2 * H_l * W_l * k^2 * e * w`` per conv, ``2 * in * out`` per dense). For a
one-hot distribution these are the discrete network's exact counts.

Example:
  >>> from paramsel_jax.structure.presets import mlp_space
  >>> space = mlp_space((28, 28, 1), 10, widths=(100, 300), depth=2,
  ...                   activations=('relu',))
  >>> s = space.one_hot({'dense0/width': 1, 'dense1/width': 0,
  ...                    'dense1/present': 0})
  >>> int(expected_params(space, s))  # LeNet-300-100
  266610
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses

import jax
import jax.numpy as jnp

from paramsel_jax.protocol import checks
from paramsel_jax.structure import relax
from paramsel_jax.structure.space import SearchSpace


def _expected_cost(space: SearchSpace, probs: Mapping[str, jax.Array]
                   ) -> tuple[jax.Array, jax.Array]:
  names = space.layer_names()
  spatial = space.spatial_shapes()
  e = jnp.asarray(float(space.input_shape[2]))  # E[channels] flowing.
  params = jnp.zeros(())
  flops = jnp.zeros(())
  first_dense = True
  for i, layer in enumerate(space.layers):
    name = names[i]
    widths = jnp.asarray(layer.widths, jnp.float32)
    if len(layer.widths) > 1:
      ew = jnp.dot(probs[f'{name}/width'], widths)
    else:
      ew = widths[0]
    if layer.optional:
      q = probs[f'{name}/present'][0]
    else:
      q = jnp.asarray(1.0)
    h, w = spatial[i]
    if layer.kind == 'conv':
      k2 = jnp.asarray([k * k for k in layer.kernel_sizes], jnp.float32)
      ek2 = (jnp.dot(probs[f'{name}/kernel'], k2)
             if len(layer.kernel_sizes) > 1 else k2[0])
      params = params + q * (ek2 * e * ew + ew)
      flops = flops + q * 2.0 * h * w * ek2 * e * ew
    else:
      fan = e * (space.flat_spatial() if first_dense else 1)
      first_dense = False
      params = params + q * (fan * ew + ew)
      flops = flops + q * 2.0 * fan * ew
    e = q * ew + (1.0 - q) * e
  fan = e * (space.flat_spatial() if first_dense else 1)
  c = space.num_classes
  params = params + fan * c + c
  flops = flops + 2.0 * fan * c
  return params, flops


def expected_params(space: SearchSpace, probs: Mapping[str, jax.Array]
                    ) -> jax.Array:
  """Expected parameter count of the network under ``probs``.

  Args:
    space: the search space.
    probs: choice name -> probability vector (or a relaxed/one-hot sample).

  Returns:
    A float32 scalar, differentiable in ``probs``; exact for one-hot
    ``probs``.
  """
  return _expected_cost(space, probs)[0]


def expected_flops(space: SearchSpace, probs: Mapping[str, jax.Array]
                   ) -> jax.Array:
  """Expected forward FLOPs per example (2 per multiply-add) under ``probs``.

  Example:
    >>> from paramsel_jax.structure.presets import mlp_space
    >>> space = mlp_space((2, 2, 1), 2, widths=(3,), depth=1,
    ...                   activations=('relu',))
    >>> int(expected_flops(space, {}))  # 2 * (4 * 3 + 3 * 2)
    36
  """
  return _expected_cost(space, probs)[1]


def max_structure(space: SearchSpace) -> dict[str, jax.Array]:
  """The one-hot structure with every layer kept at its widest/largest."""
  idx = {}
  for name, cands in space.choices():
    kind = name.split('/')[1]
    idx[name] = 0 if kind in ('present', 'activation') else len(cands) - 1
  return space.one_hot(idx)


@dataclasses.dataclass(frozen=True)
class RegularizerConfig:
  """Weights of the structure regularizer (see the module docstring).

  Every field is checked when the config is made (a ``ValueError`` names the
  field, the value and what is accepted):

    >>> RegularizerConfig(entropy_weight=float('inf'))
    Traceback (most recent call last):
    ...
    ValueError: RegularizerConfig.entropy_weight=inf; accepted: a finite float.

  Attributes:
    size_weight: weight of the size term, a finite float ``>= 0``.
    target_params: if set (an int ``>= 1``), the size term is the
      target-mode hinge ``max(0, log(E[params] / target_params))``; else
      ``E[params] / params_max``.
    flops_weight: weight of the FLOPs term, finite, ``>= 0``.
    target_flops: if set (an int ``>= 1``), the FLOPs term is the hinge
      ``max(0, log(E[FLOPs] / target_flops))``; else
      ``E[FLOPs] / FLOPs_max``.
    entropy_weight: weight of the mean choice entropy, finite (positive pushes
      towards discrete structures, negative keeps them spread).
  """

  size_weight: float = 0.0
  target_params: int | None = None
  flops_weight: float = 0.0
  target_flops: int | None = None
  entropy_weight: float = 0.0

  def __post_init__(self):
    checks.fields(self, ('size_weight', 'flops_weight'), checks.real,
                  at_least=0)
    checks.fields(self, ('entropy_weight',), checks.real)
    checks.fields(self, ('target_params', 'target_flops'), checks.integer,
                  at_least=1, optional=True)


def structure_regularizer(space: SearchSpace, logits: Mapping[str, jax.Array],
                          config: RegularizerConfig
                          ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The structure regularizer ``R(theta)`` and its parts.

  Args:
    space: the search space.
    logits: structure logits, choice name -> vector.
    config: the weights.

  Returns:
    ``(R, metrics)`` with metrics ``expected_params``, ``expected_flops``,
    ``entropy`` (float32 scalars).

  Example:
    >>> from paramsel_jax.structure.presets import mlp_space
    >>> space = mlp_space((8, 8, 1), 3, widths=(4, 8), depth=1,
    ...                   activations=('relu',))
    >>> r, m = structure_regularizer(space, relax.init_logits(space),
    ...                              RegularizerConfig(size_weight=1.0))
    >>> round(float(m['expected_params']), 1)  # (4 + 8) / 2 * (64 + 1 + 3) + 3
    411.0
  """
  probs = relax.probabilities(logits)
  params, flops = _expected_cost(space, probs)
  big_params, big_flops = _expected_cost(space, max_structure(space))
  # float(target): a Python int above 2**31 would not fit the traced int32.
  hinge = lambda value, target: jax.nn.relu(jnp.log(value / float(target)))
  if config.target_params is not None:
    size = hinge(params, config.target_params)
  else:
    size = params / big_params
  if config.target_flops is not None:
    cost = hinge(flops, config.target_flops)
  else:
    cost = flops / big_flops
  ent = relax.entropy(probs)
  total = (config.size_weight * size + config.flops_weight * cost
           + config.entropy_weight * ent)
  return total, {'expected_params': params, 'expected_flops': flops,
                 'entropy': ent}
