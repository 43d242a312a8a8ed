# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Experiment machinery behind the scripts in `experiments/`; not imported by the library.

`cli` and `flags` (absl plumbing), `experiment` and `online_experiment`
(the main job), `sweep` (grids of runs and their outputs), `benchmarks`
(speed and memory, side by side), `progress` (progress lines).
"""
