"""Splitting a sweep's work over processes: which η1 groups a shard runs.

A sweep may run as several processes at once in one workdir (a job array,
`jax.distributed` processes, or simply several shells), each given a shard
``(index, count)``. The unit of work is an η1 group: one (model, optimizer,
selector, k) — one (…, l) in 'retrain' mode — whose cells come from one η1
phase (`grid.expand_groups`). Shard ``i`` of ``n`` runs the contiguous block
``[i·G/n, (i+1)·G/n)`` of the grid's G groups in `grid.expand_groups`'s
order: deterministic (every process computes the same split from the config
alone), balanced (the blocks differ by at most one group), and a shard's
groups lie in as few runs as possible, so few shards need the same run's η0.

Groups are independent given their run's state after η0; that state is
computed once, by whichever shard claims it first (`store.CellStore.claim`),
saved, and restored bit for bit by the others, which wait for it. So a
sharded sweep's cells are the one-process sweep's, bit for bit.

Where the shard comes from (read in a script's ``main``, never below):
`--shard_index/--num_shards`, else a SLURM job array's
`from_environment`, else `jax.process_index()/jax.process_count()` when
`jax.distributed` runs several processes, else ``(0, 1)``.
"""

from __future__ import annotations

from typing import Mapping, Sequence, TypeVar

T = TypeVar('T')
Shard = tuple[int, int]
ONE = (0, 1)  # the whole sweep in one process.


def check_shard(shard: Sequence[int]) -> Shard:
  """``shard`` as ``(index, count)``; ValueError naming a bad one.

  Example:
    >>> check_shard((1, 2))
    (1, 2)
    >>> check_shard((2, 2))
    Traceback (most recent call last):
    ...
    ValueError: shard=(2, 2); accepted: (index, count) with 0 <= index < count (count >= 1).
  """
  values = tuple(shard)
  if (len(values) != 2 or
      not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
      or not 0 <= values[0] < values[1]):
    raise ValueError(f'shard={values!r}; accepted: (index, count) with '
                     '0 <= index < count (count >= 1).')
  return values[0], values[1]


def block(items: Sequence[T], shard: Sequence[int]) -> list[T]:
  """Shard ``index`` of ``count``'s contiguous, balanced block of ``items``.

  Example:
    >>> [block(range(5), (i, 2)) for i in range(2)]
    [[0, 1], [2, 3, 4]]
    >>> [len(block(range(10), (i, 4))) for i in range(4)]
    [2, 3, 2, 3]
  """
  index, count = check_shard(shard)
  n = len(items)
  return list(items[index * n // count:(index + 1) * n // count])


def owner(items: Sequence[T], item: T, count: int) -> int:
  """The index of the shard (of ``count``) whose `block` holds ``item``.

  Example:
    >>> [owner('abcde', x, 2) for x in 'abcde']
    [0, 0, 1, 1, 1]
  """
  position = list(items).index(item)
  return next(i for i in range(count)
              if i * len(items) // count <= position
              < (i + 1) * len(items) // count)


def from_environment(environ: Mapping[str, str]) -> Shard | None:
  """The shard of a SLURM job-array task, or None outside one.

  A task of ``sbatch --array=0-3`` (or ``1-4``) is shard
  ``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` of
  ``SLURM_ARRAY_TASK_COUNT``; an array with a step (``0-6:2``) or a
  list of ids (``1,5,9``) is refused, since its ids are not ``min ..
  min + count - 1``.

  Example:
    >>> from_environment({'SLURM_ARRAY_TASK_ID': '3', 'SLURM_ARRAY_TASK_MIN': '1',
    ...                   'SLURM_ARRAY_TASK_MAX': '4', 'SLURM_ARRAY_TASK_COUNT': '4'})
    (2, 4)
    >>> from_environment({}) is None
    True
  """
  if 'SLURM_ARRAY_TASK_ID' not in environ:
    return None
  try:
    task = int(environ['SLURM_ARRAY_TASK_ID'])
    first = int(environ.get('SLURM_ARRAY_TASK_MIN', '0'))
    count = int(environ['SLURM_ARRAY_TASK_COUNT'])
    last = int(environ.get('SLURM_ARRAY_TASK_MAX', str(first + count - 1)))
    step = int(environ.get('SLURM_ARRAY_TASK_STEP', '1'))
  except (KeyError, ValueError) as e:
    raise ValueError(
        f'SLURM_ARRAY_TASK_ID is set but the array is unreadable ({e}); '
        'accepted: SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT integers, or '
        'give --shard_index and --num_shards.') from None
  if step != 1 or last - first + 1 != count:
    raise ValueError(
        f'SLURM array ids {first}..{last} (step {step}) for '
        f'{count} tasks; accepted: a contiguous array (--array=0-{count - 1}), '
        'or give --shard_index and --num_shards.')
  return check_shard((task - first, count))


def resolve(index: int | None, count: int | None,
            environ: Mapping[str, str], process: Shard = ONE) -> Shard:
  """The shard of a run: flags, else a SLURM array, else jax's processes.

  Args:
    index: ``--shard_index`` (None: not given; give both or neither).
    count: ``--num_shards`` (None: not given).
    environ: the environment (`os.environ`), read for a SLURM job array.
    process: ``(jax.process_index(), jax.process_count())``.

  Example:
    >>> resolve(None, None, {}, (1, 4)), resolve(0, 2, {}, (1, 4))
    ((1, 4), (0, 2))
  """
  if (index is None) != (count is None):
    raise ValueError(f'--shard_index={index} with --num_shards={count}; '
                     'accepted: both (0 <= index < num_shards) or neither.')
  if index is not None and count is not None:
    return check_shard((index, count))
  from_slurm = from_environment(environ)
  if from_slurm is not None:
    return from_slurm
  return check_shard(process)
