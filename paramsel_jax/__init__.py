"""paramsel_jax: which parameters to keep optimizing, which to keep at all.

The public API, re-exported from one place:

  >>> import jax.numpy as jnp, optax, paramsel_jax
  >>> tx = paramsel_jax.masked(optax.adam(1e-3))
  >>> state = tx.init({'w': jnp.zeros(3)})
"""

from paramsel_jax import data
from paramsel_jax.langevin import add_langevin_noise
from paramsel_jax.langevin import preconditioner
from paramsel_jax.langevin import psgld
from paramsel_jax.langevin import reseed
from paramsel_jax.langevin import scale_by_psgld_preconditioner
from paramsel_jax.langevin import second_moment
from paramsel_jax.langevin import sgld
from paramsel_jax.masking import check_mask
from paramsel_jax.masking import count_true
from paramsel_jax.masking import get_mask
from paramsel_jax.masking import masked
from paramsel_jax.masking import MaskedState
from paramsel_jax.masking import set_mask
from paramsel_jax.protocol import ProtocolConfig
from paramsel_jax.protocol import run_protocol
from paramsel_jax.task import check_model
from paramsel_jax.task import Task
from paramsel_jax.selectors import get_selector
from paramsel_jax.selectors import register_selector
from paramsel_jax.selectors import resolve_count
from paramsel_jax.selectors import SelectionContext
from paramsel_jax.selectors import Selector
from paramsel_jax.selectors import SELECTORS
from paramsel_jax.selectors import top_k_mask
from paramsel_jax.stats import init_stats
from paramsel_jax.stats import TrajectoryStats
from paramsel_jax.stats import update_stats
from paramsel_jax.steps import evaluate
from paramsel_jax.steps import make_evaluate
from paramsel_jax.steps import make_train_step
from paramsel_jax.steps import prune
from paramsel_jax.steps import train_step

__version__ = '0.1.0'
