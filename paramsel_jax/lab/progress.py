"""Progress lines for long runs: done / total, elapsed, remaining time, rate.

One helper for every driver (the protocol's phases, sweeps, the structure
search). The rate and the remaining time are tqdm's (an exponential moving
average of the recent rate, so compilation in the first update fades out);
the lines go to a `log` callable, one per update, so they read well in a log
file as on a terminal. Work done before this session (a resumed sweep) is
passed as `initial` and does not count towards the rate.

  >>> lines = []
  >>> p = Progress(4, lines.append, unit='cell', prefix='[sweep] ')
  >>> p.update(1, 'lenet300 topgrad')
  >>> lines[0].startswith('[sweep] 1/4 cells [')
  True
  >>> lines[0].endswith('lenet300 topgrad')
  True
"""

from __future__ import annotations

import os
from typing import Callable

import tqdm


class Progress:
  """Logs `prefix n/total units [elapsed<remaining, rate] note` per update."""

  def __init__(self, total: int, log: Callable[[str], None], *,
               unit: str = 'step', initial: int = 0, prefix: str = ''):
    self.log, self.prefix = log, prefix
    self._devnull = open(os.devnull, 'w')  # tqdm renders; `log` prints.
    self._bar = tqdm.tqdm(
        total=total, initial=initial, unit=unit, file=self._devnull,
        mininterval=0, smoothing=0.3, dynamic_ncols=False,
        bar_format='{n_fmt}/{total_fmt} {unit}s [{elapsed}<{remaining}, '
                   '{rate_fmt}]')

  @property
  def done(self) -> int:
    """Units of work done so far, ``initial`` included."""
    return int(self._bar.n)

  def update(self, n: int, note: str = '') -> None:
    """Adds `n` units of work and logs the line."""
    self._bar.update(n)
    self.log(f'{self.prefix}{self._bar}' + (f'  {note}' if note else ''))

  def close(self) -> None:
    """Closes the tqdm bar and the null file it renders to."""
    self._bar.close()
    self._devnull.close()

  def __del__(self):
    if not self._devnull.closed:
      self.close()
