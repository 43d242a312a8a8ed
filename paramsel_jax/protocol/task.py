"""What the protocol trains: a model, its loss, its data and its evaluation.

A :class:`Task` is the general form:

- ``init_fn(key) -> params``: any pytree of float arrays (a linen module's
  ``params``, an NNX model's ``nnx.to_pure_dict`` state, a hand-made dict);
- ``loss_fn(params, batch, key) -> (loss, metrics)``: a scalar loss to
  minimize on one training batch and a dict of scalar metrics (may be
  empty); ``key`` is that step's PRNG key (dropout, noise);
- ``train_data``: the training batches, either :class:`OnDevice` (a dataset
  held on the device, minibatches drawn inside the jitted loop) or a
  function ``(seed, first_step) -> iterator`` of host batches (numpy
  generators, grain or tf.data as numpy), one stream per seed that yields
  the batches of steps ``first_step, first_step + 1, ...``
  (:func:`host_batches` makes one from ``seed -> iterable``);
- ``eval_fn(params) -> dict`` of scalar metrics on the held-out split, a
  pure jittable function (close over device arrays of the split);
- ``layer_order``: optional, the layers (module names) in forward order,
  for the layer freezing criteria where the model cannot be traced (NNX
  modules and hand-written functions; a linen model's is traced).

A batch is any pytree of arrays with one leading batch axis.

:class:`ImageTask` is the image-classification preset: a model
``apply_fn(params, images) -> logits`` and two labelled splits. Its loss is
the mean cross-entropy, its data is :class:`OnDevice` (uint8 or ``[0, 1]``
float images, checked where they enter, with one message naming the bad
value), its evaluation the held-out loss and accuracy.

Example:
  >>> import numpy as np
  >>> images = np.zeros((4, 2, 2, 1), np.float32)
  >>> ImageTask(lambda key: {}, lambda p, x: x, images, np.array([0, 1, 2, 3]),
  ...           images * 2 - 1, np.zeros(4, np.int32))
  Traceback (most recent call last):
  ...
  ValueError: test_images: float values in [-1, -1]; accepted: uint8 \
(0..255) or floats in [0, 1] (used as they are, never divided by 255).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
import dataclasses
import functools
import itertools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax import models
from paramsel_jax.train import steps
from paramsel_jax.train.feed import OnDevice

PyTree = Any
# How many images check_model runs the model on.
CHECK_EXAMPLES = 16


def _images(name: str, images: Any) -> jax.Array:
  """``images`` as a device array; ValueError unless uint8 or [0, 1] floats."""
  if not isinstance(images, (np.ndarray, jax.Array)):
    raise ValueError(f'{name} is a {type(images).__name__}; accepted: a numpy '
                     'or jax array with a leading example axis.')
  if images.ndim < 2 or images.shape[0] < 1:
    raise ValueError(f'{name} has shape {tuple(images.shape)}; accepted: '
                     '(examples, ...) with at least one example.')
  dtype = np.dtype(images.dtype)
  if np.issubdtype(dtype, np.floating):
    lo, hi = float(jnp.min(images)), float(jnp.max(images))
    if not (0.0 <= lo and hi <= 1.0):
      raise ValueError(f'{name}: float values in [{lo:g}, {hi:g}]; accepted: '
                       'uint8 (0..255) or floats in [0, 1] (used as they are, '
                       'never divided by 255).')
  elif dtype != np.uint8:
    raise ValueError(f'{name} has dtype {dtype}; accepted: uint8 (0..255) or '
                     'floats in [0, 1].')
  return jnp.asarray(images)


def _labels(name: str, labels: Any, num_images: int) -> jax.Array:
  """``labels`` as a device array; ValueError unless 1-D ints >= 0."""
  if not isinstance(labels, (np.ndarray, jax.Array)):
    raise ValueError(f'{name} is a {type(labels).__name__}; accepted: a numpy '
                     'or jax array of int labels.')
  if labels.shape != (num_images,):
    raise ValueError(f'{name} has shape {tuple(labels.shape)}; accepted: '
                     f'({num_images},), one label per image.')
  if not np.issubdtype(np.dtype(labels.dtype), np.integer):
    raise ValueError(f'{name} has dtype {labels.dtype}; accepted: integer '
                     'class labels.')
  if int(jnp.min(labels)) < 0:
    raise ValueError(f'{name} holds {int(jnp.min(labels))}; accepted: class '
                     'labels >= 0.')
  return jnp.asarray(labels)


BatchStreams = Callable[[int, int], Iterator[PyTree]]


def host_batches(make: Callable[[int], Iterable[PyTree]]) -> BatchStreams:
  """``(seed, first_step) -> iterator`` from ``make(seed) -> iterable``.

  The stream of steps ``first_step, ...`` is ``make(seed)`` with its first
  ``first_step`` batches skipped, so it must give the same batches each time
  it is made (seed its generator with ``seed``).

  Example:
    >>> import numpy as np
    >>> streams = host_batches(lambda seed: ({'x': np.full((2, 1), seed + t)}
    ...                                      for t in range(10)))
    >>> next(streams(3, 4))['x'].ravel().tolist()
    [7, 7]
  """
  def streams(seed: int, first_step: int) -> Iterator[PyTree]:
    return itertools.islice(iter(make(seed)), first_step, None)
  return streams


@dataclasses.dataclass(frozen=True)
class Task:
  """A model, its loss, its training data and its evaluation.

  Attributes:
    init_fn: ``key -> params`` (any pytree of float arrays).
    loss_fn: ``(params, batch, key) -> (scalar loss, {name: scalar})``.
    train_data: :class:`OnDevice`, or ``(seed, first_step) -> iterator`` of
      host batches (:func:`host_batches`).
    eval_fn: ``params -> {name: scalar}`` on the held-out split (jittable).
    layer_order: the layers' module names in forward order, or None (traced
      for linen models; needed by the layer criteria otherwise).
  """

  init_fn: Callable[[jax.Array], PyTree]
  loss_fn: Callable[[PyTree, PyTree, jax.Array], tuple[jax.Array, Any]]
  train_data: OnDevice | BatchStreams
  eval_fn: Callable[[PyTree], dict[str, jax.Array]]
  layer_order: Sequence[str] | None = None

  def __post_init__(self):
    for name in ('init_fn', 'loss_fn', 'eval_fn'):
      value = getattr(self, name)
      if not callable(value):
        raise ValueError(
            f'{name} is a {type(value).__name__}; accepted: a function. (An '
            'image classifier given as (init_fn, apply_fn, images, labels, '
            '...) is an ImageTask.)')
    if not (isinstance(self.train_data, OnDevice) or callable(self.train_data)):
      raise ValueError(f'train_data is a {type(self.train_data).__name__}; '
                       'accepted: OnDevice(arrays) or a function (seed, '
                       'first_step) -> iterator of batches (host_batches).')
    if isinstance(self.train_data, OnDevice):
      check_batch('train_data', self.train_data.arrays)
      object.__setattr__(self, 'train_data', OnDevice(
          jax.tree.map(jnp.asarray, self.train_data.arrays)))

  def example_batch(self, seed: int = 0) -> PyTree:
    """A first training batch (host data: seed ``seed``'s first batch)."""
    if isinstance(self.train_data, OnDevice):
      return jax.tree.map(lambda x: x[:1], self.train_data.arrays)
    try:
      return next(iter(self.train_data(seed, 0)))
    except StopIteration:
      raise ValueError(f'train_data of seed {seed} yields no batch; accepted: '
                       'an iterator with at least one batch per step.') from None

  def trace_target(self) -> tuple[Callable[[PyTree, Any], Any], Any]:
    """``(fn, x)`` such that ``fn(params, x)`` runs the model once.

    What the active step's checks and the layer order trace: here the loss
    on one example of the first batch, ``x = (batch, key)``.
    """
    one = jax.tree.map(lambda x: x[:1], self.example_batch())
    fn = lambda params, x: self.loss_fn(params, x[0], x[1])[0]
    return fn, (one, jax.random.key(0))

  def evaluate_splits(self, params: PyTree, batch_size: int,
                      train_eval_size: int | None) -> dict[str, jax.Array]:
    """The protocol's evaluation of ``params``: ``eval_fn`` (jittable)."""
    del batch_size, train_eval_size  # eval_fn batches its own split.
    return self.eval_fn(params)

  def check_metrics(self, params: PyTree, batch_size: int
                    ) -> dict[str, jax.Array]:
    """The metrics of online freezing's checks: ``eval_fn`` (jittable)."""
    del batch_size
    return self.eval_fn(params)

  def cache_inputs(self) -> tuple[Callable[[PyTree, Any], Any], Any] | None:
    """``(apply_fn, inputs)`` of a frozen prefix's cache, or None (none)."""
    return None


def check_batch(name: str, batch: PyTree) -> int:
  """The batch size; ValueError unless every leaf has one leading axis size.

  Example:
    >>> import numpy as np
    >>> check_batch('batch', {'x': np.zeros((4, 2)), 'y': np.zeros(3)})
    Traceback (most recent call last):
    ...
    ValueError: batch: leaves differ in their leading (batch) axis: x 4, y 3; \
accepted: one batch size for every leaf.
  """
  paths = jax.tree_util.tree_flatten_with_path(batch)[0]
  if not paths:
    raise ValueError(f'{name} has no arrays; accepted: a pytree of arrays '
                     'with a leading batch axis.')
  sizes = {}
  for path, x in paths:
    shape = np.shape(x)
    label = jax.tree_util.keystr(path, simple=True, separator='/') or 'batch'
    if not shape:
      raise ValueError(f'{name}: leaf {label} is a scalar; accepted: arrays '
                       'with a leading batch axis.')
    sizes[label] = shape[0]
  if len(set(sizes.values())) > 1:
    shown = ', '.join(f'{k} {v}' for k, v in sizes.items())
    raise ValueError(f'{name}: leaves differ in their leading (batch) axis: '
                     f'{shown}; accepted: one batch size for every leaf.')
  return next(iter(sizes.values()))


def check_task(task: Task, params: PyTree, key: jax.Array) -> None:
  """ValueError unless ``loss_fn`` gives a scalar loss on the first batch.

  Traced only (``jax.eval_shape``): nothing is computed. ``eval_fn`` is
  traced too, and must give a dict of scalars.

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> task = Task(lambda key: {'w': jnp.ones(3)},
    ...             lambda p, b, k: (b['x'] * p['w'], {}),
    ...             OnDevice({'x': np.ones((8, 3), np.float32)}),
    ...             lambda p: {})
    >>> check_task(task, task.init_fn(jax.random.key(0)), jax.random.key(0))
    Traceback (most recent call last):
    ...
    ValueError: loss_fn returns a loss of shape (1, 3); accepted: a scalar \
(the mean over the batch), as (loss, metrics).
  """
  batch = task.example_batch()
  check_batch('the first training batch', batch)
  out = jax.eval_shape(task.loss_fn, params, batch, key)
  if not (isinstance(out, tuple) and len(out) == 2):
    raise ValueError(f'loss_fn returns {type(out).__name__}; accepted: a '
                     'tuple (loss, metrics) with a scalar loss and a dict of '
                     'scalar metrics ({} for none).')
  loss, metrics = out
  if getattr(loss, 'shape', None) != () or not jnp.issubdtype(
      loss.dtype, jnp.floating):
    raise ValueError(f'loss_fn returns a loss of shape '
                     f'{getattr(loss, "shape", loss)}; accepted: a scalar (the '
                     'mean over the batch), as (loss, metrics).')
  _check_scalars('loss_fn\'s metrics', metrics)
  _check_scalars('eval_fn', jax.eval_shape(task.eval_fn, params))


def _check_scalars(name: str, metrics: Any) -> None:
  if not isinstance(metrics, dict):
    raise ValueError(f'{name} is a {type(metrics).__name__}; accepted: a dict '
                     'of scalars.')
  bad = {k: getattr(v, 'shape', v) for k, v in metrics.items()
         if getattr(v, 'shape', None) != ()}
  if bad:
    raise ValueError(f'{name}: not scalars: {bad}; accepted: a dict of '
                     'scalars.')


def _image_loss(apply_fn: Callable[[PyTree, jax.Array], jax.Array],
                params: PyTree, batch: tuple[jax.Array, jax.Array],
                key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The image preset's loss: mean cross-entropy (no metrics)."""
  del key
  images, labels = batch
  return steps.loss_fn(apply_fn, params, images, labels), {}


@dataclasses.dataclass(frozen=True, init=False, kw_only=True)
class ImageTask(Task):
  """The image-classification preset of :class:`Task`.

  Made from ``(init_fn, apply_fn, train_images, train_labels, test_images,
  test_labels)``: numpy arrays are moved to the device; images are
  ``uint8`` (``0..255``, scaled to ``[0, 1]`` by the step) or floats already
  in ``[0, 1]``, used as they are; labels are 1-D ints ``>= 0``, one per
  image. Its ``loss_fn`` is the mean cross-entropy of ``apply_fn(params,
  images) -> logits``, its ``train_data`` ``OnDevice((images, labels))``,
  its ``eval_fn`` the test split's loss and accuracy.

  What needs the model is checked by :func:`check_model` (``run_protocol``
  calls it before any work).
  """

  # Derived from apply_fn and the splits (so `dataclasses.replace` of an
  # ImageTask rebuilds them).
  loss_fn: Any = dataclasses.field(init=False, repr=False)
  train_data: Any = dataclasses.field(init=False, repr=False)
  eval_fn: Any = dataclasses.field(init=False, repr=False)
  apply_fn: Callable[[PyTree, jax.Array], jax.Array]
  train_images: jax.Array
  train_labels: jax.Array
  test_images: jax.Array
  test_labels: jax.Array

  def __init__(self, init_fn: Callable[[jax.Array], PyTree],
               apply_fn: Callable[[PyTree, jax.Array], jax.Array],
               train_images: Any, train_labels: Any, test_images: Any,
               test_labels: Any, layer_order: Sequence[str] | None = None):
    for name, value in (('init_fn', init_fn), ('apply_fn', apply_fn)):
      if not callable(value):
        raise ValueError(f'{name}={value!r}; accepted: a function.')
    splits = {}
    for split, images, labels in (('train', train_images, train_labels),
                                  ('test', test_images, test_labels)):
      images = _images(f'{split}_images', images)
      splits[split] = (images, _labels(f'{split}_labels', labels,
                                       images.shape[0]))
    if splits['train'][0].shape[1:] != splits['test'][0].shape[1:]:
      raise ValueError(f'test_images have shape '
                       f'{splits["test"][0].shape[1:]} per example; accepted: '
                       'the training images\' '
                       f'{splits["train"][0].shape[1:]}.')
    fields: dict[str, Any] = dict(
                  apply_fn=apply_fn, train_images=splits['train'][0],
                  train_labels=splits['train'][1],
                  test_images=splits['test'][0],
                  test_labels=splits['test'][1])
    for name, value in fields.items():
      object.__setattr__(self, name, value)
    super().__init__(
        init_fn=init_fn, loss_fn=functools.partial(_image_loss, apply_fn),
        train_data=OnDevice(splits['train']), eval_fn=self.test_metrics,
        layer_order=layer_order)

  def test_metrics(self, params: PyTree,
                   batch_size: int = 1000) -> dict[str, jax.Array]:
    """The test split's mean loss and accuracy (jittable)."""
    loss, accuracy = steps.evaluate(self.apply_fn, params, self.test_images,
                                    self.test_labels, batch_size)
    return {'test_loss': loss, 'test_accuracy': accuracy}

  def trace_target(self) -> tuple[Callable[[PyTree, Any], Any], Any]:
    """``(apply_fn, one training image in [0, 1])``."""
    return self.apply_fn, steps.to_float(self.train_images[:1])

  def evaluate_splits(self, params: PyTree, batch_size: int,
                      train_eval_size: int | None) -> dict[str, jax.Array]:
    """Loss and accuracy on the training and test splits.

    The training split's first ``train_eval_size`` images (None: all).
    """
    n = train_eval_size
    train = steps.evaluate(self.apply_fn, params, self.train_images[:n],
                           self.train_labels[:n], batch_size)
    test = steps.evaluate(self.apply_fn, params, self.test_images,
                          self.test_labels, batch_size)
    return {'train_loss': train[0], 'train_accuracy': train[1],
            'test_loss': test[0], 'test_accuracy': test[1]}

  def check_metrics(self, params: PyTree, batch_size: int
                    ) -> dict[str, jax.Array]:
    """The test accuracy (online freezing's checks)."""
    return {'test_accuracy': self.test_metrics(params, batch_size)[
        'test_accuracy']}

  def cache_inputs(self) -> tuple[Callable[[PyTree, Any], Any], Any] | None:
    """``(apply_fn, the training images)``: a frozen prefix can be cached."""
    return self.apply_fn, self.train_images


def linen_task(model: nn.Module, input_shape: Sequence[int],
               train: tuple[Any, Any], test: tuple[Any, Any]) -> ImageTask:
  """The `ImageTask` of a flax linen classifier and two `(images, labels)` splits.

  ``init_fn`` is ``models.init_params`` for inputs of ``input_shape`` (one
  example's shape), ``apply_fn`` applies the module to ``{'params': params}``.

  Example:
    >>> import numpy as np, flax.linen as nn
    >>> x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])
    >>> task = linen_task(nn.Dense(2), (3,), (x, y), (x, y))
    >>> task.apply_fn(task.init_fn(jax.random.key(0)), task.train_images).shape
    (4, 2)
  """
  shape = tuple(input_shape)
  return ImageTask(
      init_fn=lambda key: models.init_params(model, key, shape),
      # flax types `apply` as returning (output, state) too, for `mutable`.
      apply_fn=lambda params, x: model.apply(  # type: ignore[arg-type, return-value]
          {'params': params}, x),
      train_images=train[0], train_labels=train[1],
      test_images=test[0], test_labels=test[1])


def check_model(task: ImageTask, key: jax.Array) -> int:
  """The number of classes; ValueError if the model does not fit the data.

  Runs ``init_fn`` and ``apply_fn`` once, on the first
  :data:`CHECK_EXAMPLES` training images.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((4, 3), jnp.uint8)
    >>> task = ImageTask(lambda key: {'w': jnp.ones((3, 5))},
    ...             lambda p, x: jax.nn.softmax(x @ p['w']),
    ...             x, jnp.array([0, 1, 2, 3]), x, jnp.array([0, 1, 2, 3]))
    >>> check_model(task, jax.random.key(0))
    Traceback (most recent call last):
    ...
    ValueError: apply_fn returns probabilities (every row is >= 0 and sums \
to 1); accepted: logits (the loss applies log-softmax itself).
  """
  params = task.init_fn(key)
  x = steps.to_float(task.train_images[:CHECK_EXAMPLES])
  out = task.apply_fn(params, x)
  if getattr(out, 'ndim', None) != 2 or out.shape[0] != x.shape[0]:
    raise ValueError(f'apply_fn returns shape {getattr(out, "shape", out)} '
                     f'for {x.shape[0]} images; accepted: ({x.shape[0]}, '
                     'classes) logits.')
  classes = int(out.shape[1])
  for split in ('train', 'test'):
    top = int(jnp.max(getattr(task, f'{split}_labels')))
    if top >= classes:
      raise ValueError(f'{split}_labels hold {top}; accepted: labels below '
                       f'the model\'s {classes} logits.')
  rows = np.asarray(out, np.float64)
  if (classes > 1 and rows.min() >= 0
      and np.allclose(rows.sum(axis=1), 1.0, atol=1e-4)):
    raise ValueError('apply_fn returns probabilities (every row is >= 0 and '
                     'sums to 1); accepted: logits (the loss applies '
                     'log-softmax itself).')
  return classes


def check(task: Task, key: jax.Array) -> None:
  """ValueError unless the task's model, loss and data fit (before any work).

  An `ImageTask`: :func:`check_model`; any other task: :func:`check_task`
  on the params of ``init_fn(key)`` (shapes only).
  """
  if isinstance(task, ImageTask):
    check_model(task, key)
  else:
    check_task(task, jax.eval_shape(task.init_fn, key), key)
