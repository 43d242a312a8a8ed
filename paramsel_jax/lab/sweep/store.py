"""The resumable store of a sweep: one JSON file per finished cell and run.

Every file is written atomically (`paramsel_jax.io`), so a kill at any point
leaves either the whole file or none; a restarted sweep computes only the
cells whose files are missing. The state after each run's η0 is kept too
(`state_dir`, an orbax checkpoint), so a restarted or extended sweep does
not recompute η0.
"""

from __future__ import annotations

import json
import os
from typing import Any

from paramsel_jax import io as io_lib


class CellStore:
  """Finished cells (and each run's dense η0 metrics), one JSON file each.

  Example:
    >>> import tempfile
    >>> store = CellStore(tempfile.mkdtemp())
    >>> store.save('cells', 'a', {'x': 1}); store.load('cells', 'a')
    {'x': 1}
  """

  def __init__(self, directory: str):
    self.directory = directory

  def path(self, kind: str, key: str) -> str:
    """The file of record ``key`` of ``kind`` (``'cells'`` or ``'runs'``)."""
    return os.path.join(self.directory, kind, f'{key}.json')

  def has(self, kind: str, key: str) -> bool:
    """Whether record ``key`` of ``kind`` has been saved."""
    return os.path.exists(self.path(kind, key))

  def load(self, kind: str, key: str) -> dict[str, Any]:
    """The saved record ``key`` of ``kind``."""
    with open(self.path(kind, key), encoding='utf-8') as f:
      return json.load(f)

  def state_dir(self, key: str) -> str:
    """The directory of the saved η0 state ``key`` (orbax, `checkpoints`)."""
    return os.path.join(self.directory, 'eta0', key)

  def save(self, kind: str, key: str, record: dict[str, Any]) -> None:
    """Writes ``record`` as ``key`` of ``kind``, atomically."""
    io_lib.write_json_atomic(record, self.path(kind, key))
