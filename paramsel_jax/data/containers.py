# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The data containers: a :class:`Dataset` of three :class:`Split` s.

A source yields :class:`RawData` (the full original train and test sets);
:func:`make_dataset` carves the valid split from its end. Images are always
uint8 ``(n, H, W, C)`` and labels int32 ``(n,)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np


class DataUnavailableError(RuntimeError):
  """No source could provide a data set; the message lists what was tried."""


def array_summary(a: np.ndarray) -> str:
  """``dtype[shape]`` of an array, for error messages.

  Example:
    >>> import numpy as np
    >>> array_summary(np.zeros((2, 3), np.uint8))
    'uint8[2, 3]'
  """
  return f'{a.dtype}{list(a.shape)}'


def as_labels(y: Any, num_classes: int, what: str) -> np.ndarray:
  """``y`` as int32 labels, checked to be 1-d integers in ``[0, num_classes)``.

  Args:
    y: anything ``np.asarray`` takes.
    num_classes: labels must be below this.
    what: where ``y`` comes from, for the error message.

  Returns:
    The labels as int32.

  Raises:
    ValueError: ``y`` is not 1-d integers, or a label is out of range.

  Example:
    >>> as_labels([2, 0, 1], 3, 'toy')
    array([2, 0, 1], dtype=int32)
  """
  y = np.asarray(y)
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'{what}: labels must be 1-d integers, got '
                     f'{array_summary(y)}.')
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f'{what}: labels outside [0, {num_classes}): '
                     f'min {y.min()}, max {y.max()}.')
  return y.astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split of a data set: images and their labels.

  The arrays are read-only (the valid split is a view into the original train
  set, so writing into one split would change another). Copy before changing.

  Attributes:
    images: uint8, ``(n, H, W, C)``.
    labels: int32, ``(n,)``, in ``[0, num_classes)``.

  Example:
    >>> import numpy as np
    >>> s = Split(np.zeros((3, 2, 2, 1), np.uint8),
    ...           np.arange(3, dtype=np.int32))
    >>> len(s), s.image_shape
    (3, (2, 2, 1))
  """

  images: np.ndarray  # uint8, (n, H, W, C)
  labels: np.ndarray  # int32, (n,)

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise ValueError('Split.images must be uint8 of shape (n, H, W, C), got '
                       f'{array_summary(self.images)}.')
    if self.labels.dtype != np.int32 or self.labels.ndim != 1:
      raise ValueError('Split.labels must be int32 of shape (n,), got '
                       f'{array_summary(self.labels)}.')
    if self.images.shape[0] != self.labels.shape[0]:
      raise ValueError(f'Split has {self.images.shape[0]} images but '
                       f'{self.labels.shape[0]} labels.')

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)``."""
    return tuple(self.images.shape[1:])

  def __repr__(self) -> str:
    return (f'Split(images={array_summary(self.images)}, '
            f'labels={array_summary(self.labels)})')


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A data set: train, valid and test splits of images of one shape.

  Attributes:
    name: the name it was loaded under (one of ``DATASETS``).
    train: the training split (the original train set minus ``valid``).
    valid: the last ``valid_size`` examples of the original train set.
    test: the original test set.
    num_classes: labels are in ``[0, num_classes)``.

  Example:
    >>> from paramsel_jax.data import synthetic
    >>> ds = synthetic(num_train=8, num_test=4, valid_size=2,
    ...                image_shape=(4, 4, 3))
    >>> ds.image_shape, ds.num_classes, [len(s) for s in ds.splits.values()]
    ((4, 4, 3), 10, [8, 2, 4])
  """

  name: str
  train: Split
  valid: Split
  test: Split
  num_classes: int

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)`` of every image."""
    return self.train.image_shape

  @property
  def num_pixels(self) -> int:
    """``H * W * C``: the input size of a fully-connected net."""
    return math.prod(self.image_shape)

  @property
  def splits(self) -> dict[str, Split]:
    """``{'train': ..., 'valid': ..., 'test': ...}``."""
    return {'train': self.train, 'valid': self.valid, 'test': self.test}

  def __repr__(self) -> str:
    return (f'Dataset(name={self.name!r}, train={self.train}, '
            f'valid={self.valid}, test={self.test}, '
            f'num_classes={self.num_classes})')


class RawData(NamedTuple):
  """A data set as fetched and cached: the full original train and test sets.

  Example:
    >>> import numpy as np
    >>> raw = RawData(np.zeros((5, 2, 2, 1), np.uint8), np.zeros(5, np.int32),
    ...               np.zeros((3, 2, 2, 1), np.uint8), np.zeros(3, np.int32))
    >>> raw._fields
    ('train_images', 'train_labels', 'test_images', 'test_labels')
  """

  train_images: np.ndarray  # uint8, (n_train, H, W, C)
  train_labels: np.ndarray  # int32, (n_train,)
  test_images: np.ndarray  # uint8, (n_test, H, W, C)
  test_labels: np.ndarray  # int32, (n_test,)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a data set looks like, known without loading it.

  Example:
    >>> DatasetInfo((28, 28, 1), 10, 50000, 10000).num_classes
    10
  """

  image_shape: tuple[int, int, int]
  num_classes: int
  num_train: int  # after the default validation split is carved out.
  num_test: int


def check_valid_size(valid_size: Any, num_train: int, name: str) -> None:
  """Checks ``0 <= valid_size < num_train`` for an original train set.

  Args:
    valid_size: the requested size of the valid split.
    num_train: the size of the original train set of ``name``.
    name: the data set, for the error message.

  Raises:
    TypeError: ``valid_size`` is not an int (a bool is not one).
    ValueError: ``valid_size`` is out of range.

  Example:
    >>> check_valid_size(10, 60, 'toy')
    >>> check_valid_size(60, 60, 'toy')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: valid_size must satisfy 0 <= valid_size < 60 (...), got 60.
  """
  if (isinstance(valid_size, bool) or
      not isinstance(valid_size, (int, np.integer))):
    raise TypeError(f'valid_size must be an int, got {valid_size!r}.')
  if not 0 <= valid_size < num_train:
    raise ValueError(f'valid_size must satisfy 0 <= valid_size < {num_train} '
                     f'(the size of the original {name} train set), got '
                     f'{valid_size}.')


def make_dataset(name: str, raw: RawData, num_classes: int,
                 valid_size: int) -> Dataset:
  """A :class:`Dataset` whose valid split is the last ``valid_size`` of train.

  Marks the arrays of ``raw`` read-only; the splits are views into them.

  Args:
    name: the data set's name.
    raw: the full original train and test sets.
    num_classes: labels are in ``[0, num_classes)``.
    valid_size: how many of the last training examples form the valid split.

  Returns:
    The :class:`Dataset`.

  Example:
    >>> import numpy as np
    >>> raw = RawData(np.zeros((5, 2, 2, 1), np.uint8),
    ...               np.arange(5, dtype=np.int32),
    ...               np.zeros((3, 2, 2, 1), np.uint8), np.zeros(3, np.int32))
    >>> make_dataset('toy', raw, 5, valid_size=2).valid.labels
    array([3, 4], dtype=int32)
  """
  for a in raw:
    a.flags.writeable = False
  cut = raw.train_labels.shape[0] - valid_size
  return Dataset(
      name=name,
      train=Split(raw.train_images[:cut], raw.train_labels[:cut]),
      valid=Split(raw.train_images[cut:], raw.train_labels[cut:]),
      test=Split(raw.test_images, raw.test_labels),
      num_classes=num_classes)
