"""Plain training of a discrete network, in jitted chunks of scanned steps.

Derived networks, random-search samples and the fixed baseline are all trained
the same way, so that their accuracies compare: Adam with a cosine-decayed
learning rate for a fixed number of steps, batches drawn on device from the
uint8 training split (:func:`paramsel_jax.train.steps.sample_batch`), the key of
step ``t`` being ``fold_in(key, t)``. Given a phase's checkpoints, :func:`train`
saves its state (params, optimizer state, key, step) every ``every`` steps and
at the end, and resumes from the last save: a chunk stops early at a save and
the next one finishes it, which changes no number (the scanned step is the
same), so the params are bit-identical to an uninterrupted run's.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from paramsel_jax import models
  >>> model = models.create_model('mlp', widths=(8,), num_classes=2)
  >>> params = models.init_params(model, jax.random.key(0), (2, 2, 1))
  >>> x = jnp.array([[0, 0, 0, 0], [255] * 4] * 8, jnp.uint8).reshape(16, 2, 2, 1)
  >>> y = jnp.array([0, 1] * 8)
  >>> config = TrainConfig(steps=50, batch_size=8, learning_rate=0.05)
  >>> params, seconds = train(model.apply, params, x, y, jax.random.key(1),
  ...                         config)
  >>> from paramsel_jax.train import steps
  >>> float(steps.make_evaluate(model.apply)({'params': params}, x, y)[1])
  1.0
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.train import checkpoints as checkpoints_lib
from paramsel_jax.train import steps as steps_lib
from paramsel_jax.protocol import checks

PyTree = Any
Progress = Callable[[str], None] | None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How a discrete network is trained.

  Every field is checked when the config is made:

    >>> TrainConfig(steps=10.0)
    Traceback (most recent call last):
    ...
    ValueError: TrainConfig.steps=10.0; accepted: an int >= 1.

  Attributes:
    steps: number of Adam steps, an int ``>= 1``.
    batch_size: examples per step, an int ``>= 1``.
    learning_rate: the peak learning rate, finite, ``> 0``, cosine-decayed
      to 0.
    chunk_steps: steps per jitted ``lax.scan`` chunk (progress is printed
      between chunks), an int ``>= 1``.
  """

  steps: int = 6000
  batch_size: int = 128
  learning_rate: float = 2e-3
  chunk_steps: int = 1000

  def __post_init__(self):
    checks.fields(self, ('steps', 'batch_size', 'chunk_steps'), checks.integer,
                  at_least=1)
    checks.fields(self, ('learning_rate',), checks.real, above=0)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """Adam with the learning rate cosine-decayed over ``config.steps``."""
  return optax.adam(optax.cosine_decay_schedule(config.learning_rate,
                                                config.steps))


def train(apply: Callable[..., jax.Array], params: PyTree,
          images: jax.Array, labels: jax.Array, key: jax.Array,
          config: TrainConfig, *, progress: Progress = None,
          name: str = '',
          checkpoints: checkpoints_lib.PhaseCheckpoints | None = None
          ) -> tuple[PyTree, float]:
  """Trains ``params`` of a flax model on a uint8 split.

  Args:
    apply: the model's ``apply`` (``apply({'params': p}, x)``).
    params: initial params.
    images: uint8 images ``(n, H, W, C)``, ideally already on device.
    labels: int labels ``(n,)``.
    key: PRNG key of the batches.
    config: the schedule.
    progress: called with a line after every chunk, if given.
    name: a label for the progress lines.
    checkpoints: if given, the training's phase: saved every
      ``checkpoints.every`` steps and at the end, resumed from its last save
      (a finished training is restored, not rerun).

  Returns:
    ``(params, seconds)``: the trained params and the wall time of the
    training (compilation included; a resumed training adds the time its
    earlier runs had recorded at their last save).

  Raises:
    ValueError: if ``checkpoints`` holds a training with another key.
  """
  start_time = time.perf_counter()
  tx = make_optimizer(config)
  apply_fn = lambda p, x: apply({'params': p}, x)

  @functools.partial(jax.jit, static_argnums=(3,), donate_argnums=(0, 1))
  def run_chunk(params, opt_state, start, length):
    def body(carry, t):
      params, opt_state = carry
      x, y = steps_lib.sample_batch(jax.random.fold_in(key, t), images,
                                    labels, config.batch_size)
      params, opt_state, loss, _ = steps_lib.train_step(
          apply_fn, tx, params, opt_state, x, y)
      return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(
        body, (params, opt_state), start + jnp.arange(length))
    return params, opt_state, losses

  opt_state = tx.init(params)
  done, earlier = 0, 0.0
  if checkpoints is not None:
    restored = checkpoints.restore({'params': params, 'opt_state': opt_state,
                                    'key': key})
    if restored is not None:
      done, state, meta = restored
      if not np.array_equal(jax.random.key_data(state['key']),
                            jax.random.key_data(key)):
        raise ValueError(
            f'the checkpoint in {checkpoints.directory} '
            f'({checkpoints.label}) holds a training with another PRNG key; '
            "accepted: this training's checkpoints only (delete that "
            'directory, or use another workdir).')
      params, opt_state, earlier = (state['params'], state['opt_state'],
                                    meta['seconds'])
  elapsed = lambda: earlier + time.perf_counter() - start_time
  losses = []
  while done < config.steps:
    chunk_end = min((done // config.chunk_steps + 1) * config.chunk_steps,
                    config.steps)
    stop = (chunk_end if checkpoints is None
            else min(chunk_end, checkpoints.next_save(done)))
    params, opt_state, chunk_losses = run_chunk(params, opt_state, done,
                                                stop - done)
    losses.append(chunk_losses)
    done = stop
    if done == chunk_end and progress is not None:
      loss = float(np.mean(np.concatenate(jax.device_get(losses))))
      progress(f'  {name} step {done}/{config.steps} train loss '
               f'{loss:.4f} ({elapsed():.1f}s)')
    if done == chunk_end:
      losses = []
    if checkpoints is not None and (done == config.steps
                                    or done % checkpoints.every == 0):
      checkpoints.save(done, {'params': params, 'opt_state': opt_state,
                              'key': key}, {'seconds': elapsed()})
  return params, elapsed()
