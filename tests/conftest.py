"""Helpers shared by the test files."""

import jax.numpy as jnp
import pytest

from paramsel_jax import data
from paramsel_jax import models
from paramsel_jax.protocol import protocol


def synthetic_task(widths, num_train=200, num_test=100):
  """A protocol Task: an MLP of these widths on 8x8 synthetic data, 4 classes."""
  ds = data.synthetic(num_train=num_train, num_test=num_test,
                      image_shape=(8, 8, 1), num_classes=4)
  model = models.create_model('mlp', widths=widths, num_classes=4)
  return protocol.Task(
      init_fn=lambda key: models.init_params(model, key, (8, 8, 1)),
      apply_fn=lambda p, x: model.apply({'params': p}, x),
      train_images=jnp.asarray(ds.train.images),
      train_labels=jnp.asarray(ds.train.labels),
      test_images=jnp.asarray(ds.test.images),
      test_labels=jnp.asarray(ds.test.labels))


@pytest.fixture(scope='session')
def make_task():
  """`synthetic_task`, for the test files' own `task` fixtures."""
  return synthetic_task
