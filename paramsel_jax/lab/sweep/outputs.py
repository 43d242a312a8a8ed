"""A sweep's outputs: aggregated results, text and markdown tables, CSVs.

Everything here is computed from the stored cells only and holds no times or
dates, so a killed-and-resumed sweep writes the same bytes as an
uninterrupted one. Summaries are `report.summarize` (mean, sample std, 95%
t-interval over the finite seeds; a diverged seed is left out and the table
says how many seeds a value covers).

Metrics are whatever the cells' task reports (`metrics`): an image sweep's
outputs show the image metrics as they always have; a user task's show its
own (e.g. 'val_loss'), and its best selector is the one with the lowest
mean of its first loss-like metric (none marked when it reports no loss).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Callable, Sequence

from paramsel_jax import io as io_lib
from paramsel_jax import report
from paramsel_jax.lab.sweep import grid
from paramsel_jax.lab.sweep import metrics as metrics_lib
from paramsel_jax.lab.sweep import plots
from paramsel_jax.lab.sweep.store import CellStore

METRICS = metrics_lib.METRICS  # the image preset's.
PARTS = ('w', 'pruned')  # the trained weights w, and β⊙w.

# Published prune-then-retrain results on MNIST, test error in % at a kept
# fraction l/N (Han et al. 2015, Table 1; Frankle & Carbin 2019, Fig. 3).
ANCHORS: tuple[dict[str, Any], ...] = (
    dict(model='lenet300', l=0.08, error=1.59, source='Han et al. 2015'),
    dict(model='lenet5', l=0.08, error=0.77, source='Han et al. 2015'),
    dict(model='lenet300', l=0.036, error=None,
         source='Frankle & Carbin 2019: winning tickets match the dense net'),
)
# This library's targets: test error (%) at l/N = 5%.
TARGETS = {('lenet300', 0.05): 1.5, ('lenet5', 0.05): 0.8}


def _runs(config: grid.SweepConfig, store: CellStore) -> list[dict[str, Any]]:
  runs = []
  for model in config.models:
    for opt in config.optimizers:
      rkey = grid.run_key(config, model, opt)
      if store.has('runs', rkey):
        run = store.load('runs', rkey)
        runs.append({'model': model, 'optimizer': grid.opt_label(opt),
                     'num_params': run['num_params'],
                     'after_eta0': run['after_eta0'],
                     'after_eta0_summary': {m: report.summarize(v) for m, v
                                            in (run['after_eta0'] or {}).items()}})
  return runs


def _cell(config: grid.SweepConfig, cell: grid.Cell, key: str,
          record: dict[str, Any]) -> dict[str, Any]:
  names = metrics_lib.metric_names([record])
  return {
      'model': cell.model, 'optimizer': grid.opt_label(cell.optimizer),
      'selector': cell.selector, 'k': cell.k, 'l': cell.l,
      'num_params': record['num_params'], 'k_count': record['k_count'],
      'l_count': record['l_count'], 'frozen_moved': record['frozen_moved'],
      'diverged': record.get('diverged', [None] * len(config.seeds)),
      'w': record['w'], 'pruned': record['pruned'],
      'summary': {part: {m: report.summarize(record[part][m])
                         for m in names} for part in PARTS},
      'key': key}


def _loss_or_inf(cell: dict[str, Any], loss: str) -> float:
  mean = cell['summary']['pruned'][loss]['mean']
  return math.inf if math.isnan(mean) else mean


def _mark_best(group: Sequence[dict[str, Any]]) -> None:
  """Sets each cell's `best`: the lowest mean loss of β⊙w (none: no loss)."""
  loss = metrics_lib.loss_metric(metrics_lib.metric_names(group))
  best = (None if loss is None else
          min(group, key=lambda c: _loss_or_inf(c, loss)))
  for c in group:
    c['best'] = c is best


def _config_dict(config: grid.SweepConfig) -> dict[str, Any]:
  """The config as results.json holds it (no `task_ids` without user tasks)."""
  cfg = dataclasses.asdict(config)
  if not cfg['task_ids']:
    del cfg['task_ids']
  return cfg


def sweep_results(config: grid.SweepConfig, store: CellStore) -> dict[str, Any]:
  """The grid's finished cells with summaries; no times, so it is reproducible.

  Each cell gets `summary[part][metric]` = `report.summarize` over seeds, and
  `best` = whether its selector has the lowest mean test loss of β⊙w among
  the selectors of its (model, optimizer, k, l) (a user task: its first
  loss-like metric, `metrics.loss_metric`).
  """
  cells = []
  for cell in grid.expand_grid(config):
    key = grid.cell_key(config, cell)
    if store.has('cells', key):
      cells.append(_cell(config, cell, key, store.load('cells', key)))
  by_point: dict[tuple, list[dict[str, Any]]] = {}
  for c in cells:
    by_point.setdefault((c['model'], c['optimizer'], c['k'], c['l']), []).append(c)
  for group in by_point.values():
    _mark_best(group)
  results = {'config': _config_dict(config),
             'total_cells': len(grid.expand_grid(config)),
             'finished_cells': len(cells), 'runs': _runs(config, store),
             'cells': cells}
  return json.loads(json.dumps(results))  # as results.json holds it.


def is_complete(results: dict[str, Any]) -> bool:
  """Whether ``results`` hold every cell and every run's record of the grid.

  Example:
    >>> is_complete({'finished_cells': 3, 'total_cells': 4, 'runs': [],
    ...              'config': {'models': ['mlp'], 'optimizers': [{}]}})
    False
  """
  cfg = results['config']
  return (results['finished_cells'] == results['total_cells'] and
          len(results['runs']) == len(cfg['models']) * len(cfg['optimizers']))


def _ci(s: dict[str, Any], scale: float = 1.0, digits: int = 4) -> str:
  return report.plus_minus(s, scale, digits, spread='ci95')


def source_name(cfg: dict[str, Any], model: str) -> str:
  """What ``model`` trains on: the data set, or 'user task' (`task_ids`)."""
  return ('user task' if model in dict(cfg.get('task_ids', ()))
          else cfg['dataset'])


def _best_rule(names: Sequence[str]) -> str:
  loss = metrics_lib.loss_metric(names)
  if loss is None:
    return 'no best selector marked (no loss-like metric)'
  return (f'* = best selector of the cell (lowest mean '
          f'{metrics_lib.label(loss)} of β⊙w)')


def _model_header(cfg: dict[str, Any], results: dict[str, Any], model: str,
                  n: int, finished: int, names: Sequence[str]) -> str:
  proto = cfg['protocol']
  return (f'== {source_name(cfg, model)} / {model} (N = {n}), mode '
          f'{proto["mode"]}, eta0 = {proto["eta0"]}, eta1 = {proto["eta1"]}, '
          f'window = {proto["window"]}, batch {proto["batch_size"]}, '
          f'{len(cfg["seeds"])} seeds; mean ± 95% CI (t) over seeds; '
          f'{_best_rule(names)}; '
          f'{finished} of {results["total_cells"] // len(cfg["models"])} '
          f'cells finished ==')


def _ci_of(s: dict[str, Any], metric: str) -> str:
  """A table entry: accuracies in % (2 digits), the rest with 4."""
  return _ci(s, 100, 2) if metrics_lib.is_accuracy(metric) else _ci(s)


def _column(metric: str, part: str) -> str:
  """E.g. 'test acc β⊙w %', 'val loss w'."""
  unit = ' %' if metrics_lib.is_accuracy(metric) else ''
  return f'{metrics_lib.short_label(metric)} {part}{unit}'


def _model_rows(cells: Sequence[dict[str, Any]], shown: Sequence[str]
                ) -> list[tuple[str, ...]]:
  rows: list[tuple[str, ...]] = []
  previous = None
  for c in cells:
    point = (c['optimizer'], c['k'], c['l'])
    show = point != previous
    previous = point
    s, w = c['summary']['pruned'], c['summary']['w']
    rows.append((c['optimizer'] if show else '',
                 ('-' if c['k'] is None else f'{c["k"]:.0%}') if show else '',
                 f'{c["l"]:.1%}' if show else '',
                 c['selector'] + (' *' if c['best'] else ''),
                 *[_entry(part, m) for part in (s, w) for m in shown]))
  return rows


def _entry(summary: dict[str, Any], metric: str) -> str:
  """A metric's table entry; '-' where this cell's task lacks it."""
  return _ci_of(summary[metric], metric) if metric in summary else '-'


def _dense_line(run: dict[str, Any], shown: Sequence[str]) -> str | None:
  """The dense net's metrics after η0, or None (not evaluated)."""
  s = run['after_eta0_summary']
  parts = [f'{metrics_lib.short_label(m)} {_ci_of(s[m], m)}'
           + (' %' if metrics_lib.is_accuracy(m) else '')
           for m in shown if m in s]
  if not parts:
    return None
  return f'   dense after η0 ({run["optimizer"]}): {", ".join(parts)}'



def _model_metrics(cfg: dict[str, Any], model: str,
                   cells: Sequence[dict[str, Any]],
                   runs: Sequence[dict[str, Any]]) -> list[str]:
  """A model's metrics: its cells' and runs', else the image ones (none yet)."""
  names = metrics_lib.metric_names(
      [*cells, *({'w': r['after_eta0_summary']} for r in runs)])
  if not names and source_name(cfg, model) != 'user task':
    return list(METRICS)
  return names


def format_tables(results: dict[str, Any]) -> str:
  """One text table per model: mean ± 95% CI over seeds; * = best selector.

  The best selector of a (optimizer, k, l) cell is the one with the lowest
  mean test loss of β⊙w. An image task's table shows test loss and
  accuracy; a user task's every metric it reports (`metrics.table_metrics`).
  """
  cfg = results['config']
  out = []
  for model in cfg['models']:
    cells = [c for c in results['cells'] if c['model'] == model]
    runs = [r for r in results['runs'] if r['model'] == model]
    n = cells[0]['num_params'] if cells else (runs[0]['num_params'] if runs else 0)
    names = _model_metrics(cfg, model, cells, runs)
    shown = metrics_lib.table_metrics(names)
    out.append(_model_header(cfg, results, model, n, len(cells), names))
    for r in runs:
      line = _dense_line(r, shown)
      if line is not None:
        out.append(line)
    header = ('optimizer', 'k/N', 'l/N', 'selector',
              *[_column(m, part) for part in ('β⊙w', 'w') for m in shown])
    out.append(report.format_table(header, _model_rows(cells, shown)))
    out.append('')
  return '\n'.join(out).rstrip('\n')


def _markdown_metric(names: Sequence[str]) -> str | None:
  """test_accuracy, else the loss metric, else the first; None: no metric."""
  if 'test_accuracy' in names:
    return 'test_accuracy'
  return metrics_lib.loss_metric(names) or (names[0] if names else None)


def _markdown_title(model: str, opt: str, cfg: dict[str, Any],
                    names: Sequence[str], metric: str | None) -> str:
  acc = metric is not None and metrics_lib.is_accuracy(metric)
  what = metrics_lib.label(metric) if metric else 'no metric'
  loss = metrics_lib.loss_metric(names)
  bold = (f'lowest {metrics_lib.label(loss)} of β⊙w' if loss else
          'none (no loss-like metric)')
  return (f'{model}, {opt}, {cfg["protocol"]["mode"]}: {what} of '
          f'β⊙w{" (%)" if acc else ""}, mean ± 95% CI over '
          f'{len(cfg["seeds"])} seeds; bold: {bold}')


def _markdown_entry(cell: dict[str, Any] | None, metric: str | None) -> str:
  if cell is None or metric is None or metric not in cell['summary']['pruned']:
    return ''
  s = cell['summary']['pruned'][metric]
  text = (report.plus_minus(s, 100, 1, spread='ci95')
          if metrics_lib.is_accuracy(metric) else
          report.plus_minus(s, 1, 4, spread='ci95'))
  return f'**{text}**' if cell['best'] else text


def format_markdown(results: dict[str, Any]) -> str:
  """Markdown tables of β⊙w's test accuracy, one per (model, optimizer).

  A row per (k/N, l/N), a column per selector, test accuracy (%) of β⊙w as
  mean ± 95% CI; the cell's best selector (lowest mean test loss of β⊙w, as
  in `format_tables`) in bold. A task without test accuracy: its loss-like
  metric (`metrics.loss_metric`), else its first.
  """
  cfg = results['config']
  selectors = list(cfg['selectors'])
  out = []
  pairs = dict.fromkeys((c['model'], c['optimizer']) for c in results['cells'])
  for model, opt in pairs:
    cells = {(c['k'], c['l'], c['selector']): c for c in results['cells']
             if (c['model'], c['optimizer']) == (model, opt)}
    points = dict.fromkeys((k, l) for k, l, _ in cells)
    names = metrics_lib.metric_names(cells.values())
    metric = _markdown_metric(names)
    out += [_markdown_title(model, opt, cfg, names, metric), '',
            '| k/N | l/N | ' + ' | '.join(selectors) + ' |',
            '| --- | --- |' + ' --- |' * len(selectors)]
    for k, l in points:
      row = [('-' if k is None else f'{k:.0%}'), f'{l:.0%}']
      row += [_markdown_entry(cells.get((k, l, name)), metric)
              for name in selectors]
      out.append('| ' + ' | '.join(row) + ' |')
    out.append('')
  return '\n'.join(out).rstrip('\n')


def has_anchor_table(results: dict[str, Any]) -> bool:
  """Whether a 'retrain' sweep has cells with test accuracy (an image task)."""
  return (results['config']['protocol']['mode'] == 'retrain' and any(
      'test_accuracy' in c['summary']['pruned'] for c in results['cells']))


def format_anchor_table(results: dict[str, Any]) -> str:
  """Test error (%) of β⊙w per (model, l/N, selector) next to published numbers.

  Targets (`TARGETS`) are met when the mean error is at most the target.
  Only cells (and runs) with a test accuracy are listed.
  """
  header = ('model', 'l/N', 'selector', 'test error β⊙w % (mean ± 95% CI)',
            'published', 'target', 'met?')
  rows = []
  for c in results['cells']:
    if 'test_accuracy' not in c['summary']['pruned']:
      continue
    s = c['summary']['pruned']['test_accuracy']
    err = 100 * (1 - s['mean'])
    published = '; '.join(
        f'{a["source"]}: {a["error"]:.2f}%' for a in ANCHORS
        if a['model'] == c['model'] and math.isclose(a['l'], c['l'])
        and a['error'] is not None)
    target = TARGETS.get((c['model'], round(c['l'], 6)))
    met = '' if target is None else (
        f'yes (by {target - err:.2f} pt)' if err <= target else
        f'no (by {err - target:.2f} pt)')
    rows.append((c['model'], f'{c["l"]:.1%}', c['selector'] + (' *' if c['best'] else ''),
                 f'{err:.2f} ± {100 * s["ci95"]:.2f}', published or '-',
                 '-' if target is None else f'≤ {target:.2f}%', met or '-'))
  notes = ['Published anchors (prune-then-retrain, MNIST): Han et al. 2015: '
           'LeNet-300-100 1.59% error with 8% of weights, LeNet-5 0.77% with '
           '8%; Frankle & Carbin 2019: LeNet-300-100 winning tickets match the '
           'dense net down to ~3.6% of weights.']
  for r in results['runs']:
    if 'test_accuracy' not in r['after_eta0_summary']:
      continue
    s = r['after_eta0_summary']['test_accuracy']
    notes.append(f'Dense {r["model"]} after η0 ({r["optimizer"]}): test error '
                 f'{100 * (1 - s["mean"]):.2f} ± {100 * s["ci95"]:.2f} %.')
  return '\n'.join([report.format_table(header, rows), *notes])


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  return buffer.getvalue()


def _fraction(x: float | None) -> str:
  return '' if x is None else f'{x:g}'


def _value(x: Any) -> str:
  return '' if x is None else repr(x)


def cells_csv(results: dict[str, Any]) -> str:
  """The raw results: one row per (cell, seed); a diverged seed's are empty.

  A column per part and metric of any cell; empty where a cell lacks it.
  """
  names = metrics_lib.metric_names(results['cells'])
  header = ['model', 'optimizer', 'selector', 'k_frac', 'l_frac', 'k', 'l',
            'seed', 'diverged'] + [f'{p}_{m}' for p in PARTS for m in names]
  rows = []
  seeds = results['config']['seeds']
  for c in results['cells']:
    for i, seed in enumerate(seeds):
      d = c['diverged'][i]
      rows.append([c['model'], c['optimizer'], c['selector'], _fraction(c['k']),
                   _fraction(c['l']), '' if c['k_count'] is None else c['k_count'],
                   c['l_count'], seed,
                   '' if d is None else f'{d["phase"]}:{d["step"]}']
                  + [_value(c[p][m][i]) if m in c[p] else ''
                     for p in PARTS for m in names])
  return _csv_text(header, rows)


def summary_csv(results: dict[str, Any]) -> str:
  """One row per cell: mean, std, 95% CI half-width and seeds covered.

  A column per part, metric of any cell and statistic; empty where a cell
  lacks the metric.
  """
  stats = ('mean', 'std', 'ci95', 'n')
  names = metrics_lib.metric_names(results['cells'])
  header = ['model', 'optimizer', 'selector', 'k_frac', 'l_frac', 'best'] + [
      f'{p}_{m}_{s}' for p in PARTS for m in names for s in stats]
  rows = [[c['model'], c['optimizer'], c['selector'], _fraction(c['k']),
           _fraction(c['l']), int(c['best'])]
          + [repr(c['summary'][p][m][s]) if m in c['summary'][p] else ''
             for p in PARTS for m in names for s in stats]
          for c in results['cells']]
  return _csv_text(header, rows)


def write_outputs(results: dict[str, Any], output_dir: str,
                  log: Callable[[str], None] = print) -> list[str]:
  """results.json, cells.csv, summary.csv, tables.txt, tables.md, PNG plots.

  ``log`` gets a note for each plot skipped (a task without a loss).
  """
  os.makedirs(output_dir, exist_ok=True)
  paths = []
  path = os.path.join(output_dir, 'results.json')
  io_lib.write_json_atomic(results, path)
  paths.append(path)
  texts = {'cells.csv': cells_csv(results), 'summary.csv': summary_csv(results),
           'tables.txt': format_tables(results) + '\n',
           'tables.md': format_markdown(results) + '\n'}
  if has_anchor_table(results):
    texts['anchors.txt'] = format_anchor_table(results) + '\n'
  for name, text in texts.items():
    path = os.path.join(output_dir, name)
    io_lib.write_text_atomic(text, path)
    paths.append(path)
  paths.extend(plots.plot_sweep(results, output_dir, ANCHORS, TARGETS, log))
  return paths
