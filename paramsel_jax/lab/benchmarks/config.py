# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""What one run of `experiments/benchmark.py` measures: `BenchmarkConfig`.

Its own module, so that the run (`run`), the numbers (`summary`) and the
text (`report`) all import it and not each other.

  >>> BenchmarkConfig(parts=('peak', 'speed'))
  Traceback (most recent call last):
  ...
  ValueError: Unknown part 'speed'; accepted: throughput, peak, masked, protocol, seeds, diagnose.
"""

from __future__ import annotations

import dataclasses

from paramsel_jax import models as models_lib
from paramsel_jax.protocol import protocol
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.lab.benchmarks import protocol_stages as stages
from paramsel_jax.lab.benchmarks import torch_ref

PARTS = ('throughput', 'peak', 'masked', 'protocol', 'seeds', 'diagnose')
DEFAULT_PARTS = PARTS[:-1]  # diagnose runs only when asked for.
MODELS = torch_ref.TORCH_MODELS
OMP_WAIT_POLICIES = torch_ref.OMP_WAIT_POLICIES
_POSITIVE = ('repeats', 'mlp_steps', 'conv_steps', 'batch_size', 'num_train',
             'num_test', 'matmul_size', 'matmul_reps', 'num_seeds',
             'seed_mlp_steps', 'seed_conv_steps')


def _check_names(kind: str, values: tuple[str, ...],
                 accepted: tuple[str, ...]) -> None:
  for value in values:
    if value not in accepted:
      raise ValueError(f'Unknown {kind} {value!r}; accepted: '
                       f'{", ".join(accepted)}.')


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """Everything one benchmark run needs, as plain values; checked on creation.

  The fields are the flags of `experiments/benchmark.py`, which documents
  each. Creating one with a bad value raises a ValueError that names the
  setting and what is accepted.
  """

  parts: tuple[str, ...] = DEFAULT_PARTS
  models: tuple[str, ...] = MODELS
  repeats: int = 7
  mlp_steps: int = 200
  conv_steps: int = 20
  batch_size: int = 128
  learning_rate: float = 1e-3
  num_train: int = 50000
  num_test: int = 10000
  matmul_size: int = 2048
  matmul_reps: int = 5
  protocol_model: str = 'lenet300'
  selector: str = 'topgrad'
  eta0: int = 500
  eta1: int = 1500
  window: int = 100
  chunk_size: int = 500
  k: float = 0.1
  l: float = 0.2
  train_eval_size: int = 0
  cold_protocol: bool = True
  num_seeds: int = 4
  seed_mlp_steps: int = 50
  seed_conv_steps: int = 10
  use_torch: bool = True
  torch_threads: int = 0
  omp_wait_policy: str = 'auto'
  seed: int = 0

  def __post_init__(self):
    object.__setattr__(self, 'parts', tuple(self.parts))
    object.__setattr__(self, 'models', tuple(self.models))
    _check_names('part', self.parts, PARTS)
    _check_names('model', self.models, MODELS)
    if self.protocol_model not in models_lib.MODELS:
      raise ValueError(f'Unknown protocol_model {self.protocol_model!r}; '
                       f'accepted: {", ".join(models_lib.MODELS)}.')
    selectors_lib.get_selector(self.selector)
    for name in _POSITIVE:
      if getattr(self, name) < 1:
        raise ValueError(f'{name}={getattr(self, name)}; accepted: >= 1.')
    if self.omp_wait_policy not in OMP_WAIT_POLICIES:
      raise ValueError(f'omp_wait_policy={self.omp_wait_policy!r}; accepted: '
                       f'{", ".join(OMP_WAIT_POLICIES)}.')
    if self.torch_threads < 0:
      raise ValueError(f'torch_threads={self.torch_threads}; accepted: >= 0.')
    if 'protocol' in self.parts:
      stages.resolve_counts(self.protocol_config(), 10**9, self.num_train)

  def protocol_config(self, seed_axis: str = 'vmap',
                      evaluate_after_eta0: bool = True
                      ) -> protocol.ProtocolConfig:
    """The protocol part's settings; k and l >= 1 are counts.

    Example:
      >>> BenchmarkConfig(k=5).protocol_config().k
      5
    """
    as_count = lambda v: int(v) if v >= 1 else v
    return stages.prune_at_end_config(
        eta0=self.eta0, eta1=self.eta1, k=as_count(self.k),
        l=as_count(self.l), window=self.window,
        batch_size=self.batch_size, chunk_size=self.chunk_size,
        train_eval_size=self.train_eval_size or None, seed_axis=seed_axis,
        evaluate_after_eta0=evaluate_after_eta0)
