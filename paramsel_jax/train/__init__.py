# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Training: the pure steps, and the compiled runner that runs them over seeds.

`steps` (`T`, `T|α`, `β⊙`, evaluation), `runner` (seeds as one
program, phases in chunks), `phase` (the η1 phase on the active set),
`mesh` (seeds and minibatches over the devices), `checkpoints` (orbax),
`costs` and `timing` (what a phase costs, measured side by side), `memory`
(device bytes; parking a pytree in host memory).
"""
