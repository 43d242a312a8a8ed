# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Channel-pruned training and evaluation at the cost of the live channels.

A channel (unit) of a `Dense`/`Conv`/`Conv2D` is pruned when its kernel
column `kernel[..., j]` and bias `bias[j]` are exactly zero and stay so: its
output is a known zero. A masked dense step still pays for it. Here the
network runs on the *active tree*, the params with each leaf sliced to its
module's live units (`freeze.active`), every partly live module computes only
its live units (`active.forward(..., pruned=True)`: no frozen output), and
autodiff and the optimizer see only the live units.

Narrowing (`narrow=True`, the default): a partly live module's output is
passed on *narrow* (its live channels only, no zeros written in) when the
next module with params reads it through channel-wise ops (pooling, ReLU,
a channel-last flatten): that module's kernel keeps only the input rows of
the live channels (`kernel[..., rows, :]`). Its other input rows read
exact zeros, so they change nothing and get a gradient of exactly zero;
the step leaves them out. So the network really runs at its pruned width.
Whether narrowing is exact for a model is checked once, when the plan is
made, against the dense forward pass on random params (ValueError if not;
use `narrow=False` then, which writes the live units into zeros instead).

The input is a params-shaped bool `unit_mask`: True on live units, False on
every scalar of a pruned unit (whole units; a module with no pruned unit is
all True and trains whole; every module keeps at least one unit).

* `channel_plan(apply_fn, unit_mask, example)`: the static plan (one
  compiled program per plan).
* `compact(params, plan)`: full params -> the active tree (ValueError naming
  the module and unit if a pruned unit is not exactly zero).
* `expand(active, plan, like=None)`: the active tree -> full params.
* `channel_apply(apply_fn, plan)`: the cheap jitted forward `(active, x)`.
* `channel_step(apply_fn, loss_fn, tx, plan)`: the cheap jitted train step
  `(active, opt_state, x, y) -> (active, opt_state, loss)`, with
  `opt_state = tx.init(active)`.

  >>> import jax, jax.numpy as jnp, optax
  >>> import flax.linen as nn
  >>> model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(3)])
  >>> x, y = jnp.ones((4, 5)), jnp.array([0, 1, 2, 0])
  >>> params = model.init(jax.random.key(0), x)['params']
  >>> keep = jnp.arange(8) < 4                    # prune units 4..7 of layer 0
  >>> unit_mask = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
  >>> unit_mask['layers_0'] = {'kernel': jnp.broadcast_to(keep, (5, 8)),
  ...                          'bias': keep}
  >>> params = jax.tree.map(lambda p, m: p * m, params, unit_mask)
  >>> apply_fn = lambda p, x: model.apply({'params': p}, x)
  >>> def loss_fn(logits, labels):
  ...   return optax.softmax_cross_entropy_with_integer_labels(
  ...       logits, labels).mean()
  >>> plan = channel_plan(apply_fn, unit_mask, x)
  >>> plan.describe()
  'layers_0 4/8 units (narrow), layers_2 reads 4/8 input rows'
  >>> active = compact(params, plan)
  >>> active['layers_0']['kernel'].shape, active['layers_2']['kernel'].shape
  ((5, 4), (4, 3))
  >>> tx = optax.sgd(0.1)
  >>> step = channel_step(apply_fn, loss_fn, tx, plan)
  >>> opt_state = tx.init(active)
  >>> for _ in range(3):
  ...   active, opt_state, loss = step(active, opt_state, x, y)
  >>> new = expand(active, plan, like=params)
  >>> bool((new['layers_0']['kernel'][:, 4:] == 0).all())
  True
  >>> logits = channel_apply(apply_fn, plan)(active, x)
  >>> bool(jnp.allclose(logits, apply_fn(new, x), atol=1e-6))
  True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.freeze import active_check
from paramsel_jax.freeze import units as units_lib
from paramsel_jax.models.conv import Conv2D
from paramsel_jax.select import granularity as granularity_lib

PyTree = Any
ApplyFn = Callable[[PyTree, Any], jax.Array]
LossFn = Callable[[jax.Array, Any], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class ChannelPlan:
  """What a channel-sparse step depends on (static; host numpy arrays).

  Attributes:
    mask: the unit mask (numpy bool, params-shaped).
    live: per partly live module, its live units (sorted indices).
    units: per partly live module, its unit count.
    axes: per partly live module, its unit axes (`active.Plan.unit_axes`).
    rows: per module that reads a narrow input, the kernel input rows kept
      (indices into the kernel's axis -2).
    narrow: the partly live modules whose output is passed on narrow.
  """

  mask: PyTree
  live: dict[str, np.ndarray]
  units: dict[str, int]
  axes: dict[str, int]
  rows: dict[str, np.ndarray]
  narrow: frozenset[str]

  def describe(self) -> str:
    """E.g. 'Dense_0 250/500 units (narrow), Dense_1 reads 250/500 input rows'."""
    names = [granularity_lib.module_name(granularity_lib.module_path(p))
             for p, _ in jax.tree_util.tree_flatten_with_path(self.mask)[0]]
    parts = []
    for name in dict.fromkeys(names):
      if name in self.live:
        parts.append(f'{name} {len(self.live[name])}/{self.units[name]} units'
                     + (' (narrow)' if name in self.narrow else ''))
      if name in self.rows:
        kernel = _leaf(self.mask, name, 'kernel')
        parts.append(f'{name} reads {len(self.rows[name])}/'
                     f'{kernel.shape[-2]} input rows')
    return ', '.join(parts) or 'dense (nothing pruned)'


def _leaf(tree: PyTree, module: str, key: str) -> Any:
  node = tree
  for k in module.split('/'):
    node = node[k]
  return node[key]


def _subtree(tree: PyTree, module: str) -> PyTree:
  node = tree
  for k in module.split('/'):
    node = node[k]
  return node


def _names_keys(tree: PyTree) -> list[tuple[str, str]]:
  """Per leaf, (module name, leaf key)."""
  out = []
  for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
    key = path[-1]
    out.append((granularity_lib.module_name(granularity_lib.module_path(path)),
                str(getattr(key, 'key', getattr(key, 'name', key)))))
  return out


def _narrowable(module: nn.Module) -> bool:
  """A module whose kernel is `(..., in, out)`, read by one matmul/conv."""
  if type(module) is nn.Conv:  # pylint: disable=unidiomatic-typecheck
    return module.feature_group_count == 1 and module.mask is None
  return type(module) in (nn.Dense, Conv2D)  # pylint: disable=unidiomatic-typecheck


def channel_plan(apply_fn: ApplyFn, unit_mask: PyTree, example: Any,
                 narrow: bool = True) -> ChannelPlan:
  """The plan of a channel-pruned model (host side, before any step).

  Args:
    apply_fn: `(params, x) -> outputs` of a flax linen model whose modules
      are called through `Module.apply` (the method interceptor sees them).
    unit_mask: params-shaped bool: False on every scalar of a pruned unit.
    example: a concrete input batch `x` (shapes, and the narrowing check).
    narrow: pass partly live modules' outputs on narrow where the next module
      reads them channel-wise (module docstring); checked on `example`.

  Raises:
    ValueError: the mask is not whole units, a module has every unit
      pruned, a partly live module cannot be split into units
      (`active_check`), or narrowing is not exact for this model.
  """
  mask = jax.tree.map(lambda m: np.asarray(m, bool), unit_mask)
  p, arrays = active_lib.plan(mask, 'unit', batched=False)
  empty = [m for m, k in zip(p.modules, p.kinds) if k == 'frozen']
  if empty:
    raise ValueError(
        f'channel_plan: every unit of {empty} is pruned; accepted: at least '
        'one live unit per module (remove the layer from the model instead).')
  partial = [m for m, k in zip(p.modules, p.kinds) if k == 'partial']
  live = {m: np.asarray(arrays['idx'][m]) for m in partial}
  axes = {m: a for m, a in p.axes().items() if m in live}
  shapes = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, jnp.float32),
                        mask)
  units = {m: math.prod(_leaf(mask, m, k).shape[-axes[m]:])
           for m in partial for n, k in _names_keys(mask) if n == m}
  if partial:
    active_check.check_active_step(apply_fn, shapes, example, 'unit',
                                   modules=partial)
  rows: dict[str, np.ndarray] = {}
  narrowed: set[str] = set()
  if narrow and partial:
    traced = active_check.trace(apply_fn, shapes, example)
    with_params = [m for m in traced.order if m in p.modules]
    for prev, cur in zip(with_params, with_params[1:]):
      if (prev not in live or axes[prev] != 1
          or not _narrowable(traced.modules[prev])
          or not _narrowable(traced.modules[cur])):
        continue
      cin, n = _leaf(mask, cur, 'kernel').shape[-2], units[prev]
      if cin % n:
        continue
      rows[cur] = (np.arange(cin // n)[:, None] * n
                   + live[prev][None, :]).ravel()
      narrowed.add(prev)
  plan = ChannelPlan(mask, live, units, axes, rows, frozenset(narrowed))
  if narrowed:
    _check_narrowing(apply_fn, plan, example)
  return plan


def _random_params(mask: PyTree, key: jax.Array) -> PyTree:
  """Random params, 1/sqrt(fan-in) scaled, zero in the pruned units."""
  leaves, treedef = jax.tree.flatten(mask)
  keys = jax.random.split(key, len(leaves))
  def one(m, k):
    fan_in = math.prod(m.shape[:-1]) if m.ndim > 1 else 100
    return jax.random.normal(k, m.shape) / math.sqrt(fan_in) * m
  return jax.tree.unflatten(treedef, [one(m, k) for m, k in zip(leaves, keys)])


def _check_narrowing(apply_fn: ApplyFn, plan: ChannelPlan, example: Any
                     ) -> None:
  """ValueError unless the narrow forward equals the dense one (random params)."""
  params = _random_params(plan.mask, jax.random.key(0))
  dense = np.asarray(apply_fn(params, example))
  problem = None
  try:
    cheap = np.asarray(channel_apply(apply_fn, plan)(compact(params, plan),
                                                     example))
    scale = float(np.abs(dense).max()) or 1.0
    if cheap.shape != dense.shape:
      problem = f'outputs of shape {cheap.shape}, not {dense.shape}'
    elif not np.allclose(cheap, dense, rtol=1e-4, atol=1e-4 * scale):
      problem = (f'outputs differ by up to {np.abs(cheap - dense).max():.3g} '
                 f'(dense outputs up to {scale:.3g})')
  except (TypeError, ValueError, flax.errors.FlaxError) as e:  # shapes that do not fit.
    problem = f'{type(e).__name__}: {e}'
  if problem:
    pairs = ', '.join(f'{m} -> {sorted(plan.rows)}' for m in sorted(plan.narrow))
    raise ValueError(
        'channel_plan: passing the pruned modules\' outputs on narrow is not '
        f'exact for this model ({problem}; narrowed: {pairs}); a narrowed '
        'output must reach only the next module with params, through '
        'channel-wise ops that keep zeros (ReLU, pooling, a channel-last '
        'flatten); accepted: such models, or narrow=False.')


def compact(params: PyTree, plan: ChannelPlan) -> PyTree:
  """The active tree of `params`: live units, and the rows that read them.

  Raises ValueError (`active.check_pruned`) if a pruned unit of `params` is
  not exactly zero: the cheap step would silently drop it.
  """
  active_lib.check_pruned(params, plan.mask, unit_axes=plan.axes or None)
  leaves, treedef = jax.tree.flatten(params)
  out = []
  for x, (name, key) in zip(leaves, _names_keys(params)):
    if name in plan.rows and key == 'kernel':
      x = jnp.take(x, plan.rows[name], axis=-2)
    if name in plan.live:
      x = units_lib.take(x, jnp.asarray(plan.live[name]), plan.axes[name])
    out.append(x)
  return jax.tree.unflatten(treedef, out)


def expand(active: PyTree, plan: ChannelPlan, like: PyTree | None = None
           ) -> PyTree:
  """The full params of an active tree (the inverse of `compact`).

  Pruned units are zero. A narrowed kernel's rows left out of the active
  tree (those reading a pruned channel) are taken from `like` (e.g. the
  params given to `compact`: the step leaves them unchanged, their gradient
  is exactly zero), or zero when `like` is None.
  """
  leaves, treedef = jax.tree.flatten(active)
  masks = jax.tree.leaves(plan.mask)
  refs = (jax.tree.leaves(like) if like is not None
          else [None] * len(leaves))
  out = []
  for a, m, ref, (name, key) in zip(leaves, masks, refs, _names_keys(active)):
    full = (jnp.zeros(m.shape, a.dtype) if ref is None
            else jnp.asarray(ref, a.dtype) * m)
    if name in plan.rows and key == 'kernel':
      rows = plan.rows[name]
      sub = jnp.take(full, rows, axis=-2)
      if name in plan.live:
        a = units_lib.put(sub, a, jnp.asarray(plan.live[name]),
                           plan.axes[name])
      out.append(jnp.moveaxis(jnp.moveaxis(full, -2, 0).at[rows].set(
          jnp.moveaxis(a, -2, 0)), 0, -2))
    elif name in plan.live:
      out.append(units_lib.put(full, a, jnp.asarray(plan.live[name]),
                                 plan.axes[name]))
    else:
      out.append(a)
  return jax.tree.unflatten(treedef, out)


def _forward(apply_fn: ApplyFn, plan: ChannelPlan
             ) -> Callable[[PyTree, Any], jax.Array]:
  """The cheap forward `(active, x)` (not jitted)."""
  live = {n: jnp.asarray(i) for n, i in plan.live.items()}
  special = set(plan.live) | set(plan.rows)

  def forward(active: PyTree, x: Any) -> jax.Array:
    # Full-shaped stand-ins for the modules the interceptor computes (never
    # read: dead code); the others' params are their active leaves.
    base = jax.tree.map(
        lambda a, m, nk: jnp.zeros(m.shape, a.dtype) if nk[0] in special
        else a, active, plan.mask,
        jax.tree.unflatten(jax.tree.structure(active), _names_keys(active)),
        is_leaf=lambda t: isinstance(t, tuple))
    busy: list[bool] = []

    def intercept(next_fun, args, kwargs, ctx):
      name = granularity_lib.module_name(ctx.module.path)
      if busy or ctx.method_name == 'setup' or name not in special:
        return next_fun(*args, **kwargs)
      mine = _subtree(active, name)
      if name in plan.live and name not in plan.narrow and name not in plan.rows:
        return units_lib.call_partial(
            ctx.module, ctx.method_name, next_fun, args, kwargs, mine,
            _subtree(base, name), live[name], plan.axes[name], busy,
            pruned=True)
      if ctx.method_name != '__call__':
        raise ValueError(f'channels: module {name} called through '
                         f'{ctx.method_name}; accepted: __call__ only.')
      changes = ({'features': len(plan.live[name])} if name in plan.live
                 else {})
      busy.append(True)
      try:
        out = ctx.module.clone(parent=None, **changes).apply(
            {'params': mine}, *args, **kwargs)
      finally:
        busy.pop()
      if name in plan.live and name not in plan.narrow:
        return units_lib.put_into_zeros(out, plan.live[name],
                                        (plan.units[name],))
      return out

    with nn.intercept_methods(intercept):
      return apply_fn(base, x)

  return forward


def channel_apply(apply_fn: ApplyFn, plan: ChannelPlan
                  ) -> Callable[[PyTree, Any], jax.Array]:
  """The jitted cheap forward: `(active, x) -> apply_fn(expand(active), x)`."""
  return jax.jit(_forward(apply_fn, plan))


def channel_step(apply_fn: ApplyFn, loss_fn: LossFn,
                 tx: optax.GradientTransformation, plan: ChannelPlan
                 ) -> Callable[..., tuple[PyTree, optax.OptState, jax.Array]]:
  """The jitted cheap train step over the live units.

  `step(active, opt_state, x, y) -> (active, opt_state, loss)` with `loss =
  loss_fn(apply_fn(expand(active), x), y)`; the gradient, the update and
  `opt_state` (`tx.init(active)`) cover the active tree only, so pruned units
  stay exactly zero. For an elementwise optimizer (SGD, Adam, ...) the live
  units follow exactly the dense masked run's trajectory.

  Args:
    apply_fn: `(params, x) -> outputs` (see `channel_plan`).
    loss_fn: `(outputs, y) -> scalar loss`.
    tx: the optimizer.
    plan: `channel_plan(apply_fn, unit_mask, example)`.
  """
  forward = _forward(apply_fn, plan)

  def step(active, opt_state, x, y):
    loss, grads = jax.value_and_grad(
        lambda a: loss_fn(forward(a, x), y))(active)
    updates, opt_state = tx.update(grads, opt_state, active)
    return optax.apply_updates(active, updates), opt_state, loss

  return jax.jit(step)
