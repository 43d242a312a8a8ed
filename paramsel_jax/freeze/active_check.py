"""Which models `T|α` on the active set trains right, checked before any work.

`active.forward` trains a partly active module's units alone by intercepting
the module's call (flax linen's `nn.intercept_methods`) and running a clone
with `features=k` (`units.call_partial`). That is right only for a module
the interceptor reaches and the clone splits into units (`SPLITTABLE`):

* linen `Dense`; `Conv` (feature_group_count=1, no mask); this package's
  `Conv2D`; `DenseGeneral` without batch_dims, int features (attention's
  out projection, `axis=(-2, -1)`) or tuple features (attention's
  query/key/value, `features=(heads, head_dim)`: one unit per `(head, d)`
  pair, planned with the unit axes `granularity.groups` reads from the
  bias, or from `unit_axes(...)` of a traced model when there is none);
* `Embed`: a unit is an embedding feature (a column of the table), both
  through `__call__` (lookups) and `attend` (a tied output head).

Norms (`LayerNorm`, `RMSNorm`: params `scale`, `bias`) are one unit at
'unit' granularity (`granularity.groups`), so they train or freeze whole
and are never partly active. Anything else partly active is refused here,
naming the module, instead of training with a gradient of exactly zero or
failing inside flax after η0: a hand-written `apply_fn`, a flax NNX module,
a param at the model's root, a module inside `nn.scan` (its params stacked
along a leading axis: a unit would span every scanned layer), a bias-less
multi-axis `DenseGeneral` planned along its last axis only. Layer and
element granularity split nothing, so every model is accepted there (an
`nn.scan` stack is then one module per scanned submodule, all its layers).

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
from paramsel_jax.select import unit_axes as unit_axes_lib
from paramsel_jax.models.conv import Conv2D

PyTree = Any
# What `forward` can split into units, said in messages.
SPLITTABLE = ('flax linen Dense, Conv (feature_group_count=1, no mask), '
              'DenseGeneral (no batch_dims; int features, or tuple features '
              'with the unit axes of granularity.groups), Embed (lookups and '
              'attend) and paramsel_jax.models.Conv2D, called through '
              '`Module.apply` and not inside nn.scan; norms train or freeze '
              'whole')


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
    if module.batch_dims:
      return None
    axis = module.axis
    return (1 if isinstance(axis, int) else len(axis)) + len(_features(module))
  if type(module) is nn.Embed:  # pylint: disable=unidiomatic-typecheck
    return 2
  if type(module) is Conv2D:  # pylint: disable=unidiomatic-typecheck
    return 4
  return None


def _features(module: nn.Module) -> tuple[int, ...]:
  """The module's output feature shape (`features`, as a tuple)."""
  features = getattr(module, 'features', None)
  if isinstance(features, int):
    return (features,)
  return tuple(features) if isinstance(features, (tuple, list)) else ()


def module_unit_axes(module: nn.Module) -> int | None:
  """The unit axes of a module of known type (None: unknown, the default).

  A tuple-featured `DenseGeneral`: its features' rank; a linen norm: 0 (one
  unit); `Dense`, `Conv`, `Embed`, `Conv2D`: 1.
  """
  if isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm, nn.GroupNorm)):
    return 0
  if _expected_kernel_ndim(module) is None:
    return None
  return len(_features(module))


def inner_leaves(module: nn.Module) -> dict[str, tuple[int, ...]]:
  """A bound module's own params' shapes as its call sees them.

  Inside `nn.scan` a layer's slice: its shapes lack the stacked axes.
  """
  try:
    own = module.variables.get('params', {})
  except (AttributeError, ValueError):  # unbound, or no variables yet.
    return {}
  return {k: tuple(np.shape(v)) for k, v in own.items() if hasattr(v, 'shape')}


def unsplittable(module: nn.Module, methods: set[str],
                 leaves: dict[str, tuple[int, ...]],
                 inner: dict[str, tuple[int, ...]] | None = None,
                 axes: int | None = None) -> str | None:
  """Why `forward` cannot train some of `module`'s units alone (None: it can).

  `methods`: the module's methods a forward pass calls; `leaves`: its own
  params' shapes by name; `inner`: the same as the module's call sees them
  (`inner_leaves`; stacked axes missing inside `nn.scan`); `axes`: the
  unit axes it was planned with (None: `granularity.groups`' default).
  """
  cls = type(module).__name__
  attrs = ', '.join(f'{a}={getattr(module, a)!r}' for a in
                    ('features', 'feature_group_count', 'batch_dims')
                    if hasattr(module, a))
  what = f'{cls}({attrs})' if attrs else cls
  stacked = {k: v[:len(v) - len(inner[k])] for k, v in leaves.items()
             if inner and k in inner and len(inner[k]) < len(v)}
  if stacked:
    return (f'{what} inside nn.scan (or another lifted transform): its params '
            f'are stacked along leading axes {sorted(set(stacked.values()))}, '
            'so a unit would span every scanned layer; train or freeze the '
            "scanned module whole (granularity 'layer')")
  other = sorted(methods - {'__call__', 'setup'}
                 - ({'attend'} if type(module) is nn.Embed else set()))  # pylint: disable=unidiomatic-typecheck
  if other:
    return f'{what}, called through {", ".join(other)}, not only __call__'
  ndim = _expected_kernel_ndim(module)
  features = _features(module)
  if ndim is None:
    return f'{what} with params {sorted(leaves)}'
  n = len(features)
  weight = 'embedding' if type(module) is nn.Embed else 'kernel'  # pylint: disable=unidiomatic-typecheck
  kernel = leaves.get(weight)
  if (set(leaves) - {weight, 'bias'} or kernel is None or len(kernel) != ndim
      or any(shape[len(shape) - n:] != features for shape in leaves.values())
      or leaves.get('bias', features) != features):
    return f'{what} with params of shapes {leaves}'
  planned = unit_axes_lib.default_unit_axes(leaves) if axes is None else axes
  if planned != n:
    return (f'{what}: its units are its {n} output axes {features}, but they '
            f'were planned along its last {planned} (a bias-less multi-axis '
            'kernel cannot be read from shapes); plan with '
            '`unit_axes=active_check.unit_axes(apply_fn, params, example)` '
            'in granularity.groups and active.plan')
  return None


@dataclasses.dataclass(frozen=True)
class Traced:
  """What one traced forward pass says of each module with params."""

  order: tuple[str, ...]  # the modules called, first call first.
  modules: dict[str, nn.Module]  # by name (`granularity.module_name`).
  methods: dict[str, set[str]]  # the methods called, by name.
  inner: dict[str, dict[str, tuple[int, ...]]]  # `inner_leaves`, by name.


def trace(apply_fn: Callable[[PyTree, Any], Any], params: PyTree,
          example: Any) -> Traced:
  """The modules a forward pass on `example` calls (one `jax.eval_shape`)."""
  order: list[str] = []
  modules: dict[str, nn.Module] = {}
  methods: dict[str, set[str]] = {}
  inner: dict[str, dict[str, tuple[int, ...]]] = {}

  def record(next_fun, args, kwargs, ctx):
    name = granularity_lib.module_name(ctx.module.path)
    if name not in modules:
      order.append(name)
      modules[name] = ctx.module
    methods.setdefault(name, set()).add(ctx.method_name)
    if ctx.method_name != 'setup' and name not in inner:
      inner[name] = inner_leaves(ctx.module)
    return next_fun(*args, **kwargs)

  def run(q, x):
    with nn.intercept_methods(record):
      return apply_fn(q, x)

  jax.eval_shape(run, params, example)
  return Traced(tuple(order), modules, methods, inner)


def unit_axes(apply_fn: Callable[[PyTree, Any], Any], params: PyTree,
              example: Any) -> dict[str, int]:
  """Per module with params, its unit axes, read from a traced forward pass.

  For `granularity.groups(..., unit_axes=)` and `active.plan(...,
  unit_axes=)`: it names the output axes of a multi-axis `DenseGeneral`
  even without a bias (which its params' shapes cannot say) and makes
  linen norms one unit. Modules of other types keep the default.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> model = nn.DenseGeneral((2, 4), use_bias=False)
    >>> params = model.init(jax.random.key(0), jnp.ones((1, 3)))['params']
    >>> apply_fn = lambda p, x: model.apply({'params': p}, x)
    >>> axes = unit_axes(apply_fn, params, jnp.ones((1, 3)))
    >>> axes, granularity_lib.groups(params, 'unit', axes).module_units
    ({'(root)': 2}, (8,))
  """
  traced = trace(apply_fn, params, example)
  out = {}
  for name, leaves in own_leaves(params).items():
    module = traced.modules.get(name)
    axes = None if module is None else module_unit_axes(module)
    out[name] = unit_axes_lib.default_unit_axes(leaves) if axes is None else axes
  return out


def own_leaves(params: PyTree) -> dict[str, dict[str, tuple[int, ...]]]:
  """Per module name, its own params' shapes by leaf name."""
  out: dict[str, dict[str, tuple[int, ...]]] = {}
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = granularity_lib.module_name(granularity_lib.module_path(path))
    leaf = granularity_lib.module_name(path[-1:])
    out.setdefault(name, {})[leaf] = tuple(np.shape(x))
  return out


def check_active_step(apply_fn: Callable[[PyTree, Any], Any],
                      params: PyTree, example: Any, granularity: str,
                      modules: Sequence[str] | None = None,
                      unit_axes: dict[str, int] | None = None) -> None:
  """ValueError unless `forward` trains partly active modules right.

  At unit granularity `forward` trains a partly active module's units alone
  by intercepting the module's call (`nn.intercept_methods`) and running a
  clone with `features=k`. A module with params that a forward pass does not
  call through flax linen's interceptor (a hand-written `apply_fn`, a flax
  NNX module) would get a gradient of exactly zero, and a module that the
  clone does not split into units (anything not in `SPLITTABLE`, a module
  inside `nn.scan`, a param at the model's root) would fail inside flax or
  train the wrong thing. This traces the model once (`jax.eval_shape`) and
  refuses both, naming the modules, before any work. At 'layer' and
  'element' granularity nothing is split (a module trains whole or not at
  all; the packed step merges the params), so every model is accepted.

  Args:
    apply_fn: `(params, images) -> logits`.
    params: the params (or their `jax.eval_shape`).
    example: the inputs of `apply_fn` (any pytree).
    granularity: of α ('element', 'unit' or 'layer').
    modules: the module names that will be partly active; None: any module
      with params may be (norms never are: one unit each).
    unit_axes: the map α is planned with (`granularity.groups`); None: the
      default read from the params' shapes.

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
(feature_group_count=1, no mask), DenseGeneral (no batch_dims; int features, \
or tuple features with the unit axes of granularity.groups), Embed (lookups \
and attend) and paramsel_jax.models.Conv2D, called through `Module.apply` and \
not inside nn.scan; norms train or freeze whole; for this model use \
granularity 'layer' or 'element', or step='masked' (any model).
  """
  granularity_lib.check_granularity(granularity)
  if granularity != 'unit':
    return
  leaves = own_leaves(params)
  g = granularity_lib.groups(params, 'unit', unit_axes)
  axes = dict(zip(g.module_names, g.module_unit_axes))
  wanted = ([n for n, u in zip(g.module_names, g.module_units) if u > 1]
            if modules is None else list(modules))
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
                          leaves.get(name, {}), traced.inner.get(name),
                          axes.get(name))
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
