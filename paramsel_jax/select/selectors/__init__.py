"""Selectors: which coordinates keep training (α) and which are kept at all (β).

A selector is a pair of pure score functions: `alpha_scores` and `beta_scores`
map a `SelectionContext` to a pytree of scores of the params' shapes; larger
means "select". `top_k_mask` turns scores into a mask with exactly k ones,
chosen globally over all N scalars, ties broken by the lower flat index (leaves
in `jax.tree.leaves` order, then row-major). A selector names the groups of
`stats.STAT_GROUPS` it reads, and the protocol collects only those (by
default, all). Adding a selector is a few lines:

  >>> import jax, jax.numpy as jnp
  >>> @register_selector('abs_grad_mean')
  ... def _abs_grad_mean():
  ...   score = lambda ctx: jax.tree.map(jnp.abs, ctx.stats.grad_mean)
  ...   return Selector(alpha_scores=score, beta_scores=score,
  ...                   stats=frozenset({'grad'}))
  >>> 'abs_grad_mean' in SELECTORS
  True
  >>> del SELECTORS['abs_grad_mean']

The package has one module per concern: ``base`` (:class:`SelectionContext`,
:class:`Selector`, the registry, counts, :func:`top_k_mask` and
:func:`select`), ``comparison`` (selectors from the pruning and freezing
literature: random, topgrad, magnitude, saliency, fisher, apf) and ``paper``
(the paper's psgld selectors and the posterior SNR). Importing the package
registers all of them.
"""

from paramsel_jax.select.selectors import comparison
from paramsel_jax.select.selectors import paper
from paramsel_jax.select.selectors.base import check_count
from paramsel_jax.select.selectors.base import check_inputs
from paramsel_jax.select.selectors.base import get_selector
from paramsel_jax.select.selectors.base import missing_alpha_statistics
from paramsel_jax.select.selectors.base import register_selector
from paramsel_jax.select.selectors.base import resolve_count
from paramsel_jax.select.selectors.base import ScoreFn
from paramsel_jax.select.selectors.base import scores
from paramsel_jax.select.selectors.base import select
from paramsel_jax.select.selectors.base import SelectionContext
from paramsel_jax.select.selectors.base import Selector
from paramsel_jax.select.selectors.base import SELECTORS
from paramsel_jax.select.selectors.base import top_k_mask
from paramsel_jax.select.selectors.paper import posterior_mean_std
from paramsel_jax.select.selectors.paper import posterior_snr
