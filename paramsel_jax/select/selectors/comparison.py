"""Comparison selectors from the pruning and freezing literature.

random, topgrad, magnitude, saliency (first-order Taylor), fisher (empirical
Fisher diagonal) and apf (Chen et al. 2021's effective perturbation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.optim import langevin
from paramsel_jax.select.stats import TINY
from paramsel_jax.select.selectors.base import missing_alpha_statistics
from paramsel_jax.select.selectors.base import PyTree
from paramsel_jax.select.selectors.base import register_selector
from paramsel_jax.select.selectors.base import SelectionContext
from paramsel_jax.select.selectors.base import Selector


def _uniform_scores(key: jax.Array, like: PyTree) -> PyTree:
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
      treedef, [jax.random.uniform(k, jnp.shape(x)) for k, x in zip(keys, leaves)])


@register_selector('random')
def _random() -> Selector:
  score = lambda ctx: _uniform_scores(ctx.key, ctx.params)
  return Selector(
      alpha_scores=score, beta_scores=score, stats=frozenset(),
      description='random: α and β uniform among all k- (l-) subsets')


def _abs(tree: PyTree) -> PyTree:
  return jax.tree.map(jnp.abs, tree)


@register_selector('topgrad')
def _topgrad() -> Selector:
  return Selector(
      alpha_scores=lambda ctx: ctx.stats.grad_abs_sum,
      beta_scores=lambda ctx: _abs(ctx.params),
      stats=frozenset({'grad_abs_sum'}), missing=missing_alpha_statistics,
      description=('topgrad: α = top-k of Σ|∇L| over the last `window` steps '
                   'of η0; β = top-l of |w| after η0 + η1 steps'))


@register_selector('magnitude')
def _magnitude() -> Selector:
  score = lambda ctx: _abs(ctx.params)
  return Selector(alpha_scores=score, beta_scores=score, stats=frozenset(),
                  description='magnitude: α and β = top |w|')


def _saliency_score(ctx: SelectionContext) -> PyTree:
  return jax.tree.map(lambda w, g: jnp.abs(w * g), ctx.params,
                      ctx.stats.grad_mean)


@register_selector('saliency')
def _saliency() -> Selector:
  return Selector(
      alpha_scores=_saliency_score, beta_scores=_saliency_score,
      stats=frozenset({'grad'}),
      description=('saliency: top |w ⊙ mean g| (first-order Taylor estimate '
                   'of the loss change from zeroing w; mean g over the '
                   "phase's window)"))


def _squared_gradient(ctx: SelectionContext) -> PyTree:
  """The optimizer's running mean of g² if it has one, else E[g²] over the window.

  The optimizer's running mean is Adam's ν, RMSprop's or pSGLD's V.
  """
  nu = langevin.second_moment(ctx.opt_state)
  if nu is not None:
    return nu
  n = jnp.maximum(ctx.stats.count, 1).astype(jnp.float32)
  return jax.tree.map(lambda m2, m: m2 / n + m ** 2, ctx.stats.grad_m2,
                      ctx.stats.grad_mean)


def _fisher_missing(ctx: SelectionContext, which: str) -> str | None:
  del which
  if langevin.second_moment(ctx.opt_state) is not None:
    return None
  if np.any(np.asarray(ctx.stats.count) == 0):
    return ('it reads the optimizer\'s running mean of g² (Adam, RMSprop, '
            'pSGLD), which this optimizer state does not hold, or else E[g²] '
            'over the window, but no statistics were collected '
            '(stats.count == 0)')
  return None


def _fisher_score(ctx: SelectionContext) -> PyTree:
  return jax.tree.map(lambda w, v: w ** 2 * v, ctx.params,
                      _squared_gradient(ctx))


@register_selector('fisher')
def _fisher() -> Selector:
  return Selector(
      alpha_scores=_fisher_score, beta_scores=_fisher_score,
      stats=frozenset({'grad'}), missing=_fisher_missing,
      description=('fisher: top w² ⊙ ν, ν the running mean of g² (the '
                   "empirical Fisher diagonal; Adam's / RMSprop's / pSGLD's "
                   'second moment, else E[g²] over the window)'))


def _effective_perturbation(ctx: SelectionContext) -> PyTree:
  return jax.tree.map(lambda d, a: jnp.abs(d) / (a + TINY),
                      ctx.stats.delta_ema, ctx.stats.delta_abs_ema)


@register_selector('apf')
def _apf() -> Selector:
  return Selector(
      alpha_scores=_effective_perturbation, beta_scores=lambda ctx: _abs(ctx.params),
      stats=frozenset({'delta_ema'}), missing=missing_alpha_statistics,
      description=('apf: α = top |EMA(Δw)| / EMA(|Δw|) (Chen et al. 2021: a '
                   'small effective perturbation means w oscillates around '
                   'a converged value); β = top |w|'))
