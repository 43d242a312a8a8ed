# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The cache file of a data set: ``<data_dir>/<name>.npz``, checksummed.

The npz holds the four arrays of :class:`RawData` and ``meta``, a JSON string
with the format version, the name, the source, the creation time and the
sha256 of :func:`arrays_sha256`. It is written atomically
(:func:`paramsel_jax.io.atomic_path`) and checked when read.
"""

from __future__ import annotations

from collections.abc import Mapping
import datetime
import hashlib
import json
import os
from typing import Any

import numpy as np

from paramsel_jax import io as io_lib
from paramsel_jax.data import containers

ENV_DATA_DIR = 'PARAMSEL_DATA_DIR'

_CACHE_FORMAT = 1
_ARRAY_KEYS = ('train_images', 'train_labels', 'test_images', 'test_labels')


def arrays_sha256(
    raw: containers.RawData | Mapping[str, np.ndarray]) -> str:
  """sha256 of arrays: per key, sorted, ``key:dtype:shape;`` then the bytes.

  Args:
    raw: a :class:`RawData` or a mapping from name to array.

  Returns:
    The hex digest.

  Example:
    >>> import numpy as np
    >>> arrays_sha256({'a': np.zeros(2, np.uint8)})[:12]
    '11664beb237a'
  """
  arrays = (raw._asdict() if isinstance(raw, containers.RawData)
            else dict(raw))
  h = hashlib.sha256()
  for key in sorted(arrays):
    a = np.ascontiguousarray(arrays[key])
    h.update(f'{key}:{a.dtype.str}:{list(a.shape)};'.encode())
    # numpy's stubs give arrays the buffer protocol only for Python >= 3.12.
    h.update(a.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
  return h.hexdigest()


def default_data_dir() -> str:
  """The cache directory: ``$PARAMSEL_DATA_DIR``, or ``~/.cache/paramsel_jax``.

  Example:
    >>> import os
    >>> os.environ['PARAMSEL_DATA_DIR'] = '/tmp/d'; default_data_dir()
    '/tmp/d'
    >>> del os.environ['PARAMSEL_DATA_DIR']
  """
  return os.path.expanduser(os.environ.get(ENV_DATA_DIR) or
                            '~/.cache/paramsel_jax')


def cache_path(name: str, data_dir: str | None = None) -> str:
  """The cache file of a data set: ``<data_dir>/<name>.npz``.

  Example:
    >>> cache_path('mnist', '/tmp/d')
    '/tmp/d/mnist.npz'
  """
  return os.path.join(data_dir or default_data_dir(), f'{name}.npz')


def _meta(name: str, source: str, digest: str) -> dict[str, Any]:
  """The ``meta`` entry of a cache file written now."""
  created = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')
  return dict(format=_CACHE_FORMAT, name=name, sha256=digest, source=source,
              created=created)


def write_cache(path: str, raw: containers.RawData, *, name: str,
                source: str) -> str:
  """Write ``raw`` and its checksum to ``path`` atomically; return the sha256.

  The npz holds the four arrays of :class:`RawData` and ``meta``, a JSON
  string with the format version, the name, the source and the sha256 of
  :func:`arrays_sha256`. The file is synced to disk before it replaces
  ``path``.

  Args:
    path: the cache file; its directory is made when missing.
    raw: the full original train and test sets.
    name: the data set's name.
    source: where ``raw`` came from (shown when the cache is loaded).

  Returns:
    The :func:`arrays_sha256` of ``raw``.

  Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> raw = containers.RawData(*(np.zeros(s, d) for s, d in (
    ...     ((2, 1, 1, 1), np.uint8), (2, np.int32),
    ...     ((1, 1, 1, 1), np.uint8), (1, np.int32))))
    >>> path = os.path.join(tempfile.mkdtemp(), 'toy.npz')
    >>> write_cache(path, raw, name='toy', source='doc') == arrays_sha256(raw)
    True
    >>> read_cache(path)[1]['source']
    'doc'
  """
  digest = arrays_sha256(raw)
  meta = _meta(name, source, digest)
  with io_lib.atomic_path(path, suffix='.npz') as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, meta=np.array(json.dumps(meta)), **raw._asdict())
      f.flush()
      os.fsync(f.fileno())
  return digest


def read_cache(path: str) -> tuple[containers.RawData, dict[str, Any]]:
  """Read a cache file and check its checksum; return the arrays and meta.

  Args:
    path: a file written by :func:`write_cache`.

  Returns:
    The arrays and the ``meta`` dict.

  Raises:
    ValueError: the checksum or the format does not match (a damaged zip
      raises ``zipfile.BadZipFile``, ``OSError`` or ``EOFError``).
  """
  with np.load(path, allow_pickle=False) as npz:
    missing = {'meta', *_ARRAY_KEYS} - set(npz.files)
    if missing:
      raise ValueError(f'missing arrays {sorted(missing)}')
    meta = json.loads(str(npz['meta']))
    raw = containers.RawData(**{k: npz[k] for k in _ARRAY_KEYS})
  if meta.get('format') != _CACHE_FORMAT:
    raise ValueError(f'cache format {meta.get("format")}, expected '
                     f'{_CACHE_FORMAT}')
  digest = arrays_sha256(raw)
  if digest != meta.get('sha256'):
    raise ValueError(f'checksum mismatch: stored {meta.get("sha256")}, '
                     f'computed {digest}')
  return raw, meta
