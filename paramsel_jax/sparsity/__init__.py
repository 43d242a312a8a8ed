# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Sparse training and pruning, as optax transforms: jaxpruner's algorithms.

`sparse(inner, pruner)` trains any optax optimizer sparse; a `Pruner` is
made by one of the algorithms below and set by a schedule (`schedules`), a
distribution over leaves (`distributions`) and a structure (`structures`).

  >>> import jax, jax.numpy as jnp, optax
  >>> from paramsel_jax import sparsity as sp
  >>> pruner = sp.magnitude(0.9, sp.polynomial(every=10, begin=0, end=100),
  ...                       distribution='erk')
  >>> tx = sp.sparse(optax.adam(1e-3), pruner)
  >>> params = {'Dense_0': {'kernel': jnp.ones((8, 8)), 'bias': jnp.zeros(8)}}
  >>> state = tx.init(params)
"""

from paramsel_jax.sparsity.distributions import default_filter
from paramsel_jax.sparsity.distributions import erk_densities
from paramsel_jax.sparsity.distributions import leaf_sparsities
from paramsel_jax.sparsity.pruners import magnitude
from paramsel_jax.sparsity.pruners import Pruner
from paramsel_jax.sparsity.pruners import random
from paramsel_jax.sparsity.pruners import rigl
from paramsel_jax.sparsity.pruners import saliency
from paramsel_jax.sparsity.pruners import set_sparse
from paramsel_jax.sparsity.pruners import static_sparse
from paramsel_jax.sparsity.pruners import ste
from paramsel_jax.sparsity.schedules import no_update
from paramsel_jax.sparsity.schedules import one_shot
from paramsel_jax.sparsity.schedules import periodic
from paramsel_jax.sparsity.schedules import polynomial
from paramsel_jax.sparsity.structures import block
from paramsel_jax.sparsity.structures import channel
from paramsel_jax.sparsity.structures import n_by_m
from paramsel_jax.sparsity.structures import unstructured
from paramsel_jax.sparsity.transform import apply_masks
from paramsel_jax.sparsity.transform import choose_masks
from paramsel_jax.sparsity.transform import get_masks
from paramsel_jax.sparsity.transform import sparse
from paramsel_jax.sparsity.transform import SparseState
from paramsel_jax.sparsity.transform import ste_params
from paramsel_jax.sparsity.summary import export
from paramsel_jax.sparsity.summary import format_summary
from paramsel_jax.sparsity.summary import intersect
from paramsel_jax.sparsity.summary import summarize
