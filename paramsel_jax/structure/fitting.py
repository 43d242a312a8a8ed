"""Training and evaluating one network of the structure search, the same way.

Derived networks, random-search samples, the fixed net and the reference
model are all trained by :func:`train_network` (plain Adam with a cosine
schedule, :mod:`training`) and, when they are reported, evaluated by
:func:`evaluate_network` (clean, input noise, weight noise:
:func:`stability.robustness`). :func:`fit_network` does both. Every run dict
holds ``num_params`` and ``num_flops`` (forward FLOPs per example,
:func:`records.network_flops`) and ``seconds``.

The accuracy that is reported (``accuracy``) is on the *evaluation split*:
the test split, or the validation split when the config says
``evaluate_test=False`` (runs that choose settings must never read test).

Example:
  >>> from paramsel_jax import data
  >>> from paramsel_jax import models
  >>> from paramsel_jax.structure import config as config_lib
  >>> ds = data.synthetic(num_train=64, num_test=32, valid_size=32)
  >>> splits = device_splits(ds)
  >>> config = config_lib.PipelineConfig(
  ...     retrain=training.TrainConfig(steps=5, batch_size=16),
  ...     input_sigmas=(0.1,), weight_sigmas=(0.1,), noise_repeats=1)
  >>> model = models.create_model('mlp', widths=(8,))
  >>> params, run = train_network(model, jax.random.key(0), 'mlp',
  ...                             splits=splits, config=config)
  >>> run['num_params'], run['num_flops'], run['steps']  # 2 * (784*8 + 8*10)
  (6370, 12704, 5)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from paramsel_jax import models
from paramsel_jax.train import checkpoints as checkpoints_lib
from paramsel_jax.train import steps as steps_lib
from paramsel_jax.structure import records
from paramsel_jax.structure import stability
from paramsel_jax.structure import training

PyTree = Any
Progress = Callable[[str], None] | None


class Splits(NamedTuple):
  """The splits as ``(uint8 images, int labels)`` device arrays."""

  train: tuple[jax.Array, jax.Array]
  valid: tuple[jax.Array, jax.Array]
  test: tuple[jax.Array, jax.Array]


def device_splits(dataset: Any) -> Splits:
  """The train, valid and test splits of a ``Dataset`` on the device."""
  put = lambda split: (jnp.asarray(split.images), jnp.asarray(split.labels))
  return Splits(put(dataset.train), put(dataset.valid), put(dataset.test))


def eval_split(splits: Splits, config: Any) -> tuple[jax.Array, jax.Array]:
  """The split that reported accuracies are on (test, or valid).

  Example:
    >>> import types
    >>> s = Splits(('tr', 0), ('va', 1), ('te', 2))
    >>> eval_split(s, types.SimpleNamespace(evaluate_test=False))
    ('va', 1)
  """
  return splits.test if config.evaluate_test else splits.valid


def train_network(model: Any, key: jax.Array, name: str, *, splits: Splits,
                  config: Any, steps: int | None = None,
                  progress: Progress = None, evaluate: bool = True,
                  checkpoints: checkpoints_lib.PhaseCheckpoints | None = None
                  ) -> tuple[PyTree, dict[str, Any]]:
  """Trains ``model`` from scratch; its size, cost and clean accuracies.

  Args:
    model: a flax model of ``splits``' images.
    key: PRNG key: ``fold_in(key, 0)`` initialises, ``1`` draws the batches.
    name: a label for the progress lines.
    splits: the data.
    config: a :class:`~paramsel_jax.structure.config.PipelineConfig`: its
      ``retrain`` settings, ``eval_batch_size`` and ``evaluate_test``.
    steps: training steps (default ``config.retrain.steps``); the cosine
      schedule spans them.
    progress: called with training progress lines, if given.
    evaluate: also compute the clean ``valid_accuracy`` and ``accuracy``
      (on the evaluation split).
    checkpoints: the training's phase, if it is to be resumable
      (:func:`training.train`).

  Returns:
    ``(params, run)``: ``run`` holds ``num_params``, ``num_flops``,
    ``steps``, ``seconds`` (a resumed training counts the time its earlier
    runs recorded) and, with ``evaluate``, ``valid_accuracy`` and
    ``accuracy``.
  """
  start = time.perf_counter()
  train_config = config.retrain
  if steps is not None:
    train_config = dataclasses.replace(train_config, steps=steps)
  input_shape = tuple(splits.train[0].shape[1:])
  params = models.init_params(model, jax.random.fold_in(key, 0), input_shape)
  train_start = time.perf_counter()
  params, train_seconds = training.train(
      model.apply, params, *splits.train, jax.random.fold_in(key, 1),
      train_config, progress=progress, name=name, checkpoints=checkpoints)
  # The time earlier (killed) runs of this training had recorded.
  earlier = max(train_seconds - (time.perf_counter() - train_start), 0.0)
  run: dict[str, Any] = {
      'num_params': models.count_params(params),
      'num_flops': records.network_flops(model, input_shape),
      'steps': train_config.steps}
  if evaluate:
    apply_fn = lambda p, x: model.apply({'params': p}, x)
    bs = config.eval_batch_size
    both = jax.jit(lambda p, valid, other: (
        steps_lib.evaluate(apply_fn, p, valid[0], valid[1], bs)[1],
        steps_lib.evaluate(apply_fn, p, other[0], other[1], bs)[1]))
    valid_acc, acc = jax.device_get(
        both(params, splits.valid, eval_split(splits, config)))
    run.update(valid_accuracy=float(valid_acc), accuracy=float(acc))
  run['seconds'] = earlier + time.perf_counter() - start
  return params, run


def evaluate_network(model: Any, params: PyTree, key: jax.Array, *,
                     splits: Splits, config: Any) -> dict[str, Any]:
  """Clean, input-noise and weight-noise accuracy of trained ``params``.

  Returns:
    :func:`stability.robustness`'s figures on the evaluation split, with
    ``valid_accuracy`` and ``seconds``.
  """
  start = time.perf_counter()
  apply_fn = lambda p, x: model.apply({'params': p}, x)
  report = stability.robustness(
      apply_fn, params, *eval_split(splits, config), key,
      input_sigmas=config.input_sigmas, weight_sigmas=config.weight_sigmas,
      repeats=config.noise_repeats, batch_size=config.eval_batch_size,
      valid=splits.valid)
  return {**report, 'seconds': time.perf_counter() - start}


def fit_network(model: Any, key: jax.Array, name: str, *, splits: Splits,
                config: Any, progress: Progress = None,
                checkpoints: checkpoints_lib.PhaseCheckpoints | None = None
                ) -> dict[str, Any]:
  """Trains ``model`` from scratch, then its accuracy, clean and noisy.

  Args:
    model: a flax model of ``splits``' images.
    key: PRNG key: ``fold_in(key, 0)`` initialises, ``1`` draws the batches,
      ``2`` the noise.
    name: a label for the progress lines.
    splits: the data.
    config: the pipeline config (``retrain`` and the noise settings).
    progress: called with training progress lines, if given.
    checkpoints: the training's phase, if it is to be resumable.

  Returns:
    ``num_params``, ``num_flops``, ``steps``, the figures of
    :func:`evaluate_network`, ``seconds`` (training and evaluation) and
    ``train_seconds`` (training only).
  """
  params, run = train_network(model, key, name, splits=splits, config=config,
                              progress=progress, evaluate=False,
                              checkpoints=checkpoints)
  report = evaluate_network(model, params, jax.random.fold_in(key, 2),
                            splits=splits, config=config)
  return {**run, **report, 'seconds': run['seconds'] + report['seconds'],
          'train_seconds': run['seconds']}
