"""The data of `experiments/lm.py`: token splits of Shakespeare's plays, or synthetic.

An experiment takes an :class:`LMData`: the splits it trains and reports on
(``task``) and, for the ``finetune`` scenario, the pre-training plays'
splits (``pretrain``). :func:`shakespeare_data` reads the plays
(:mod:`paramsel_jax.data.shakespeare`, fetched once and cached) and splits
them by whole plays; :func:`synthetic_data` makes learnable tokens without
reading anything (tests and smoke runs).

  >>> d = synthetic_data('pretrain')
  >>> d.vocab_size, d.pretrain is None, sorted(d.about)
  (16, True, ['data'])
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from paramsel_jax.protocol import checks

SCENARIOS = ('pretrain', 'finetune')
DATA = ('shakespeare', 'synthetic')
# What the fine-tuning task holds out: whole plays (its validation and test
# plays are other plays than its training ones), or passages (every
# fine-tuning play's last 20%, in two halves: validation, then test).
HELDOUT = ('plays', 'passages')
PASSAGES = (0.8, 0.9)

# The ids of each data source (Shakespeare: `shakespeare.corpus_vocab()`).
VOCAB_SIZES = {'shakespeare': 89, 'synthetic': 16}


def vocab_size_of(data: str) -> int:
  """The vocabulary size of data source `data` (before loading it).

  >>> vocab_size_of('shakespeare')
  89
  """
  checks.one_of('data', data, DATA)
  return VOCAB_SIZES[data]




class TokenSplits(NamedTuple):
  """Token ids of one task's splits (1-D int arrays)."""

  train: np.ndarray
  val: np.ndarray
  test: np.ndarray


class LMData(NamedTuple):
  """What a run trains on: the task's splits, and (finetune) the pre-training's."""

  vocab_size: int
  task: TokenSplits
  pretrain: TokenSplits | None = None
  about: dict[str, Any] = {}


def synthetic_data(scenario: str, vocab_size: int = VOCAB_SIZES['synthetic'], length: int = 4000,
                   seed: int = 0) -> LMData:
  """Tokens of a random sparse Markov chain: learnable, nothing read.

  >>> d = synthetic_data('finetune')
  >>> d.vocab_size, len(d.task.train), d.pretrain is not None
  (16, 3200, True)
  """
  rng = np.random.default_rng(seed)

  def chain(n, rng):
    nxt = rng.integers(0, vocab_size, size=(vocab_size, 2))
    out = np.zeros(n, np.int32)
    for i in range(1, n):
      out[i] = nxt[out[i - 1], rng.integers(0, 2)]
    return out

  def splits(tokens):
    a, b = int(0.8 * len(tokens)), int(0.9 * len(tokens))
    return TokenSplits(tokens[:a], tokens[a:b], tokens[b:])

  task = splits(chain(length, rng))
  pre = splits(chain(length, rng)) if scenario == 'finetune' else None
  return LMData(vocab_size, task, pre, {'data': 'synthetic'})


def shakespeare_data(scenario: str, log: Callable[[str], None] = print,
                     heldout: str = 'plays') -> LMData:
  """The plays (downloaded once, cached), split, encoded.

  The pre-training splits are whole plays; the fine-tuning task's held-out
  text is whole plays or passages (`HELDOUT`; `split_passages`).
  """
  from paramsel_jax.data import shakespeare  # pylint: disable=g-import-not-at-top
  checks.one_of('heldout', heldout, HELDOUT)
  plays = shakespeare.load_plays(say=log)
  vocab = shakespeare.corpus_vocab(say=lambda _: None)
  encode = lambda split: TokenSplits(*(shakespeare.encode_plays(plays, names, vocab)
                                  for names in split))
  about = lambda split: {'train': list(split.train),
                         'val': list(split.valid), 'test': list(split.test)}
  if scenario == 'pretrain':
    split = shakespeare.split_plays(sorted(plays))
    return LMData(len(vocab), encode(split), None, {'plays': about(split)})
  both = shakespeare.split_for_finetuning(sorted(plays))
  if heldout == 'plays':
    return LMData(len(vocab), encode(both.finetune), encode(both.pretrain),
                  {'plays': about(both.finetune),
                   'pretrain_plays': about(both.pretrain)})
  names = sorted(sum(both.finetune, ()))
  task = split_passages([shakespeare.encode_plays(plays, [n], vocab)
                         for n in names])
  return LMData(len(vocab), task, encode(both.pretrain),
                {'passages': {'plays': names, 'cuts': list(PASSAGES)},
                 'pretrain_plays': about(both.pretrain)})


def split_passages(plays: list[np.ndarray],
                   cuts: tuple[float, float] = PASSAGES) -> TokenSplits:
  """Each play cut at `cuts` (train, val, test spans), spans concatenated.

  >>> split_passages([np.arange(10), np.arange(10, 20)])
  TokenSplits(train=array([ 0,  1,  2,  3,  4,  5,  6,  7, 10, 11, 12, 13, 14, 15, 16, 17]), \
val=array([ 8, 18]), test=array([ 9, 19]))
  """
  parts: list[list[np.ndarray]] = [[], [], []]
  for tokens in plays:
    a, b = (int(c * len(tokens)) for c in cuts)
    for part, span in zip(parts, (tokens[:a], tokens[a:b], tokens[b:])):
      part.append(span)
  return TokenSplits(*(np.concatenate(p) for p in parts))


def load_data(data: str, scenario: str,
              log: Callable[[str], None] = print,
              heldout: str = 'plays') -> LMData:
  """The tokens of data source `data` for `scenario` (`heldout`: `HELDOUT`)."""
  checks.one_of('data', data, DATA)
  checks.one_of('scenario', scenario, SCENARIOS)
  checks.one_of('heldout', heldout, HELDOUT)
  if data == 'synthetic':
    return synthetic_data(scenario)
  return shakespeare_data(scenario, log, heldout)
