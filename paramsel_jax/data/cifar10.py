# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""CIFAR-10 from ``cifar-10-python.tar.gz``, the python-pickle archive."""

from __future__ import annotations

import hashlib
import tarfile

import numpy as np

from paramsel_jax.data import containers
from paramsel_jax.data import unpickle

ENV_CIFAR10_ARCHIVE = 'PARAMSEL_CIFAR10_ARCHIVE'
# md5 of the official cifar-10-python.tar.gz (as published with the data set).
CIFAR10_ARCHIVE_MD5 = 'c58f30108f718f92721af3b95e74349a'


def _read_batch(tar: tarfile.TarFile, path: str,
                name: str) -> tuple[np.ndarray, np.ndarray]:
  """One pickled batch of the archive as HWC uint8 images and int32 labels."""
  member = f'cifar-10-batches-py/{name}'
  try:
    f = tar.extractfile(member)
  except KeyError:
    raise ValueError(f'{path} has no {member}') from None
  if f is None:
    raise ValueError(f'{path}: {member} is not a file')
  with f:
    d = unpickle.unpickle(f, encoding='bytes')
  if not isinstance(d, dict) or b'data' not in d or b'labels' not in d:
    raise ValueError(f'{path}: {member} is not a CIFAR batch dict')
  x = np.asarray(d[b'data'])
  if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
    raise ValueError(f'{path}: {member} data must be uint8 (n, 3072), got '
                     f'{containers.array_summary(x)}')
  y = containers.as_labels(d[b'labels'], 10, f'{path}: {member}')
  if y.shape[0] != x.shape[0]:
    raise ValueError(f'{path}: {member} has {x.shape[0]} images and '
                     f'{y.shape[0]} labels')
  return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y


def read_cifar10_archive(path: str) -> containers.RawData:
  """CIFAR-10 from ``cifar-10-python.tar.gz`` (the python-pickle version).

  The archive holds ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``
  and ``test_batch``: pickled dicts with ``b'data'``, uint8 ``(n, 3072)`` in
  CHW order, and ``b'labels'``, a list of ints. Batches are concatenated in
  order 1..5.

  Args:
    path: the archive (any compression ``tarfile`` reads).

  Returns:
    Train (50000) and test (10000) sets, images ``(n, 32, 32, 3)``.
  """
  with tarfile.open(path, 'r:*') as tar:
    train = [_read_batch(tar, path, f'data_batch_{i}') for i in range(1, 6)]
    test_images, test_labels = _read_batch(tar, path, 'test_batch')
  return containers.RawData(
      np.ascontiguousarray(np.concatenate([x for x, _ in train])),
      np.concatenate([y for _, y in train]),
      np.ascontiguousarray(test_images), test_labels)


def archive_md5(path: str) -> str:
  """The md5 hex digest of a file, read in 1 MiB chunks.

  Compare it with ``CIFAR10_ARCHIVE_MD5`` to tell the official archive.

  Example:
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...   archive_md5(f.name)
    'd41d8cd98f00b204e9800998ecf8427e'
  """
  md5 = hashlib.md5(usedforsecurity=False)
  with open(path, 'rb') as f:
    while chunk := f.read(1 << 20):
      md5.update(chunk)
  return md5.hexdigest()
