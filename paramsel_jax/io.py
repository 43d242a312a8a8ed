"""Results on disk: text and JSON written atomically, never half-written."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import numpy as np


def _json_default(o: Any) -> Any:
  """numpy scalars and arrays, jax arrays and dataclasses as plain JSON."""
  if isinstance(o, (np.floating, np.integer, np.bool_)):
    return o.item()
  if hasattr(o, '__array__'):
    return np.asarray(o).tolist()
  if dataclasses.is_dataclass(o) and not isinstance(o, type):
    return dataclasses.asdict(o)
  raise TypeError(f'not JSON-serialisable: {type(o).__name__}')


def write_text_atomic(text: str, path: str, suffix: str = '') -> None:
  """Writes `text` to a temp file beside `path`, then renames it.

  A reader sees the old file or the new one, never a partial one; on error the
  temp file is removed.

  Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), 't.txt')
    >>> write_text_atomic('done\\n', path)
    >>> open(path).read()
    'done\\n'
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=suffix)
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json_atomic(obj: Any, path: str) -> None:
  """Writes `obj` as JSON atomically (see `write_text_atomic`).

  Example:
    >>> import tempfile, os, json, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), 'r.json')
    >>> write_json_atomic({'acc': np.float32(0.5)}, path)
    >>> json.load(open(path))
    {'acc': 0.5}
  """
  text = json.dumps(obj, indent=1, default=_json_default) + '\n'
  write_text_atomic(text, path, suffix='.json')
