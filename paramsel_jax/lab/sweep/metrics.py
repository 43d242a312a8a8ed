"""Which metrics a sweep's outputs show: the image ones, or a task's own.

A cell holds whatever metrics its task's evaluation gives: the image preset's
`METRICS`, or a general task's `eval_fn` names (e.g. 'val_loss'). The outputs
list the image metrics first, in `METRICS` order, then any others (loss-like
first, by name); the best selector is the one with the lowest mean
of the first loss-like metric (`loss_metric`).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

# The image preset's metrics, in the order the outputs show them.
METRICS = ('test_loss', 'test_accuracy', 'train_loss', 'train_accuracy')
# What the text tables show of an image task (the others: every metric).
IMAGE_TABLE_METRICS = ('test_loss', 'test_accuracy')


def metric_names(cells: Iterable[dict[str, Any]]) -> list[str]:
  """The metrics of ``cells`` (their 'w' part): `METRICS` first, then the rest.

  The rest: loss-like names first, each group sorted by name.

  Example:
    >>> metric_names([{'w': {'val_acc': [1.0], 'val_loss': [1.0],
    ...                      'test_loss': [2.0]}}])
    ['test_loss', 'val_loss', 'val_acc']
  """
  seen: set[str] = set()
  for c in cells:
    seen.update(c['w'])
  rest = sorted(seen - set(METRICS), key=lambda m: ('loss' not in m, m))
  return [m for m in METRICS if m in seen] + rest


def loss_metric(names: Sequence[str]) -> str | None:
  """'test_loss' if present, else the first name with 'loss' in it, else None.

  Example:
    >>> loss_metric(['val_accuracy', 'val_loss']), loss_metric(['acc'])
    ('val_loss', None)
  """
  if 'test_loss' in names:
    return 'test_loss'
  return next((m for m in names if 'loss' in m), None)


def is_accuracy(name: str) -> bool:
  """Whether ``name`` is an accuracy (shown in %).

  Example:
    >>> is_accuracy('test_accuracy'), is_accuracy('val_acc'), is_accuracy('ppl')
    (True, True, False)
  """
  return name.endswith('accuracy') or name.endswith('acc')


def table_metrics(names: Sequence[str]) -> list[str]:
  """The text tables' metrics: an image task's test ones, else every one.

  Example:
    >>> table_metrics(['test_loss', 'test_accuracy', 'train_loss'])
    ['test_loss', 'test_accuracy']
    >>> table_metrics(['val_loss', 'val_ppl'])
    ['val_loss', 'val_ppl']
  """
  shown = [m for m in IMAGE_TABLE_METRICS if m in names]
  return shown or list(names)


def short_label(name: str) -> str:
  """A column's name: 'test_accuracy' -> 'test acc'.

  Example:
    >>> short_label('test_accuracy'), short_label('val_loss')
    ('test acc', 'val loss')
  """
  return name.replace('_', ' ').replace('accuracy', 'acc')


def label(name: str) -> str:
  """A metric in prose: 'test_accuracy' -> 'test accuracy'."""
  return name.replace('_', ' ')
