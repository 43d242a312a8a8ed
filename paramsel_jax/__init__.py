"""paramsel_jax: which parameters to keep optimizing, which to keep at all.

The public API, re-exported from one place:

  >>> import jax.numpy as jnp, optax, paramsel_jax
  >>> tx = paramsel_jax.masked(optax.adam(1e-3))
  >>> state = tx.init({'w': jnp.zeros(3)})
"""

from paramsel_jax import data
from paramsel_jax import sparsity
from paramsel_jax.freeze.by_name import mask_by_name
from paramsel_jax.optim.langevin import add_langevin_noise
from paramsel_jax.optim.langevin import preconditioner
from paramsel_jax.optim.langevin import psgld
from paramsel_jax.optim.langevin import reseed
from paramsel_jax.optim.langevin import scale_by_psgld_preconditioner
from paramsel_jax.optim.langevin import second_moment
from paramsel_jax.optim.langevin import sgld
from paramsel_jax.optim.masking import check_mask
from paramsel_jax.optim.masking import count_true
from paramsel_jax.optim.masking import get_mask
from paramsel_jax.optim.masking import masked
from paramsel_jax.optim.masking import MaskedState
from paramsel_jax.optim.masking import set_mask
from paramsel_jax.protocol.protocol import ProtocolConfig
from paramsel_jax.protocol.protocol import run_protocol
from paramsel_jax.protocol.task import check_model
from paramsel_jax.protocol.task import host_batches
from paramsel_jax.protocol.task import ImageTask
from paramsel_jax.protocol.task import Task
from paramsel_jax.train.feed import OnDevice
from paramsel_jax.select.selectors import get_selector
from paramsel_jax.select.selectors import register_selector
from paramsel_jax.select.selectors import resolve_count
from paramsel_jax.select.selectors import SelectionContext
from paramsel_jax.select.selectors import Selector
from paramsel_jax.select.selectors import SELECTORS
from paramsel_jax.select.selectors import top_k_mask
from paramsel_jax.select.stats import init_stats
from paramsel_jax.select.stats import TrajectoryStats
from paramsel_jax.select.stats import update_stats
from paramsel_jax.train.steps import evaluate
from paramsel_jax.train.steps import make_evaluate
from paramsel_jax.train.steps import make_train_step
from paramsel_jax.train.steps import prune
from paramsel_jax.train.steps import train_step

__version__ = '0.1.0'
