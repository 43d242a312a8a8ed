"""Cost of a network (params, FLOPs) and the structured-pruning records.

Every network the structure search trains is reported with its parameter
count and its forward FLOPs per example: 2 per multiply-add of every dense
and conv layer (``2 * H_out * W_out * k^2 * c_in * c_out`` for a conv,
``2 * n_in * n_out`` for a dense layer); biases, activations and pools are
not counted. :func:`network_flops` counts them for any flax model from its
layer shapes (:func:`paramsel_jax.models.flops.matmul_flops`); a derived
:class:`~paramsel_jax.structure.derive.Architecture` counts them by hand
(``Architecture.num_flops``), and the two agree (tested).

The records the search is held against are networks that *learned* their
structure by pruning whole neurons / channels of LeNet-5-Caffe
(20-50-800-500) and LeNet-300-100 (784-300-100) on MNIST (:data:`RECORDS`).
Their size is given as neurons per layer: for LeNet-5-Caffe the two conv
layers' output channels, then the inputs of the two dense layers; for
LeNet-300-100 the inputs of its three dense layers. :func:`lenet5_caffe_cost`
and :func:`lenet300_cost` turn these into params and FLOPs with the count
above (LeNet-5-Caffe's convs are 5x5 ``'VALID'``: 28 -> 24, pool 12, -> 8,
pool 4).

Example:
  >>> lenet5_caffe_cost(20, 25, 45, 462)  # L0 regularization's LeNet-5
  (38927, 2226820)
  >>> lenet5_caffe_cost(20, 50, 800, 500)  # the dense LeNet-5-Caffe
  (431080, 4586000)
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import Any

import flax.linen as nn
import jax

from paramsel_jax.models import flops as flops_lib


def network_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
  """Forward FLOPs per example of a flax model (2 per multiply-add).

  Args:
    model: a flax module whose params are a dict of layers with a
      ``'kernel'`` each (dense and conv layers).
    input_shape: one example's shape, e.g. ``(28, 28, 1)``.

  Returns:
    The FLOPs of one example's forward pass, an int.

  Example:
    >>> from paramsel_jax import models
    >>> network_flops(models.create_model('lenet300'), (28, 28, 1))
    532400
  """
  x = jax.ShapeDtypeStruct((1, *input_shape), 'float32')
  params = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  return int(flops_lib.matmul_flops(model, params, input_shape, 1)['forward'])


def lenet5_caffe_cost(conv1: int, conv2: int, fc1_in: int,
                      fc2_in: int, num_classes: int = 10) -> tuple[int, int]:
  """``(params, FLOPs)`` of a LeNet-5-Caffe with these neurons per layer.

  Args:
    conv1: output channels of the first 5x5 conv (on 28x28x1, ``'VALID'``).
    conv2: output channels of the second 5x5 conv.
    fc1_in: inputs used by the first dense layer (of ``conv2 * 4 * 4``).
    fc2_in: the first dense layer's outputs.
    num_classes: the classifier's outputs.

  Returns:
    Parameters (weights and biases) and forward FLOPs per example.
  """
  macs = (24 * 24 * 25 * conv1 + 8 * 8 * 25 * conv1 * conv2
          + fc1_in * fc2_in + fc2_in * num_classes)
  params = (25 * conv1 + conv1 + 25 * conv1 * conv2 + conv2
            + fc1_in * fc2_in + fc2_in + fc2_in * num_classes + num_classes)
  return params, 2 * macs


def lenet300_cost(n_in: int, h1: int, h2: int,
                  num_classes: int = 10) -> tuple[int, int]:
  """``(params, FLOPs)`` of a LeNet-300-100 using these inputs per layer.

  Example:
    >>> lenet300_cost(784, 300, 100)
    (266610, 532400)
  """
  macs = n_in * h1 + h1 * h2 + h2 * num_classes
  return macs + h1 + h2 + num_classes, 2 * macs


@dataclasses.dataclass(frozen=True)
class Record:
  """A published structured-pruning result on MNIST.

  Attributes:
    method: the method and its paper.
    base: the network it prunes.
    neurons: neurons / channels kept per layer, as the paper writes them.
    error: test error, in percent.
    params: parameters, by the count of the module docstring.
    flops: forward FLOPs per example, by the same count.
  """

  method: str
  base: str
  neurons: str
  error: float
  params: int
  flops: int

  def to_dict(self) -> dict[str, Any]:
    """A JSON-ready dict."""
    return dataclasses.asdict(self)


def _lenet5(method: str, neurons: tuple[int, int, int, int],
            error: float) -> Record:
  return Record(method, 'lenet5', '-'.join(map(str, neurons)), error,
                *lenet5_caffe_cost(*neurons))


def _lenet300(method: str, neurons: tuple[int, int, int],
              error: float) -> Record:
  return Record(method, 'lenet300', '-'.join(map(str, neurons)), error,
                *lenet300_cost(*neurons))


RECORDS: tuple[Record, ...] = (
    _lenet5('L0 regularization (Louizos et al. 2018)', (20, 25, 45, 462), 0.9),
    _lenet5('Bayesian Compression (Louizos et al. 2017)', (8, 13, 88, 13), 1.0),
    _lenet5('Structured Bayesian Pruning (Neklyudov et al. 2017)',
            (3, 18, 284, 283), 0.9),
    _lenet300('L0 regularization (Louizos et al. 2018)', (219, 214, 100), 1.4),
    _lenet300('VIB (Dai et al. 2018)', (97, 71, 33), 1.6),
)


def records_for(space_kind: str) -> list[Record]:
  """The records to print next to a space: LeNet-5's (conv), LeNet-300's.

  Example:
    >>> [r.neurons for r in records_for('mlp')]
    ['219-214-100', '97-71-33']
  """
  base = 'lenet5' if space_kind == 'conv' else 'lenet300'
  return [r for r in RECORDS if r.base == base]
