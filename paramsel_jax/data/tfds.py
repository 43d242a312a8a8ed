# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""TensorFlow Datasets: prepared data found on disk, read, or downloaded.

Finding prepared data looks only at the file system; reading imports
``tensorflow_datasets`` (array_record data need no TensorFlow); a download
runs in a subprocess that is killed after a timeout, so it cannot hang.
TFDS shuffles examples when it prepares a data set.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import numpy as np

from paramsel_jax.data import commands
from paramsel_jax.data import containers

_TFDS_DOWNLOAD_SCRIPT = """
import sys
import tensorflow_datasets as tfds
name, data_dir = sys.argv[1:3]
builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
builder.download_and_prepare()
"""


def tfds_data_dir() -> str:
  """Where TFDS keeps data: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

  Example:
    >>> import os
    >>> os.environ['TFDS_DATA_DIR'] = '/tmp/t'; tfds_data_dir()
    '/tmp/t'
    >>> del os.environ['TFDS_DATA_DIR']
  """
  return os.environ.get('TFDS_DATA_DIR') or os.path.expanduser(
      '~/tensorflow_datasets')


def find_tfds_prepared(tfds_name: str,
                       tfds_dir: str | None = None) -> str | None:
  """The newest prepared version directory of a TFDS data set, or None.

  Looks only at the file system (``<dir>/<name>/<x.y.z>/dataset_info.json``):
  no TFDS import, no network.

  Args:
    tfds_name: e.g. ``'mnist'``.
    tfds_dir: TFDS data dir; default :func:`tfds_data_dir`.

  Returns:
    The version directory, or None when nothing is prepared.

  Example:
    >>> import tempfile
    >>> find_tfds_prepared('mnist', tempfile.mkdtemp()) is None
    True
  """
  root = os.path.join(tfds_dir or tfds_data_dir(), tfds_name)
  try:
    entries = os.listdir(root)
  except OSError:
    return None
  versions = [v for v in entries if re.fullmatch(r'\d+\.\d+\.\d+', v) and
              os.path.isfile(os.path.join(root, v, 'dataset_info.json'))]
  if not versions:
    return None
  newest = max(versions, key=lambda v: tuple(int(p) for p in v.split('.')))
  return os.path.join(root, newest)


def _read_split(tfds: Any, builder: Any,
                split: str) -> tuple[np.ndarray, np.ndarray]:
  """All images and labels of one split, as numpy arrays in TFDS's order."""
  if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(e['image']) for e in examples])
    labels = np.array([e['label'] for e in examples])
    return images, labels
  batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1,
                                           shuffle_files=False))
  return batch['image'], batch['label']


def read_tfds_prepared(version_dir: str,
                       num_classes: int) -> containers.RawData:
  """Train and test sets from a prepared TFDS directory, without network.

  Reads array_record data through ``as_data_source`` (no TensorFlow needed)
  and tfrecord data through ``as_dataset`` (needs TensorFlow). The examples
  come in TFDS's order, which is a shuffle of the original one.

  Args:
    version_dir: e.g. ``~/tensorflow_datasets/mnist/3.0.1``.
    num_classes: labels must be in ``[0, num_classes)``.

  Returns:
    The train and test sets.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder_from_directory(version_dir)
  arrays = {}
  for split in ('train', 'test'):
    images, labels = _read_split(tfds, builder, split)
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(f'{version_dir} {split}: images must be uint8 '
                       f'(n, H, W, C), got {containers.array_summary(images)}')
    arrays[f'{split}_images'] = images
    arrays[f'{split}_labels'] = containers.as_labels(
        labels, num_classes, f'{version_dir} {split}')
  return containers.RawData(**arrays)


def download_tfds(tfds_name: str, timeout: float) -> str:
  """Downloads and prepares a TFDS data set in a subprocess; its directory.

  The data go to :func:`tfds_data_dir` as array_record files (so that
  :func:`read_tfds_prepared` needs no TensorFlow).

  Args:
    tfds_name: e.g. ``'mnist'``.
    timeout: seconds the download may take before it is killed.

  Returns:
    The prepared version directory.

  Raises:
    RuntimeError: TFDS failed, timed out, or left no prepared data.
  """
  commands.run_command(
      [sys.executable, '-c', _TFDS_DOWNLOAD_SCRIPT, tfds_name,
       tfds_data_dir()],
      what='TFDS', timeout=timeout,
      timeout_message=f'within tfds_timeout={timeout:g} s')
  version_dir = find_tfds_prepared(tfds_name)
  if version_dir is None:
    raise RuntimeError('TFDS finished but left no prepared data')
  return version_dir
