"""Tables and plots of the time-to-accuracy benchmark (`benchmarks.freeze`).

>>> print(pct([0.5, 0.7]))
60.00 ± 14.14
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from paramsel_jax import io as io_lib
from paramsel_jax import report
from paramsel_jax.lab.benchmarks import time_to_accuracy


def pct(values: Sequence[float | None], scale: float = 100.0,
        digits: int = 2) -> str:
  """Mean ± sample std over seeds, scaled (None values are left out)."""
  clean = [np.nan if v is None else v for v in values]
  return report.plus_minus(report.summarize(clean), scale, digits)


def _speedup(row: dict[str, Any], cached: bool) -> str:
  key = 'speedup_to_dense_final' + ('_cached' if cached else '')
  if key not in row:
    return '-'
  values = row[key]
  reached = sum(v is not None for v in values)
  if not reached:
    return f'never (0/{len(values)})'
  return pct(values, 1.0, 2)  # `(n/N)` when some seeds never reached it.


def _ratio(value: float | None) -> str:
  return '-' if value is None else f'{value:.2f}×'


def variants_table(result: dict[str, Any]) -> str:
  """One markdown table: a row per run (dense first)."""
  cfg = result['config']
  header = ('variant', 'α / N', 'steps/s vs T', 'cached vs T', 'FLOPs vs T',
            'opt. state vs T', f'test acc at S={cfg["steps"]} %',
            'Δ at S (pt)', 'Δ at equal wall-clock (pt)',
            'time to dense final: speedup', 'cached speedup')
  rows = []
  for row in result['runs']:
    n = sum(row['alpha_count']) / max(len(row['alpha_count']), 1)
    total = result.get('num_params') or 1
    rows.append((row['name'], '-' if row['step'] == 'T' else f'{n / total:.1%}',
                 _ratio(row['ratio_vs_T']), _ratio(row.get('cached_ratio_vs_T')),
                 _ratio(row['flops_vs_T']), _ratio(row['opt_state_vs_T']),
                 pct(row['accuracy_at_S']),
                 pct(row['delta_at_S_pt'], 1.0, 2),
                 pct(row.get('delta_at_dense_wall_pt_cached',
                             row['delta_at_dense_wall_pt']), 1.0, 2),
                 _speedup(row, False), _speedup(row, True)))
  return report.format_table(header, rows, markdown=True)


def plot_variants(result: dict[str, Any], path: str, top: int = 6) -> None:
  """Test accuracy vs training wall-clock, mean over seeds.

  The dense run and the `top` fastest runs that end within 0.1 pt of the
  dense final accuracy.
  """
  runs = result['runs']
  dense = runs[0]
  good = [r for r in runs[1:] if np.mean(r['final_delta_pt']) >= -0.1]
  if not good:  # none ends within 0.1 pt: show the most accurate.
    good = sorted(runs[1:], key=lambda r: -np.mean(r['final_delta_pt']))
  good.sort(key=lambda r: -max(r['ratio_vs_T'], r.get('cached_ratio_vs_T') or 0))
  cfg = result['config']
  curves = []
  for row in [dense] + good[:top]:
    cached = 'wall_s_cached' in row
    curves.append(time_to_accuracy.Curve(
        row['name'] + (' (cached)' if cached else ''),
        _wall_clock(row, dense, cached, cfg['eta0']), row['test_accuracy'],
        bold=row is dense))
  low = 100 * np.mean(np.asarray(dense['test_accuracy'])[len(dense['eval_steps']) // 4:])
  time_to_accuracy.plot_curves(
      curves, result['dense_final_accuracy'], path,
      title=(f'{cfg["dataset"]} / {cfg["model"]}: dense T vs T|α after '
             f'η0 = {cfg["eta0"]}'),
      xlabel='training wall-clock (s, from measured steps/s)', bottom=low - 2,
      legend_fontsize=6)


def _wall_clock(row: dict[str, Any], dense: dict[str, Any], cached: bool,
                eta0: int) -> np.ndarray:
  """Seconds at each of a result row's evaluations, as `freeze` rebuilds them."""
  if row is dense:
    return time_to_accuracy.two_phase_wall_clock(row['eval_steps'],
                                                 dense['steps_per_s'])
  rate = row['cached_steps_per_s'] if cached else row['steps_per_s']
  return time_to_accuracy.two_phase_wall_clock(
      row['eval_steps'], dense['steps_per_s'], eta0, row['select_s'], rate)


def write(result: dict[str, Any], output_dir: str, name: str) -> list[str]:
  """`<name>.json`, `<name>.md` and `<name>.png` in `output_dir`."""
  os.makedirs(output_dir, exist_ok=True)
  base = os.path.join(output_dir, name)
  io_lib.write_json_atomic(result, base + '.json')
  io_lib.write_text_atomic(variants_table(result) + '\n', base + '.md')
  plot_variants(result, base + '.png')
  return [base + ext for ext in ('.json', '.md', '.png')]
