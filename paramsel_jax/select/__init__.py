# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Selection of α after η0: trajectory statistics, selectors, granularity.

`stats` (what the selectors read, accumulated inside the jitted loop),
`selectors` (the paper's tests and the baselines, by name), `granularity`
(which scalars are chosen together, and the one budget rule).
"""
