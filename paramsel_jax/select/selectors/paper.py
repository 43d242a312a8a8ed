"""The paper's proposal: selectors that read convergence off pSGLD.

Convergence read off the preconditioner and the trajectory (Li et al. 2016;
Mandt, Hoffman & Blei 2017; Graves 2011): the psgld, psgld_precond and
psgld_tstat selectors, and the posterior SNR they prune by.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from paramsel_jax.optim import langevin
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.select.stats import TINY
from paramsel_jax.select.selectors.base import PyTree
from paramsel_jax.select.selectors.base import register_selector
from paramsel_jax.select.selectors.base import SelectionContext
from paramsel_jax.select.selectors.base import Selector


def _preconditioner(ctx: SelectionContext) -> PyTree:
  """PSGLD's G; else 1/(λ + √ν) from the optimizer's second moment; else 1."""
  g = langevin.preconditioner(ctx.opt_state)
  if g is not None:
    return g
  nu = langevin.second_moment(ctx.opt_state)
  if nu is not None:
    return jax.tree.map(lambda v: 1.0 / (1e-8 + jnp.sqrt(v)), nu)
  return jax.tree.map(jnp.ones_like, ctx.params)


def posterior_mean_std(ctx: SelectionContext) -> tuple[PyTree, PyTree]:
  """Per-coordinate posterior mean and std, estimated from the iterates.

  Mean and std of w over the phase's window (Welford). A coordinate frozen by
  α did not move in η1: its mean is its value and its spread is the one seen
  over η0's window.
  """
  var1 = stats_lib.param_variance(ctx.stats)
  var0 = stats_lib.param_variance(ctx.eta0())
  mean = jax.tree.map(lambda a, m, w: jnp.where(a, m, w), ctx.trained(),
                      ctx.stats.param_mean, ctx.params)
  std = jax.tree.map(lambda a, v1, v0: jnp.sqrt(jnp.where(a, v1, v0)),
                     ctx.trained(), var1, var0)
  return mean, std


def posterior_snr(ctx: SelectionContext) -> PyTree:
  """Graves (2011)'s pruning score |mean w| / std w.

  A coordinate that never moved (std 0: e.g. a first-layer weight on a pixel
  that is 0 in every image, whose gradient is always 0) scores 0: nothing
  says it matters, and zeroing it changes no output seen in training. Without
  this, |w| / 0 would rank those weights first.
  """
  mean, std = posterior_mean_std(ctx)
  return jax.tree.map(
      lambda m, s: jnp.where(s > 0, jnp.abs(m) / jnp.where(s > 0, s, 1.0), 0.0),
      mean, std)


def _increment_drift_over_diffusion(ctx: SelectionContext) -> PyTree:
  return jax.tree.map(lambda m, v: jnp.abs(m) / (jnp.sqrt(v) + TINY),
                      ctx.stats.delta_mean, stats_lib.delta_variance(ctx.stats))


def _preconditioned_drift_over_spread(ctx: SelectionContext) -> PyTree:
  _, std = posterior_mean_std(ctx)
  return jax.tree.map(lambda g, m, s: g * jnp.abs(m) / (s + TINY),
                      _preconditioner(ctx), ctx.stats.grad_mean, std)


def _gradient_t_statistic(ctx: SelectionContext) -> PyTree:
  n = ctx.stats.count.astype(jnp.float32)
  return jax.tree.map(lambda m, v: jnp.abs(m) * jnp.sqrt(n) / (jnp.sqrt(v) + TINY),
                      ctx.stats.grad_mean, stats_lib.grad_variance(ctx.stats))


@register_selector('psgld')
def _psgld() -> Selector:
  return Selector(
      alpha_scores=_increment_drift_over_diffusion, beta_scores=posterior_snr,
      stats=frozenset({'delta', 'param'}),
      description=(
          'psgld: α = top |mean Δw| / std Δw over η0\'s window. Each Langevin '
          'step Δw is drift (the preconditioned gradient step) plus diffusion '
          '(gradient noise and injected noise); over the η1 steps to come the '
          'drift grows like η1·|mean Δw| and the diffusion like √η1·std Δw, '
          'so a coordinate whose drift is small next to its diffusion is '
          'sampling its stationary law: converged. β = top posterior SNR '
          '|mean w| / std w (Graves 2011).'))


@register_selector('psgld_precond')
def _psgld_precond() -> Selector:
  return Selector(
      alpha_scores=_preconditioned_drift_over_spread, beta_scores=posterior_snr,
      stats=frozenset({'grad', 'param'}),
      description=(
          'psgld_precond: α = top G ⊙ |mean g| / std w over η0\'s window: '
          'the drift γ·η1·G·|mean g| the preconditioned dynamics would still '
          'make (γ·η1 is the same for every coordinate, so it drops out of '
          'the ranking), against the spread of the iterates std w (which '
          'also contains the drift itself). β = top posterior SNR.'))


@register_selector('psgld_tstat')
def _psgld_tstat() -> Selector:
  return Selector(
      alpha_scores=_gradient_t_statistic, beta_scores=posterior_snr,
      stats=frozenset({'grad', 'param'}),
      description=(
          'psgld_tstat: α = top |mean g| / (std g / √t), the t-statistic of '
          'the mean gradient over η0\'s window of t steps (a coordinate whose '
          'mean gradient is indistinguishable from zero has converged); β = '
          'top posterior SNR |mean w| / std w.'))
