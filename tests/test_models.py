# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for paramsel_jax.models."""

import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax import models

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
ALL_MODELS = sorted(models.MODELS)
CONCRETE_IMPLS = ('im2col', 'xla', 'xla_vjp')


def _assert_trees_close(a, b, rtol=1e-4, atol=1e-5):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(
      lambda u, v: np.testing.assert_allclose(u, v, rtol=rtol, atol=atol), a, b)


@functools.cache
def _init(name, shape):
  """`init_params` of model `name` (defaults) at key 0: compiled once per file."""
  return models.init_params(models.create_model(name), jax.random.key(0), shape)


def _reference_conv(x, kernel, padding):
  return lax.conv_general_dilated(
      x, kernel, (1, 1), padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize('name', ALL_MODELS)
@pytest.mark.parametrize('shape', [MNIST, CIFAR], ids=['mnist', 'cifar'])
def test_output_shape(name, shape):
  model = models.create_model(name)
  x = jax.ShapeDtypeStruct((3, *shape), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  logits = jax.eval_shape(model.apply, variables, x)
  assert logits.shape == (3, 10)
  assert logits.dtype == jnp.float32


def test_num_classes_and_overrides():
  model = models.create_model('mlp', num_classes=3, widths=(7, 5))
  params = models.init_params(model, jax.random.key(0), (4, 4, 1))
  assert [params[f'Dense_{i}']['kernel'].shape for i in range(3)] == [
      (16, 7), (7, 5), (5, 3)]
  assert model.apply({'params': params}, jnp.ones((2, 4, 4, 1))).shape == (2, 3)


@pytest.mark.parametrize('name, shape, expected', [
    ('lenet300', MNIST, 266_610),
    ('fc400', MNIST, 478_410),  # 784*400+400 + 400*400+400 + 400*10+10.
    ('lenet5', MNIST, 431_080),
    ('cifar_cnn', CIFAR, 1_116_970),
])
def test_param_count(name, shape, expected):
  # The count is a property of the shapes: init_params traced, not compiled
  # (each model's real init runs in other tests: the lenet5 ones below, the
  # init_params doctest, the slow tier's training tests).
  model = models.create_model(name)
  params = jax.eval_shape(
      lambda key: models.init_params(model, key, shape), jax.random.key(0))
  assert models.count_params(params) == expected


def test_lenet5_layer_shapes():
  params = _init('lenet5', MNIST)
  shapes = jax.tree.map(jnp.shape, params)
  assert shapes == {
      'Conv2D_0': {'kernel': (5, 5, 1, 20), 'bias': (20,)},
      'Conv2D_1': {'kernel': (5, 5, 20, 50), 'bias': (50,)},
      'Dense_0': {'kernel': (800, 500), 'bias': (500,)},
      'Dense_1': {'kernel': (500, 10), 'bias': (10,)},
  }


def test_unknown_model_raises_and_lists_names():
  with pytest.raises(ValueError, match="Unknown model 'resnet9'") as info:
    models.create_model('resnet9')
  for name in ALL_MODELS:
    assert name in str(info.value)


def test_unknown_conv_impl_raises():
  with pytest.raises(ValueError, match="'cudnn'.*im2col"):
    models.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), impl='cudnn')


@pytest.mark.parametrize('kernel_shape, on_cpu', [
    (None, 'im2col'),
    ((5, 5, 1, 20), 'im2col'),     # LeNet-5 conv1.
    ((5, 5, 20, 50), 'im2col'),    # LeNet-5 conv2.
    ((3, 3, 3, 32), 'im2col'),     # cifar_cnn conv1.
    ((3, 3, 32, 64), 'xla_vjp'),   # cifar_cnn conv3.
    ((1, 1, 64, 64), 'xla_vjp'),
])
def test_auto_impl_follows_backend(kernel_shape, on_cpu):
  expected = on_cpu if jax.default_backend() == 'cpu' else 'xla'
  assert models.resolve_conv_impl('auto', kernel_shape) == expected
  assert models.resolve_conv_impl('im2col', kernel_shape) == 'im2col'


# ---------------------------------------------------------------- conv


@pytest.mark.parametrize('impl', ['im2col', 'xla_vjp'])  # 'xla' is lax's.
@pytest.mark.parametrize('padding', ['SAME', 'VALID'])
@pytest.mark.parametrize('cin, cout, kh, kw', [
    (1, 4, 5, 5),
    (3, 8, 3, 3),
    (5, 2, 1, 1),
    (4, 6, 2, 2),  # Even kernel: SAME pads one more pixel on the high side.
    (2, 3, 3, 2),  # Non-square kernel.
])
@pytest.mark.slow
def test_conv2d_matches_lax(impl, padding, cin, cout, kh, kw):
  kx, kk, kg = jax.random.split(jax.random.key(cin * 100 + kh * 10 + kw), 3)
  x = jax.random.normal(kx, (2, 9, 7, cin))
  kernel = jax.random.normal(kk, (kh, kw, cin, cout))
  expected = _reference_conv(x, kernel, padding)
  got = jax.jit(lambda x, k: models.conv2d(x, k, padding=padding,
                                           impl=impl))(x, kernel)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

  # Gradients of a random linear functional of the output.
  cotangent = jax.random.normal(kg, expected.shape)

  def loss(fn):
    return lambda x, k: jnp.sum(fn(x, k) * cotangent)

  want = jax.grad(loss(lambda x, k: _reference_conv(x, k, padding)),
                  argnums=(0, 1))(x, kernel)
  have = jax.jit(jax.grad(
      loss(lambda x, k: models.conv2d(x, k, padding=padding, impl=impl)),
      argnums=(0, 1)))(x, kernel)
  _assert_trees_close(have, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('impl', CONCRETE_IMPLS)
def test_conv2d_under_vmap_and_second_order(impl):
  """Per-example kernels (vmap over params) and grad-of-grad still agree."""
  kx, kk = jax.random.split(jax.random.key(1))
  x = jax.random.normal(kx, (3, 2, 6, 6, 2))
  kernels = jax.random.normal(kk, (3, 3, 3, 2, 4))

  def loss(conv):
    return lambda x, k: jnp.sum(jnp.tanh(conv(x, k)))

  ref = loss(lambda x, k: _reference_conv(x, k, 'SAME'))
  ours = loss(lambda x, k: models.conv2d(x, k, padding='SAME', impl=impl))
  _assert_trees_close(jax.vmap(jax.grad(ours, argnums=1))(x, kernels),
                      jax.vmap(jax.grad(ref, argnums=1))(x, kernels),
                      atol=1e-3)
  # Forward-over-reverse (Hessian-vector products) works for every impl.
  hvp = lambda f: jax.jvp(lambda k: jax.grad(f, argnums=1)(x[0], k),
                          (kernels[0],), (kernels[1],))[1]
  np.testing.assert_allclose(hvp(ours), hvp(ref), rtol=1e-4, atol=1e-3)
  # Plain forward mode does not for a custom_vjp function.
  jvp = lambda: jax.jvp(
      lambda k: models.conv2d(x[0], k, impl=impl), (kernels[0],),
      (kernels[1],))
  if impl == 'xla_vjp':
    with pytest.raises(TypeError, match='custom_vjp'):
      jvp()
  else:
    np.testing.assert_allclose(
        jvp()[1], _reference_conv(x[0], kernels[1], 'SAME'),  # Linear in k.
        rtol=1e-4, atol=1e-4)


def test_conv2d_module_matches_flax_conv():
  """Same param names, shapes and initial values as nn.Conv; same output."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  for padding in ('SAME', 'VALID'):
    theirs = nn.Conv(6, (3, 3), padding=padding)
    want_vars = theirs.init(jax.random.key(1), x)
    want = theirs.apply(want_vars, x)
    for impl in models.CONV_IMPLS:
      ours = models.Conv2D(6, (3, 3), padding=padding, impl=impl)
      have_vars = ours.init(jax.random.key(1), x)
      _assert_trees_close(have_vars, want_vars, rtol=0, atol=0)
      np.testing.assert_allclose(ours.apply(have_vars, x), want,
                                 rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('name, shape', [('lenet5', MNIST),
                                         ('cifar_cnn', CIFAR)])
def test_models_agree_across_conv_impls(name, shape):
  x = jax.random.uniform(jax.random.key(0), (4, *shape))
  y = jnp.arange(4) % 10
  params = models.init_params(models.create_model(name), jax.random.key(1),
                              shape)
  results = {}
  for impl in models.CONV_IMPLS:
    model = models.create_model(name, conv_impl=impl)

    def loss(p, model=model):
      logits = model.apply({'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    results[impl] = jax.jit(jax.value_and_grad(loss))(params)
  for impl in ('auto', 'im2col', 'xla_vjp'):
    _assert_trees_close(results[impl], results['xla'], rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------- pooling


@pytest.mark.parametrize('shape, window', [
    ((2, 8, 8, 3), 2), ((1, 7, 9, 2), 2), ((3, 2, 2, 1), 2),
    ((2, 9, 9, 3), 3), ((1, 7, 11, 2), 3)])
def test_max_pool_matches_flax(shape, window):
  x = jax.random.normal(jax.random.key(0), shape)
  ref = lambda x: nn.max_pool(x, (window, window), strides=(window, window))
  ours = lambda x: models.max_pool2d(x, window)
  np.testing.assert_array_equal(jax.jit(ours)(x), ref(x))
  # Continuous random inputs have no ties, so the gradients agree exactly.
  cot = jax.random.normal(jax.random.key(1), ref(x).shape)
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * cot))(x)
  np.testing.assert_array_equal(grad(ours), grad(ref))


# ---------------------------------------------------------------- training


def _train(model, params, x, y, steps):
  optimizer = optax.adam(1e-3)

  def loss_fn(p):
    logits = model.apply({'params': p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(carry, _):
    p, s = carry
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = optimizer.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), loss

  @jax.jit
  def run(p):
    (p, _), losses = lax.scan(step, (p, optimizer.init(p)), length=steps)
    return p, losses, loss_fn(p)

  return run(params)


@pytest.mark.slow
@pytest.mark.parametrize('name, shape', [
    ('mlp', MNIST), ('lenet5', MNIST), ('cifar_cnn', CIFAR)])  # lenet300 and
def test_adam_in_scan_lowers_loss(name, shape):               # fc400 are mlps.
  kx, ky, kp = jax.random.split(jax.random.key(0), 3)
  x = jax.random.uniform(kx, (16, *shape))
  y = jax.random.randint(ky, (16,), 0, 10)
  model = models.create_model(name)
  params = models.init_params(model, kp, shape)
  new_params, losses, final = _train(model, params, x, y, steps=10)
  assert np.all(np.isfinite(losses)) and np.isfinite(final)
  assert final < 0.7 * losses[0], (losses, final)
  assert jax.tree.map(jnp.shape, new_params) == jax.tree.map(jnp.shape, params)


@pytest.mark.parametrize('name', ['mlp', 'lenet5'])  # one per module class on
def test_apply_is_jit_compatible(name):               # MNIST shapes.
  model = models.create_model(name)
  params = _init(name, MNIST)
  x = jax.random.uniform(jax.random.key(1), (2, *MNIST))
  eager = model.apply({'params': params}, x)
  jitted = jax.jit(model.apply)({'params': params}, x)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


def test_count_params():
  assert models.count_params({'a': jnp.zeros((3, 4)), 'b': [jnp.zeros(5)],
                              'c': jnp.zeros(()), 'd': 2.0}) == 19
  assert models.count_params({}) == 0
  assert models.count_params(
      {'w': jax.ShapeDtypeStruct((784, 300), jnp.float32)}) == 235_200
