"""Random search at a wall-clock budget, with successive halving.

Random search is a strong baseline of structure search (Li and Talwalkar
2019), and a fair one gets the searched method's *time*, not its step count:
per seed, :func:`budgeted_random_search` draws structures uniformly from the
space (:func:`baselines.random_indices`) and trains them until the budget is
spent. With ``eta > 1`` it spends the time in *brackets* of successive
halving (Jamieson and Talwalkar 2016; the building block of Hyperband): a
bracket of ``rungs`` rungs trains ``eta**(rungs-1)`` fresh structures for
``steps / eta**(rungs-1)`` steps each, keeps the best ``1/eta`` on the
validation split, trains those from scratch for ``eta`` times longer, and so
on, until one structure is trained for the full ``steps`` (exactly like a
derived network's retraining). Every rung costs about one full training
(``eta**(rungs-1-r)`` structures of ``steps / eta**(rungs-1-r)`` steps), so a
bracket of 3 rungs with ``eta = 3`` tries 9 structures for the time of about
3 full trainings. With ``eta = 1`` a bracket is one structure trained fully
(plain random search).

When the search has a size or cost target (``target_params``,
``target_flops``), random search samples only structures within it
(:func:`sample_architecture`, rejection sampling), so that both methods
answer the same question: the most accurate network under the budget.

Brackets are independent, so the brackets finished within a smaller budget
are a random search *at that budget*: one run to the largest budget reports
every budget in ``multiples`` (e.g. 1x and 5x the searched method's time).
Each budget's result is the best bracket winner on the validation split
among the brackets that finished within it (at least the first bracket); a
bracket that would likely end after the largest budget (by the mean time of
the brackets so far) is not started. The first bracket is always a single
structure trained fully (plain random search): a successive-halving bracket
costs about ``rungs`` full trainings, more than the searched method's own
time (its share of the search plus *one* full training), so starting with
one would hand random search at 1x about ``rungs`` times its budget.
Wall-clock counts everything, compilation included (on CPU each new
structure compiles in a few seconds; the searched method compiles its
supernet once).

Example:
  >>> bracket_plan(6000, eta=3, rungs=3)
  [(9, 667), (3, 2000), (1, 6000)]
  >>> bracket_plan(6000, eta=1, rungs=3)
  [(1, 6000)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import time
from typing import Any

import jax

from paramsel_jax.structure import baselines
from paramsel_jax.structure import derive as derive_lib
from paramsel_jax.structure import space as space_lib

PyTree = Any
# (architecture, key, steps) -> (params, run with valid_accuracy).
TrainFn = Callable[[derive_lib.Architecture, jax.Array, int],
                   tuple[PyTree, dict[str, Any]]]
Say = Callable[[str], None]


def bracket_plan(steps: int, eta: int, rungs: int) -> list[tuple[int, int]]:
  """``(structures, steps)`` of each rung of a successive-halving bracket.

  Args:
    steps: the full training length (the last rung's).
    eta: the halving rate, ``>= 1`` (1: one structure, trained fully).
    rungs: rungs per bracket, ``>= 1`` (ignored when ``eta == 1``).

  Returns:
    One ``(structures, steps)`` pair per rung, the last ``(1, steps)``.
  """
  if eta == 1:
    return [(1, steps)]
  return [(eta ** (rungs - 1 - r), max(1, round(steps / eta ** (rungs - 1 - r))))
          for r in range(rungs)]


def sample_architecture(space: space_lib.SearchSpace, key: jax.Array, *,
                        max_params: int | None = None,
                        max_flops: int | None = None,
                        tries: int = 10_000) -> derive_lib.Architecture:
  """A uniform structure of the space within the limits (rejection).

  Draw ``j`` uses ``fold_in(key, j)``; without limits the first draw is
  returned.

  Raises:
    ValueError: if no draw in ``tries`` fits.

  Example:
    >>> from paramsel_jax.structure import presets
    >>> space = presets.mlp_space((28, 28, 1), 10)
    >>> arch = sample_architecture(space, jax.random.key(0), max_params=30000)
    >>> arch.num_params() <= 30000
    True
  """
  for j in range(tries):
    arch = derive_lib.from_indices(
        space, baselines.random_indices(space, jax.random.fold_in(key, j)))
    if ((max_params is None or arch.num_params() <= max_params)
        and (max_flops is None or arch.num_flops() <= max_flops)):
      return arch
  raise ValueError(f'no structure of the space within max_params='
                   f'{max_params}, max_flops={max_flops} in {tries} draws.')


def run_bracket(space: space_lib.SearchSpace, key: jax.Array,
                train_fn: TrainFn, plan: Sequence[tuple[int, int]],
                say: Say = baselines.silent,
                limits: Mapping[str, int | None] | None = None, *,
                clock: Callable[[], float] = time.perf_counter
                ) -> dict[str, Any]:
  """One successive-halving bracket.

  Args:
    space: the search space.
    key: the bracket's key: ``fold_in(key, i)`` draws structure ``i``,
      ``fold_in(fold_in(key, i), 1 + rung)`` trains it at a rung.
    train_fn: trains an architecture for some steps from scratch.
    plan: :func:`bracket_plan`'s rungs.
    say: called with progress lines.
    limits: ``max_params`` / ``max_flops`` of :func:`sample_architecture`.
    clock: the wall clock, in seconds.

  Returns:
    ``final`` (the last rung's run, with its ``architecture``),
    ``final_params``, ``trials`` (every rung's runs, without params),
    ``structures`` tried and ``seconds``.

  Example (a stand-in trainer whose validation accuracy is the width):
    >>> from paramsel_jax.structure import presets
    >>> space = presets.mlp_space((4, 4, 1), 3, widths=(2, 4, 8), depth=1,
    ...                           activations=('relu',))
    >>> fake = lambda arch, key, steps: (None, {
    ...     'valid_accuracy': arch.layers[0].width / 8, 'steps': steps})
    >>> out = run_bracket(space, jax.random.key(0), fake, [(4, 1), (2, 2),
    ...                                                     (1, 4)])
    >>> [(t['rung'], t['steps']) for t in out['trials']][-3:]
    [(1, 2), (1, 2), (2, 4)]
    >>> out['final']['valid_accuracy'] == max(
    ...     t['valid_accuracy'] for t in out['trials'])
    True
  """
  start = clock()
  limits = limits or {}
  archs = [sample_architecture(space, jax.random.fold_in(key, i),
                               max_params=limits.get('max_params'),
                               max_flops=limits.get('max_flops'))
           for i in range(plan[0][0])]
  alive = list(range(len(archs)))
  trials: list[dict[str, Any]] = []
  params: dict[int, PyTree] = {}
  for rung, (count, steps) in enumerate(plan):
    results = []
    for i in alive[:count]:
      p, run = train_fn(archs[i], jax.random.fold_in(
          jax.random.fold_in(key, i), 1 + rung), steps)
      run = {**run, 'rung': rung, 'structure': i,
             'architecture': archs[i].to_dict()}
      results.append((run['valid_accuracy'], i, run))
      trials.append(run)
      params[i] = p
    results.sort(key=lambda t: -t[0])
    say(f'    rung {rung + 1}/{len(plan)}: {len(results)} structures x '
        f'{steps} steps; best valid {results[0][0]:.4f} '
        f'({archs[results[0][1]].describe()})')
    alive = [i for _, i, _ in results]
  best = alive[0]
  return {'final': trials[-1], 'final_params': params[best],
          'trials': trials, 'structures': len(archs),
          'seconds': clock() - start}


def budgeted_random_search(space: space_lib.SearchSpace, seed: int,
                           base_seconds: float, multiples: Sequence[float],
                           train_fn: TrainFn, plan: Sequence[tuple[int, int]],
                           say: Say = baselines.silent,
                           limits: Mapping[str, int | None] | None = None,
                           *, clock: Callable[[], float] = time.perf_counter
                           ) -> dict[str, Any]:
  """Random search of one seed until ``max(multiples) * base_seconds``.

  Args:
    space: the search space.
    seed: the seed (key stream :data:`baselines.STREAMS` ``['random']``).
    base_seconds: the searched method's wall-clock for this seed.
    multiples: budgets to report, as multiples of ``base_seconds``.
    train_fn: trains an architecture for some steps from scratch.
    plan: the rungs of every bracket (:func:`bracket_plan`).
    say: called with progress lines.
    limits: ``max_params`` / ``max_flops`` of the sampled structures.
    clock: the wall clock, in seconds.

  Returns:
    ``brackets`` (each with ``end_seconds``, cumulative) and ``chosen``:
    budget multiple -> the index of its best-valid bracket.
  """
  key = jax.random.fold_in(jax.random.key(seed), baselines.STREAMS['random'])
  limit = max(multiples) * base_seconds
  brackets: list[dict[str, Any]] = []
  elapsed = 0.0
  while not brackets or elapsed < limit:
    # The first bracket is one full training: it fits the 1x budget.
    rungs = plan if brackets else plan[-1:]
    mean = (sum(b['seconds'] for b in brackets[1:]) / (len(brackets) - 1)
            if len(brackets) > 1 else
            sum(b['seconds'] for b in brackets) * len(plan))
    if brackets and elapsed + mean > limit:
      break  # It would likely finish after every budget: it would not count.
    say(f'seed {seed}: random-search bracket {len(brackets) + 1} '
        f'({elapsed:.0f}s of {limit:.0f}s spent)')
    bracket = run_bracket(space, jax.random.fold_in(key, len(brackets)),
                          train_fn, rungs, say, limits, clock=clock)
    elapsed += bracket['seconds']
    brackets.append({**bracket, 'end_seconds': elapsed})
  return {'brackets': brackets,
          'chosen': {m: choose(brackets, m * base_seconds) for m in multiples}}


def choose(brackets: Sequence[Mapping[str, Any]], budget: float) -> int:
  """The best-valid bracket among those finished within ``budget`` seconds.

  The first bracket counts even when it took longer than the budget.

  Example:
    >>> b = [{'end_seconds': 5, 'final': {'valid_accuracy': 0.9}},
    ...      {'end_seconds': 9, 'final': {'valid_accuracy': 0.95}}]
    >>> choose(b, 6), choose(b, 9), choose(b, 1)
    (0, 1, 0)
  """
  within = [i for i, b in enumerate(brackets)
            if i == 0 or b['end_seconds'] <= budget]
  return max(within, key=lambda i: brackets[i]['final']['valid_accuracy'])
