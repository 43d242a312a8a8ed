# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Optimizers: the masked update `T|α` as an optax transform, and the Langevin samplers.

`masking` (`masked`, the mask in the optimizer state), `langevin` (SGLD,
pSGLD and their parts), `optimizers` (an optimizer chosen by name from a
plain config).
"""
