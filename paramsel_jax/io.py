"""Results on disk: every file the project writes, written atomically.

A reader sees the old file or the new one, never a partial one: each writer
writes a temp file beside the target, then renames it into place, and removes
the temp file on any error. New files get the mode a plain `open()` would give
them (0666 minus the umask: 0644 usually), not the temp file's 0600.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import Any, Iterator

import numpy as np


def _json_default(o: Any) -> Any:
  """Numpy scalars and arrays, jax arrays and dataclasses as plain JSON."""
  if isinstance(o, (np.floating, np.integer, np.bool_)):
    return o.item()
  if hasattr(o, '__array__'):
    return np.asarray(o).tolist()
  if dataclasses.is_dataclass(o) and not isinstance(o, type):
    return dataclasses.asdict(o)
  raise TypeError(f'not JSON-serialisable: {type(o).__name__}')


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = '') -> Iterator[str]:
  """A temp path beside `path` that becomes `path` when the block succeeds.

  For writers that want a file name (`savefig`, `np.savez`): write to the
  yielded path; on success it is renamed to `path` with the usual file mode,
  on error it is removed and `path` is untouched.

  Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), 'a.txt')
    >>> with atomic_path(path) as tmp:
    ...   _ = open(tmp, 'w').write('ok')
    >>> open(path).read(), oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())
    ('ok', True)
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=suffix)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text_atomic(text: str, path: str, suffix: str = '') -> None:
  r"""Writes `text` to `path` atomically.

  Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), 't.txt')
    >>> write_text_atomic('done\n', path)
    >>> open(path).read()
    'done\n'
  """
  with atomic_path(path, suffix) as tmp:
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)


def write_json_atomic(obj: Any, path: str) -> None:
  """Writes `obj` as JSON atomically (numpy and jax values as plain numbers).

  Example:
    >>> import tempfile, os, json, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), 'r.json')
    >>> write_json_atomic({'acc': np.float32(0.5)}, path)
    >>> json.load(open(path))
    {'acc': 0.5}
  """
  text = json.dumps(obj, indent=1, default=_json_default) + '\n'
  write_text_atomic(text, path, suffix='.json')


def save_figure_atomic(fig: Any, path: str, **savefig_kwargs: Any) -> None:
  r"""`fig.savefig(path)` for a matplotlib figure, atomically.

  The format is taken from `path`'s extension unless given.

  Example:
    >>> import tempfile, os
    >>> from matplotlib.figure import Figure
    >>> path = os.path.join(tempfile.mkdtemp(), 'f.png')
    >>> save_figure_atomic(Figure(figsize=(1, 1)), path)
    >>> open(path, 'rb').read(4)
    b'\x89PNG'
  """
  suffix = os.path.splitext(path)[1]
  savefig_kwargs.setdefault('format', suffix.lstrip('.') or 'png')
  with atomic_path(path, suffix) as tmp:
    fig.savefig(tmp, **savefig_kwargs)
