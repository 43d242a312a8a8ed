# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Every call the benchmarks make into `paramsel_jax.protocol.protocol`, one place each.

The benchmark times the protocol stage by stage, so it calls the `Runner`'s
methods itself. Each public name of `paramsel_jax.protocol.protocol` it uses is called
from exactly one function here, so a change of a signature there is one edit
here; the rest of the package calls only these functions. Each is named
for what it gives (a phase trained, a mask, per-seed metrics), not after the
library function it calls, so none shadows one. The per-seed mask counts the
protocol reports are recomputed here from public functions.

  >>> import jax.numpy as jnp
  >>> alpha = {'w': jnp.array([[True, False], [False, False]])}  # 2 seeds.
  >>> mask_counts(alpha)
  [1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.protocol import protocol
from paramsel_jax.train import runner as runner_lib
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.select import stats as stats_lib

PyTree = Any
Metrics = dict[str, list[float]]


def _no_log(msg: str) -> None:
  del msg


def prune_at_end_config(*, eta0: int, eta1: int, k: float, l: float,
                        window: int, batch_size: int, chunk_size: int,
                        train_eval_size: int | None, seed_axis: str = 'vmap',
                        evaluate_after_eta0: bool = True
                        ) -> protocol.ProtocolConfig:
  """A `protocol.ProtocolConfig` (prune-at-end mode, one k, one l).

  Example:
    >>> prune_at_end_config(eta0=4, eta1=4, k=0.1, l=0.2, window=2,
    ...                     batch_size=8, chunk_size=3,
    ...                     train_eval_size=None).seed_axis
    'vmap'
  """
  return protocol.ProtocolConfig(
      eta0=eta0, eta1=eta1, k=k, l=l, window=window, batch_size=batch_size,
      chunk_size=chunk_size, seed_axis=seed_axis,
      train_eval_size=train_eval_size,
      evaluate_after_eta0=evaluate_after_eta0)


def resolve_counts(config: protocol.ProtocolConfig, num_params: int,
                   num_train: int) -> tuple[int, int]:
  """Validates `config` (ValueError on a bad value); returns its k and l.

  Example:
    >>> resolve_counts(prune_at_end_config(
    ...     eta0=4, eta1=4, k=0.1, l=20, window=2, batch_size=8,
    ...     chunk_size=3, train_eval_size=None), 1000, 256)
    (100, 20)
  """
  (k,), (l,) = protocol.validate_protocol_config(config, num_params, num_train)
  return int(k), l  # the benchmark budgets k in parameters.


def make_runner(task: protocol.Task, tx: optax.GradientTransformation,
                config: protocol.ProtocolConfig,
                stat_groups: frozenset[str] = stats_lib.ALL_GROUPS
                ) -> protocol.Runner:
  """The protocol's compiled pieces (`protocol.Runner`), one device."""
  return protocol.Runner(task, tx, config, stat_groups=stat_groups)


def initial_state(runner: protocol.Runner, keys: jax.Array) -> Any:
  """`Runner.init`: the seed-batched training state, one seed per key."""
  return runner.init(keys)


def run_chunk(runner: protocol.Runner, state: Any, start: int,
              num_steps: int) -> tuple[Any, jax.Array]:
  """`Runner.run_chunk`: steps `start ..` in one jitted call, no statistics.

  Returns the new state and the per-seed mean loss, not waited for.
  """
  as_i32 = lambda x: jnp.asarray(x, jnp.int32)
  return runner.run_chunk(state, as_i32(start), as_i32(num_steps))


def train_phase(runner: protocol.Runner, state: Any, first_step: int,
                num_steps: int, window: int, label: str) -> Any:
  """`Runner.train`: a phase in chunks, statistics over its last `window`."""
  return runner.train(state, first_step, num_steps, window, _no_log, label)


def select_mask(runner: protocol.Runner, state: Any,
                selector: selectors_lib.Selector, which: str, k: int,
                eta0_stats: stats_lib.TrajectoryStats) -> PyTree:
  """`Runner.select`: per-seed α (`which='alpha'`) or β masks of `k` ones."""
  return runner.select(state, selector, which, k, eta0_stats)


def start_phase1(runner: protocol.Runner, state: Any, alpha: PyTree) -> Any:
  """`Runner.start_phase1`: α into the optimizer, fresh statistics."""
  return runner.start_phase1(state, alpha)


def seed_metrics(runner: protocol.Runner, params: PyTree) -> Metrics:
  """`Runner.evaluate`, as per-seed lists of Python numbers."""
  return {m: np.asarray(v).tolist() for m, v in runner.evaluate(params).items()}


def run_protocol_once(task: protocol.Task, tx: optax.GradientTransformation,
                      config: protocol.ProtocolConfig, selector_name: str,
                      seed: int) -> Metrics:
  """`protocol.run_protocol` for one selector and seed: its β⊙w metrics."""
  results = protocol.run_protocol(task, tx, config, [selector_name], [seed],
                                  log=_no_log)
  return results['cells'][0]['pruned']


def mask_counts(mask: PyTree) -> list[int]:
  """Per seed: the number of True entries of a seed-batched mask.

  Counted as the protocol counts them (`runner.count_per_seed`).
  """
  return np.asarray(runner_lib.count_per_seed(mask)).tolist()


def seed_keys(seeds: Sequence[int]) -> jax.Array:
  """One PRNG key per seed, stacked on a leading seed axis (`init`'s input).

  Example:
    >>> seed_keys([0, 1]).shape
    (2,)
  """
  return jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
