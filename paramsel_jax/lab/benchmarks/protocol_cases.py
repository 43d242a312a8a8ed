# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The whole protocol on one warm `Runner`, timed stage by stage.

`protocol_cases` gives two cases that run the same η0 + η1 training steps
through the same compiled chunk, in the same chunks: `protocol/full` makes
the calls `protocol.run_protocol` makes for one selector, one k, one l and
one seed (prune-at-end mode: statistics in the windows, α, the η1 phase,
evaluation of w, β, pruning, evaluation of β⊙w) and times each stage;
`protocol/raw` runs only the steps. Their ratio is what the protocol adds to
its training.
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
import time

import jax
import optax

from paramsel_jax import models as models_lib
from paramsel_jax.protocol import protocol
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.train import runner as runner_lib
from paramsel_jax.train import steps
from paramsel_jax.lab.benchmarks import protocol_stages as stages
from paramsel_jax.train.timing import Case
from paramsel_jax.train.timing import PartTimer

PARTS = ('train', 'evaluate', 'select', 'other')


@dataclasses.dataclass
class ProtocolInfo:
  """What the protocol cases share with the report.

  Attributes:
    task: the model and data.
    runner: the warm Runner (its `run_chunk` can serve other cases).
    n: the number of parameters N.
    k: the resolved size of α.
    l: the resolved size of β.
    pruned: the β⊙w metrics of the last full run (per seed).
    cold_s: seconds of one cold `protocol.run_protocol`, if it was run.
    matches: whether that run gave the warm copy's metrics.
  """

  task: protocol.ImageTask
  runner: protocol.Runner
  n: int
  k: int
  l: int
  pruned: dict[str, list[float]] = dataclasses.field(default_factory=dict)
  cold_s: float | None = None
  matches: bool | None = None


def chunk_spans(first: int, count: int, chunk_size: int
                ) -> Iterator[tuple[int, int]]:
  """`(start, length)` of the chunks of steps `first .. first + count - 1`.

  Example:
    >>> list(chunk_spans(4, 7, 3))
    [(4, 3), (7, 3), (10, 1)]
  """
  done = 0
  while done < count:
    m = min(chunk_size, count - done)
    yield first + done, m
    done += m


def _full_run(runner: protocol.Runner, proto: protocol.ProtocolConfig,
              selector: selectors_lib.Selector, keys: jax.Array,
              info: ProtocolInfo) -> dict[str, float]:
  """One protocol run, as run_protocol runs it; seconds per part."""
  stage = PartTimer(PARTS)
  metrics = lambda params: stages.seed_metrics(runner, params)
  state0 = stage('other', stages.initial_state, runner, keys)
  state0 = stage('train', stages.train_phase, runner, state0, 0, proto.eta0,
                 proto.window, 'eta0')
  alpha = stage('select', stages.select_mask, runner, state0, selector,
                'alpha', info.k, state0.stats)
  start = stage('other', stages.start_phase1, runner, state0, alpha)
  state = stage('train', stages.train_phase, runner, start, proto.eta0,
                proto.eta1, proto.window, 'eta1')
  stage('evaluate', metrics, state.params)
  beta = stage('select', stages.select_mask, runner, state, selector, 'beta',
               info.l, state0.stats)
  stage('other', lambda: (stages.mask_counts(alpha), stages.mask_counts(beta),
                          runner_lib.frozen_moved(alpha, state.params,
                                                  start.params)))
  pruned = stage('other', steps.prune, state.params, beta)
  info.pruned = stage('evaluate', metrics, pruned)
  return stage.seconds


def _raw_run(runner: protocol.Runner, proto: protocol.ProtocolConfig,
             keys: jax.Array) -> dict[str, float]:
  """The same η0 + η1 steps in the same chunks, nothing else; seconds."""
  stage = PartTimer(('train',))

  def steps_only():
    state = stages.initial_state(runner, keys)
    for first, count in ((0, proto.eta0), (proto.eta0, proto.eta1)):
      for start, m in chunk_spans(first, count, proto.chunk_size):
        state, loss = stages.run_chunk(runner, state, start, m)
        jax.device_get(loss)  # waits, as Runner.train does.
    return state

  stage('train', steps_only)
  return stage.seconds


def protocol_cases(task: protocol.ImageTask, tx: optax.GradientTransformation,
                   proto: protocol.ProtocolConfig, selector_name: str,
                   seed: int = 0) -> tuple[Case, Case, ProtocolInfo]:
  """The protocol with one warm Runner, and the same steps bare.

  Args:
    task: the model and data.
    tx: the optimizer (unmasked).
    proto: the protocol settings (one k, one l), best with
      `evaluate_after_eta0=False`: as `run_protocol` runs it, the Runner
      collects only the selector's statistics, and the full run does not
      evaluate the dense w after η0 (that is not in the paper).
    selector_name: a registered selector.
    seed: the one seed.

  Returns:
    `(full, raw, info)`: the cases `protocol/full` (sub-timings per part:
    train, evaluate, select, other) and `protocol/raw`, and what they share.
  """
  selector = selectors_lib.get_selector(selector_name)
  n = models_lib.count_params(jax.eval_shape(task.init_fn, jax.random.key(0)))
  k, l = stages.resolve_counts(proto, n, int(task.train_images.shape[0]))
  runner = stages.make_runner(task, tx, proto, stat_groups=selector.stats)
  keys = stages.seed_keys([seed])
  info = ProtocolInfo(task=task, runner=runner, n=n, k=k, l=l)
  total = proto.eta0 + proto.eta1
  examples = total * proto.batch_size
  label = (f'{selector_name}, η0={proto.eta0}, η1={proto.eta1}, '
           f'window={proto.window}, chunk={proto.chunk_size}, train metrics '
           f'on {proto.train_eval_size or "all"} examples')
  full = Case('protocol/full', f'full protocol ({label})',
              lambda: _full_run(runner, proto, selector, keys, info), total,
              examples)
  raw = Case('protocol/raw', f'same {total} steps, bare chunks',
             lambda: _raw_run(runner, proto, keys), total, examples)
  return full, raw, info


def check_cold(task: protocol.ImageTask, tx: optax.GradientTransformation,
               proto: protocol.ProtocolConfig, selector_name: str, seed: int,
               info: ProtocolInfo) -> None:
  """Runs `protocol.run_protocol` itself once (it compiles its own Runner).

  Sets `info.cold_s` and `info.matches`: whether it gives the β⊙w metrics
  of the warm copy's last run.
  """
  tic = time.perf_counter()
  pruned = stages.run_protocol_once(task, tx, proto, selector_name, seed)
  info.cold_s = time.perf_counter() - tic
  info.matches = pruned == info.pruned
