"""`sparsity.sparse` on the models users bring.

A flax NNX model (`nnx.split` state), a linen transformer block (attention,
LayerNorm), a linen MLP of 12 layers, a hand-written `apply_fn` over plain
dicts, and a linen CNN under N:M, block and channel structure.
"""

import math

from flax import linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax import sparsity as sp


def _names(params):
  return sp.distributions.leaf_names(params)


def _named(tree):
  return dict(zip(_names(tree), map(np.asarray, jax.tree.leaves(tree))))


def _train(tx, params, loss, steps, seed=0):
  """`steps` jitted steps of `tx` on `loss(params, key)`: (params, state)."""
  state = jax.jit(tx.init)(params)
  params = jax.jit(sp.apply_masks)(params, state)

  @jax.jit
  def step(params, state, key):
    grads = jax.grad(loss)(params, key)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for t in range(steps):
    params, state = step(params, state, jax.random.key(seed + t))
  return params, state


def _assert_masked_weights_zero(params, masks):
  for w, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks)):
    assert np.all(np.asarray(w)[~np.asarray(m)] == 0.0)


# ----------------------------------------------------------------------- NNX


class _NnxMlp(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(8, 16, rngs=rngs)
    self.out = nnx.Linear(16, 4, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x)))


def test_nnx_model_trains_sparse_through_split_state():
  model = _NnxMlp(nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)

  def loss(params, key):
    x = jax.random.normal(key, (16, 8))
    return jnp.mean((nnx.merge(graphdef, params)(x) - 1.0) ** 2)

  tx = sp.sparse(optax.adam(1e-2), sp.magnitude(
      0.75, sp.polynomial(every=1, begin=0, end=3)))
  params, state = _train(tx, params, loss, steps=5)
  masks = _named(sp.get_masks(state))
  assert sorted(masks) == ['hidden/bias', 'hidden/kernel', 'out/bias',
                           'out/kernel']
  assert np.mean(masks['hidden/kernel']) == 0.25
  assert np.mean(masks['out/kernel']) == 0.25
  assert masks['hidden/bias'].all() and masks['out/bias'].all()
  _assert_masked_weights_zero(params, sp.get_masks(state))
  # The model the state builds has the zeros, and nnx.state reads them back.
  nnx.update(model, params)
  kernel = np.asarray(model.hidden.kernel.value)
  assert np.array_equal(kernel == 0, ~np.asarray(masks['hidden/kernel']))
  rows = {r.name: r for r in sp.summarize(nnx.state(model, nnx.Param))}
  assert rows['hidden/kernel'].nonzero == 32 and rows['out/kernel'].nonzero == 16
  assert np.isfinite(float(jax.jit(loss)(params, jax.random.key(0))))


# ------------------------------------------------------- linen transformer


class _Block(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)(h, h)
    h = nn.Dense(16)(nn.LayerNorm()(x))
    return x + nn.Dense(8)(nn.gelu(h))


def test_transformer_block_default_filter_targets_kernels_only():
  shapes = jax.eval_shape(_Block().init, jax.random.key(0),
                          jnp.ones((2, 4, 8)))['params']
  targets = dict(zip(_names(shapes), jax.tree.leaves(
      sp.leaf_sparsities(shapes, 0.5, 'erk'), is_leaf=lambda x: x is None)))
  assert any(n.endswith('query/bias') and np.ndim(x) == 2 for n, x in
             zip(_names(shapes), jax.tree.leaves(shapes)))
  pruned = sorted(n for n, t in targets.items() if t is not None)
  assert pruned == sorted(n for n in targets if n.endswith('/kernel'))
  assert len(pruned) == 6  # query, key, value, out, two Dense.


@pytest.mark.slow
def test_transformer_block_default_filter_prunes_kernels_only():
  block = _Block()
  x0 = jnp.ones((2, 4, 8))
  params = jax.jit(block.init)(jax.random.key(0), x0)['params']

  def loss(params, key):
    x = jax.random.normal(key, (2, 4, 8))
    return jnp.mean(block.apply({'params': params}, x) ** 2)

  tx = sp.sparse(optax.adamw(1e-2), sp.magnitude(0.5, sp.one_shot(1)))
  params, state = _train(tx, params, loss, steps=3)
  masks = _named(sp.get_masks(state))
  pruned = sorted(n for n, m in masks.items() if not m.all())
  kernels = sorted(n for n in masks if n.endswith('/kernel'))
  assert len(kernels) == 6  # query, key, value, out, two Dense.
  assert pruned == kernels, 'the default filter prunes kernels only'
  for name in kernels:
    assert np.mean(masks[name]) == 0.5, name
  _assert_masked_weights_zero(params, sp.get_masks(state))
  assert np.isfinite(float(jax.jit(loss)(params, jax.random.key(1))))


# --------------------------------------------------------------- 12 layers


class _Deep(nn.Module):
  widths: tuple

  @nn.compact
  def __call__(self, x):
    for w in self.widths[:-1]:
      x = nn.relu(nn.Dense(w)(x))
    return nn.Dense(self.widths[-1])(x)


@pytest.mark.slow
def test_twelve_layers_each_get_their_own_erk_density():
  widths = (32, 4, 24, 6, 16, 40, 8, 12, 20, 5, 30, 3)
  model = _Deep(widths)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 10)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(
      rng.standard_normal(s.shape), jnp.float32), shapes['params'])
  assert len(params) == 12  # Dense_10, Dense_11 sort between Dense_1 and _2.
  sparsity = 0.8
  tx = sp.sparse(optax.sgd(0.0), sp.magnitude(sparsity, distribution='erk'))
  state = jax.jit(tx.init)(params)
  _, state = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), state,
                                params)
  masks = jax.tree.map(np.asarray, sp.get_masks(state))
  names = [f'Dense_{i}' for i in range(12)]
  shapes = [params[n]['kernel'].shape for n in names]
  assert shapes[0] == (10, 32) and shapes[11] == (30, 3)
  sizes = [math.prod(s) for s in shapes]
  raw = [sum(s) / math.prod(s) for s in shapes]
  # ERK by shape, matched by name (never by position in a sorted list).
  want = sp.erk_densities(shapes, 1 - sparsity)
  for name, size, density in zip(names, sizes, want):
    assert abs(int(masks[name]['kernel'].sum()) - density * size) <= 0.5, name
    assert masks[name]['bias'].all()
  dens = [int(masks[n]['kernel'].sum()) / s for n, s in zip(names, sizes)]
  order = np.argsort(raw)
  assert np.all(np.diff(np.array(dens)[order]) >= -1e-9)  # denser: larger raw.
  kept = sum(int(masks[n]['kernel'].sum()) for n in names)
  assert abs(kept - (1 - sparsity) * sum(sizes)) <= 6


# ----------------------------------------------------- hand-written apply_fn


def _apply_fn(params, x):
  h = jax.nn.relu(x @ params['layer1']['w'] + params['layer1']['b'])
  return h @ params['layer2']['w'] + params['layer2']['b']


def _normal(seed, *shape):  # numpy's: no XLA program per shape.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape),
                     jnp.float32)


def _plain_params():
  return {'layer1': {'w': _normal(0, 6, 8), 'b': jnp.ones(8)},
          'layer2': {'w': _normal(1, 8, 4), 'b': jnp.ones(4)}}


def _plain_loss(params, key):
  x = jax.random.normal(key, (16, 6))
  return jnp.mean((_apply_fn(params, x) - 1.0) ** 2)


@pytest.mark.parametrize('pruner', [
    sp.magnitude(0.5, sp.polynomial(every=1, begin=0, end=3)),
    pytest.param(sp.rigl(0.5, every=2, end=8, distribution='uniform'),
                 marks=pytest.mark.slow),
], ids=['magnitude', 'rigl'])
def test_hand_written_apply_fn_with_plain_dicts_trains_sparse(pruner):
  params = _plain_params()
  tx = sp.sparse(optax.adam(1e-2), pruner)
  first = jax.jit(tx.init)(params)
  count = lambda s: [int(np.sum(m)) for m in jax.tree.leaves(sp.get_masks(s))]
  params, state = _train(tx, params, _plain_loss, steps=6)
  if pruner.regrow:  # SET/RigL: sparse from init, each leaf's count fixed.
    assert count(state) == count(first)
  assert count(state) == [8, 24, 4, 16]  # the two `w` at 0.5, `b` dense.
  _assert_masked_weights_zero(params, sp.get_masks(state))
  assert np.isfinite(float(jax.jit(_plain_loss)(params, jax.random.key(0))))


def test_channel_prunes_a_units_column_and_bias_in_plain_dicts():
  params = _plain_params()
  tx = sp.sparse(optax.sgd(1e-2), sp.magnitude(0.5, structure=sp.channel()))
  params, state = _train(tx, params, _plain_loss, steps=2)
  for layer, units in (('layer1', 8), ('layer2', 4)):
    w, b = np.asarray(params[layer]['w']), np.asarray(params[layer]['b'])
    dead = np.all(w == 0, axis=0)
    assert dead.sum() == units // 2, layer
    np.testing.assert_array_equal(b == 0, dead, err_msg=layer)
  # Pruned hidden units output exactly 0.
  x = _normal(3, 5, 6)
  hidden = jax.nn.relu(x @ params['layer1']['w'] + params['layer1']['b'])
  dead = np.all(np.asarray(params['layer1']['w']) == 0, axis=0)
  assert np.all(np.asarray(hidden)[:, dead] == 0.0)


def test_channel_on_a_flat_dict_of_several_layers_is_refused():
  # Which bias belongs to which kernel is not in a flat dict's structure.
  params = {'w1': _normal(0, 4, 8), 'b1': jnp.ones(8),
            'w2': _normal(1, 8, 8), 'b2': jnp.ones(8)}
  tx = sp.sparse(optax.sgd(0.1), sp.magnitude(0.5, structure=sp.channel()))
  with pytest.raises(ValueError, match=r'b1'):
    tx.init(params)


# ---------------------------------------------------------------- conv net


class _Cnn(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3))(x))
    x = nn.relu(nn.Conv(8, (3, 3))(x))
    return nn.Dense(4)(x.mean(axis=(1, 2)))


def _cnn():
  model = _Cnn()
  params = jax.jit(model.init)(jax.random.key(0),
                          jnp.ones((1, 6, 6, 4)))['params']

  def loss(params, key):
    x = jax.random.normal(key, (4, 6, 6, 4))
    return jnp.mean((model.apply({'params': params}, x) - 1.0) ** 2)

  return params, loss


# N:M and block masks of conv kernel shapes are checked without training in
# test_sparsity.py; these training runs are slow.
@pytest.mark.slow
@pytest.mark.parametrize('n,m', [(2, 4), (1, 4)])
def test_conv_net_under_n_by_m(n, m):
  params, loss = _cnn()
  tx = sp.sparse(optax.adam(1e-2), sp.magnitude(0.0, sp.periodic(2, 0, 4),
                                                structure=sp.n_by_m(n, m)))
  params, state = _train(tx, params, loss, steps=4)
  for name in ('Conv_0', 'Conv_1', 'Dense_0'):
    w = np.asarray(params[name]['kernel']) != 0
    moved = np.moveaxis(w, -2, -1)
    groups = moved.reshape(moved.shape[:-1] + (moved.shape[-1] // m, m))
    assert np.all(groups.sum(-1) == n), name
    assert np.all(np.asarray(params[name]['bias']) != 0)  # dense.


@pytest.mark.slow
def test_conv_net_under_block():
  params, loss = _cnn()
  tx = sp.sparse(optax.adam(1e-2), sp.magnitude(0.5, structure=sp.block(2, 4)))
  params, state = _train(tx, params, loss, steps=3)
  for name in ('Conv_0', 'Conv_1', 'Dense_0'):
    w = np.asarray(params[name]['kernel']) != 0
    *lead, a, b = w.shape
    per_block = w.reshape(*lead, a // 2, 2, b // 4, 4).sum(axis=(-3, -1))
    assert set(np.unique(per_block)) == {0, 8}, name
    assert (per_block == 0).mean() == 0.5, name


def test_conv_net_under_channel_prunes_kernels_and_biases():
  params, loss = _cnn()
  tx = sp.sparse(optax.adam(1e-2), sp.magnitude(0.25, structure=sp.channel()))
  params, state = _train(tx, params, loss, steps=3)
  masks = sp.get_masks(state)
  for name, units in (('Conv_0', 8), ('Conv_1', 8), ('Dense_0', 4)):
    w, b = np.asarray(params[name]['kernel']), np.asarray(params[name]['bias'])
    dead = np.all(w.reshape(-1, units) == 0, axis=0)
    assert dead.sum() == units // 4, name
    np.testing.assert_array_equal(b == 0, dead, err_msg=name)
    np.testing.assert_array_equal(~np.asarray(masks[name]['bias']), dead)
  # The pruned channels of Conv_0 output exactly 0.
  x = _normal(5, 2, 6, 6, 4)
  out = nn.Conv(8, (3, 3)).apply({'params': params['Conv_0']}, x)
  dead = np.all(np.asarray(params['Conv_0']['kernel']).reshape(-1, 8) == 0, 0)
  assert np.all(np.asarray(out)[..., dead] == 0.0)
  assert np.all(np.asarray(out)[..., ~dead] != 0.0)
