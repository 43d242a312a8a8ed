"""The paper's operators as pure functions: `T`, `T|α`, `β⊙`, and evaluation.

`T` is one optax step on a random minibatch. `T|α` is the same step with an
optimizer wrapped in `paramsel_jax.masked` whose mask is α: there is one step
function for both, and setting α changes only arrays in the optimizer state, so
nothing recompiles. `β⊙` zeroes the pruned weights. Images stay uint8 on device
and are scaled to [0, 1] inside the step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.optim import masking

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]


def to_float(images: jax.Array) -> jax.Array:
  """uint8 images → float32 in [0, 1]; float images as they are (float32).

  Floats are taken to be in [0, 1] already (`task.Task` checks it) and are
  never divided by 255 again.

  Example:
    >>> import jax.numpy as jnp
    >>> to_float(jnp.array([0, 255], jnp.uint8)).tolist()
    [0.0, 1.0]
    >>> to_float(jnp.array([0.0, 0.5])).tolist()
    [0.0, 0.5]
  """
  images = jnp.asarray(images)
  if jnp.issubdtype(images.dtype, jnp.floating):
    return images.astype(jnp.float32)
  return images.astype(jnp.float32) / 255.0


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)
    1.3863
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def batch_indices(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
  """The indices of a random minibatch: uniform, with replacement.

  Example:
    >>> import jax
    >>> batch_indices(jax.random.key(0), 10, 4).shape
    (4,)
  """
  return jax.random.randint(key, (batch_size,), 0, num_examples)


def sample_batch(
    key: jax.Array, images: jax.Array, labels: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
  """A random minibatch `D'`, drawn on device uniformly with replacement.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x, y = sample_batch(jax.random.key(0), jnp.zeros((10, 2)), jnp.arange(10), 4)
    >>> x.shape, y.shape
    ((4, 2), (4,))
  """
  idx = batch_indices(key, images.shape[0], batch_size)
  return images[idx], labels[idx]


def loss_fn(apply_fn: ApplyFn, params: PyTree, images: jax.Array,
            labels: jax.Array) -> jax.Array:
  """`L(w, D')`: mean cross-entropy of the model on a uint8 batch."""
  return cross_entropy(apply_fn(params, to_float(images)), labels)


def train_step(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    params: PyTree,
    opt_state: optax.OptState,
    images: jax.Array,
    labels: jax.Array,
) -> tuple[PyTree, optax.OptState, jax.Array, PyTree]:
  """One step `T` (or `T|α` when `tx` is `masked(...)` with α as its mask).

  Pure: jit it with `apply_fn` and `tx` bound (see `make_train_step`).

  Returns:
    `(new_params, new_opt_state, loss, grads)`; `loss` and `grads` are at the
    old params (the full, unmasked gradient, for the selectors' statistics).
  """
  loss, grads = jax.value_and_grad(
      lambda p: loss_fn(apply_fn, p, images, labels))(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss, grads


def loss_step(
    loss_fn: Callable[[PyTree, Any, jax.Array], tuple[jax.Array, Any]],
    tx: optax.GradientTransformation,
    params: PyTree,
    opt_state: optax.OptState,
    batch: Any,
    key: jax.Array,
) -> tuple[PyTree, optax.OptState, jax.Array, PyTree]:
  """One step `T` of any loss: `loss_fn(params, batch, key) -> (loss, metrics)`.

  As `train_step`, for the general task (`protocol.Task`); the metrics are
  dropped.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> loss_fn = lambda p, b, key: (jnp.mean((b['x'] @ p - b['y']) ** 2), {})
    >>> p, batch = jnp.zeros(2), {'x': jnp.eye(2), 'y': jnp.ones(2)}
    >>> tx = optax.sgd(0.5)
    >>> p, _, loss, _ = loss_step(loss_fn, tx, p, tx.init(p), batch,
    ...                           jax.random.key(0))
    >>> float(loss), p.tolist()
    (1.0, [0.5, 0.5])
  """
  (loss, _), grads = jax.value_and_grad(
      lambda p: loss_fn(p, batch, key), has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss, grads


def make_train_step(apply_fn: ApplyFn, tx: optax.GradientTransformation):
  """The jitted `T`: `step(params, opt_state, images, labels)`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> apply_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> step = make_train_step(apply_fn, optax.sgd(0.1))
    >>> p = jnp.zeros((4, 3))
    >>> p, _, loss, _ = step(p, optax.sgd(0.1).init(p),
    ...                      jnp.ones((2, 2, 2, 1), jnp.uint8), jnp.array([0, 1]))
    >>> round(float(loss), 4)
    1.0986
  """
  return jax.jit(functools.partial(train_step, apply_fn, tx))


@jax.jit
def _prune(params: PyTree, beta: PyTree) -> PyTree:
  return jax.tree.map(lambda p, b: jnp.where(b, p, jnp.zeros_like(p)),
                      params, beta)


def prune(params: PyTree, beta: PyTree) -> PyTree:
  """`β⊙w`: zeroes every weight where `beta` is False (or 0).

  `beta` must be a 0/1 (or bool) pytree of the params' shapes
  (`masking.check_mask`). Jitted.

  Example:
    >>> import jax.numpy as jnp
    >>> prune({'w': jnp.array([1.0, -2.0])}, {'w': jnp.array([False, True])})['w'].tolist()
    [0.0, -2.0]
  """
  masking.check_mask(beta, params, 'beta')
  return _prune(params, beta)


def evaluate(
    apply_fn: ApplyFn,
    params: PyTree,
    images: jax.Array,
    labels: jax.Array,
    batch_size: int = 1000,
    *,
    noise_key: jax.Array | None = None,
    noise_std: jax.typing.ArrayLike = 0.0,
) -> tuple[jax.Array, jax.Array]:
  """Mean loss and accuracy over a whole split, in batches, in one scan.

  The split is padded to a multiple of `batch_size`; padding carries weight 0.
  Pure and traceable: jit or vmap it with `apply_fn` and `batch_size` bound
  (see `make_evaluate`). With `noise_key`, Gaussian noise of std `noise_std`
  is added to the [0, 1]-scaled inputs (batch b uses `fold_in(noise_key, b)`),
  for robustness reports.

  Returns:
    `(loss, accuracy)`, float32 scalars.
  """
  n = images.shape[0]
  batch_size = min(batch_size, n)
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  weights = jnp.arange(num_batches * batch_size) < n
  images = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
  labels = jnp.pad(labels, (0, pad))
  batched = jax.tree.map(
      lambda x: x.reshape((num_batches, batch_size) + x.shape[1:]),
      (images, labels, weights))

  def body(totals, inputs):
    b, (x, y, w) = inputs
    x = to_float(x)
    if noise_key is not None:
      x = x + noise_std * jax.random.normal(jax.random.fold_in(noise_key, b),
                                            x.shape)
    logits = apply_fn(params, x)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = jnp.argmax(logits, -1) == y
    return (totals[0] + jnp.sum(losses * w), totals[1] + jnp.sum(correct * w)), None

  (loss_sum, correct), _ = jax.lax.scan(
      body, (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)),
      (jnp.arange(num_batches), batched))
  return loss_sum / n, correct / n


def make_evaluate(apply_fn: ApplyFn, batch_size: int = 1000):
  """The jitted `evaluate(params, images, labels) -> (loss, accuracy)`.

  Example:
    >>> import jax.numpy as jnp
    >>> ev = make_evaluate(lambda p, x: x.reshape(len(x), -1) @ p, batch_size=3)
    >>> loss, acc = ev(jnp.eye(4)[:, :2],
    ...                jnp.eye(4, dtype=jnp.uint8).reshape(4, 2, 2, 1) * 255,
    ...                jnp.array([0, 1, 0, 0]))
    >>> float(acc)
    1.0
  """
  return jax.jit(functools.partial(evaluate, apply_fn, batch_size=batch_size))
