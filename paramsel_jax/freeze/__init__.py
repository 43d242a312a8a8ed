# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Freezing: the cheap step on the active set, and online freezing policies.

`active` (the step whose cost follows α), `units` (a partly active linen
module's call), `prefix` (the frozen prefix's input cache), `active_check`
(which models it trains right, checked before any work), `layer_order`
(the forward order of the layers), `policy` (`FreezingPolicy`), `criteria`
(its convergence criteria), `blocks` (`find_blocks`: the model's blocks, for
the block criteria lisa, badam and psgld_prefix), `by_name` (`mask_by_name`:
α from module names or globs).
"""

from paramsel_jax.freeze.blocks import find_blocks
from paramsel_jax.freeze.by_name import mask_by_name
from paramsel_jax.freeze.criteria import CRITERIA
from paramsel_jax.freeze.criteria import Criterion
from paramsel_jax.freeze.criteria import register_criterion
from paramsel_jax.freeze.layer_order import forward_layer_order
from paramsel_jax.freeze.policy import FreezingPolicy
