# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The IDX format of MNIST-like data, and where Fashion-MNIST's files are.

A directory of the four IDX files (each optionally gzipped) is read by
:func:`read_idx_dir`. Fashion-MNIST's are looked for in
``$PARAMSEL_FASHION_MNIST_DIR``, then in ``/usr/share/datasets/fashion-mnist``
(Debian package ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import gzip
import math
import os

import numpy as np
import numpy.typing as npt

from paramsel_jax.data import containers

ENV_FASHION_MNIST_DIR = 'PARAMSEL_FASHION_MNIST_DIR'
DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'

_IDX_DTYPES: dict[int, npt.DTypeLike] = {
    0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype('>i2'), 0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'), 0x0E: np.dtype('>f8')}

_IDX_FILES = {
    'train_images': 'train-images-idx3-ubyte',
    'train_labels': 'train-labels-idx1-ubyte',
    'test_images': 't10k-images-idx3-ubyte',
    'test_labels': 't10k-labels-idx1-ubyte',
}


def read_idx(blob: bytes) -> np.ndarray:
  """An array from the bytes of an IDX file (the MNIST / Fashion-MNIST format).

  Args:
    blob: the (already decompressed) file contents.

  Returns:
    The array, with the shape of the file's header.

  Example:
    >>> import numpy as np
    >>> read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    array([7, 8, 9], dtype=uint8)
  """
  if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
    raise ValueError('not an IDX file (bad magic number).')
  code, ndim = blob[2], blob[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f'IDX file has unknown type code {code:#x}.')
  header = 4 + 4 * ndim
  if len(blob) < header:
    raise ValueError('IDX file is truncated (header).')
  shape = tuple(int.from_bytes(blob[4 + 4 * i:8 + 4 * i], 'big')
                for i in range(ndim))
  dtype = np.dtype(_IDX_DTYPES[code])
  if len(blob) != header + math.prod(shape) * dtype.itemsize:
    raise ValueError(f'IDX file has {len(blob) - header} data bytes, header '
                     f'says shape {shape} of {dtype}.')
  return np.frombuffer(blob, dtype, offset=header).reshape(shape)


def _read_plain_or_gz(path: str, directory: str) -> bytes:
  """The bytes of ``path.gz`` (decompressed) if it exists, else of ``path``."""
  if os.path.exists(path + '.gz'):
    with gzip.open(path + '.gz', 'rb') as f:
      return f.read()
  if os.path.exists(path):
    with open(path, 'rb') as f:
      return f.read()
  raise FileNotFoundError(f'no {os.path.basename(path)}[.gz] in {directory}')


def _as_images(a: np.ndarray, path: str) -> np.ndarray:
  """uint8 ``(n, H, W)`` IDX images as ``(n, H, W, 1)``."""
  if a.ndim != 3 or a.dtype != np.uint8:
    raise ValueError(f'{path}: images must be uint8 (n, H, W), got '
                     f'{containers.array_summary(a)}.')
  return a[..., None]


def read_idx_dir(directory: str, num_classes: int = 10) -> containers.RawData:
  """MNIST-like data from a directory of the four IDX files (gzipped or not).

  The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally
  with ``.gz``.

  Args:
    directory: where the files are.
    num_classes: labels must be in ``[0, num_classes)``.

  Returns:
    The train and test sets, images as ``(n, H, W, 1)``.
  """
  arrays = {}
  for key, stem in _IDX_FILES.items():
    path = os.path.join(directory, stem)
    a = read_idx(_read_plain_or_gz(path, directory))
    if key.endswith('images'):
      arrays[key] = _as_images(a, path)
    else:
      arrays[key] = containers.as_labels(a, num_classes, path)
  return containers.RawData(**arrays)


def has_idx_files(directory: str) -> bool:
  """Whether ``directory`` holds (at least) the IDX train images, maybe gzipped.

  Example:
    >>> has_idx_files('/nonexistent')
    False
  """
  stem = os.path.join(directory, _IDX_FILES['train_images'])
  return os.path.exists(stem) or os.path.exists(stem + '.gz')


def fashion_mnist_dirs() -> list[str]:
  """Where to look for Fashion-MNIST's IDX files, in order.

  ``$PARAMSEL_FASHION_MNIST_DIR`` when set, then the Debian package's
  directory.

  Example:
    >>> fashion_mnist_dirs()[-1]
    '/usr/share/datasets/fashion-mnist'
  """
  return [d for d in (os.environ.get(ENV_FASHION_MNIST_DIR),
                      DEBIAN_FASHION_MNIST_DIR) if d]
