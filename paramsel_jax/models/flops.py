# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The exact matmul FLOPs of a training step, counted from the layer shapes.

XLA's cost analysis of a compiled `lax.scan` counts the loop body once
(PERF_NOTES.md), and it counts what XLA emits rather than what the step must
do; counting from the layer shapes gives the work any implementation of the
step has to do, so a rate in GFLOP/s compares with a matmul peak.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any


def matmul_flops(model: nn.Module, params: PyTree, input_shape: Sequence[int],
                 batch_size: int) -> dict[str, Any]:
  """Exact multiply-add FLOPs of one training step, from the layer shapes.

  Every Dense and Conv2D layer does `macs` multiply-adds per example in the
  forward pass (Dense: in·out; Conv2D: Ho·Wo·kh·kw·cin·cout). The backward
  pass does the same again for the weight gradients, and again for the input
  gradients of every layer but the first (its input is the data). Biases,
  activations, the loss and the optimizer are not counted (O(params), not
  O(params · batch)).

  Args:
    model: a flax module whose params are a dict of layers, in creation order
      (input side first), each with a 'kernel'.
    params: its params, arrays or abstract shapes (`jax.eval_shape`).
    input_shape: one example's shape, e.g. `(28, 28, 1)`.
    batch_size: examples per step.

  Returns:
    `{'forward', 'backward', 'step'}` FLOPs per step, and `'layers'`: each
    layer's multiply-adds per example.

  Example:
    >>> from paramsel_jax import models
    >>> model = models.create_model('lenet300')
    >>> params = jax.eval_shape(model.init, jax.random.key(0),
    ...                         jnp.zeros((1, 28, 28, 1)))['params']
    >>> f = matmul_flops(model, params, (28, 28, 1), 128)
    >>> f['step'], f['layers']['Dense_1']
    (144230400, 30000)
  """
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  _, state = jax.eval_shape(
      lambda p, x: model.apply({'params': p}, x, capture_intermediates=True,
                               mutable=['intermediates']), params, x)
  outputs = state['intermediates']
  macs = []
  for name, layer in params.items():  # In creation order: input side first.
    if 'kernel' not in layer:
      continue
    out_shape = outputs[name]['__call__'][0].shape
    spatial = math.prod(out_shape[1:-1])  # Ho·Wo for convs, 1 for Dense.
    macs.append((name, spatial * math.prod(layer['kernel'].shape)))
  forward = 2 * batch_size * sum(m for _, m in macs)
  backward = forward + 2 * batch_size * sum(m for _, m in macs[1:])
  return {'forward': forward, 'backward': backward,
          'step': forward + backward, 'layers': dict(macs)}
