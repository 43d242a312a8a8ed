"""Freezing criteria on hand-made trajectories, the budget, FreezeOut."""

import flax.linen as nn
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax.freeze import policy as freezing
from paramsel_jax.select import granularity
from paramsel_jax.select import selectors


def _feed(policy, state, params, deltas, grads=None):
  """Steps whose increments are `deltas` (a list of arrays for leaf 'w')."""
  for i, d in enumerate(deltas):
    new = {'w': params['w'] + d}
    g = {'w': jnp.zeros_like(d)} if grads is None else {'w': grads[i]}
    state = policy.update(state, g, params, new)
    params = new
  return state, params


def test_psgld_freezes_noise_not_drift_or_oscillation():
  params = {'w': jnp.zeros(3)}
  policy = freezing.FreezingPolicy('psgld', params, granularity='element',
                                   check_every=100, threshold=2.0)
  state = policy.init(params)
  t = jnp.arange(100)
  noise = 0.01 * jax.random.normal(jax.random.key(1), (100,))
  # 0: zero-mean noise (converged); 1: drift; 2: a slow oscillation
  # (w = sin(2πt/150): the increments have mean ≠ 0 over the window).
  osc = jnp.diff(jnp.sin(2 * jnp.pi * jnp.arange(101) / 150))
  deltas = [jnp.array([noise[i], 0.01 + noise[i] / 10, osc[i]]) for i in range(100)]
  state, _ = _feed(policy, state, params, deltas)
  alpha, state = policy.check(state, 100)
  assert alpha['w'].tolist() == [False, True, True]
  assert int(state.stats.count) == 0  # reset for the next interval.
  del t


def test_apf_period_grows_while_stable_and_halves_when_not():
  params = {'w': jnp.zeros(1)}
  policy = freezing.FreezingPolicy('apf', params, granularity='element',
                                   check_every=10, threshold=0.2)
  state = policy.init(params)
  stable = [jnp.array([0.01 * (-1) ** i]) for i in range(10)]  # P ≈ 0.
  drift = [jnp.array([0.01])] * 40  # P -> 1.
  periods, frozen = [], []
  w = params
  for phase in ('stable', 'stable', 'stable', 'drift', 'drift'):
    if not bool(state.frozen[0]):
      state, w = _feed(policy, state, w, stable if phase == 'stable' else drift)
    alpha, state = policy.check(state, 0)
    periods.append(int(state.period[0]))
    frozen.append(not bool(alpha['w'][0]))
  # Check 1: stable -> period 1, frozen until check 2. Check 2 thaws it and
  # tests it again: its EMAs did not move while it was frozen, so it is still
  # stable -> period 2, frozen again.
  assert periods[:2] == [1, 2] and frozen[:2] == [True, True]
  state = state._replace(frozen=jnp.zeros(1, bool))
  state, w = _feed(policy, state, w, drift)
  before = int(state.period[0])
  _, state = policy.check(state, 0)
  assert int(state.period[0]) == before // 2  # unstable: halves.


def test_apf_threshold_halves_when_most_are_stable():
  params = {'w': jnp.zeros(10)}
  policy = freezing.FreezingPolicy('apf', params, granularity='element',
                                   check_every=10, threshold=0.2)
  state = policy.init(params)
  state, _ = _feed(policy, state, params,
                   [0.01 * (-1) ** i * jnp.ones(10) for i in range(10)])
  _, state = policy.check(state, 0)
  assert float(state.threshold) == pytest.approx(0.1)


def _layers(n=4):
  return {f'Dense_{i}': {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros(2)}
          for i in range(n)}


def test_autofreeze_freezes_only_a_prefix():
  params = _layers()
  policy = freezing.FreezingPolicy('autofreeze', params, granularity='layer',
                                   check_every=1, layer_order=tuple(params))
  state = policy.init(params)
  grads = lambda scales: {f'Dense_{i}': jax.tree.map(
      lambda p, s=s: jnp.full(p.shape, s), params[f'Dense_{i}'])
      for i, s in enumerate(scales)}
  feed = lambda state, g: policy.update(state, g, params, params)
  state = feed(state, grads([1.0, 1.0, 1.0, 1.0]))
  alpha, state = policy.check(state, 1)  # no previous norms: nothing.
  assert all(np.asarray(a).all() for a in jax.tree.leaves(alpha))
  # Change ratios r = [0.0, 0.5, 0.0, 0.5]: median 0.25; the first layer at
  # or above it is layer 1, so only layer 0 freezes, although layer 2 has
  # settled too (prefix only).
  state = feed(state, grads([1.0, 0.5, 1.0, 0.5]))
  alpha, state = policy.check(state, 2)
  frozen = [not bool(alpha[f'Dense_{i}']['bias'][0]) for i in range(4)]
  assert frozen == [True, False, False, False]


def test_freezeout_schedule_and_annealing():
  params = _layers(3)
  policy = freezing.FreezingPolicy('freezeout', params, granularity='layer',
                                   total_steps=100, t0=0.5,
                                   layer_order=(0, 1, 2))
  state = policy.init(params)
  trains = lambda alpha: [bool(alpha[f'Dense_{i}']['bias'][0]) for i in range(3)]
  assert trains(policy.check(state, 49)[0]) == [True, True, True]
  assert trains(policy.check(state, 50)[0]) == [False, True, True]
  assert trains(policy.check(state, 99)[0]) == [False, False, True]
  tx = freezing.freezeout_annealing(params, (0, 1, 2), 100, t0=0.5)
  s = tx.init(params)
  ones = jax.tree.map(jnp.ones_like, params)
  factors = []
  for _ in range(60):
    u, s = tx.update(ones, s)
    factors.append(float(u['Dense_0']['bias'][0]))
  assert factors[0] == 1.0 and factors[25] == pytest.approx(0.5, abs=1e-6)
  assert factors[50] == 0.0 and float(u['Dense_2']['bias'][0]) == 1.0


def test_budget_caps_the_frozen_share():
  params = {'w': jnp.zeros(10)}
  policy = freezing.FreezingPolicy('psgld', params, granularity='element',
                                   check_every=10, threshold=100.0,
                                   max_frozen=0.3)
  state = policy.init(params)
  noise = 0.01 * jax.random.normal(jax.random.key(0), (10, 10))
  state, _ = _feed(policy, state, params, list(noise))
  alpha, state = policy.check(state, 10)
  assert int(np.sum(~np.asarray(alpha['w']))) == 3
  assert float(policy.frozen_share(state)) == pytest.approx(0.3)


@pytest.mark.parametrize('criterion, granularity, message', [
    ('autofreeze', 'unit', "freezes whole layers"),
    ('nope', 'unit', "Unknown freezing criterion 'nope'"),
])
def test_bad_policies_are_refused(criterion, granularity, message):
  with pytest.raises(ValueError, match=message):
    freezing.FreezingPolicy(criterion, _layers(), granularity=granularity)


def test_policy_in_a_users_own_loop_with_masked():
  """The README's loop: update every step, check every check_every steps,
  set the mask; frozen coordinates stay bit-identical after their check."""
  import paramsel_jax
  params = {'w': jnp.array([0.0, 5.0])}
  loss = lambda p: (p['w'][1] - 1.0) ** 2  # w[0] has no gradient: converged.
  tx = paramsel_jax.masked(optax.sgd(0.05))
  opt_state = tx.init(params)
  policy = freezing.FreezingPolicy('psgld', params, granularity='element',
                                   check_every=20)
  fstate = policy.init(params)

  @jax.jit
  def step(params, opt_state, fstate, key):
    grads = jax.grad(loss)(params)
    grads = {'w': grads['w'] + 0.1 * jax.random.normal(key, (2,))}
    updates, opt_state = tx.update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    return new, opt_state, policy.update(fstate, grads, params, new)

  for t in range(1, 101):
    params, opt_state, fstate = step(params, opt_state, fstate,
                                     jax.random.key(t))
    if t % policy.check_every == 0:
      alpha, fstate = policy.check(fstate, t)
      opt_state = paramsel_jax.set_mask(opt_state, alpha)
  # w[0] has a zero-mean (pure noise) gradient: it freezes at a check and
  # stays bit-identical from then on; w[1] descends from 5 towards 1.
  assert not bool(alpha['w'][0])
  frozen_value = float(params['w'][0])
  for t in range(101, 121):
    params, opt_state, fstate = step(params, opt_state, fstate,
                                     jax.random.key(t))
  assert float(params['w'][0]) == frozen_value


def _fixed_alpha(params, grads, max_frozen, costs=None):
  """The `fixed` criterion's α after one step of `grads` (Σ|g| = |grads|)."""
  policy = freezing.FreezingPolicy('fixed', params, granularity='unit',
                                   check_every=1, max_frozen=max_frozen,
                                   freeze_at=1, costs=costs)
  state = policy.update(policy.init(params), grads, params, params)
  return policy.check(state, 1)[0]


def _protocol_alpha(params, grads, max_frozen, costs=None):
  """The protocol's α (topgrad at unit granularity) from the same Σ|g|."""
  g = granularity.groups(params, 'unit')
  scores = jax.tree.map(jnp.abs, grads)  # topgrad's scores: Σ|g|.
  if costs is None:
    k = selectors.resolve_count(1.0 - max_frozen, int(g.sizes.sum()))
    return granularity.top_k_groups(scores, k, g)
  return granularity.top_k_groups(scores, 0, g, costs=costs,
                                  budget=(1.0 - max_frozen) * costs.sum())


def test_fixed_meets_its_budget_the_protocols_way():
  """Four units of 3 parameters, max_frozen 0.4: the protocol keeps the
  units nearest to k = round(0.6 · 12) = 7 parameters, i.e. 2 (6, not 9),
  so 2 units freeze: 50% of the parameters, past 0.4 by less than half a
  unit (a cap would freeze 1)."""
  params = {'Dense_0': {'kernel': jnp.zeros((2, 4)), 'bias': jnp.zeros(4)}}
  grads = {'Dense_0': {'kernel': jnp.array([[4., 3., 2., 1.]] * 2),
                       'bias': jnp.array([4., 3., 2., 1.])}}
  alpha = _fixed_alpha(params, grads, 0.4)
  assert alpha['Dense_0']['bias'].tolist() == [True, True, False, False]


@pytest.mark.slow
@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(widths=st.lists(st.integers(1, 5), min_size=2, max_size=3),
                  max_frozen=st.floats(0.05, 0.95), seed=st.integers(0, 1000),
                  flops=st.booleans())
def test_fixed_chooses_the_protocols_alpha_for_the_same_scores(
    widths, max_frozen, seed, flops):
  # Layer i's units have i + 3 parameters (fan-in i + 2 and a bias).
  params = {f'Dense_{i}': {'kernel': jnp.zeros((i + 2, w)), 'bias': jnp.zeros(w)}
            for i, w in enumerate(widths)}
  keys = iter(jax.random.split(jax.random.key(seed), 10))
  grads = jax.tree.map(lambda p: jax.random.normal(next(keys), p.shape), params)
  costs = None
  if flops:
    uses = np.arange(1, len(widths) + 1)[::-1] * 4  # conv-like first layers.
    costs = granularity.weight_grad_flops(granularity.groups(params, 'unit'),
                                          uses)
  got = _fixed_alpha(params, grads, max_frozen, costs)
  want = _protocol_alpha(params, grads, max_frozen, costs)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _Deep(nn.Module):
  """12 dense layers, Dense_0 .. Dense_11: sorted, Dense_10 comes before Dense_2."""

  @nn.compact
  def __call__(self, x):
    for _ in range(12):
      x = nn.Dense(2)(x)
    return x


class Block(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = x + nn.MultiHeadDotProductAttention(num_heads=2)(nn.LayerNorm()(x))
    return x + nn.Dense(8)(nn.LayerNorm()(x))


class _Transformer(nn.Module):
  """A position param, an embedding, a block, a head: sorted, the block and
  the head come before the embedding."""

  @nn.compact
  def __call__(self, tokens):
    pos = self.param('pos', nn.initializers.zeros, (tokens.shape[-1], 8))
    x = nn.Embed(16, 8)(tokens) + pos
    return nn.Dense(16)(Block()(x))


_TRANSFORMER_ORDER = (
    '(root)', 'Embed_0', 'Block_0/LayerNorm_0',
    'Block_0/MultiHeadDotProductAttention_0/query',
    'Block_0/MultiHeadDotProductAttention_0/key',
    'Block_0/MultiHeadDotProductAttention_0/value',
    'Block_0/MultiHeadDotProductAttention_0/out', 'Block_0/LayerNorm_1',
    'Block_0/Dense_0', 'Dense_0')


def _linen(model, x):
  params = model.init(jax.random.key(0), x)['params']
  return (lambda p, x: model.apply({'params': p}, x)), params


def _frozen_layers(policy, alpha):
  names = policy.groups.module_names
  frozen = ~np.asarray(granularity.aggregate(alpha, policy.groups, 'max'),
                       bool)
  return [names[i] for i in policy.layer_order if frozen[i]]


def test_forward_order_of_twelve_layers_is_the_call_order():
  x = jnp.zeros((1, 2))
  apply_fn, params = _linen(_Deep(), x)
  names = granularity.groups(params, 'layer').module_names
  assert names[:4] == ('Dense_0', 'Dense_1', 'Dense_10', 'Dense_11')
  want = tuple(f'Dense_{i}' for i in range(12))
  assert freezing.forward_layer_order(apply_fn, params, x) == want
  policy = freezing.FreezingPolicy('freezeout', params, granularity='layer',
                                   total_steps=110, t0=0.5,
                                   apply_fn=apply_fn, example=x)
  assert [names[i] for i in policy.layer_order] == list(want)
  # Layer i stops at 55 + 5i: at step 65 Dense_0..2 are frozen, not Dense_10.
  alpha, _ = policy.check(policy.init(params), 65)
  assert _frozen_layers(policy, alpha) == ['Dense_0', 'Dense_1', 'Dense_2']


@pytest.mark.slow
def test_transformer_layers_freeze_in_forward_order():
  x = jnp.zeros((1, 5), jnp.int32)
  apply_fn, params = _linen(_Transformer(), x)
  assert (freezing.forward_layer_order(apply_fn, params, x)
          == _TRANSFORMER_ORDER)
  # FreezeOut: a prefix of the forward order stops at every step; the head
  # (last) never stops.
  policy = freezing.FreezingPolicy('freezeout', params, granularity='layer',
                                   total_steps=90, t0=0.5,
                                   apply_fn=apply_fn, example=x)
  state = policy.init(params)
  for step, n in ((44, 0), (45, 1), (55, 3), (89, 9)):
    alpha, _ = policy.check(state, step)
    assert _frozen_layers(policy, alpha) == list(_TRANSFORMER_ORDER[:n]), step
  # AutoFreeze: the position param and the embedding settle (r = 0), the
  # rest does not (r = 0.5): the embedding freezes first, the head trains.
  policy = freezing.FreezingPolicy('autofreeze', params, granularity='layer',
                                   check_every=1, apply_fn=apply_fn, example=x)
  settled = ('(root)', 'Embed_0')

  def grads(scale):
    def leaf(path, p):
      name = granularity.module_name(granularity.module_path(path))
      return jnp.full(p.shape, 1.0 if name in settled else scale)
    return jax.tree_util.tree_map_with_path(leaf, params)

  state = policy.init(params)
  state = policy.update(state, grads(1.0), params, params)
  _, state = policy.check(state, 1)
  state = policy.update(state, grads(0.5), params, params)
  alpha, state = policy.check(state, 2)
  assert _frozen_layers(policy, alpha) == list(settled)


def test_layer_order_by_names_or_indices():
  params = _layers(3)
  by_name = freezing.FreezingPolicy('freezeout', params, granularity='layer',
                                    total_steps=10,
                                    layer_order=['Dense_2', 'Dense_0', 'Dense_1'])
  assert by_name.layer_order == (2, 0, 1)
  by_index = freezing.FreezingPolicy('freezeout', params, granularity='layer',
                                     total_steps=10, layer_order=(2, 0, 1))
  assert by_index.layer_order == (2, 0, 1)


@pytest.mark.parametrize('criterion', ['autofreeze', 'freezeout'])
def test_layer_criteria_without_an_order_are_refused(criterion):
  with pytest.raises(ValueError, match=r"forward order, and none was given.*"
                     r"layer_order=.*\['Dense_0', 'Dense_1', 'Dense_2'\]"):
    freezing.FreezingPolicy(criterion, _layers(), granularity='layer',
                            total_steps=10)


@pytest.mark.parametrize('order, message', [
    (('Dense_0', 'Dense_1', 'Dense_2', 'Dense_9'), r"unknown layers \['Dense_9'\]"),
    ((0, 1, 2, 4), r'unknown layers \[4\]'),
    ((0, 1, 2, True), r'unknown layers \[True\]'),
    (('Dense_0', 0, 1, 2), r"repeated: \['Dense_0'\], missing: \['Dense_3'\]"),
    ((0, 1, 2), r"repeated: \[\], missing: \['Dense_3'\]"),
    ('Dense_0', 'a sequence of module names or group indices'),
])
def test_bad_layer_orders_are_named(order, message):
  with pytest.raises(ValueError, match=message):
    freezing.FreezingPolicy('freezeout', _layers(), granularity='layer',
                            total_steps=10, layer_order=order)


def test_a_model_the_interceptor_cannot_see_is_refused():
  params = _layers(2)

  def apply_fn(p, x):  # hand-written: no flax module is called.
    for name in ('Dense_0', 'Dense_1'):
      x = x @ p[name]['kernel'] + p[name]['bias']
    return x

  with pytest.raises(ValueError, match=r"called no flax linen module for the "
                     r"layers \['Dense_0', 'Dense_1'\].*layer_order="):
    freezing.forward_layer_order(apply_fn, params, jnp.zeros((1, 2)))
  with pytest.raises(ValueError, match='called no flax linen module'):
    freezing.FreezingPolicy('autofreeze', params, granularity='layer',
                            apply_fn=apply_fn, example=jnp.zeros((1, 2)))
  with pytest.raises(ValueError, match='apply_fn and example come together'):
    freezing.FreezingPolicy('autofreeze', params, granularity='layer',
                            apply_fn=apply_fn)
