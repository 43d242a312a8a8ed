"""What `experiments/lm.py` reports: curves, tables, the figure, side-by-side timing.

A run is an :func:`~paramsel_jax.protocol.online.run_online` result whose
checks carry ``metrics['val_loss']`` (per seed). Its wall-clock at each
check is rebuilt from the steps/s of the step that ran (timed side by side
when `time_side_by_side` ran, else as measured during the run) plus the
host overhead of each interval (checks, switches; compilation and
evaluation left out): :func:`wall_clock`.

  >>> check = lambda step, rate, loss: {'step': step, 'steps_run': 100,
  ...     'steps_per_s': rate, 'overhead_s': 0.0, 'label': 'T (dense)',
  ...     'metrics': {'val_loss': [loss]}, 'frozen_share': [0.0]}
  >>> dense = {'checks': [check(100, 50.0, 2.0), check(200, 50.0, 1.5)]}
  >>> frozen = {'checks': [check(100, 50.0, 2.0), check(200, 100.0, 1.4)]}
  >>> run_clock(frozen).tolist(), time_to_loss(frozen, [1.5])
  ([2.0, 3.0], [3.0])
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from paramsel_jax import io as io_lib
from paramsel_jax import report
from paramsel_jax.freeze import criteria as criteria_lib
from paramsel_jax.train import timing

Run = dict[str, Any]


def val_losses(run: Run) -> np.ndarray:
  """``(checks, seeds)`` validation losses (NaN where a check had none)."""
  rows = []
  for c in run['checks']:
    m = (c.get('metrics') or {}).get('val_loss')
    rows.append([np.nan if v is None else v for v in m] if m is not None
                else [np.nan] * len(run['checks'][-1]['frozen_share']))
  return np.asarray(rows, np.float64)


def run_clock(run: Run, rates: Mapping[str, float] | None = None
               ) -> np.ndarray:
  """Seconds at each check: steps over the step's rate, plus host overhead.

  `rates`: steps/s per step label (side by side); default: each interval's
  own measured rate.
  """
  checks = run['checks']
  steps_per_s = [c['steps_per_s'] if rates is None else rates[c['label']]
                 for c in checks]
  return timing.wall_clock([c['steps_run'] for c in checks], steps_per_s,
                           [c['overhead_s'] for c in checks])


def time_to_loss(run: Run, target: Sequence[float],
                 rates: Mapping[str, float] | None = None
                 ) -> list[float | None]:
  """Per seed, the seconds at the first check with val loss <= its target."""
  return report.times_to_reach(-val_losses(run), run_clock(run, rates),
                               -np.asarray(target, np.float64))


def program_label(label: str) -> str:
  """A step program's label, its plan counted instead of listed.

  >>> program_label('T|α a frozen, b full, c frozen')
  'T|α: 2 of 3 modules frozen'
  >>> program_label('T (dense)')
  'T (dense)'
  """
  if not label.startswith('T|α '):
    return label
  parts = label[len('T|α '):].split(', ')
  frozen = sum(p.endswith(' frozen') for p in parts)
  return f'T|α: {frozen} of {len(parts)} modules frozen'


def peak_memory() -> int | None:
  """The device's peak bytes in use, where the backend reports it (else None)."""
  stats = jax.devices()[0].memory_stats()
  return None if not stats else stats.get('peak_bytes_in_use')


def time_side_by_side(runs: Mapping[str, Run], repeats: int,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
  """Times every step program the runs used, interleaved; ratios to dense.

  Each run's `cases` (`run_online(keep_cases=True)`; one interval from the
  final state) are timed in `repeats` interleaved rounds
  (`timing.run_rounds`). A run's dense step is the first (dense) run's
  program when its criterion collects no statistics: it is timed once then.
  The result holds, per run and label, the median steps/s and the program's
  paired ratio to the dense run's dense step (rounds paired).
  """
  cases: dict[tuple[str, str], timing.Case] = {}
  dense_key = (next(iter(runs)), 'T (dense)')
  for name, run in runs.items():
    for label, case in run['cases'].items():
      if (name == dense_key[0] or label != 'T (dense)'
          or collects_stats(run['config']['criterion'])):
        cases[(name, label)] = case
  log(f'timing {len(cases)} step programs side by side, {repeats} rounds '
      f'of {cases[dense_key].steps} steps each')
  timing.warm_up(list(cases.values()))
  timing.run_rounds(list(cases.values()), repeats,
                    after_round=lambda r, s: log(f'  timed round {r + 1}/'
                                                 f'{repeats} ({s:.0f} s)'))
  dense = cases[dense_key]
  out: dict[str, Any] = {'repeats': repeats, 'steps': dense.steps,
                         'runs': {}}
  for (name, label), case in cases.items():
    out['runs'].setdefault(name, {})[label] = {
        'median_steps_per_s': case.median_rate, 'seconds': case.seconds,
        'ratio_to_dense': timing.paired_ratio(case, dense)}
  return out


def collects_stats(criterion: str) -> bool:
  """Whether the online criterion's steps collect statistics (another program).

  >>> collects_stats('psgld'), collects_stats('none')
  (True, False)
  """
  return criterion != 'none' and bool(criteria_lib.get_criterion(criterion).stats)


def run_rates(side_by_side: dict[str, Any] | None, name: str
              ) -> dict[str, float] | None:
  """Run `name`'s timed steps/s per step label (None: not timed).

  A dense step not timed for this run is the dense run's program: its rate.
  """
  if side_by_side is None:
    return None
  dense = next(iter(side_by_side['runs'].values()))['T (dense)']
  rates = {'T (dense)': dense['median_steps_per_s']}
  for label, t in side_by_side['runs'][name].items():
    rates[label] = t['median_steps_per_s']
  return rates


def _ci(values: Sequence[float | None], digits: int = 3,
        none: str = 'never') -> str:
  s = report.summarize([np.nan if v is None else v for v in values])
  return report.plus_minus(s, 1.0, digits, spread='ci95', none=none)


def num(x: Any, fmt: str = '{:.3g}') -> str:
  """`x` formatted, or 'n/a' for None (the backend reported nothing)."""
  return 'n/a' if x is None else fmt.format(x)


def summarize_run(run: Run, target: Sequence[float],
                  rates: Mapping[str, float] | None) -> dict[str, Any]:
  """A run's numbers for the table (plain, for JSON)."""
  checks = run['checks']
  steps = sum(c['steps_run'] for c in checks)
  seconds = sum(c['steps_run'] / c['steps_per_s'] for c in checks)
  phases = run['timing']['phases']
  last = phases.get(checks[-1]['label'], {})
  return {
      'final_val_loss': val_losses(run)[-1].tolist(),
      'test_loss': run.get('test_loss'),
      'frozen_share': checks[-1]['frozen_share'],
      'mean_steps_per_s': steps / seconds,
      'flops_per_step': last.get('flops_per_step'),
      'opt_state_bytes': last.get('opt_state_bytes'),
      'time_to_dense_final_s': time_to_loss(run, target, rates),
      'wall_s': run_clock(run, rates).tolist(),
      'peak_memory_bytes': run.get('peak_memory_bytes'),
      'compilations': run['compilations'], 'compile_s': run['compile_s']}


def runs_table(summaries: Mapping[str, dict[str, Any]]) -> str:
  """One row per run: losses ± 95% CI over seeds, frozen share, costs."""
  header = ('run', 'final val loss', 'test loss (end)', 'frozen %',
            'mean steps/s', 'FLOPs/step (last step)', 'optimizer bytes',
            's to dense final val', 'peak memory')
  rows = [(name, _ci(s['final_val_loss'], none='diverged'),
           _ci(s['test_loss'], none='diverged'),
           f'{100 * np.mean(s["frozen_share"]):.1f}',
           f'{s["mean_steps_per_s"]:.2f}', num(s['flops_per_step']),
           num(s['opt_state_bytes'], '{:,}'),
           _ci(s['time_to_dense_final_s'], 1),
           num(s['peak_memory_bytes'], '{:,}'))
          for name, s in summaries.items()]
  return report.format_table(header, rows)


def programs_table(runs: Mapping[str, Run],
                   side_by_side: dict[str, Any] | None) -> str:
  """One row per step program that ran: its costs and the timed ratio."""
  header = ('run', 'step program', 'steps/s in run', 'steps/s side by side',
            '× dense', 'FLOPs/step', 'optimizer bytes')
  rows = []
  for name, run in runs.items():
    for label, cost in run['timing']['phases'].items():
      if not cost['steps']:
        continue
      timed = (side_by_side or {}).get('runs', {}).get(name, {}).get(label)
      rows.append((name, program_label(label), num(cost['steps_per_s'],
                                                  '{:.2f}'),
                   num(timed and timed['median_steps_per_s'], '{:.2f}'),
                   num(timed and timed['ratio_to_dense'], '{:.2f}'),
                   num(cost['flops_per_step']),
                   num(cost['opt_state_bytes'], '{:,}')))
  return report.format_table(header, rows)


def plot_val_loss(runs: Mapping[str, Run], summaries: Mapping[str, Any],
                  path: str, title: str) -> None:
  """Validation loss (mean over seeds) against wall-clock, one line per run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for i, (name, run) in enumerate(runs.items()):
    loss = np.nanmean(val_losses(run), axis=1)
    ax.plot(summaries[name]['wall_s'], loss, marker='o', ms=3, label=name,
            lw=2.2 if i == 0 else 1.4)
  dense = next(iter(summaries.values()))
  ax.axhline(float(np.mean(dense['final_val_loss'])), color='gray', ls=':',
             lw=1, label='dense final val loss')
  ax.set_xlabel('training wall-clock (s; compilation and evaluation apart)')
  ax.set_ylabel('validation loss (nats/char, mean over seeds)')
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  io_lib.save_figure_atomic(fig, path, dpi=120)
  plt.close(fig)


def protocol_table(results: dict[str, Any]) -> str:
  """`--mode=protocol`: val/test loss of w and β⊙w, and each phase's cost."""
  cell = results['cells'][0]
  rows = [(what, _ci(cell[key].get('val_loss', []), none='diverged'),
           _ci(cell[key].get('test_loss', []), none='diverged'))
          for what, key in (('w (after η1)', 'w'), ('β⊙w', 'pruned'))]
  out = report.format_table(('params', 'val loss', 'test loss'), rows)
  phases = [(program_label(label), num(c['steps_per_s'], '{:.2f}'),
             num(c['flops_per_step']), num(c['opt_state_bytes'], '{:,}'))
            for label, c in results['timing']['phases'].items() if c['steps']]
  return out + '\n\n' + report.format_table(
      ('phase', 'steps/s', 'FLOPs/step', 'optimizer bytes'), phases)
