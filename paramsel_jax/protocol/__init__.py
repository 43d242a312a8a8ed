# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The paper's protocol and online freezing as runs over a task.

`task` (what is trained), `config` (`ProtocolConfig`), `checks` (one
error per bad field), `protocol` (η0 → α → η1 → β → evaluate), `online`
(train, check convergence, switch to the cheaper step).
"""
