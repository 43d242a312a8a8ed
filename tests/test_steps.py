"""Tests of the steps: β⊙ keeps exactly l weights; evaluation is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import paramsel_jax
from paramsel_jax.train import steps


def test_prune_leaves_exactly_l_nonzeros():
  key = jax.random.key(0)
  params = {'a': jax.random.normal(key, (40, 30)) + 10.0, 'b': jnp.full(7, -3.0)}
  beta = paramsel_jax.top_k_mask(jax.tree.map(jnp.abs, params), 321)
  pruned = paramsel_jax.prune(params, beta)
  assert sum(int(jnp.count_nonzero(x)) for x in jax.tree.leaves(pruned)) == 321
  for p, q, b in zip(*map(jax.tree.leaves, (params, pruned, beta))):
    np.testing.assert_array_equal(np.asarray(q)[np.asarray(b)], np.asarray(p)[np.asarray(b)])


def test_evaluate_matches_direct_computation_with_ragged_batches():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (103, 4, 4, 1), dtype=np.uint8)
  labels = rng.integers(0, 3, 103).astype(np.int32)
  w = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  apply_fn = lambda p, x: x.reshape(len(x), -1) @ p
  loss, acc = steps.make_evaluate(apply_fn, batch_size=10)(w, images, labels)
  logits = apply_fn(w, steps.to_float(images))
  np.testing.assert_allclose(
      loss, optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(),
      rtol=1e-5)
  np.testing.assert_allclose(acc, np.mean(np.argmax(logits, -1) == labels), rtol=1e-6)


def test_masked_train_step_moves_only_alpha():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (8, 2, 2, 1), dtype=np.uint8)
  labels = rng.integers(0, 3, 8).astype(np.int32)
  apply_fn = lambda p, x: x.reshape(len(x), -1) @ p['w'] + p['b']
  params = {'w': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), 'b': jnp.zeros(3)}
  tx = paramsel_jax.masked(optax.adam(0.1))
  alpha = {'w': jnp.asarray(rng.random((4, 3)) < 0.5), 'b': jnp.array([True, False, True])}
  state = paramsel_jax.set_mask(tx.init(params), alpha)
  step = paramsel_jax.make_train_step(apply_fn, tx)
  new = params
  for _ in range(5):
    new, state, loss, grads = step(new, state, images, labels)
  for p0, p1, a in zip(*map(jax.tree.leaves, (params, new, alpha))):
    a = np.asarray(a)
    np.testing.assert_array_equal(np.asarray(p1)[~a], np.asarray(p0)[~a])
    assert np.all(np.asarray(p1)[a] != np.asarray(p0)[a])
