# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The synthetic data set: small, learnable, of any shape, never cached.

This module is not named ``synthetic``, so that
``paramsel_jax.data.synthetic`` is the function.
"""

from __future__ import annotations

import numpy as np

from paramsel_jax.data import containers

_BLOCK = 4  # side of the blocks of uniform value in a class mean image


def _check_args(image_shape: tuple[int, ...], num_classes: int,
                num_train: int, num_test: int) -> None:
  """Raises ValueError for arguments :func:`synthetic` cannot honour."""
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f'image_shape must be (H, W, C) of positive ints, got '
                     f'{image_shape}.')
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}.')
  if num_train < 1 or num_test < 0:
    raise ValueError(f'Need num_train >= 1 and num_test >= 0, got {num_train} '
                     f'and {num_test}.')


def _class_means(seed: int, num_classes: int,
                 image_shape: tuple[int, ...]) -> np.ndarray:
  """float32 ``(num_classes, H, W, C)`` means, uniform on 4x4 blocks."""
  h, w, c = image_shape
  coarse = np.random.default_rng([seed, 0]).random(
      (num_classes, -(-h // _BLOCK), -(-w // _BLOCK), c), dtype=np.float32)
  return 0.25 + 0.5 * coarse.repeat(_BLOCK, 1).repeat(_BLOCK, 2)[:, :h, :w]


def _draw(seed: int, stream: int, n: int,
          means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``n`` balanced examples: a class mean plus noise, quantised to uint8."""
  num_classes, image_shape = means.shape[0], means.shape[1:]
  rng = np.random.default_rng([seed, stream])
  labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
  noise = rng.normal(0.0, 0.25, (n, *image_shape)).astype(np.float32)
  pixels = np.rint((means[labels] + noise) * 255)
  return np.clip(pixels, 0, 255).astype(np.uint8), labels


def synthetic(
    *,
    num_train: int = 512,
    num_test: int = 128,
    image_shape: tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
    valid_size: int | None = None,
    seed: int = 0,
) -> containers.Dataset:
  """A small learnable data set of any shape, for tests and quick runs.

  Each class has a fixed blocky mean image (uniform values on 4x4 blocks, so
  both MLPs and conv nets can pick it up); an example is its class mean plus
  Gaussian noise, quantised to uint8. Classes are balanced. Everything is
  determined by ``seed``; the mean images and the test set do not depend on
  ``num_train`` or ``valid_size``.

  Unlike :func:`paramsel_jax.data.load`, ``num_train`` is the size of the
  *train* split: an original train set of ``num_train + valid_size`` examples
  is drawn and its last ``valid_size`` become the valid split.

  Args:
    num_train: size of the train split.
    num_test: size of the test split.
    image_shape: ``(H, W, C)``.
    num_classes: number of classes.
    valid_size: size of the valid split; ``None`` means ``num_test``.
    seed: the seed of everything.

  Returns:
    A :class:`Dataset` named ``'synthetic'``.

  Example:
    >>> ds = synthetic(num_train=20, num_test=10, num_classes=5, seed=1)
    >>> ds.train.images.dtype, ds.train.images.shape
    (dtype('uint8'), (20, 28, 28, 1))
    >>> sorted(set(ds.test.labels.tolist()))
    [0, 1, 2, 3, 4]
  """
  image_shape = tuple(int(d) for d in image_shape)
  _check_args(image_shape, num_classes, num_train, num_test)
  if valid_size is None:
    valid_size = num_test
  containers.check_valid_size(valid_size, num_train + valid_size, 'synthetic')
  means = _class_means(seed, num_classes, image_shape)
  train_images, train_labels = _draw(seed, 1, num_train + valid_size, means)
  test_images, test_labels = _draw(seed, 2, num_test, means)
  raw = containers.RawData(train_images, train_labels, test_images,
                           test_labels)
  return containers.make_dataset('synthetic', raw, num_classes, valid_size)
