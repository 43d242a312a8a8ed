"""Trajectory statistics that selectors read, accumulated inside the jitted loop.

The protocol collects them over the last `window` steps of each phase (η0, then
η1, reset in between). Every statistic is O(N) memory (one array per param
leaf); no trajectory is stored. Means and variances use Welford's update (exact
running moments over the window, numerically stable); the APF statistics use
exponential moving averages, as in Chen et al. 2021.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from paramsel_jax.optim import masking

PyTree = Any
# Added to the denominator of a ratio of statistics (a signal-to-noise ratio,
# APF's perturbation, psgld's drift z): keeps 0/0 out, so a coordinate that
# never moves scores 0.
TINY = 1e-12


class TrajectoryStats(NamedTuple):
  """Running statistics over the steps seen so far (all leaves: params' shapes)."""

  # The field `count` (optax's name) shadows tuple.count, which mypy reports.
  count: jax.Array  # type: ignore[assignment]  # int32 scalar: number of steps accumulated.
  grad_abs_sum: PyTree  # Σ|g|: topgrad's score.
  grad_mean: PyTree  # Welford mean of g.
  grad_m2: PyTree  # Welford Σ(g - mean)².
  param_mean: PyTree  # Welford mean of w (after each step).
  param_m2: PyTree  # Welford Σ(w - mean)².
  delta_mean: PyTree  # Welford mean of Δw, the per-step increment.
  delta_m2: PyTree  # Welford Σ(Δw - mean)².
  delta_ema: PyTree  # EMA of Δw (APF's numerator).
  delta_abs_ema: PyTree  # EMA of |Δw| (APF's denominator).


# The statistics in groups updated together; a selector names the groups it
# reads (`Selector.stats`) and the protocol collects only those.
STAT_GROUPS: dict[str, tuple[str, ...]] = {
    'grad_abs_sum': ('grad_abs_sum',),
    'grad': ('grad_mean', 'grad_m2'),
    'param': ('param_mean', 'param_m2'),
    'delta': ('delta_mean', 'delta_m2'),
    'delta_ema': ('delta_ema', 'delta_abs_ema'),
}
ALL_GROUPS = frozenset(STAT_GROUPS)


def check_groups(groups) -> frozenset[str]:
  """`groups` as a frozenset; ValueError naming an unknown group.

  Example:
    >>> sorted(check_groups(['grad', 'param']))
    ['grad', 'param']
  """
  groups = frozenset(groups)
  unknown = groups - ALL_GROUPS
  if unknown:
    raise ValueError(f'Unknown statistics {sorted(unknown)}; accepted: '
                     f'{", ".join(sorted(ALL_GROUPS))}.')
  return groups


def init_stats(params: PyTree) -> TrajectoryStats:
  """Empty statistics for params of this structure.

  Example:
    >>> import jax.numpy as jnp
    >>> int(init_stats({'w': jnp.ones(3)}).count)
    0
  """
  zeros = lambda: jax.tree.map(jnp.zeros_like, params)
  return TrajectoryStats(
      count=jnp.zeros((), jnp.int32),
      grad_abs_sum=zeros(), grad_mean=zeros(), grad_m2=zeros(),
      param_mean=zeros(), param_m2=zeros(),
      delta_mean=zeros(), delta_m2=zeros(),
      delta_ema=zeros(), delta_abs_ema=zeros())


def _welford(count, mean, m2, x):
  delta = x - mean
  mean = mean + delta / count.astype(x.dtype)
  return mean, m2 + delta * (x - mean)


def update_stats(
    stats: TrajectoryStats,
    grads: PyTree,
    old_params: PyTree,
    new_params: PyTree,
    ema_decay: float = 0.99,
    groups: frozenset[str] = ALL_GROUPS,
) -> TrajectoryStats:
  """Adds one step (gradient `grads` at `old_params`, moving to `new_params`).

  Only the `STAT_GROUPS` named in `groups` are updated (the others keep
  their values, zeros from `init_stats`); `count` always is. The EMAs start
  from zero and are not bias-corrected: APF reads only their ratio, in which
  the correction 1/(1 - decay^t) cancels.

  Example:
    >>> import jax.numpy as jnp
    >>> s = init_stats({'w': jnp.zeros(1)})
    >>> for g in (1.0, -3.0):
    ...   s = update_stats(s, {'w': jnp.array([g])}, {'w': jnp.zeros(1)}, {'w': jnp.zeros(1)})
    >>> s.grad_abs_sum['w'].tolist(), s.grad_mean['w'].tolist(), grad_variance(s)['w'].tolist()
    ([4.0], [-1.0], [8.0])
  """
  like = stats.grad_abs_sum
  for tree, what in ((grads, 'grads'), (old_params, 'old_params'),
                     (new_params, 'new_params')):
    masking.check_tree(tree, like, what)
  groups = check_groups(groups)
  count = stats.count + 1
  welford = lambda mean, m2, x: _unzip(jax.tree.map(
      lambda a, b, c: _welford(count, a, b, c), mean, m2, x), x)
  ema = lambda avg, x: ema_decay * avg + (1 - ema_decay) * x
  if groups & {'delta', 'delta_ema'}:
    delta = jax.tree.map(jnp.subtract, new_params, old_params)
  new = {'count': count}
  if 'grad_abs_sum' in groups:
    new['grad_abs_sum'] = jax.tree.map(lambda s, g: s + jnp.abs(g),
                                       stats.grad_abs_sum, grads)
  if 'grad' in groups:
    new['grad_mean'], new['grad_m2'] = welford(
        stats.grad_mean, stats.grad_m2, grads)
  if 'param' in groups:
    new['param_mean'], new['param_m2'] = welford(
        stats.param_mean, stats.param_m2, new_params)
  if 'delta' in groups:
    new['delta_mean'], new['delta_m2'] = welford(
        stats.delta_mean, stats.delta_m2, delta)
  if 'delta_ema' in groups:
    new['delta_ema'] = jax.tree.map(ema, stats.delta_ema, delta)
    new['delta_abs_ema'] = jax.tree.map(lambda a, x: ema(a, jnp.abs(x)),
                                        stats.delta_abs_ema, delta)
  return stats._replace(**new)


def _unzip(pairs: PyTree, like: PyTree) -> tuple[PyTree, PyTree]:
  treedef = jax.tree.structure(like)
  return jax.tree.transpose(treedef, jax.tree.structure((0, 0)), pairs)


def grad_variance(stats: TrajectoryStats) -> PyTree:
  """Unbiased sample variance of the gradient over the window."""
  n = jnp.maximum(stats.count - 1, 1)
  return jax.tree.map(lambda m2: m2 / n.astype(m2.dtype), stats.grad_m2)


def param_variance(stats: TrajectoryStats) -> PyTree:
  """Unbiased sample variance of the weights over the window."""
  n = jnp.maximum(stats.count - 1, 1)
  return jax.tree.map(lambda m2: m2 / n.astype(m2.dtype), stats.param_m2)


def delta_variance(stats: TrajectoryStats) -> PyTree:
  """Unbiased sample variance of the per-step increment Δw over the window."""
  n = jnp.maximum(stats.count - 1, 1)
  return jax.tree.map(lambda m2: m2 / n.astype(m2.dtype), stats.delta_m2)
