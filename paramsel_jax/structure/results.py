"""The structure-search report: per-method summaries, the table, the plot.

:func:`paramsel_jax.structure.pipeline.run_pipeline` collects, per method
(``'searched'``, ``'random'``, ``'random_1x'``, ..., ``'random_small'``,
``'fixed'``, ``'reference'``), one run dict per seed (``accuracy``, ``loss``,
``valid_accuracy``, ``num_params``, ``num_flops``, ``input_noise``,
``weight_noise``, ``seconds``) and a summary over the seeds
(:func:`summarize_runs`). Every "mean ± spread" is
:func:`paramsel_jax.report.summarize`'s: the mean and the *sample* standard
deviation (ddof=1) over the seeds, with a 95% t-interval.
:func:`results_table` renders the methods with
:func:`paramsel_jax.report.format_table`, :func:`records_table` the
published records next to the searched net, :func:`report_text` all of it
(with the failure-mode diagnostics and the protocol's stages), and
:func:`plot_accuracy_vs_cost` writes the accuracy-vs-params and
accuracy-vs-FLOPs plot atomically.

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

import numpy as np

from paramsel_jax import io
from paramsel_jax import report
from paramsel_jax.structure import diagnostics
from paramsel_jax.structure import records
from paramsel_jax.structure import selection as selection_lib

FIGURES = ('accuracy', 'loss')
GROUPS = ('input_noise', 'weight_noise')
LABELS = {
    'searched': 'searched (argmax, retrained)',
    'random': 'random search (best valid)',
    'random_small': 'random, <= searched size',
    'fixed': 'fixed hand-made',
    'reference': 'reference',
}


def random_name(multiple: float) -> str:
  """The method name of random search at a wall-clock budget multiple.

  Example:
    >>> random_name(1.0), random_name(0.5)
    ('random_1x', 'random_0.5x')
  """
  return f'random_{multiple:g}x'


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """:func:`paramsel_jax.report.summarize` of every figure over the runs.

  Args:
    runs: one dict per seed, as the pipeline's fits return them.

  Returns:
    ``accuracy``, ``loss``, ``num_params``, ``num_flops``,
    ``valid_accuracy``: summaries;
    ``input_noise``, ``weight_noise``: sigma -> summary; ``seconds``: the
    total over the runs.
  """
  over = lambda get: report.summarize([get(r) for r in runs])
  out: dict[str, Any] = {key: over(lambda r, key=key: r[key])
                         for key in FIGURES}
  for group in GROUPS:
    out[group] = {s: over(lambda r, g=group, s=s: r[g][s])
                  for s in runs[0][group]}
  for key in ('num_params', 'num_flops', 'valid_accuracy'):
    out[key] = over(lambda r, key=key: r.get(key, np.nan))
  out['seconds'] = float(sum(r.get('seconds', 0.0) for r in runs))
  return out


def _label(name: str, method: Mapping[str, Any]) -> str:
  if name == 'reference':
    return f'reference {method["name"]}'
  if 'budget' in method:
    return f'random search, {method["budget"]:g}x time (best valid)'
  return LABELS.get(name, name)


def _row(name: str, method: Mapping[str, Any],
         with_valid: bool = True) -> list[str]:
  s = method['summary']
  pm = lambda summary, digits: report.plus_minus(summary, 100.0, digits)
  seconds = s['seconds'] + method.get('search_seconds', 0.0)
  # random_small is a subset of random search's runs: no time of its own.
  seconds = '-' if name == 'random_small' else f'{seconds:.0f}'
  return ([_label(name, method), f'{s["num_params"]["mean"]:,.0f}',
           f'{s["num_flops"]["mean"]:,.0f}', pm(s['accuracy'], 2)]
          + ([pm(s['valid_accuracy'], 2)] if with_valid else [])
          + [pm(v, 1) for v in s['input_noise'].values()]
          + [pm(v, 1) for v in s['weight_noise'].values()] + [seconds])


def _footer(methods: Mapping[str, Any]) -> list[str]:
  num_seeds = len(methods['searched']['runs'])
  agree = methods['searched']['agreement']
  lines = [f'seeds: {num_seeds}; ± is the sample standard deviation over '
           f'seeds (ddof=1); searched structures agree on '
           f'{agree["all_agree"]:.0%} of choices (pairwise '
           f'{agree["pairwise"]:.0%}); params, FLOPs (forward, per example): '
           'mean over seeds; seconds: all seeds, the search included for '
           'searched.']
  if 'random' in methods:
    lines.append(f'random search trains {methods["random"]["samples_per_seed"]}'
                 ' structures per seed.')
  for name, m in methods.items():
    if 'budget' in m:
      runs = m['runs']
      lines.append(
          f'{name}: per seed {m["budget"]:g}x the searched method\'s time '
          f'({np.mean([r["budget_seconds"] for r in runs]):.0f}s), '
          f'{np.mean([r["structures"] for r in runs]):.1f} structures in '
          f'{np.mean([r["brackets"] for r in runs]):.1f} brackets of '
          f'successive halving (eta {m["eta"]}, {m["rungs"]} rungs)'
          + _limits_text(m.get('limits', {})) + '.')
  if 'random_small' in methods:
    lines.append(f'random, <= searched size: the best-valid random sample no '
                 f'larger than that seed\'s searched net '
                 f'({methods["random_small"]["seeds_with_a_sample"]} of '
                 f'{num_seeds} seeds had one).')
  return lines + comparison_lines(methods)


def _limits_text(limits: Mapping[str, Any]) -> str:
  parts = [f'{name} {value:,}' for name, value in
           (('params <=', limits.get('max_params')),
            ('FLOPs <=', limits.get('max_flops'))) if value is not None]
  return f', structures sampled within {" and ".join(parts)}' if parts else ''


def comparison_lines(methods: Mapping[str, Any]) -> list[str]:
  """Whether the searched net's 95% interval lies above each random search's.

  Example:
    >>> from paramsel_jax import report
    >>> acc = lambda *a: {'summary': {'accuracy': report.summarize(a)}}
    >>> m = {'searched': acc(.99, .98, .985), 'random_1x': acc(.9, .91, .905),
    ...      'random_5x': acc(.97, .99, .98)}
    >>> [line.split(': ')[-1] for line in comparison_lines(m)]
    ['searched wins, intervals apart', 'intervals overlap']
  """
  mine = methods['searched']['summary']['accuracy']
  lo = mine['mean'] - mine['ci95']
  lines = []
  for name, m in methods.items():
    if not name.startswith('random') or name == 'random_small':
      continue
    other = m['summary']['accuracy']
    hi = other['mean'] + other['ci95']
    verdict = ('searched wins, intervals apart' if lo > hi else
               'intervals overlap' if mine['mean'] >= other['mean'] else
               'random search ahead')
    lines.append(
        f'searched vs {name} (95% intervals, accuracy %): '
        f'{100 * mine["mean"]:.2f} ± {100 * mine["ci95"]:.2f} vs '
        f'{100 * other["mean"]:.2f} ± {100 * other["ci95"]:.2f}: {verdict}')
  return lines


def results_table(methods: Mapping[str, Any], split: str = 'test') -> str:
  """The results table: one row per method, mean ± sample std over seeds.

  Args:
    methods: method name -> ``{'runs', 'summary', ...}``; ``'searched'``
      (with its ``'agreement'``) must be there. The noise columns are the
      sigmas of the searched runs' summary.
    split: the split of the accuracy column (``'test'``, or ``'valid'``
      when the test split was not read: then it is the only accuracy
      column).

  Returns:
    The table and its footer, as text.
  """
  noise = methods['searched']['summary']
  with_valid = split != 'valid'
  header = (['method', 'params', 'FLOPs', f'{split} acc %']
            + (['valid acc %'] if with_valid else [])
            + [f'in σ={s}' for s in noise['input_noise']]
            + [f'w σ={s}' for s in noise['weight_noise']] + ['seconds'])
  rows = [_row(name, m, with_valid) for name, m in methods.items()]
  return '\n'.join([report.format_table(header, rows), *_footer(methods)])


def records_table(methods: Mapping[str, Any], space_kind: str) -> str:
  """The published records of :mod:`records` and the searched net, by error.

  Params and FLOPs are counted the same way for all (forward, per example, 2
  per multiply-add).
  """
  s = methods['searched']['summary']
  rows = [[r.method, r.neurons, f'{r.params:,}', f'{r.flops:,}',
           f'{r.error:.2f}'] for r in records.records_for(space_kind)]
  rows.append(['this search (mean over seeds)', '-',
               f'{s["num_params"]["mean"]:,.0f}',
               f'{s["num_flops"]["mean"]:,.0f}',
               f'{100 * (1 - s["accuracy"]["mean"]):.2f} ± '
               f'{100 * s["accuracy"]["std"]:.2f}'])
  return report.format_table(
      ['record (MNIST)', 'neurons', 'params', 'FLOPs', 'test error %'], rows)


def report_text(methods: Mapping[str, Any], space_kind: str,
                evaluate_test: bool = True,
                selection: Mapping[str, Any] | None = None) -> str:
  """Everything the pipeline prints at the end, as one text.

  The results table, the failure-mode lines of :mod:`diagnostics`, the
  records (only when the accuracies are on test) and, if run, the protocol's
  stages (:func:`selection.selection_table`).
  """
  parts = [results_table(methods, 'test' if evaluate_test else 'valid')]
  if 'diagnostics' in methods['searched']:
    parts.append('\n'.join(diagnostics.summary_lines(
        methods['searched']['diagnostics'])))
  if evaluate_test:
    parts.append(records_table(methods, space_kind))
  if selection is not None:
    parts.append(selection_lib.selection_table(selection))
  return '\n\n'.join(parts)


def _trained_points(methods: Mapping[str, Any]) -> dict[str, list[Any]]:
  """Runs to plot, by style: every fully trained random structure, methods."""
  points: dict[str, list[Any]] = {'random samples': []}
  for name, m in methods.items():
    if name == 'random':
      points['random samples'] += [r for b in m['runs'] for r in b['samples']]
    elif 'budget' in m:
      full = max(t['steps'] for r in m['runs'] for t in r['trials'])
      points['random samples'] += [t for r in m['runs'] for t in r['trials']
                                   if t['steps'] == full]
  return points


def plot_accuracy_vs_cost(methods: Mapping[str, Any], path: str, *,
                          title: str = '') -> None:
  """Test accuracy vs parameters and vs FLOPs of every trained net, a PNG.

  Random-search structures that were fully trained are shown as grey dots
  (the successive-halving rungs before the last are left out); each method's
  seeds as one marker each. Written atomically
  (:func:`paramsel_jax.io.save_figure_atomic`).
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  from matplotlib.ticker import EngFormatter  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(11, 4.5))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2, sharey=True)
  styles = {'searched': ('o', 'tab:red'), 'fixed': ('^', 'tab:blue'),
            'reference': ('D', 'tab:green')}
  samples = _trained_points(methods)['random samples']
  for ax, key, xlabel in zip(axes, ('num_params', 'num_flops'),
                             ('parameters', 'FLOPs per example (forward)')):
    scatter = lambda runs, ax=ax, key=key, **kw: ax.scatter(
        [r[key] for r in runs], [100 * r['accuracy'] for r in runs], **kw)
    if samples:
      scatter(samples, s=14, c='0.7', label='random samples (fully trained)')
    for name, m in methods.items():
      if name.startswith('random') and name != 'random_small':
        scatter(m['runs'], s=40, marker='s', label=_label(name, m))
    for name, (marker, color) in styles.items():
      if name in methods:
        scatter(methods[name]['runs'], s=50, marker=marker, c=color,
                label=_label(name, methods[name]))
    ax.set_xscale('log')
    # 12 k, 1.2 M: short labels, also for the minor ticks of narrow ranges.
    ax.xaxis.set_major_formatter(EngFormatter(places=0, sep=''))
    ax.xaxis.set_minor_formatter(EngFormatter(places=0, sep=''))
    ax.tick_params(axis='x', which='both', labelrotation=45, labelsize=7)
    ax.set_xlabel(xlabel)
    ax.grid(True, alpha=0.3)
  axes[0].set_ylabel('accuracy (%)')
  axes[0].legend(fontsize=7)
  fig.suptitle(f'structure search: {title}')
  fig.tight_layout()
  io.save_figure_atomic(fig, path, dpi=120)
