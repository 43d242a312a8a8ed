"""Task: a user's own model and arrays, checked where they enter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.protocol import protocol
from paramsel_jax.protocol import task as task_lib


class TinyCNN(nn.Module):
  """A user's own flax model: not one of paramsel_jax.models."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def _arrays(n=32, float_images=False):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
  labels = rng.integers(0, 3, n).astype(np.int32)
  if float_images:
    return images.astype(np.float32) / 255.0, labels
  return images, labels


def _task(images, labels, apply_fn=None):
  model = TinyCNN()
  init = lambda key: model.init(key, jnp.zeros((1, 6, 6, 1)))['params']
  apply = apply_fn or (lambda p, x: model.apply({'params': p}, x))
  return protocol.ImageTask(init, apply, images, labels, images, labels)


_CONFIG = protocol.ProtocolConfig(eta0=6, eta1=6, k=0.5, l=0.25, window=3,
                                  batch_size=8, eval_batch_size=16)


def _run(task, **kwargs):
  return protocol.run_protocol(task, optax.adam(1e-2), _CONFIG, ['magnitude'],
                               seeds=(0,), log=lambda _: None, **kwargs)


@pytest.mark.slow
def test_numpy_arrays_are_moved_to_the_device_and_give_the_same_result():
  images, labels = _arrays()
  from_numpy = _task(images, labels)
  assert isinstance(from_numpy.train_images, jax.Array)
  from_jax = _task(jnp.asarray(images), jnp.asarray(labels))
  assert _run(from_numpy)['cells'] == _run(from_jax)['cells']


@pytest.mark.slow
def test_float_images_in_unit_range_are_not_divided_again():
  images, labels = _arrays()
  floats, _ = _arrays(float_images=True)
  by_uint8 = _run(_task(images, labels))['cells'][0]
  by_float = _run(_task(floats, labels))['cells'][0]
  np.testing.assert_allclose(by_float['w']['test_loss'],
                             by_uint8['w']['test_loss'], rtol=1e-5)


@pytest.mark.parametrize('images, labels, match', [
    (np.full((4, 6, 6, 1), 2.0, np.float32), np.zeros(4, np.int32),
     r'train_images: float values in \[2, 2\]; accepted: uint8'),
    (np.zeros((4, 6, 6, 1), np.int32), np.zeros(4, np.int32),
     r'train_images has dtype int32; accepted: uint8'),
    ([[0, 1]], np.zeros(1, np.int32), r'train_images is a list'),
    (np.zeros((4, 6, 6, 1), np.uint8), np.zeros(3, np.int32),
     r'train_labels has shape \(3,\); accepted: \(4,\)'),
    (np.zeros((4, 6, 6, 1), np.uint8), np.zeros(4, np.float32),
     r'train_labels has dtype float32; accepted: integer'),
    (np.zeros((4, 6, 6, 1), np.uint8), -np.ones(4, np.int32),
     r'train_labels holds -1; accepted: class labels >= 0'),
])
def test_bad_arrays_get_one_clear_error(images, labels, match):
  with pytest.raises(ValueError, match=match):
    _task(images, labels)


def test_model_checks_run_before_any_work():
  images, labels = _arrays()
  lines = []
  out_of_range = _task(images, labels + 3)
  with pytest.raises(ValueError, match=r"train_labels hold 5; accepted: "
                     r"labels below the model's 3 logits"):
    protocol.run_protocol(out_of_range, optax.adam(1e-2), _CONFIG,
                          ['magnitude'], seeds=(0,), log=lines.append)
  model = TinyCNN()
  probs = _task(images, labels, lambda p, x: jax.nn.softmax(
      model.apply({'params': p}, x)))
  with pytest.raises(ValueError, match='apply_fn returns probabilities'):
    protocol.run_protocol(probs, optax.adam(1e-2), _CONFIG, ['magnitude'],
                          seeds=(0,), log=lines.append)
  assert not lines  # nothing was trained or printed


def test_the_package_exposes_task_and_data():
  assert paramsel_jax.Task is task_lib.Task is protocol.Task
  assert hasattr(paramsel_jax, 'data') and hasattr(paramsel_jax.data, 'load')


def test_run_protocol_returns_alpha_beta_params_and_a_layer_summary():
  images, labels = _arrays()
  task = _task(images, labels)
  results = _run(task, return_arrays=True)
  cell = results['cells'][0]
  layers = cell['layers']
  assert set(layers) == {'Conv_0/bias', 'Conv_0/kernel', 'Dense_0/bias',
                         'Dense_0/kernel'}
  assert sum(v['size'] for v in layers.values()) == results['num_params']
  assert sum(v['alpha'][0] for v in layers.values()) == cell['alpha_count'][0]
  assert sum(v['beta'][0] for v in layers.values()) == cell['beta_count'][0]
  arrays = cell['arrays']
  assert jax.tree.structure(arrays['params']) == jax.tree.structure(
      arrays['beta'])
  pruned = paramsel_jax.prune(arrays['params'], arrays['beta'])
  nonzero = sum(int(jnp.count_nonzero(x)) for x in jax.tree.leaves(pruned))
  assert nonzero == cell['beta_count'][0]
  assert 'arrays' not in _run(task)['cells'][0]
