"""Which models `T|α` on the active set trains right, checked before any work.

`active.forward` trains a partly active module's units alone by intercepting
the module's call (flax linen's `nn.intercept_methods`) and running a clone
with `features=k`. That is right only for a module the interceptor reaches
and the clone splits into units: a linen `Dense`, `Conv`, `DenseGeneral`
with int features, or this package's `Conv2D`. Anything else (a hand-written
`apply_fn`, a flax NNX module, attention's 3-axis `DenseGeneral`,
`LayerNorm`, `Embed`, a param at the model's root) is refused here, naming
the modules, instead of training with a gradient of exactly zero or failing
inside flax after η0. Layer and element granularity split nothing, so every
model is accepted there.

  >>> import jax, jax.numpy as jnp
  >>> from paramsel_jax import models
  >>> model = models.create_model('mlp', widths=(8,), num_classes=3)
  >>> params = models.init_params(model, jax.random.key(0), (4,))
  >>> check_active_step(lambda p, x: model.apply({'params': p}, x), params,
  ...                   jnp.zeros((1, 4)), "unit")  # Dense layers: accepted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np

from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.models.conv import Conv2D

PyTree = Any
# What `forward` can split into units, said in messages.
SPLITTABLE = ('flax linen Dense, Conv (feature_group_count=1, no mask), '
              'DenseGeneral (int features, no batch_dims) and '
              'paramsel_jax.models.Conv2D, called through `Module.apply`')


def _expected_kernel_ndim(module: nn.Module) -> int | None:
  """The kernel's rank `clone(features=k)` keeps right; None: not splittable."""
  if type(module) is nn.Dense:  # pylint: disable=unidiomatic-typecheck
    return 2
  if type(module) is nn.Conv:  # pylint: disable=unidiomatic-typecheck
    if module.feature_group_count != 1 or module.mask is not None:
      return None
    size = module.kernel_size
    return (1 if isinstance(size, int) else len(size)) + 2
  if type(module) is nn.DenseGeneral:  # pylint: disable=unidiomatic-typecheck
    if not isinstance(module.features, int) or module.batch_dims:
      return None
    axis = module.axis
    return (1 if isinstance(axis, int) else len(axis)) + 1
  if type(module) is Conv2D:  # pylint: disable=unidiomatic-typecheck
    return 4
  return None


def unsplittable(module: nn.Module, methods: set[str],
                 leaves: dict[str, tuple[int, ...]]) -> str | None:
  """Why `forward` cannot train some of `module`'s units alone (None: it can).

  `methods`: the module's methods a forward pass calls; `leaves`: its own
  params' shapes by name.
  """
  cls = type(module).__name__
  attrs = ', '.join(f'{a}={getattr(module, a)!r}' for a in
                    ('features', 'feature_group_count', 'batch_dims')
                    if hasattr(module, a))
  what = f'{cls}({attrs})' if attrs else cls
  other = sorted(methods - {'__call__', 'setup'})
  if other:
    return f'{what}, called through {", ".join(other)}, not only __call__'
  ndim = _expected_kernel_ndim(module)
  features = getattr(module, 'features', None)
  if ndim is None:
    return f'{what} with params {sorted(leaves)}'
  kernel = leaves.get('kernel')
  if (set(leaves) - {'kernel', 'bias'} or kernel is None or len(kernel) != ndim
      or any(shape[-1] != features for shape in leaves.values())
      or leaves.get('bias', (features,)) != (features,)):
    return f'{what} with params of shapes {leaves}'
  return None


@dataclasses.dataclass(frozen=True)
class Traced:
  """What one traced forward pass says of each module with params."""

  order: tuple[str, ...]  # the modules called, first call first.
  modules: dict[str, nn.Module]  # by name (`granularity.module_name`).
  methods: dict[str, set[str]]  # the methods called, by name.


def trace(apply_fn: Callable[[PyTree, jax.Array], jax.Array], params: PyTree,
          example: jax.Array) -> Traced:
  """The modules a forward pass on `example` calls (one `jax.eval_shape`)."""
  order: list[str] = []
  modules: dict[str, nn.Module] = {}
  methods: dict[str, set[str]] = {}

  def record(next_fun, args, kwargs, ctx):
    name = granularity_lib.module_name(ctx.module.path)
    if name not in modules:
      order.append(name)
      modules[name] = ctx.module
    methods.setdefault(name, set()).add(ctx.method_name)
    return next_fun(*args, **kwargs)

  def run(q, x):
    with nn.intercept_methods(record):
      return apply_fn(q, x)

  jax.eval_shape(run, params, example)
  return Traced(tuple(order), modules, methods)


def own_leaves(params: PyTree) -> dict[str, dict[str, tuple[int, ...]]]:
  """Per module name, its own params' shapes by leaf name."""
  out: dict[str, dict[str, tuple[int, ...]]] = {}
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = granularity_lib.module_name(granularity_lib.module_path(path))
    leaf = granularity_lib.module_name(path[-1:])
    out.setdefault(name, {})[leaf] = tuple(np.shape(x))
  return out


def check_active_step(apply_fn: Callable[[PyTree, jax.Array], jax.Array],
                      params: PyTree, example: jax.Array, granularity: str,
                      modules: Sequence[str] | None = None) -> None:
  """ValueError unless `forward` trains partly active modules right.

  At unit granularity `forward` trains a partly active module's units alone
  by intercepting the module's call (`nn.intercept_methods`) and running a
  clone with `features=k`. A module with params that a forward pass does not
  call through flax linen's interceptor (a hand-written `apply_fn`, a flax
  NNX module) would get a gradient of exactly zero, and a module that the
  clone does not split into units (attention's 3-axis `DenseGeneral`,
  `LayerNorm`, `Embed`, a param at the model's root) would fail inside flax
  or train the wrong thing. This traces the model once (`jax.eval_shape`) and
  refuses both, naming the modules, before any work. At 'layer' and
  'element' granularity nothing is split (a module trains whole or not at
  all; the packed step merges the params), so every model is accepted.

  Args:
    apply_fn: `(params, images) -> logits`.
    params: the params (or their `jax.eval_shape`).
    example: a batch of inputs.
    granularity: of α ('element', 'unit' or 'layer').
    modules: the module names that will be partly active; None: any module
      with params may be.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> params = {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2)}
    >>> apply_fn = lambda p, x: x @ p['w'] + p['b']
    >>> check_active_step(apply_fn, params, jnp.ones((1, 3)), 'layer')
    >>> check_active_step(apply_fn, params, jnp.ones((1, 3)), 'unit')
    Traceback (most recent call last):
    ...
    ValueError: the active step (T|α, step='active') cannot train single \
units of: (root) (not called through flax linen's method interceptor: a \
hand-written apply_fn or an NNX module; its units would get a gradient of \
exactly zero); accepted at granularity 'unit': flax linen Dense, Conv \
(feature_group_count=1, no mask), DenseGeneral (int features, no batch_dims) \
and paramsel_jax.models.Conv2D, called through `Module.apply`; for this \
model use granularity 'layer' or 'element', or step='masked' (any model).
  """
  granularity_lib.check_granularity(granularity)
  if granularity != 'unit':
    return
  leaves = own_leaves(params)
  wanted = list(leaves) if modules is None else list(modules)
  traced = trace(apply_fn, params, example)
  problems = []
  for name in sorted(wanted, key=lambda n: (
      traced.order.index(n) if n in traced.order else len(traced.order),
      list(leaves).index(n) if n in leaves else 0)):
    if name not in traced.modules:
      problems.append(
          f"{name} (not called through flax linen's method interceptor: a "
          'hand-written apply_fn or an NNX module; its units would get a '
          'gradient of exactly zero)')
      continue
    reason = unsplittable(traced.modules[name], traced.methods[name],
                           leaves.get(name, {}))
    if reason:
      problems.append(f'{name} ({reason}: not split into units by '
                      'clone(features=k))')
  if problems:
    shown = '; '.join(problems[:3]) + (f'; and {len(problems) - 3} more'
                                        if len(problems) > 3 else '')
    raise ValueError(
        "the active step (T|α, step='active') cannot train single units of: "
        f"{shown}; accepted at granularity 'unit': {SPLITTABLE}; for this "
        "model use granularity 'layer' or 'element', or step='masked' (any "
        'model).')
