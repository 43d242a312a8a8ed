"""A user's own `Task` in a sweep, under a model name of the grid.

`run_sweep(config, output_dir, tasks={'my_mlp': make_task})` runs the grid's
model name 'my_mlp' as the general task `make_task()` returns (any
`protocol.Task`: a plain-function model, NNX, an LM) instead of a model of
the library's registry on `config.dataset`. No data set is loaded for it.

Identity rule (what keeps the resumable store honest): a user task's cells
and η0 state are named by the model name, the task's `version` string and a
hash of what can be read off the task without running it: its parameters'
tree paths, shapes and dtypes, its on-device training data's shapes and
dtypes (or 'host' for host batches), the names of the metrics its
`eval_fn` gives, and the `num_data` Langevin optimizers use. A changed
architecture, data shape or metric set therefore never reuses stale cells;
a change that keeps all of those (new data values, another loss, another
`eval_fn` with the same names) must bump `version`, or the store reuses
the old cells.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Mapping, Union

import jax

from paramsel_jax.protocol.task import Task
from paramsel_jax.train.feed import OnDevice

# Optimizers whose noise scales with the training-set size n (`num_data`).
LANGEVIN_OPTIMIZERS = ('sgld', 'psgld')


@dataclasses.dataclass(frozen=True)
class UserTask:
  """A user's `Task` (or a function making it) for one model name of a sweep.

  Attributes:
    task: a `Task`, or a function ``() -> Task`` (called once per sweep,
      before any work).
    version: part of the store's identity of the task: bump it when the
      task changes in a way its parameter shapes, data shapes and metric
      names do not show (see the module's identity rule).
    num_data: the training-set size n that Langevin optimizers (sgld,
      psgld) scale their noise by; None: the on-device data's size
      (`OnDevice.num_examples`), and an error for host batches.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from paramsel_jax import OnDevice
    >>> task = Task(lambda key: {'w': jnp.zeros(3)},
    ...             lambda p, b, k: (jnp.mean((b['x'] @ p['w']) ** 2), {}),
    ...             OnDevice({'x': np.ones((8, 3), np.float32)}),
    ...             lambda p: {'val_loss': jnp.sum(p['w'] ** 2)})
    >>> UserTask(lambda: task, version='v1').built().resolved_num_data()
    8
  """

  task: Union[Task, Callable[[], Task]]
  version: str = ''
  num_data: int | None = None

  def __post_init__(self):
    if not (isinstance(self.task, Task) or callable(self.task)):
      raise ValueError(f'task is a {type(self.task).__name__}; accepted: a '
                       'Task or a function () -> Task.')
    if not isinstance(self.version, str):
      raise ValueError(f'version={self.version!r}; accepted: a string.')
    n = self.num_data
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)
                          or n < 1):
      raise ValueError(f'num_data={n!r}; accepted: an integer >= 1, or None '
                       '(the on-device data\'s size).')

  def built(self) -> UserTask:
    """This entry with its `task` made (the factory called once)."""
    if isinstance(self.task, Task):
      return self
    task = self.task()
    if not isinstance(task, Task):
      raise ValueError(f'the task factory returned a {type(task).__name__}; '
                       'accepted: a paramsel_jax.Task (or ImageTask).')
    return dataclasses.replace(self, task=task)

  def resolved_num_data(self) -> int | None:
    """`num_data`, else the on-device data's size, else None (host batches)."""
    if self.num_data is not None:
      return self.num_data
    data = self.built_task().train_data
    return data.num_examples if isinstance(data, OnDevice) else None

  def built_task(self) -> Task:
    """The task itself; ValueError before `built` made it."""
    if not isinstance(self.task, Task):
      raise ValueError('UserTask.task is not built yet; call built() first.')
    return self.task


TaskSpec = Union[Task, Callable[[], Task], UserTask]


def as_user_tasks(tasks: Mapping[str, TaskSpec] | None
                  ) -> dict[str, UserTask]:
  """``tasks`` with every value a `UserTask` (not built yet).

  Example:
    >>> sorted(as_user_tasks({'b': lambda: None, 'a': UserTask(print)}))
    ['a', 'b']
  """
  if tasks is None:
    return {}
  if not isinstance(tasks, Mapping):
    raise ValueError(f'tasks is a {type(tasks).__name__}; accepted: a dict '
                     'from model name to a Task, a function () -> Task, or a '
                     'UserTask.')
  return {name: spec if isinstance(spec, UserTask) else UserTask(spec)
          for name, spec in tasks.items()}


def _shapes(tree: Any) -> list[list[Any]]:
  """[path, shape, dtype] of every leaf of ``tree`` (arrays or shapes)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [[jax.tree_util.keystr(path), list(x.shape), str(x.dtype)]
          for path, x in leaves]


def task_identity(user: UserTask) -> str:
  """The store's identity of a built user task: version and a shape hash.

  Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from paramsel_jax import OnDevice
    >>> def make(width):
    ...   return Task(lambda key: {'w': jnp.zeros(width)},
    ...               lambda p, b, k: (jnp.mean(b['x'] @ p['w']), {}),
    ...               OnDevice({'x': np.ones((8, width), np.float32)}),
    ...               lambda p: {'val_loss': jnp.sum(p['w'])})
    >>> task_identity(UserTask(make(3), 'v1'))[:3]
    'v1-'
    >>> task_identity(UserTask(make(3))) == task_identity(UserTask(make(4)))
    False
  """
  task = user.built_task()
  params = jax.eval_shape(task.init_fn, jax.random.key(0))
  data = task.train_data
  metrics = jax.eval_shape(task.eval_fn, params)
  ident = {'params': _shapes(params),
           'data': (_shapes(data.arrays) if isinstance(data, OnDevice)
                    else 'host'),
           'eval': sorted(metrics) if isinstance(metrics, dict) else None,
           'num_data': user.resolved_num_data()}
  canonical = json.dumps(ident, sort_keys=True, separators=(',', ':'))
  digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
  return f'{user.version}-{digest}'
