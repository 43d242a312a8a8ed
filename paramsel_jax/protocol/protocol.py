"""The paper's protocol: η0 steps of `T` → α → η1 steps of `T|α` → β → evaluate.

Notation (seed paper 000): a network `f_w` with parameters `w` (a pytree, N
scalars) is trained with loss `L(w, D)`. `T(w)` is one optimizer step on a
random minibatch `D'`; `T|α(w)` the same step restricted by a 0/1 mask `α`
with `‖α‖₁ = k` (frozen coordinates get an update of exactly zero, and their
optimizer state stays as it was); `β⊙w` zeroes every weight where the 0/1 mask
`β` (`‖β‖₁ = l`) is 0. Given `η0, η1, k, l` and a window of `t` steps:

1. `w0` from a seeded initializer;
2. `η0` steps of `T` on all parameters, collecting over the last `window`
   steps the trajectory statistics the selectors read;
3. a selector picks `α` (exactly `k` ones);
4. `η1` steps of `T|α` (statistics again over the last `window`);
5. the selector picks `β` (exactly `l` ones);
6. the loss and accuracy of `β⊙w` and of the unpruned `w`, on train and test.

The objective is `argmin_α min_β L(β ⊙ (T|α)^η1 (T^η0 (w0)), D)`. `k` and `l`
are counts (ints) or fractions of N (floats in (0, 1]; see
`selectors.resolve_count`).

Several seeds run as one program (`runner.Runner`). The η0 phase is shared by
every selector compared in one run: each selector's η1 phase starts from the
same `T^η0(w0)`, so the comparison is paired. A seed whose loss becomes
non-finite is reported where it happens; its metrics are `None` in the
results and every summary is taken over the other seeds.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.train import checkpoints
from paramsel_jax.train import distributed
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.train import mesh as mesh_lib
from paramsel_jax import models
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.train import phase as phase_lib
from paramsel_jax.train import steps
from paramsel_jax.protocol.config import BUDGETS
from paramsel_jax.protocol.config import check_seeds
from paramsel_jax.protocol.config import check_selector_names
from paramsel_jax.protocol.config import DEFAULT_K
from paramsel_jax.protocol.config import FLOP_BUDGETS
from paramsel_jax.protocol.config import MAX_SEED
from paramsel_jax.protocol.config import MODES
from paramsel_jax.protocol.config import ProtocolConfig
from paramsel_jax.protocol.config import SEED_AXES
from paramsel_jax.protocol.config import STEPS
from paramsel_jax.protocol.config import validate_protocol_config
from paramsel_jax.train.runner import count_per_seed
from paramsel_jax.train.runner import frozen_moved
from paramsel_jax.train.runner import Runner
from paramsel_jax.train.runner import TrainState
from paramsel_jax.protocol.task import check as check_task
from paramsel_jax.protocol.task import ImageTask
from paramsel_jax.protocol.task import Task
from paramsel_jax.train.feed import OnDevice

PyTree = Any

__all__ = [
    'BUDGETS',
    'DEFAULT_K',
    'FLOP_BUDGETS',
    'MAX_SEED',
    'MODES',
    'ProtocolConfig',
    'SEED_AXES',
    'STEPS',
    'ImageTask',
    'Task',
    'all_diverged',
    'check_seeds',
    'check_selector_names',
    'divergence',
    'layer_summary',
    'round_counts',
    'run_protocol',
    'validate_protocol_config',
]


def _print(msg: str) -> None:
  print(msg, flush=True)


def _metrics_lists(metrics: dict[str, jax.Array],
                   diverged: list[Any]) -> dict[str, list[float | None]]:
  """Per-seed metrics as lists; None for a seed that diverged."""
  return {m: [None if d is not None else x
              for x, d in zip(distributed.fetch(v).tolist(), diverged)]
          for m, v in metrics.items()}


def divergence(state: TrainState, eta0: int) -> list[dict[str, Any] | None]:
  """Per seed: None, or where its training loss first stopped being finite.

  Example:
    >>> import jax.numpy as jnp
    >>> s = TrainState(None, None, None, None, jnp.array([-1, 3, 700]))
    >>> divergence(s, eta0=500)
    [None, {'phase': 'eta0', 'step': 3}, {'phase': 'eta1', 'step': 700}]
  """
  return [None if t < 0 else {'phase': 'eta0' if t < eta0 else 'eta1',
                              'step': int(t)}
          for t in distributed.fetch(state.diverged_at).tolist()]


def all_diverged(results: dict[str, Any]) -> bool:
  """True when every seed diverged in every cell of a `run_protocol` result."""
  cells = results['cells']
  return bool(cells) and all(d is not None for c in cells for d in c['diverged'])


def _make_runner(task: Task, tx: optax.GradientTransformation,
                 config: ProtocolConfig, names: Sequence[str],
                 seeds: tuple[int, ...]) -> tuple[Runner, jax.Array]:
  """The Runner for these selectors and seeds, and the seeds' keys.

  With the active step, the model is checked first (`Runner.check_active_step`).
  """
  needed = frozenset().union(*(selectors_lib.get_selector(name).stats
                               for name in names))
  mesh = mesh_lib.device_mesh(len(seeds) if config.seed_axis == 'vmap' else 1,
                              config.batch_size if config.shard_batch else None)
  runner = Runner(task, tx, config, stat_groups=needed, mesh=mesh, seeds=seeds)
  if config.active_step() == 'active':
    runner.check_active_step()  # before η0: a model it cannot train fails now.
  if config.budget == 'backward':
    runner.backward_costs()  # before η0: no layer order fails now.
  keys = mesh_lib.seed_keys(seeds, mesh)
  return runner, keys


def count_per_layer(mask: PyTree) -> dict[str, dict[str, Any]]:
  """Per leaf of a seed-batched mask: its size and per-seed True count.

  Example:
    >>> import jax.numpy as jnp
    >>> count_per_layer({'Dense_0': {'kernel': jnp.array([[True, False],
    ...                                                   [True, True]])}})
    {'Dense_0/kernel': {'size': 2, 'count': [1, 2]}}
  """
  flat = jax.tree_util.tree_flatten_with_path(mask)[0]
  return {granularity_lib.module_name(path): {
      'size': int(np.prod(m.shape[1:])),
      'count': distributed.fetch(jnp.sum(m, axis=tuple(range(1, m.ndim)))).tolist()}
          for path, m in flat}


def layer_summary(alpha: PyTree, beta: PyTree) -> dict[str, dict[str, Any]]:
  """Per parameter leaf: its size, and per seed how many α trains, β keeps.

  Example:
    >>> import jax.numpy as jnp
    >>> a = {'Dense_0': {'kernel': jnp.array([[True, False, True]])}}
    >>> b = {'Dense_0': {'kernel': jnp.array([[False, False, True]])}}
    >>> layer_summary(a, b)
    {'Dense_0/kernel': {'size': 3, 'alpha': [2], 'beta': [1]}}
  """
  a, b = count_per_layer(alpha), count_per_layer(beta)
  return {name: {'size': a[name]['size'], 'alpha': a[name]['count'],
                 'beta': b[name]['count']} for name in a}


def _cell(runner: Runner, state: TrainState, start: TrainState, alpha: PyTree,
          beta: PyTree, name: str, k: int | float, l: int,
          w_metrics: dict[str, Any], return_arrays: bool) -> dict[str, Any]:
  diverged = divergence(state, runner.config.eta0)
  arrays = ({'arrays': {'alpha': alpha, 'beta': beta, 'params': state.params}}
            if return_arrays else {})
  return {
      'selector': name, 'k': k, 'l': l,
      'alpha_count': distributed.fetch(count_per_seed(alpha)).tolist(),
      'beta_count': distributed.fetch(count_per_seed(beta)).tolist(),
      'frozen_moved': frozen_moved(alpha, state.params, start.params),
      'diverged': diverged,
      'w': _metrics_lists(w_metrics, diverged),
      'pruned': _metrics_lists(
          runner.evaluate(steps.prune(state.params, beta)), diverged),
      'layers': layer_summary(alpha, beta),
      **arrays,
  }


def _phase_checkpoints(checkpointer: checkpoints.Checkpointer | None,
                       label: str) -> checkpoints.PhaseCheckpoints | None:
  return None if checkpointer is None else checkpointer.phase(label)


def _run_group(runner: Runner, state0: TrainState, name: str, count: int | float,
               ls: tuple[int, ...], n: int, log,
               return_arrays: bool = False,
               checkpointer: checkpoints.Checkpointer | None = None
               ) -> list[dict[str, Any]]:
  """One η1 phase (one (selector, k), or (selector, l) in 'retrain') → cells."""
  config = runner.config
  selector = selectors_lib.get_selector(name)
  if config.mode == 'retrain':
    state, alpha, start = _prune_and_retrain(runner, state0, selector, name,
                                             int(count), n, log, checkpointer)
    cell_ls: Sequence[int] = [int(count)]
  else:
    alpha = runner.select(state0, selector, 'alpha', count, state0.stats,
                          name=name)
    start = runner.start_phase1(state0, alpha)
    cell_ls = ls
    label = f'eta1 [{name}, k={count}]'
    phase = phase_lib.for_alpha(runner, start, alpha, label, log)
    state = phase_lib.run_phase(runner, phase, start, config.eta0, config.eta1,
                                config.window, log, label,
                                frozen_stats=state0.stats,
                                checkpoints=_phase_checkpoints(checkpointer,
                                                               label))
  w_metrics = runner.evaluate(state.params)
  cells = []
  for l in cell_ls:
    beta = alpha if config.mode == 'retrain' else runner.select(
        state, selector, 'beta', l, state0.stats, name=name)
    cells.append(_cell(runner, state, start, alpha, beta, name, count, l,
                       w_metrics, return_arrays))
  return cells


def run_protocol(
    task: Task,
    tx: optax.GradientTransformation,
    config: ProtocolConfig,
    selector_names: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None] = _print,
    groups: Sequence[tuple[str, int | float]] | None = None,
    on_cells: Callable[[list[dict[str, Any]]], None] | None = None,
    return_arrays: bool = False,
    eta0_checkpoint: str | None = None,
    checkpointer: checkpoints.Checkpointer | None = None,
) -> dict[str, Any]:
  """Runs the protocol for several selectors, k's, l's and seeds.

  One η0 phase is shared by everything; then each (selector, k) group gets
  its own η1 phase (in 'retrain' mode, each (selector, l)), and every l is
  read off it. A cell is one (selector, k, l) with per-seed metrics.

  Args:
    task: the model and the data.
    tx: the optimizer `T` (unmasked; it is wrapped in `masked` here).
    config: the protocol settings.
    selector_names: registered selectors to compare (a sequence of names).
    seeds: one run per seed (init, batches, random selection). With several
      devices the seed axis is sharded over them, and with
      `config.shard_batch` each minibatch too (`mesh.device_mesh`).
    log: where progress lines go.
    groups: the (selector name, resolved k) pairs to run (in 'retrain' mode,
      (selector, l)); None: every selector × every k (l). A resumable sweep
      passes only the unfinished ones.
    on_cells: called with each group's finished cells, e.g. to save them.
    return_arrays: also put each cell's `alpha`, `beta` (bool masks) and
      final `params` (the unpruned `w`; `steps.prune(params, beta)` is
      `β⊙w`), all with a leading seed axis, under the cell's `'arrays'`
      (device arrays: leave it False where the results go to JSON).
    eta0_checkpoint: a directory for the state after η0 (orbax,
      `checkpoints`): restored from it when it exists, bit-identical, so η0
      is not recomputed; else η0 runs and the state is saved there. The
      caller names it by everything that determines η0 (the sweep:
      `grid.eta0_identity`); results say `'eta0_restored'`.
    checkpointer: a `checkpoints.Checkpointer` of this run (its identity:
      everything that determines the results): every phase ('eta0', each
      η1 label, each 'retrain' round) saves every `checkpointer.every`
      global steps and at its end, and a rerun resumes each phase from its
      latest checkpoint; the results are bit-identical to an uninterrupted
      run's, and say which phases resumed from which step (`'resumed'`).

  Returns:
    `{'num_params', 'ks', 'ls', 'seeds', 'mode', 'after_eta0': {metric: [per
    seed]}, 'after_eta0_diverged': [per seed], 'cells': [{'selector', 'k',
    'l', 'alpha_count', 'beta_count', 'frozen_moved', 'diverged', 'w':
    {metric: [...]}, 'pruned': {metric: [...]}, 'layers': {leaf: {'size',
    'alpha': [per seed], 'beta': [per seed]}}}], 'timing': {...}}`: which
    layers α trained and β kept (`layer_summary`). All values are Python
    numbers (None for a diverged seed's metrics), ready for JSON, except
    the cells' `'arrays'` with `return_arrays`. A seed's `diverged` entry is
    None or `{'phase', 'step'}`. With a `checkpointer`, also `'resumed':
    {phase label: the global step it resumed from}`.
  """
  names, seeds = check_selector_names(selector_names), check_seeds(seeds)
  config, n, ks, ls = _checked(task, config, seeds)
  runner, keys = _make_runner(task, tx, config, names, seeds)
  t0 = time.perf_counter()
  log(_describe_run(runner, n, ks, ls, len(seeds)))
  state0, restored = _eta0(runner, runner.init(keys), eta0_checkpoint, log,
                           _phase_checkpoints(checkpointer, 'eta0'))
  timing: dict[str, Any] = {'eta0_s': time.perf_counter() - t0}
  results = _eta0_results(runner, state0, n, ks, ls, seeds, restored)
  if groups is None:
    counts = ls if config.mode == 'retrain' else ks
    groups = [(name, c) for name in names for c in counts]
  for name, count in groups:
    t1 = time.perf_counter()
    cells = _run_group(runner, state0, name, count, ls, n, log, return_arrays,
                       checkpointer)
    timing[f'{name}/{count}_s'] = time.perf_counter() - t1
    results['cells'].extend(cells)
    if on_cells is not None:
      on_cells(cells)
  timing['total_s'] = time.perf_counter() - t0
  timing['phases'] = {label: c.record() for label, c in runner.costs.items()}
  if checkpointer is not None:
    checkpointer.wait()
    results['resumed'] = dict(runner.resumed)
  return results | {'timing': timing}


def _checked(task: Task, config: ProtocolConfig, seeds: tuple[int, ...]
             ) -> tuple[ProtocolConfig, int, tuple[Any, ...], tuple[Any, ...]]:
  """The config with its seed axis resolved, N, and the k's and l's as counts.

  Checks the config against N and the data, and the model on one seed.
  """
  n = models.count_params(jax.eval_shape(task.init_fn, jax.random.key(0)))
  data = task.train_data
  ks, ls = validate_protocol_config(
      config, n, data.num_examples if isinstance(data, OnDevice) else None)
  check_task(task, jax.random.key(seeds[0]))
  config = dataclasses.replace(
      config, seed_axis=mesh_lib.resolve_seed_axis(config.seed_axis))
  return config, n, ks, ls


def _describe_run(runner: Runner, n: int, ks: Sequence[Any], ls: Sequence[Any],
                  num_seeds: int) -> str:
  """The run's opening line: N, the counts, the seeds and their layout."""
  config = runner.config
  axis = (('one program' if num_seeds == 1 else runner.seed_axis) +
          ('' if runner.mesh is None else
           f'; {mesh_lib.describe_mesh(runner.mesh)}'))
  counts = (f'l = {list(ls)}' if config.mode == 'retrain' else
            f'k = {list(ks)}, l = {list(ls)}')
  return (f'N = {n} parameters, {counts}, {num_seeds} seeds ({axis}), '
          f'eta0 = {config.eta0}, eta1 = {config.eta1}, mode {config.mode}')


def _eta0(runner: Runner, state0: TrainState, checkpoint: str | None,
          log: Callable[[str], None],
          phase_checkpoints: checkpoints.PhaseCheckpoints | None = None
          ) -> tuple[TrainState, bool]:
  """The state after η0, and whether it was restored from `checkpoint`.

  `phase_checkpoints`: η0's periodic ones (`run_protocol`'s checkpointer).
  """
  config = runner.config
  if checkpoint is not None and checkpoints.exists(checkpoint):
    log(f'eta0: restored from {checkpoint} (not recomputed)')
    return checkpoints.restore_state(checkpoint, state0), True
  state0 = phase_lib.run_phase(runner, phase_lib.dense(runner), state0, 0,
                               config.eta0, config.window, log, 'eta0',
                               checkpoints=phase_checkpoints)
  if checkpoint is not None:
    checkpoints.save_state(checkpoint, state0)
    log(f'eta0: saved to {checkpoint}')
  return state0, False


def _eta0_results(runner: Runner, state0: TrainState, n: int,
                  ks: Sequence[Any], ls: Sequence[Any], seeds: Sequence[int],
                  restored: bool) -> dict[str, Any]:
  """`run_protocol`'s results before any cell: the run and η0's metrics."""
  config = runner.config
  diverged = divergence(state0, config.eta0)
  after = (_metrics_lists(runner.evaluate(state0.params), diverged)
           if config.evaluate_after_eta0 else None)
  return {'num_params': n, 'ks': list(ks), 'ls': list(ls),
          'seeds': list(seeds), 'mode': config.mode, 'after_eta0': after,
          'after_eta0_diverged': diverged, 'eta0_restored': restored,
          'cells': []}


def round_counts(n: int, l: int, rounds: int) -> list[int]:
  """Weights kept after each pruning round: N·(l/N)^(r/R), the last exactly l.

  Example:
    >>> round_counts(1000, 10, 2)
    [100, 10]
  """
  return [l if r == rounds else int(round(n * (l / n) ** (r / rounds)))
          for r in range(1, rounds + 1)]


def _prune_and_retrain(runner: Runner, state0: TrainState, selector, name: str,
                       l: int, n: int, log,
                       checkpointer: checkpoints.Checkpointer | None = None
                       ) -> tuple[TrainState, PyTree, TrainState]:
  """'retrain' mode: prune to `l` weights in rounds, retraining after each.

  Returns the final state, the final mask and the last round's start state.
  """
  config = runner.config
  rounds = config.prune_rounds
  steps_done, state = config.eta0, state0
  for r, count in enumerate(round_counts(n, l, rounds)):
    length = config.eta1 // rounds + (1 if r < config.eta1 % rounds else 0)
    alpha = runner.select(state, selector, 'beta', count, state0.stats,
                          within_alpha=r > 0, name=name)
    start = runner.start_phase1(
        state._replace(params=steps.prune(state.params, alpha)), alpha)
    label = (f'eta1 [{name}, l={l}]' if rounds == 1 else
             f'eta1 [{name}, l={l}, round {r + 1}/{rounds}: {count} kept]')
    state = phase_lib.run_phase(runner, phase_lib.dense(runner, masked=True),
                                start, steps_done, length, config.window, log,
                                label,
                                checkpoints=_phase_checkpoints(checkpointer,
                                                               label))
    steps_done += length
  return state, alpha, start
