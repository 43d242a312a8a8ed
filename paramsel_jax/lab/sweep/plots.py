"""A sweep's plots: test loss (or error) of β⊙w against k/N and l/N.

One PNG per (model, optimizer) and x-axis, mean and 95% CI band per selector,
written atomically (`io.save_figure_atomic`). A user task's plots show its
first loss-like metric (`metrics.loss_metric`, e.g. 'val_loss'); a task
without one gets no plot, and a note says so.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Sequence

import numpy as np

from paramsel_jax import io as io_lib
from paramsel_jax.lab.sweep import metrics as metrics_lib


def _file_label(opt_label: str) -> str:
  return re.sub(r'[^A-Za-z0-9.]+', '_', opt_label).strip('_')


def _series(cells: Sequence[dict[str, Any]], x_name: str, metric: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """X (%), mean and CI half-width of one selector's cells, sorted by x."""
  pts = sorted((c[x_name], c['summary']['pruned']) for c in cells)
  x = np.array([100 * p[0] for p in pts])
  if metric == 'test_error':
    mean = np.array([100 * (1 - p[1]['test_accuracy']['mean']) for p in pts])
    ci = np.array([100 * p[1]['test_accuracy']['ci95'] for p in pts])
  else:
    mean = np.array([p[1][metric]['mean'] for p in pts])
    ci = np.array([p[1][metric]['ci95'] for p in pts])
  return x, mean, ci


def _mark_anchors(ax, model: str, anchors, targets) -> None:
  for a in anchors:
    if a['model'] == model and a['error'] is not None:
      ax.plot([100 * a['l']], [a['error']], 'k*', markersize=10,
              label=f'{a["source"]}')
  for (m, l), target in targets.items():
    if m == model:
      ax.plot([100 * l], [target], 'kv', label=f'target ≤ {target}%')
  ax.set_yscale('log')


def _panel(ax, cells, selectors, x_name, metric, panel_name, panel, model,
           anchors, targets) -> None:
  for sel in selectors:
    mine = [c for c in cells if c['selector'] == sel and
            (panel_name is None or c[panel_name] == panel)]
    if not mine:
      continue
    x, mean, ci = _series(mine, x_name, metric)
    line, = ax.plot(x, mean, marker='o', label=sel)
    ax.fill_between(x, mean - ci, mean + ci, color=line.get_color(), alpha=0.2)
  if metric == 'test_error':
    _mark_anchors(ax, model, anchors, targets)
  xs = sorted({100 * c[x_name] for c in cells})
  ax.set_xscale('log')
  ax.set_xticks(xs, [f'{v:g}' for v in xs])
  ax.minorticks_off()
  ax.set_xlabel(f'{x_name}/N (%)')
  ax.set_ylabel('test error of β⊙w (%)' if metric == 'test_error'
                else f'{metrics_lib.label(metric)} of β⊙w')
  ax.set_title(model + ('' if panel is None else
                        f', {panel_name}/N = {100 * panel:g}%'), fontsize=9)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=6)


def _specs(cells: Sequence[dict[str, Any]], retrain: bool, loss: str
           ) -> list[tuple[str, str | None, list[tuple[str, Any]]]]:
  """(x axis, panel axis, [(metric, panel value)]) of each figure."""
  if retrain:
    error = ([('test_error', None)] if 'test_accuracy' in
             cells[0]['summary']['pruned'] else [])
    return [('l', None, [(loss, None), *error])]
  return [(x, p, [(loss, v) for v in sorted({c[p] for c in cells})])
          for x, p in (('k', 'l'), ('l', 'k'))]


def plot_sweep(results: dict[str, Any], output_dir: str,
               anchors: Sequence[dict[str, Any]] = (),
               targets: dict[tuple[str, float], float] | None = None,
               log: Callable[[str], None] = print) -> list[str]:
  """PNG plots, one set per (model, optimizer), mean and 95% CI band per selector.

  'prune_at_end': test loss of β⊙w vs k/N (one panel per l/N) and vs l/N (one
  panel per k/N). 'retrain': test loss and test error of β⊙w vs l/N, with the
  published `anchors` and `targets` marked. A task without test loss: its
  first loss-like metric, no test error; without any loss: no plot, a note
  to ``log``.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  cfg = results['config']
  retrain = cfg['protocol']['mode'] == 'retrain'
  paths = []
  combos = dict.fromkeys((c['model'], c['optimizer']) for c in results['cells'])
  for model, opt in combos:
    cells = [c for c in results['cells']
             if c['model'] == model and c['optimizer'] == opt]
    names = metrics_lib.metric_names(cells)
    loss = metrics_lib.loss_metric(names)
    if loss is None:
      log(f'[sweep] no plot of {model} / {opt}: its metrics '
          f'({", ".join(names)}) have no loss-like one (a name with "loss").')
      continue
    for x_name, panel_name, panels in _specs(cells, retrain, loss):
      fig = Figure(figsize=(4.2 * len(panels), 3.8))
      axes = fig.subplots(1, len(panels), squeeze=False)
      for ax, (metric, panel) in zip(axes[0], panels):
        _panel(ax, cells, cfg['selectors'], x_name, metric, panel_name, panel,
               model, anchors, targets or {})
      source = ('user task' if model in dict(cfg.get('task_ids', ()))
                else cfg['dataset'])
      fig.suptitle(f'{source} / {model} / {opt} / {cfg["protocol"]["mode"]}\n'
                   f'mean and 95% CI over {len(cfg["seeds"])} seeds', fontsize=9)
      fig.tight_layout()
      path = os.path.join(output_dir,
                          f'{model}_{_file_label(opt)}_loss_vs_{x_name}.png')
      io_lib.save_figure_atomic(fig, path, dpi=110, metadata={'Software': None})
      paths.append(path)
  return paths
