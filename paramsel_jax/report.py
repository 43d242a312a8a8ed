"""Summaries over seeds and plain-text tables: one definition for every script.

`summarize` is the only place a "mean ± spread" is computed: the mean and the
*sample* standard deviation (ddof = 1) over the finite values, and the
half-width of the two-sided 95% Student-t interval of the mean (scipy's t
quantile). A value that is not finite (a diverged seed) is left out and the
summary says how many values it covers. `format_table` is the only table
formatter (plain text, or markdown for the `.md` outputs). `first_reach` and
`times_to_reach` read when each seed first reaches a target accuracy.

  >>> s = summarize([1.0, 3.0, float('nan')])
  >>> s['mean'], s['std'], s['n'], s['n_total']
  (2.0, 1.4142135623730951, 2, 3)
  >>> print(format_table(('a', 'bb'), [('1', '2'), ('333', '4')]))
  a    bb
  ---  --
  1    2
  333  4
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as scipy_stats


def t_quantile_975(dof: int) -> float:
  """The 97.5% quantile of Student's t with `dof` degrees of freedom.

  Example:
    >>> round(t_quantile_975(2), 3)
    4.303
  """
  return float(scipy_stats.t.ppf(0.975, dof))


def summarize(values: Sequence[float]) -> dict[str, Any]:
  """Mean, sample std and 95% t-interval half-width over the finite values.

  Returns:
    `{'mean', 'std', 'ci95', 'n', 'n_total'}`: `n` finite values of
    `n_total`. One finite value: std and ci95 are 0 (no spread is seen);
    none: mean, std and ci95 are NaN.

  Example:
    >>> round(summarize([1.0, 3.0])['ci95'], 3)  # t(0.975, 1) * std / sqrt(2)
    12.706
  """
  x = np.asarray(values, np.float64).ravel()
  finite = x[np.isfinite(x)]
  n = int(finite.size)
  out: dict[str, Any] = {'n': n, 'n_total': int(x.size)}
  if n == 0:
    return {'mean': math.nan, 'std': math.nan, 'ci95': math.nan, **out}
  std = float(finite.std(ddof=1)) if n > 1 else 0.0
  ci95 = t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else 0.0
  return {'mean': float(finite.mean()), 'std': std, 'ci95': ci95, **out}


def plus_minus(summary: dict[str, Any], scale: float = 1.0, digits: int = 2,
               spread: str = 'std', none: str = 'diverged') -> str:
  """`'mean ± spread'` of a `summarize` result, scaled; notes missing seeds.

  `spread` is 'std' or 'ci95'. When some values were not finite the text
  ends with `(n/n_total)`; when none was, it reads `none` (by default
  'diverged'; e.g. 'never' for a time to an accuracy no seed reached).

  Example:
    >>> plus_minus(summarize([0.5, 0.7]), 100)
    '60.00 ± 14.14'
    >>> plus_minus(summarize([0.5, float('inf')]), 100)
    '50.00 ± 0.00 (1/2)'
  """
  if summary['n'] == 0:
    return f'{none} ({summary["n"]}/{summary["n_total"]})'
  text = (f'{summary["mean"] * scale:.{digits}f} ± '
          f'{summary[spread] * scale:.{digits}f}')
  if summary['n'] < summary['n_total']:
    text += f' ({summary["n"]}/{summary["n_total"]})'
  return text


def first_reach(acc: Any, target: Any) -> list[int | None]:
  """Per seed, the first check at which the accuracy reaches its target.

  Args:
    acc: ``(checks, seeds)`` accuracies.
    target: ``(seeds,)`` targets (e.g. the dense run's final accuracy).

  Returns:
    Per seed the index of the first check with ``acc >= target``, or None.

  Example:
    >>> first_reach([[0.1, 0.5], [0.6, 0.4], [0.7, 0.9]], [0.6, 0.95])
    [1, None]
  """
  acc, target = np.asarray(acc), np.asarray(target)
  out: list[int | None] = []
  for s in range(acc.shape[1]):
    hit = np.flatnonzero(acc[:, s] >= target[s])
    out.append(int(hit[0]) if hit.size else None)
  return out


def times_to_reach(acc: Any, seconds: Any, target: Any) -> list[float | None]:
  """Per seed, the seconds at the first check reaching its target, or None.

  Args:
    acc: ``(checks, seeds)`` accuracies.
    seconds: ``(checks,)`` wall-clock at each check.
    target: ``(seeds,)`` targets.

  Example:
    >>> times_to_reach([[0.1, 0.5], [0.6, 0.4]], [2.0, 4.0], [0.6, 0.95])
    [4.0, None]
  """
  return [None if i is None else float(seconds[i])
          for i in first_reach(acc, target)]


def speedups(base: Sequence[float | None], other: Sequence[float | None]
             ) -> list[float | None]:
  """Per seed, `base / other` (times to the same accuracy); None if either is.

  Example:
    >>> speedups([4.0, 2.0, None], [2.0, None, 1.0])
    [2.0, None, None]
  """
  return [None if a is None or b is None else a / b
          for a, b in zip(base, other)]


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                 markdown: bool = False) -> str:
  """Left-aligned columns two spaces apart, a rule under the header.

  `markdown=True`: a markdown table instead (`| a | b |`, unpadded).

  Example:
    >>> print(format_table(('a', 'bb'), [('1', '2')], markdown=True))
    | a | bb |
    | --- | --- |
    | 1 | 2 |
  """
  cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
  if markdown:
    row = lambda r: '| ' + ' | '.join(r) + ' |'
    return '\n'.join([row(cells[0]), row(['---'] * len(header))]
                     + [row(r) for r in cells[1:]])
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  line = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
  return '\n'.join([line(cells[0]), '  '.join('-' * w for w in widths)]
                   + [line(r) for r in cells[1:]])
