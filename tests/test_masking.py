"""Tests of `paramsel_jax.masked`: frozen coordinates never move, bit for bit."""

import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.optim import masking


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {'dense': {'kernel': jax.random.normal(k1, (6, 5)),
                    'bias': jnp.array([0.0, -0.0, 1.0, -2.5, 3.0])},
          'scale': jax.random.normal(k2, (4,))}


def _mask(params, seed=1):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten(
      [jax.random.bernoulli(k, 0.5, x.shape) for k, x in zip(keys, leaves)])


def _run(tx, params, mask, num_steps=300):
  """`num_steps` masked steps on a loss whose gradient is never zero."""
  loss = lambda p: sum(jnp.sum(jnp.sin(3 * x) + x ** 2) for x in jax.tree.leaves(p))
  state = paramsel_jax.set_mask(jax.jit(tx.init)(params), mask)

  @jax.jit
  def run(params, state):
    def body(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (optax.apply_updates(params, updates), state), updates
    return jax.lax.scan(body, (params, state), None, length=num_steps)

  (final, _), updates = run(params, state)
  return final, updates


OPTIMIZERS = {
    'adam': optax.adam(0.05),
    'momentum': optax.sgd(0.05, momentum=0.9),
    'adamw': optax.adamw(0.05, weight_decay=0.1),
    'noisy_sgd': optax.chain(optax.add_noise(1.0, 0.55, 0), optax.sgd(0.05)),
}


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_frozen_coordinates_are_bit_identical(name):
  params = _params()
  mask = _mask(params)
  final, updates = _run(paramsel_jax.masked(OPTIMIZERS[name]), params, mask)
  for p0, p1, m, u in zip(*map(jax.tree.leaves, (params, final, mask, updates))):
    frozen = ~np.asarray(m)
    np.testing.assert_array_equal(
        np.asarray(p1).view(np.uint32)[frozen], np.asarray(p0).view(np.uint32)[frozen])
    assert np.all(np.asarray(u)[:, frozen] == 0.0)  # every step's update is 0.
    assert np.all(np.asarray(p1)[~frozen] != np.asarray(p0)[~frozen])


def test_all_true_mask_equals_inner_optimizer():
  params = _params()
  all_true = jax.tree.map(lambda x: jnp.ones(x.shape, bool), params)
  got, _ = _run(paramsel_jax.masked(optax.adam(0.05)), params, all_true, 50)
  want, _ = _run(optax.chain(paramsel_jax.masked(optax.identity()),
                             optax.adam(0.05)), params, all_true, 50)
  # Equal up to XLA's fusion choices (1 ulp seen), not bit for bit.
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), p=st.floats(0.0, 1.0))
def test_frozen_never_move_property(seed, p):
  params = {'w': jax.random.normal(jax.random.key(seed), (7, 3))}
  mask = {'w': jax.random.bernoulli(jax.random.key(seed + 1), p, (7, 3))}
  final, _ = _run(paramsel_jax.masked(optax.adam(0.1)), params, mask, 20)
  frozen = ~np.asarray(mask['w'])
  np.testing.assert_array_equal(np.asarray(final['w'])[frozen],
                                np.asarray(params['w'])[frozen])


def test_new_mask_does_not_recompile():
  tx = paramsel_jax.masked(optax.adam(0.1))
  params = _params()
  traces = []

  @jax.jit
  def step(params, state):
    traces.append(1)
    updates, state = tx.update(params, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  params, state = step(params, state)
  for seed in range(3):
    state = paramsel_jax.set_mask(state, _mask(params, seed))
    params, state = step(params, state)
  state = paramsel_jax.set_mask(
      state, jax.tree.map(lambda x: (jnp.abs(x) > 0.5).astype(jnp.int32), params))
  params, state = step(params, state)
  assert len(traces) == 1


def test_mask_at_init_and_callable_mask():
  params = _params()
  mask = _mask(params)
  a = paramsel_jax.masked(optax.sgd(0.1), mask).init(params)
  b = paramsel_jax.masked(optax.sgd(0.1), lambda p: mask).init(params)
  chex.assert_trees_all_equal(paramsel_jax.get_mask(a), mask)
  chex.assert_trees_all_equal(paramsel_jax.get_mask(b), mask)


def test_set_mask_inside_chain():
  params = _params()
  tx = optax.chain(optax.clip_by_global_norm(1.0), paramsel_jax.masked(optax.adam(0.1)))
  state = paramsel_jax.set_mask(tx.init(params), _mask(params))
  chex.assert_trees_all_equal(paramsel_jax.get_mask(state), _mask(params))


def test_mismatched_mask_structure_raises():
  params = _params()
  with pytest.raises(ValueError, match='tree structure'):
    paramsel_jax.masked(optax.sgd(0.1), {'w': jnp.ones(3, bool)}).init(params)
  state = paramsel_jax.masked(optax.sgd(0.1)).init(params)
  with pytest.raises(ValueError, match='tree structure'):
    paramsel_jax.set_mask(state, {'dense': _mask(params)['dense']})


def test_mismatched_mask_shape_raises():
  params = _params()
  bad = _mask(params)
  bad['scale'] = jnp.ones((5,), bool)
  state = paramsel_jax.masked(optax.sgd(0.1)).init(params)
  with pytest.raises(ValueError, match=r"\['scale'\] has shape \(5,\).*\(4,\)"):
    paramsel_jax.set_mask(state, bad)


def test_set_mask_without_masked_state_raises():
  with pytest.raises(ValueError, match='no MaskedState'):
    paramsel_jax.set_mask(optax.adam(0.1).init(_params()), _mask(_params()))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_dtype_preserved(dtype):
  params = jax.tree.map(lambda x: x.astype(dtype), _params())
  tx = paramsel_jax.masked(optax.adam(0.1))
  state = paramsel_jax.set_mask(tx.init(params), _mask(params))
  updates, _ = jax.jit(tx.update)(params, state, params)
  for u in jax.tree.leaves(updates):
    assert u.dtype == dtype


def test_count_true():
  assert int(masking.count_true(_mask(_params()))) == int(
      sum(np.sum(np.asarray(m)) for m in jax.tree.leaves(_mask(_params()))))


STATEFUL = {
    'adam': optax.adam(0.05),
    'momentum': optax.sgd(0.05, momentum=0.9),
    'rmsprop': optax.rmsprop(0.05),
    'psgld': paramsel_jax.psgld(0.05, num_data=100),
    'adam_wd_schedule': optax.chain(
        optax.add_decayed_weights(0.1),
        optax.inject_hyperparams(optax.adam)(learning_rate=0.05)),
}


def _params_shaped_leaves(tx, state):
  """The leaves of the params-shaped parts of a (masked) state, in order."""
  inner = state.inner_state
  found = []
  optax.tree_utils.tree_map_params(tx, lambda x: found.append(x) or x, inner)
  return found


@pytest.mark.parametrize('name', STATEFUL)
def test_frozen_coordinates_optimizer_state_is_bit_identical(name):
  """Adam's μ/ν, momentum, pSGLD's V stay as they were at frozen coordinates
  over many steps (before the fix, Adam's ν decayed by b2^t there)."""
  inner = STATEFUL[name]
  tx = paramsel_jax.masked(inner)
  params = _params()
  mask = _mask(params)
  loss = lambda p: sum(jnp.sum(jnp.sin(3 * x) + x ** 2) for x in jax.tree.leaves(p))

  @jax.jit
  def run(params, state):
    def body(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (optax.apply_updates(params, updates), state), None
    return jax.lax.scan(body, (params, state), None, length=200)[0]

  # 200 dense steps make the state non-trivial, then 200 masked ones.
  params1, state1 = run(params, tx.init(params))
  params2, state2 = run(params1, paramsel_jax.set_mask(state1, mask))
  before = _params_shaped_leaves(inner, state1)
  after = _params_shaped_leaves(inner, state2)
  assert before, 'the state holds params-shaped parts'
  masks = jax.tree.leaves(mask) * (len(before) // len(jax.tree.leaves(mask)))
  for b, a, m in zip(before, after, masks):
    m = np.asarray(m)
    np.testing.assert_array_equal(np.asarray(a)[~m], np.asarray(b)[~m])
    assert (np.asarray(a)[m] != np.asarray(b)[m]).any()


def test_unfrozen_coordinate_resumes_from_its_state():
  """Frozen then unfrozen: the same updates as if the frozen steps never ran."""
  tx = paramsel_jax.masked(optax.adam(0.1))
  w = jnp.array([1.0, 2.0])
  state = tx.init(w)
  g = jnp.array([0.5, -1.0])
  _, state = tx.update(g, state, w)
  frozen = paramsel_jax.set_mask(state, jnp.array([True, False]))
  for _ in range(20):
    _, frozen = tx.update(g, frozen, w)
  thawed = paramsel_jax.set_mask(frozen, jnp.array([True, True]))
  mu_nu = lambda s: [np.asarray(x)[1] for x in (s.inner_state[0].mu, s.inner_state[0].nu)]
  assert mu_nu(thawed) == mu_nu(state)


def test_bad_mask_values_and_gradient_structure_are_named():
  params = {'w': jnp.zeros(3)}
  with pytest.raises(ValueError, match=r"mask leaf \['w'\] holds 0.5"):
    paramsel_jax.masked(optax.sgd(0.1), mask={'w': jnp.array([1.0, 0.5, 0.0])}
                        ).init(params)
  state = paramsel_jax.masked(optax.sgd(0.1)).init(params)
  with pytest.raises(ValueError, match=r"holds 2"):
    paramsel_jax.set_mask(state, {'w': jnp.array([0, 2, 1])})
  with pytest.raises(ValueError, match=r'updates \(gradients\) tree structure'):
    paramsel_jax.masked(optax.sgd(0.1)).update({'v': jnp.zeros(3)}, state, params)
  with pytest.raises(ValueError, match=r"beta leaf \['w'\] holds 0.5"):
    paramsel_jax.prune(params, {'w': jnp.array([1.0, 0.5, 0.0])})
  with pytest.raises(ValueError, match=r'beta tree structure'):
    paramsel_jax.prune(params, {'w': jnp.ones(3), 'b': jnp.ones(1)})
  stats = paramsel_jax.init_stats(params)
  with pytest.raises(ValueError, match=r'grads tree structure'):
    paramsel_jax.update_stats(stats, {'v': jnp.zeros(3)}, params, params)


def test_mismatched_tree_names_missing_and_extra_key_paths():
  params = {f'Dense_{i}': {'kernel': jnp.zeros((3, 3)), 'bias': jnp.zeros(3)}
            for i in range(30)}
  mask = jax.tree.map(lambda x: jnp.ones(x.shape, bool), params)
  del mask['Dense_1']['bias']
  mask['Dense_2']['scale'] = jnp.ones(3, bool)
  with pytest.raises(ValueError) as info:
    paramsel_jax.masked(optax.sgd(0.1), mask).init(params)
  message = str(info.value)
  assert ("mask is missing ['Dense_1']['bias'] (present in the params); "
          "extra: ['Dense_2']['scale']") in message
  assert len(message) < 300
  state = paramsel_jax.masked(optax.sgd(0.1)).init(params)
  grads = {k: v for k, v in params.items() if k != 'Dense_7'}
  with pytest.raises(ValueError, match=(
      r"updates \(gradients\) is missing \['Dense_7'\]\['bias'\], "
      r"\['Dense_7'\]\['kernel'\] \(present in the params\)")):
    paramsel_jax.masked(optax.sgd(0.1)).update(grads, state, params)


def test_state_tree_map_params_cannot_map_is_said_not_silent():
  # init reads a shape, which optax's placeholder params lack: nothing of the
  # state can be mapped, so nothing is restored, and masked says so.
  inner = optax.GradientTransformation(
      lambda params: {'n': jnp.zeros(params['w'].shape)},
      lambda updates, state, params=None: (updates, state))
  tx = paramsel_jax.masked(inner, {'w': jnp.array([True, False, True])})
  params = {'w': jnp.ones(3)}
  with pytest.warns(UserWarning, match='tree_map_params cannot map'):
    updates, _ = tx.update({'w': jnp.ones(3)}, tx.init(params), params)
  assert updates['w'].tolist() == [1.0, 0.0, 1.0]
