# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""What the two freezing benchmarks share: rates, wall-clock, the figure.

`freeze` (the fixed protocol's `T|α` variants) and `online_bench` (the
online criteria) both train first and time their step programs afterwards,
side by side (`measure_rates`); a run's wall-clock is then rebuilt from those
rates (`timing.wall_clock`; `two_phase_wall_clock` for a run that switches
once, at η0), and `plot_curves` draws test accuracy against it. The time to
the dense run's final accuracy and the speedups are `report.times_to_reach`
and `report.speedups`.

  >>> two_phase_wall_clock([200, 300], dense_rate=100.0, eta0=100,
  ...                      select_s=0.5, rate=200.0)
  array([2. , 2.5])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from paramsel_jax import io as io_lib
from paramsel_jax.lab import progress as progress_lib
from paramsel_jax.train import timing


def measure_rates(cases: Sequence[timing.Case], repeats: int,
                  log: Callable[[str], None]) -> None:
  """Compiles every case, then times them in interleaved rounds, with progress.

  Example:
    >>> case = timing.Case('a', 'no work', lambda: None, steps=10)
    >>> measure_rates([case], 2, log=lambda s: None)
    >>> len(case.seconds)
    2
  """
  log(f'  timing {len(cases)} step programs side by side: compiling them')
  timing.warm_up(cases)
  rounds = progress_lib.Progress(repeats, log, unit='round',
                                 prefix='  timed rounds: ')
  timing.run_rounds(cases, repeats, after_round=lambda i, s: rounds.update(1))
  rounds.close()


def two_phase_wall_clock(eval_steps: Sequence[int], dense_rate: float,
                         eta0: int = 0, select_s: float = 0.0,
                         rate: float | None = None) -> np.ndarray:
  """Seconds at each evaluation step of a run that switches step at η0.

  Dense `T` at `dense_rate` up to η0, then `select_s` of selection, then
  `rate` (the variant's step) from η0 on. `rate=None`: the dense run itself,
  `T` all along.
  """
  steps = np.asarray(eval_steps, np.float64)
  if rate is None:
    return timing.wall_clock(np.diff(steps, prepend=0.0), dense_rate)
  start_s = eta0 / dense_rate + select_s
  return start_s + timing.wall_clock(np.diff(steps, prepend=eta0), rate)


class Curve(NamedTuple):
  """One line of `plot_curves`: test accuracy at each evaluation's seconds."""

  label: str
  seconds: Any  # (evaluations,)
  accuracy: Any  # (evaluations, seeds)
  bold: bool = False  # the dense run.


def plot_curves(curves: Sequence[Curve], dense_final_accuracy: Any, path: str,
                *, title: str, xlabel: str, bottom: float,
                legend_fontsize: int = 7) -> None:
  """Test accuracy (mean over seeds, %) against wall-clock, one line each.

  A dotted line marks the dense run's final accuracy; the y axis starts at
  `bottom` (%). Written atomically to `path` (PNG).
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(7, 4.5))
  ax = fig.add_subplot()
  for c in curves:
    ax.plot(c.seconds, 100 * np.mean(c.accuracy, axis=1), marker='.',
            label=c.label, linewidth=2 if c.bold else 1)
  ax.axhline(100 * np.mean(dense_final_accuracy), color='k', linestyle=':',
             linewidth=0.8)
  ax.set_xlabel(xlabel)
  ax.set_ylabel('test accuracy (%)')
  ax.set_title(title, fontsize=9)
  ax.set_ylim(bottom=bottom)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=legend_fontsize)
  fig.tight_layout()
  io_lib.save_figure_atomic(fig, path, dpi=110)
