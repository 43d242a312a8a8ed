"""Helpers shared by the test files."""

import os
import shutil
import tempfile

# One persistent XLA compilation cache for the whole run, made fresh for it
# (and removed after): the two xdist workers, the scripts the tests run as
# subprocesses (they inherit the environment) and tests that rebuild the same
# program in a new `jit` (a protocol rerun, a second Runner) then compile each
# program once. Identical programs give identical executables, so no number
# changes. Set before jax is imported; a cache dir the caller set is kept.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE_DIR = tempfile.mkdtemp(prefix='paramsel_jax_test_xla_cache_')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE_DIR
else:
  _CACHE_DIR = None
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.25')
# The suite compiles without LLVM's backend optimizations: XLA's CPU compile
# takes ~2.5x less time and a test's programs run somewhat slower; its HLO
# (and so FLOPs) and semantics are the same. Tests compare programs of one
# run with each other, never with speeds or numbers of an optimized build.
# Scripts and benchmarks keep the default. Subprocesses inherit it.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()

import hypothesis  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

# The property tests draw the same examples in every run (a run's result
# must not depend on the draw; a failing example goes into @example).
hypothesis.settings.register_profile('paramsel', derandomize=True)
hypothesis.settings.load_profile('paramsel')

from paramsel_jax import data  # noqa: E402
from paramsel_jax import models  # noqa: E402
from paramsel_jax.protocol import protocol  # noqa: E402


def synthetic_task(widths, num_train=200, num_test=100):
  """A protocol Task: an MLP of these widths on 8x8 synthetic data, 4 classes."""
  ds = data.synthetic(num_train=num_train, num_test=num_test,
                      image_shape=(8, 8, 1), num_classes=4)
  model = models.create_model('mlp', widths=widths, num_classes=4)
  return protocol.ImageTask(
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


def pytest_unconfigure(config):
  """Removes the run's compilation cache (made by this process only)."""
  del config
  if _CACHE_DIR is not None:
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)
