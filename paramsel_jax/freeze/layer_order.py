"""The layers of a model in forward order, for the layer freezing criteria.

`autofreeze` and `freezeout` (`freezing`) freeze layers first to last; the
params' key order is sorted, not forward (`Block_10` sorts before `Block_2`,
a head `Dense_0` before `Embed_0`). `forward_layer_order` traces a flax linen
model's calls; `resolve_layer_order` checks an order given by hand.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.select import granularity as granularity_lib

PyTree = Any
__all__ = ['forward_layer_order', 'resolve_layer_order']


def forward_layer_order(apply_fn: Callable[[PyTree, Any], Any], params: PyTree,
                        example: Any) -> tuple[str, ...]:
  """The params' layers in the order a forward pass calls their modules.

  Layers are named as in `granularity.groups(params, 'layer').module_names`.
  Traced once (shapes only) with flax linen's method interceptor
  (`active.module_call_order`); a module's own params count from the start
  of its call, so a model's top-level params ('(root)', e.g. a position
  embedding) come first.

  Args:
    apply_fn: `apply_fn(params, x)` of a flax linen model.
    params: its params (or their shapes).
    example: an input batch (or its shape), e.g. one example.

  Returns:
    Every layer's module name, first called first.

  Raises:
    ValueError: the trace called no module of some layers (a hand-written
      `apply_fn` or an NNX model, which the interceptor cannot see, or a
      module the forward pass skips); pass `layer_order=` yourself then.

  Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     return nn.Dense(2, name='head')(nn.Dense(3, name='body')(x))
    >>> net, x = Net(), jnp.zeros((1, 4))
    >>> params = net.init(jax.random.key(0), x)['params']
    >>> forward_layer_order(lambda p, x: net.apply({'params': p}, x), params, x)
    ('body', 'head')
  """
  names = granularity_lib.groups(params, 'layer').module_names
  called = [path or '(root)'
            for path in active_lib.module_call_order(apply_fn, params, example)]
  order = [name for name in called if name in names]
  missing = [name for name in names if name not in order]
  if missing:
    raise ValueError(
        f'forward_layer_order: the forward pass called no flax linen module '
        f'for the layers {missing} (of {list(names)}; called: {called}). A '
        'hand-written apply_fn or an NNX model cannot be traced this way; '
        'accepted: a flax linen apply_fn that calls every layer, or pass '
        'layer_order= (module names or group indices, first layer first).')
  return tuple(order)


def resolve_layer_order(layer_order: Sequence[int | str],
                        g: granularity_lib.Groups) -> tuple[int, ...]:
  """`layer_order` (module names or group indices) as group indices.

  Every layer of `g` (layer granularity) exactly once; ValueError naming
  the unknown, repeated or missing entries.

  Example:
    >>> import jax.numpy as jnp
    >>> g = granularity_lib.groups({'a': {'w': jnp.zeros(2)},
    ...                             'b': {'w': jnp.zeros(3)}}, 'layer')
    >>> resolve_layer_order(['b', 'a'], g), resolve_layer_order((1, 0), g)
    ((1, 0), (1, 0))
  """
  names = g.module_names
  if g.granularity != 'layer':
    raise ValueError(f'layer_order orders layers; accepted: granularity='
                     f"'layer', got {g.granularity!r}.")
  if isinstance(layer_order, (str, bytes)):
    raise ValueError(f'layer_order={layer_order!r}; accepted: a sequence of '
                     f'module names or group indices, e.g. {list(names)}.')
  order, unknown = [], []
  for entry in layer_order:
    if isinstance(entry, str) and entry in names:
      order.append(names.index(entry))
    elif (isinstance(entry, numbers.Integral) and not isinstance(entry, bool)
          and 0 <= int(entry) < len(names)):
      order.append(int(entry))
    else:
      unknown.append(entry)
  if unknown:
    raise ValueError(f'layer_order: unknown layers {unknown}; accepted: the '
                     f'module names {list(names)} or indices 0..'
                     f'{len(names) - 1}.')
  repeated = sorted({names[i] for i in order if order.count(i) > 1})
  missing = [name for i, name in enumerate(names) if i not in order]
  if repeated or missing:
    raise ValueError(f'layer_order: every layer exactly once, first layer '
                     f'first; repeated: {repeated}, missing: {missing}.')
  return tuple(order)
