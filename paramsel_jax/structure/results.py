"""The structure-search report: per-method summaries, the table, the plot.

:func:`paramsel_jax.structure.pipeline.run_pipeline` collects, per method
(``'searched'``, ``'random'``, ``'random_small'``, ``'fixed'``,
``'reference'``), one run dict per seed (``accuracy``, ``loss``,
``valid_accuracy``, ``num_params``, ``input_noise``, ``weight_noise``,
``seconds``) and a summary over the seeds (:func:`summarize_runs`). Every
"mean ± spread" is :func:`paramsel_jax.report.summarize`'s: the mean and the
*sample* standard deviation (ddof=1) over the seeds, with a 95% t-interval.
:func:`results_table` renders the methods with
:func:`paramsel_jax.report.format_table`, :func:`plot_accuracy_vs_params`
writes the accuracy-vs-size plot atomically.

Example:
  >>> run = {'accuracy': 0.9, 'loss': 0.3, 'valid_accuracy': 0.91,
  ...        'num_params': 100, 'input_noise': {'0.1': 0.8},
  ...        'weight_noise': {'0.1': 0.85}, 'seconds': 2.0}
  >>> summary = summarize_runs([run, {**run, 'accuracy': 0.8}])
  >>> round(summary['accuracy']['std'], 4), summary['seconds']
  (0.0707, 4.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paramsel_jax import io
from paramsel_jax import report

FIGURES = ('accuracy', 'loss')
GROUPS = ('input_noise', 'weight_noise')
LABELS = {
    'searched': 'searched (argmax, retrained)',
    'random': 'random search (best valid)',
    'random_small': 'random, <= searched size',
    'fixed': 'fixed hand-made',
    'reference': 'reference',
}


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """:func:`paramsel_jax.report.summarize` of every figure over the runs.

  Args:
    runs: one dict per seed, as the pipeline's fits return them.

  Returns:
    ``accuracy``, ``loss``, ``num_params``, ``valid_accuracy``: summaries;
    ``input_noise``, ``weight_noise``: sigma -> summary; ``seconds``: the
    total over the runs.
  """
  over = lambda get: report.summarize([get(r) for r in runs])
  out: dict[str, Any] = {key: over(lambda r, key=key: r[key])
                         for key in FIGURES}
  for group in GROUPS:
    out[group] = {s: over(lambda r, g=group, s=s: r[g][s])
                  for s in runs[0][group]}
  for key in ('num_params', 'valid_accuracy'):
    out[key] = over(lambda r, key=key: r[key])
  out['seconds'] = float(sum(r.get('seconds', 0.0) for r in runs))
  return out


def _label(name: str, method: Mapping[str, Any]) -> str:
  if name == 'reference':
    return f'reference {method["name"]}'
  return LABELS.get(name, name)


def _row(name: str, method: Mapping[str, Any]) -> list[str]:
  s = method['summary']
  pm = lambda summary, digits: report.plus_minus(summary, 100.0, digits)
  seconds = s['seconds'] + method.get('search_seconds', 0.0)
  # random_small is a subset of random search's runs: no time of its own.
  seconds = '-' if name == 'random_small' else f'{seconds:.0f}'
  return ([_label(name, method), f'{s["num_params"]["mean"]:,.0f}',
           pm(s['accuracy'], 2), pm(s['valid_accuracy'], 2)]
          + [pm(v, 1) for v in s['input_noise'].values()]
          + [pm(v, 1) for v in s['weight_noise'].values()] + [seconds])


def _footer(methods: Mapping[str, Any]) -> list[str]:
  num_seeds = len(methods['searched']['runs'])
  per_seed = methods.get('random', {}).get('samples_per_seed', 0)
  agree = methods['searched']['agreement']
  lines = [f'seeds: {num_seeds}; ± is the sample standard deviation over '
           f'seeds (ddof=1); searched structures agree on '
           f'{agree["all_agree"]:.0%} of choices (pairwise '
           f'{agree["pairwise"]:.0%}); random search trains {per_seed} '
           'structures per seed; params: mean over seeds; seconds: all '
           'seeds, the search included for searched.']
  if 'random_small' in methods:
    lines.append(f'random, <= searched size: the best-valid random sample no '
                 f'larger than that seed\'s searched net '
                 f'({methods["random_small"]["seeds_with_a_sample"]} of '
                 f'{num_seeds} seeds had one).')
  return lines


def results_table(methods: Mapping[str, Any]) -> str:
  """The results table: one row per method, mean ± sample std over seeds.

  Args:
    methods: method name -> ``{'runs', 'summary', ...}``; ``'searched'``
      (with its ``'agreement'``) must be there. The noise columns are the
      sigmas of the searched runs' summary.

  Returns:
    The table and its footer, as text.
  """
  noise = methods['searched']['summary']
  header = (['method', 'params', 'test acc %', 'valid acc %']
            + [f'in σ={s}' for s in noise['input_noise']]
            + [f'w σ={s}' for s in noise['weight_noise']] + ['seconds'])
  rows = [_row(name, m) for name, m in methods.items()]
  return '\n'.join([report.format_table(header, rows), *_footer(methods)])


def plot_accuracy_vs_params(methods: Mapping[str, Any], path: str, *,
                            title: str = '') -> None:
  """Test accuracy vs parameter count of every trained network, as a PNG.

  The file is written atomically (:func:`paramsel_jax.io.save_figure_atomic`).
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(6.5, 4.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  scatter = lambda runs, **kw: ax.scatter(
      [r['num_params'] for r in runs], [100 * r['accuracy'] for r in runs],
      **kw)
  if 'random' in methods:
    best = methods['random']['runs']
    scatter([r for b in best for r in b['samples']], s=14, c='0.7',
            label='random samples')
    scatter(best, s=40, marker='s', c='tab:gray', label=LABELS['random'])
  styles = {'searched': ('o', 'tab:red'), 'fixed': ('^', 'tab:blue'),
            'reference': ('D', 'tab:green')}
  for name, (marker, color) in styles.items():
    if name in methods:
      label = LABELS[name] if name != 'reference' else methods[name]['name']
      scatter(methods[name]['runs'], s=50, marker=marker, c=color,
              label=label)
  ax.set_xscale('log')
  ax.set_xlabel('parameters')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title(f'structure search: {title}')
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  io.save_figure_atomic(fig, path, dpi=120)
