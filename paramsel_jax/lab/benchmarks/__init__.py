# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Benchmarks of paramsel_jax: how fast it trains, measured fairly.

One concern per module:

* `timing`: `Case`, warm-up, interleaved timed rounds, paired ratios (for
  any benchmark);
* `flops`: the exact matmul FLOPs of a training step;
* `cases`: the JAX loops timed (the protocol's Runner, bare loops, the
  jitted step, a matmul);
* `protocol_cases`: the whole protocol on a warm Runner, stage by stage;
* `protocol_stages`: every call into `paramsel_jax.protocol.protocol`, one place each;
* `torch_ref`: the optional PyTorch reference;
* `environment`: the date, machine, load and versions;
* `summary`: ratios, targets and notes; `report`: their text;
* `time_to_accuracy`: what the freezing benchmarks share (`freeze` with
  `freeze_report`, `online_bench`): step programs timed side by side, the
  wall-clock rebuilt from their rates, the accuracy-vs-wall-clock figure;
* `config`: `BenchmarkConfig`, what a run of `experiments/benchmark.py`
  measures;
* `run`: `run_benchmark`, which runs it.

  >>> from paramsel_jax.lab import benchmarks
  >>> benchmarks.BenchmarkConfig().parts[0]
  'throughput'
"""

from paramsel_jax.models.flops import matmul_flops
from paramsel_jax.lab.benchmarks.config import BenchmarkConfig
from paramsel_jax.lab.benchmarks.config import DEFAULT_PARTS
from paramsel_jax.lab.benchmarks.config import PARTS
from paramsel_jax.lab.benchmarks.run import run_benchmark
from paramsel_jax.train.timing import Case
from paramsel_jax.train.timing import paired_median
from paramsel_jax.train.timing import paired_ratio
from paramsel_jax.train.timing import PartTimer
from paramsel_jax.train.timing import run_rounds
from paramsel_jax.train.timing import warm_up
