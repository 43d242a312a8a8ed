# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Freezing: the cheap step on the active set, and online freezing policies.

`active` (the step whose cost follows α), `active_check` (which models it
trains right, checked before any work), `layer_order` (the forward order of
the layers), `policy` (`FreezingPolicy`), `criteria` (its convergence
criteria).
"""
