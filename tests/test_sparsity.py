"""paramsel_jax.sparsity: schedules, ERK, structures, bad input, STE, utilities, jit.

Each expected number is computed here, independently of the library (the ERK
densities, Zhu & Gupta's formula, N:M groups counted by reshaping). Training
through `sparse` (every optax optimizer, SET/RigL) is in
test_sparsity_optax.py; models users bring in test_sparsity_models.py.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax import sparsity as sp


def _normal(seed, shape):  # numpy's: no XLA program per shape.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape),
                     jnp.float32)


def _mlp(shapes, seed=0):
  """{'Dense_i': {'kernel', 'bias'}} for kernel shapes `shapes`."""
  return {f'Dense_{i}': {'kernel': _normal(seed + i, s),
                         'bias': jnp.full(s[-1], 0.5, jnp.float32)}
          for i, s in enumerate(shapes)}


def _zero_grads(params):
  return jax.tree.map(jnp.zeros_like, params)


# ------------------------------------------------------------------ schedules


def _zhu_gupta(t, target, begin, end, initial=0.0, power=3.0):
  frac = min(max((t - begin) / (end - begin), 0.0), 1.0)
  return target + (initial - target) * (1.0 - frac) ** power


def test_one_shot_periodic_and_no_update_fire_at_their_steps():
  steps = range(40)
  fired = lambda s: [t for t in steps if bool(s.is_update(t))]
  assert fired(sp.one_shot(7)) == [7]
  assert fired(sp.one_shot()) == [0]
  assert fired(sp.periodic(5, begin=3, end=20)) == [3, 8, 13, 18]
  assert fired(sp.periodic(10)) == [0, 10, 20, 30]
  assert fired(sp.no_update()) == []
  assert not sp.no_update().updates
  # Their sparsity is the target at every step (a static Python float).
  assert sp.one_shot(7).sparsity(3, 0.8) == 0.8
  assert sp.periodic(5).sparsity(123, 0.8) == 0.8
  assert sp.periodic(5, begin=3, end=20).last_step() == 18


def test_polynomial_follows_zhu_gupta_hits_target_at_end_and_is_monotone():
  begin, end, every, target, initial = 4, 34, 5, 0.9, 0.1
  s = sp.polynomial(every=every, begin=begin, end=end, initial=initial)
  got = np.array([float(s.sparsity(t, target)) for t in range(50)])
  want = np.array([_zhu_gupta(t, target, begin, end, initial)
                   for t in range(50)])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert got[end] == np.float32(target)  # exactly, at `end` and after.
  assert np.all(got[end:] == np.float32(target))
  assert np.all(got[:begin] == got[begin])  # `initial` up to `begin`.
  assert np.all(np.diff(got) >= 0)
  assert np.any(np.diff(got) > 0)
  fired = [t for t in range(50) if bool(s.is_update(t))]
  assert fired == [4, 9, 14, 19, 24, 29, 34]  # the grid, and `end`.
  # `end` off the grid still fires, and nothing after it.
  s2 = sp.polynomial(every=10, begin=0, end=25)
  assert [t for t in range(60) if bool(s2.is_update(t))] == [0, 10, 20, 25]
  # Traced steps give the same values (to float32 rounding).
  traced = jax.jit(jax.vmap(lambda t: s.sparsity(t, target)))(jnp.arange(50))
  np.testing.assert_allclose(np.asarray(traced), got, rtol=1e-6)
  assert float(traced[end]) == np.float32(target)


def _sparsity_of(masks):
  leaves = [np.asarray(m) for m in jax.tree.leaves(masks)]
  return 1 - sum(int(m.sum()) for m in leaves) / sum(m.size for m in leaves)


@pytest.mark.parametrize('schedule,fires', [
    (sp.polynomial(every=2, begin=1, end=9, initial=0.2), [1, 3, 5, 7, 9]),
    (sp.one_shot(3), [3]),
    (sp.periodic(3, begin=2, end=9), [2, 5, 8]),
    (sp.no_update(), []),
], ids=['polynomial', 'one_shot', 'periodic', 'no_update'])
def test_masks_after_training_match_the_schedule(schedule, fires):
  target, n = 0.75, 20 * 10
  params = {'w': _normal(0, (20, 10))}
  static = isinstance(schedule, sp.schedules.NoUpdate)
  pruner = (sp.static_sparse(target, 'uniform') if static
            else sp.magnitude(target, schedule))
  tx = sp.sparse(optax.sgd(1e-2), pruner)
  state = jax.jit(tx.init)(params)
  initial = np.asarray(sp.get_masks(state)['w'])
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  expected = target if static else 0.0
  for t in range(12):
    updates, state = step(params, state, {'w': _normal(100 + t, (20, 10))})
    params = optax.apply_updates(params, updates)
    if t in fires:  # the sparsity of the schedule at t, kept count rounded.
      s_t = (_zhu_gupta(t, target, 1, 9, 0.2)
             if isinstance(schedule, sp.schedules.Polynomial) else target)
      expected = 1 - round((1 - s_t) * n) / n
    mask = sp.get_masks(state)['w']
    assert _sparsity_of(mask) == pytest.approx(expected, abs=1e-9), t
    # The weights agree: the pruned ones are exactly 0.
    assert np.all(np.asarray(params['w'])[~np.asarray(mask)] == 0.0)
    assert int(state.step) == t + 1
    if static:  # the mask `init` chose, never changed.
      np.testing.assert_array_equal(mask, initial)


# ----------------------------------------------------------------------- ERK


def _erk_reference(shapes, density, power_scale=1.0):
  """ERK densities: the fewest densest leaves dense so the rest fit under 1.

  density_l = eps * (sum(shape) / prod(shape))^power_scale, eps set so that
  the kept count is density * N; leaves whose density would pass 1 are dense.
  """
  sizes = [math.prod(s) for s in shapes]
  raw = [(sum(s) / math.prod(s)) ** power_scale for s in shapes]
  by_raw = sorted(range(len(shapes)), key=lambda i: -raw[i])
  for num_dense in range(len(shapes)):
    dense = set(by_raw[:num_dense])
    rest = [i for i in range(len(shapes)) if i not in dense]
    eps = ((density * sum(sizes) - sum(sizes[i] for i in dense))
           / sum(raw[i] * sizes[i] for i in rest))
    if all(eps * raw[i] <= 1 for i in rest):
      return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
  raise AssertionError('no ERK solution')


SHAPES = [(3, 3, 3, 16), (3, 3, 16, 32), (512, 64), (64, 10), (4, 4)]


@pytest.mark.parametrize('sparsity', [0.5, 0.8, 0.95])
def test_erk_densities_match_the_formula(sparsity):
  want = _erk_reference(SHAPES, 1 - sparsity)
  got = sp.erk_densities(SHAPES, 1 - sparsity)
  np.testing.assert_allclose(got, want, rtol=1e-9)
  assert want[-1] == 1.0  # the (4, 4) leaf would pass 1: it is kept dense.
  sizes = [math.prod(s) for s in SHAPES]
  assert np.dot(got, sizes) == pytest.approx((1 - sparsity) * sum(sizes))
  # Smaller fan-in + fan-out per weight: sparser.
  assert got[2] < got[3] and got[1] < got[0]


def test_erk_densities_of_many_dense_leaves():
  # At 0.5 several leaves pass 1: they are made dense one after the other.
  shapes = [(2, 2), (3, 3), (4, 4), (200, 200), (100, 300)]
  want = _erk_reference(shapes, 0.5)
  assert want[:3] == [1.0, 1.0, 1.0]
  np.testing.assert_allclose(sp.erk_densities(shapes, 0.5), want, rtol=1e-9)


def test_erk_power_scale_zero_is_uniform():
  np.testing.assert_allclose(sp.erk_densities(SHAPES[:4], 0.3, 0.0),
                             [0.3] * 4, rtol=1e-12)
  params = {f'l{i}': {'kernel': jnp.zeros(s)} for i, s in enumerate(SHAPES[:4])}
  got = sp.leaf_sparsities(params, 0.7, 'erk', erk_power_scale=0.0)
  assert [v for v in jax.tree.leaves(got)] == pytest.approx([0.7] * 4)


def test_erk_masks_keep_the_budget_and_each_leaf_its_density():
  sparsity = 0.8
  params = _mlp(SHAPES)
  tx = sp.sparse(optax.sgd(0.0), sp.magnitude(sparsity, distribution='erk'))
  state = jax.jit(tx.init)(params)
  _, state = jax.jit(tx.update)(_zero_grads(params), state, params)
  masks = jax.tree.map(np.asarray, sp.get_masks(state))
  want = _erk_reference(SHAPES, 1 - sparsity)
  total = 0
  for i, shape in enumerate(SHAPES):
    kept = int(masks[f'Dense_{i}']['kernel'].sum())
    assert abs(kept - want[i] * math.prod(shape)) <= 0.5 + 1e-9, shape
    assert bool(masks[f'Dense_{i}']['bias'].all())  # biases stay dense.
    total += kept
  n = sum(math.prod(s) for s in SHAPES)
  assert abs(total - (1 - sparsity) * n) <= len(SHAPES) / 2


def test_global_magnitude_uses_one_threshold_over_all_leaves():
  params = {'a': {'kernel': 10 * _normal(0, (8, 6)), 'bias': jnp.ones(6)},
            'b': {'kernel': 0.1 * _normal(1, (6, 4))}}
  tx = sp.sparse(optax.sgd(0.0), sp.magnitude(0.5, distribution='global'))
  state = jax.jit(tx.init)(params)
  _, state = jax.jit(tx.update)(_zero_grads(params), state, params)
  masks = jax.tree.map(np.asarray, sp.get_masks(state))
  assert masks['a']['bias'].all()
  kept = [np.abs(np.asarray(params[n]['kernel']))[masks[n]['kernel']]
          for n in 'ab']
  dropped = [np.abs(np.asarray(params[n]['kernel']))[~masks[n]['kernel']]
             for n in 'ab']
  assert sum(k.size for k in kept) == round(0.5 * (48 + 24))
  assert min(k.min() for k in kept if k.size) >= max(
      d.max() for d in dropped if d.size)
  assert masks['b']['kernel'].mean() < 0.2 < masks['a']['kernel'].mean()


# ---------------------------------------------------------------- structures


def _groups_of_m(mask, m):
  """The mask's runs of m along the fan-in (second-to-last) axis: [..., m]."""
  moved = np.moveaxis(np.asarray(mask), -2, -1)
  return moved.reshape(moved.shape[:-1] + (moved.shape[-1] // m, m))


NM_CASES = [(1, 2, (8, 6)), (2, 4, (8, 5)), (2, 4, (3, 3, 8, 4)),
            (1, 4, (2, 12, 3)), (3, 8, (16, 2)), (4, 4, (4, 3))]


@pytest.mark.parametrize('n,m,shape', NM_CASES)
def test_n_by_m_mask_has_n_in_every_group_of_m(n, m, shape):
  scores = _normal(3, shape)
  mask = sp.n_by_m(n, m).mask(scores, None)
  groups = _groups_of_m(mask, m)
  assert np.all(groups.sum(-1) == n)
  # The kept ones are the group's largest scores.
  g_scores = _groups_of_m(scores, m)
  kept_min = np.where(groups, g_scores, np.inf).min(-1)
  dropped_max = np.where(groups, -np.inf, g_scores).max(-1)
  assert np.all(kept_min >= dropped_max)


@pytest.mark.parametrize('n,m,shape', [
    (2, 4, (8, 6)), pytest.param(1, 2, (3, 3, 4, 5), marks=pytest.mark.slow)])
def test_n_by_m_through_training_keeps_n_of_m(n, m, shape):
  params = {'w': _normal(0, shape), 'b': jnp.ones(shape[-1])}
  tx = sp.sparse(optax.adam(1e-2), sp.magnitude(0.0, sp.periodic(2),
                                                structure=sp.n_by_m(n, m)))
  state = jax.jit(tx.init)(params)
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  for t in range(5):
    grads = {'w': _normal(10 + t, shape), 'b': jnp.ones(shape[-1])}
    updates, state = step(params, state, grads)
    params = optax.apply_updates(params, updates)
    assert np.all(_groups_of_m(params['w'] != 0, m).sum(-1) == n), t
    assert np.all(_groups_of_m(sp.get_masks(state)['w'], m).sum(-1) == n)
  # The structure sets the sparsity: 1 - N / M, whatever was passed.
  assert sp.magnitude(None, structure=sp.n_by_m(n, m)).sparsity == 1 - n / m
  # A static sparse N:M mask is already N of M at init.
  tx = sp.sparse(optax.adam(1e-2), sp.static_sparse(
      0.0, 'uniform', structure=sp.n_by_m(n, m)))
  state = jax.jit(tx.init)(params)
  assert np.all(_groups_of_m(sp.get_masks(state)['w'], m).sum(-1) == n)


def test_block_mask_keeps_whole_blocks_at_every_tap():
  scores = _normal(1, (3, 3, 8, 6))
  mask = np.asarray(sp.block(2, 3).mask(scores, 0.5))
  blocks = mask.reshape(3, 3, 4, 2, 2, 3)
  per_block = blocks.sum(axis=(-3, -1))
  assert set(np.unique(per_block)) <= {0, 6}  # all or nothing.
  assert per_block.astype(bool).sum() == round(0.5 * 3 * 3 * 4 * 2)


def test_channel_mask_keeps_whole_output_units():
  scores = jnp.abs(_normal(2, (3, 3, 4, 10)))
  mask = np.asarray(sp.channel().mask(scores, 0.3))
  per_unit = mask.reshape(-1, 10)
  assert np.all(per_unit.all(0) | ~per_unit.any(0))
  kept = per_unit.all(0)
  assert kept.sum() == 7
  means = np.asarray(scores).reshape(-1, 10).mean(0)
  assert means[kept].min() >= means[~kept].max()


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize('bad', [-0.1, 1.0, 1.5, 'x'])
@pytest.mark.parametrize('make', [
    lambda s: sp.magnitude(s),
    lambda s: sp.rigl(s, every=10, end=100),
    lambda s: sp.set_sparse(s, every=10, end=100),
    lambda s: sp.static_sparse(s),
    lambda s: sp.ste('magnitude', s),
    lambda s: sp.magnitude(0.5, distribution={'Dense_0/*': s}),
], ids=['magnitude', 'rigl', 'set', 'static', 'ste', 'mapping'])
def test_sparsity_outside_0_1_is_refused(make, bad):
  with pytest.raises(ValueError, match=rf'{repr(bad)}.*\[0, 1\)'):
    make(bad)


def _raises(match, fn):
  with pytest.raises(ValueError, match=match) as info:
    fn()
  return str(info.value)


def test_bad_structures_schedules_and_names_are_refused():
  _raises(r'N=3 > M=2', lambda: sp.n_by_m(3, 2))
  _raises(r'n=0', lambda: sp.n_by_m(0, 2))
  _raises(r'end=5 is not after begin=10',
          lambda: sp.polynomial(every=1, begin=10, end=5))
  _raises(r'end=3 is not after begin=3', lambda: sp.periodic(1, 3, 3))
  _raises(r'every=0', lambda: sp.periodic(0))
  _raises(r"'nope'", lambda: sp.magnitude(0.5, distribution='nope'))
  _raises(r"nope", lambda: sp.Pruner(score='nope'))
  _raises(r'global.*block', lambda: sp.magnitude(
      0.5, distribution='global', structure=sp.block(2, 2)))
  _raises(r'global.*n_by_m', lambda: sp.magnitude(
      0.5, distribution='global', structure=sp.n_by_m(2, 4)))
  _raises(r'periodic\(every, begin, end\)', lambda: sp.Pruner(
      sparsity=0.5, init='random', regrow='random', schedule=sp.periodic(10)))
  _raises(r'periodic', lambda: sp.Pruner(
      sparsity=0.5, init='random', regrow='gradient',
      schedule=sp.polynomial(every=1, begin=0, end=10)))
  _raises(r'no_update\(\) with init=None never prunes.*not 0.9',
          lambda: sp.magnitude(0.9, sp.no_update()))
  _raises(r'drop_fraction=1.5', lambda: sp.rigl(0.5, 10, 100,
                                                drop_fraction=1.5))
  _raises(r'pruner=', lambda: sp.sparse(optax.sgd(1.0), 'rigl'))


def test_leaf_problems_are_refused_at_init_naming_the_leaf():
  params = {'Dense_0': {'kernel': jnp.ones((6, 8)), 'bias': jnp.ones(8)}}
  msg = _raises(r'block \(4, 4\) does not divide Dense_0/kernel of shape '
                r'\(6, 8\)', lambda: sp.sparse(optax.sgd(1.0), sp.magnitude(
                    0.5, structure=sp.block(4, 4))).init(params))
  assert 'accepted' in msg
  _raises(r'N:M sparsity \(2:4\) on Dense_0/kernel of shape \(6, 8\)',
          lambda: sp.sparse(optax.sgd(1.0), sp.magnitude(
              0.5, structure=sp.n_by_m(2, 4))).init(params))
  _raises(r'selects no leaf.*Dense_0/bias', lambda: sp.sparse(
      optax.sgd(1.0), sp.magnitude(0.5, leaf_filter=lambda n, x: False)
  ).init(params))
  _raises(r'update needs params', lambda: sp.sparse(
      optax.sgd(1.0), sp.magnitude(0.5)).update(
          params, sp.sparse(optax.sgd(1.0), sp.magnitude(0.5)).init(params)))


# ----------------------------------------------------------------------- STE


def test_ste_forward_is_masked_gradient_is_dense_and_masks_follow_weights():
  params = {'w': jnp.array([[4., -1.], [0.5, 3.], [-2., 0.1]]),
            'b': jnp.zeros(2)}
  tx = sp.sparse(optax.sgd(1.0), sp.ste('magnitude', 0.5))
  state = jax.jit(tx.init)(params)
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))

  def loss(p, x):
    q = sp.ste_params(p, state)
    return jnp.sum((x @ q['w'] + q['b']) ** 2)

  _, state = step(params, state, _zero_grads(params))
  want_mask = np.array([[1, 0], [0, 1], [1, 0]], bool)  # the 3 largest |w|.
  np.testing.assert_array_equal(sp.get_masks(state)['w'], want_mask)
  forward = sp.ste_params(params, state)['w']
  np.testing.assert_array_equal(forward, np.where(want_mask, params['w'], 0.0))
  # The gradient is the masked model's, and reaches every dense weight.
  x = jnp.array([[1., 2., 3.]])
  grads = jax.grad(loss)(params, x)
  masked_params = dict(params, w=forward)
  plain = jax.grad(lambda p: jnp.sum((x @ p['w'] + p['b']) ** 2))(masked_params)
  np.testing.assert_allclose(grads['w'], plain['w'], rtol=1e-6)
  assert np.all(np.asarray(grads['w']) != 0)
  # The dense weights train, pruned ones included (not zeroed).
  updates, state = step(params, state, grads)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new['w'], params['w'] - grads['w'], rtol=1e-6)
  # Weights changed: the next update re-chooses among all of them.
  moved = dict(params, w=jnp.array([[0.1, 5.], [0.5, 3.], [-2., 0.2]]))
  _, state = step(moved, state, _zero_grads(moved))
  np.testing.assert_array_equal(sp.get_masks(state)['w'],
                                np.array([[0, 1], [0, 1], [1, 0]], bool))


# ----------------------------------------------------------------- utilities


def test_summarize_format_intersect_export():
  params = {'a': {'kernel': jnp.array([[1., 0., 2.], [0., 0., 3.]]),
                  'bias': jnp.array([0., 1., 0.])},
            'b': {'kernel': jnp.zeros((3, 1))}}
  rows = sp.summarize(params)
  got = {r.name: (r.shape, r.size, r.nonzero) for r in rows}
  assert got == {'a/bias': ((3,), 3, 1), 'a/kernel': ((2, 3), 6, 3),
                 'b/kernel': ((3, 1), 3, 0)}
  assert [r.sparsity for r in rows] == pytest.approx([2 / 3, 0.5, 1.0])
  table = sp.format_summary(rows).splitlines()
  assert table[0].split() == ['leaf', 'shape', 'size', 'nonzero', 'sparsity']
  assert table[2].split() == ['a/kernel', '(2,', '3)', '6', '3', '50.00%']
  assert table[-1].split() == ['total', '12', '4', '66.67%']
  masks = jax.tree.map(lambda x: jnp.ones(x.shape, bool), params)
  masks['a']['kernel'] = jnp.array([[1, 1, 0], [1, 0, 1]], bool)
  other = jax.tree.map(lambda x: jnp.ones(x.shape, bool), params)
  other['a']['kernel'] = jnp.array([[0, 1, 1], [1, 1, 1]], bool)
  other['b']['kernel'] = jnp.array([[1], [0], [1]], bool)
  both = sp.intersect(masks, other)
  np.testing.assert_array_equal(both['a']['kernel'], [[0, 1, 0], [1, 0, 1]])
  np.testing.assert_array_equal(both['b']['kernel'][:, 0], [1, 0, 1])
  assert bool(both['a']['bias'].all())
  assert [r.nonzero for r in sp.summarize(params, both)] == [3, 3, 2]
  dense = jax.tree.map(lambda x: x + 10.0, params)
  pruned, counts = sp.export(dense, both)
  np.testing.assert_array_equal(pruned['a']['kernel'],
                                [[0., 10., 0.], [10., 0., 13.]])
  np.testing.assert_array_equal(pruned['b']['kernel'][:, 0], [10., 0., 10.])
  assert counts == {'a/bias': 3, 'a/kernel': 3, 'b/kernel': 2}
  with pytest.raises(ValueError):
    sp.intersect(masks, {'a': masks['a']})
  with pytest.raises(ValueError):
    sp.intersect()


def test_export_and_apply_masks_read_the_optimizer_state():
  params = {'w': jnp.arange(1., 9.).reshape(2, 4)}
  tx = optax.chain(optax.clip(1.0), sp.sparse(optax.sgd(0.0),
                                              sp.magnitude(0.25)))
  state = jax.jit(tx.init)(params)
  _, state = tx.update(_zero_grads(params), state, params)
  pruned, counts = sp.export(params, state)
  assert counts == {'w': 6}
  np.testing.assert_array_equal(pruned['w'][0], [0., 0., 3., 4.])
  np.testing.assert_array_equal(sp.apply_masks(params, state)['w'],
                                pruned['w'])


# ----------------------------------------------------------------------- jit


def test_update_compiles_once_across_mask_updates():
  traces = []
  params = _mlp([(12, 8), (8, 4)])
  tx = sp.sparse(optax.sgd(1e-2), sp.magnitude(
      0.9, sp.polynomial(every=2, begin=0, end=8)))
  state = jax.jit(tx.init)(params)

  @jax.jit
  def step(params, state, grads):
    traces.append(1)  # runs only when jax traces the step.
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  seen = set()
  for t in range(10):
    grads = jax.tree.map(lambda p, t=t: _normal(t, p.shape), params)
    params, state = step(params, state, grads)
    seen.add(tuple(np.asarray(m).tobytes()
                   for m in jax.tree.leaves(sp.get_masks(state))))
  assert len(seen) == 5  # the masks changed at steps 0, 2, 4, 6 and 8...
  assert len(traces) == 1  # ...and the step was traced once.
