"""Tests of the selectors: exact counts, hand-computed picks, tie-breaking."""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax.select import selectors
from paramsel_jax.select import stats as stats_lib


def _count(mask):
  return sum(int(np.sum(np.asarray(m))) for m in jax.tree.leaves(mask))


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    scores=st.lists(st.sampled_from([0.0, 1.0, -1.0, 2.5, float('nan')]),
                    min_size=1, max_size=30),
    data=st.data())
def test_top_k_mask_has_exactly_k_ones(scores, data):
  k = data.draw(st.integers(1, len(scores)))
  half = len(scores) // 2
  tree = {'a': jnp.array(scores[:half], jnp.float32),
          'b': jnp.array(scores[half:], jnp.float32)}
  mask = selectors.top_k_mask(tree, k)
  assert _count(mask) == k
  flat = np.concatenate([np.asarray(mask['a']), np.asarray(mask['b'])])
  s = np.nan_to_num(np.array(scores), nan=-np.inf)
  # Every chosen score >= every unchosen one; among equals, lower index first.
  if 0 < k < len(scores):
    assert s[flat].min() >= s[~flat].max()
    threshold = s[flat].min()
    ties = np.flatnonzero(s == threshold)
    chosen_ties = ties[flat[ties]]
    assert list(chosen_ties) == list(ties[:len(chosen_ties)])


def test_top_k_mask_ties_go_to_lower_flat_index():
  mask = selectors.top_k_mask({'a': jnp.ones((2, 2)), 'b': jnp.ones(3)}, 5)
  assert np.asarray(mask['a']).all() and np.asarray(mask['b']).tolist() == [
      True, False, False]


def test_topgrad_picks_largest_summed_abs_gradient():
  # Hand-made: gradients over a window of 3 steps for 4 coordinates.
  grads = np.array([[0.1, -5.0, 0.0, 1.0],
                    [0.1, 4.0, 0.0, -1.0],
                    [0.1, 0.0, 9.0, -1.0]], np.float32)
  # Σ|g| = [0.3, 9.0, 9.0, 3.0]; k=2 → coordinates 1 and 2 (tie at 9: both).
  params = {'w': jnp.array([0.5, 0.1, -2.0, 1.0])}
  s = stats_lib.init_stats(params)
  for g in grads:
    s = stats_lib.update_stats(s, {'w': jnp.asarray(g)}, params, params)
  ctx = selectors.SelectionContext(params, s, (), jax.random.key(0))
  topgrad = selectors.get_selector('topgrad')
  alpha = selectors.select(topgrad, 'alpha', ctx, 2)
  assert np.asarray(alpha['w']).tolist() == [False, True, True, False]
  alpha3 = selectors.select(topgrad, 'alpha', ctx, 3)
  assert np.asarray(alpha3['w']).tolist() == [False, True, True, True]
  # β keeps the largest |w|: -2.0 and 1.0.
  beta = selectors.select(topgrad, 'beta', ctx, 2)
  assert np.asarray(beta['w']).tolist() == [False, False, True, True]


def test_random_selector_exact_count_and_seeded():
  params = {'a': jnp.zeros((30, 20)), 'b': jnp.zeros(50)}
  s = stats_lib.init_stats(params)
  rand = selectors.get_selector('random')
  masks = [selectors.select(rand, 'alpha', selectors.SelectionContext(
      params, s, (), jax.random.key(seed)), 123) for seed in (0, 0, 1)]
  assert [_count(m) for m in masks] == [123, 123, 123]
  assert all((np.asarray(x) == np.asarray(y)).all()
             for x, y in zip(jax.tree.leaves(masks[0]), jax.tree.leaves(masks[1])))
  assert any((np.asarray(x) != np.asarray(y)).any()
             for x, y in zip(jax.tree.leaves(masks[0]), jax.tree.leaves(masks[2])))


def test_random_selector_is_roughly_uniform():
  params = {'w': jnp.zeros(10)}
  s = stats_lib.init_stats(params)
  rand = selectors.get_selector('random')
  pick = jax.jit(jax.vmap(lambda key: selectors.select(
      rand, 'beta', selectors.SelectionContext(params, s, (), key), 3)['w']))
  freq = np.asarray(pick(jax.random.split(jax.random.key(0), 4000))).mean(0)
  np.testing.assert_allclose(freq, 0.3, atol=0.04)  # ~5 standard errors.


@pytest.mark.parametrize('value, want', [
    (0.1, 27), (0.5, 134), (5, 5), (267, 267), (1, 1), (1.0, 267),
    (np.int64(3), 3), (np.float32(0.5), 134)])
def test_resolve_count(value, want):
  assert selectors.resolve_count(value, 267) == want


@pytest.mark.parametrize('value, message', [
    (268, 'k=268 is out of range'), (-1, 'k=-1 is out of range'),
    (0, 'k=0 is out of range'), (2.5, 'k=2.5 is out of range'),
    (5.0, r'k=5.0 is out of range \(for a count of 5, give the integer 5\)'),
    (1e-7, 'k=1e-07 of N = 267 rounds to 0 coordinates'),
    (float('nan'), 'k=nan is out of range'), (float('inf'), 'k=inf'),
    ('x', "k='x' is not a number"), (True, 'k=True is not a number')])
def test_resolve_count_rejects_with_the_rule(value, message):
  with pytest.raises(ValueError, match=message + r'.*accepted: an integer count'
                     r' in \[1, 267\].*or a fraction 0 < k <= 1 of N'):
    selectors.resolve_count(value, 267)


def test_top_k_mask_takes_fractions_and_rejects_k_beyond_n():
  scores = {'a': jnp.arange(6.0), 'b': jnp.arange(4.0)}
  assert _count(selectors.top_k_mask(scores, 0.5)) == 5
  assert _count(selectors.top_k_mask(scores, 1.0)) == 10
  with pytest.raises(ValueError, match=r'k=11 is out of range.*\[1, 10\]'):
    selectors.top_k_mask(scores, 11)
  with pytest.raises(ValueError, match='k=1.5 is out of range'):
    selectors.top_k_mask(scores, 1.5)


@pytest.mark.parametrize('which, k, message', [
    ('alpha', 0, r'k=0 is out of range.*\[1, 4\]'),
    ('beta', 0, r'l=0 is out of range.*\[1, 4\]'),
    ('alpha', 0.1, r'k=0.1 of N = 4 rounds to 0 coordinates'),
    ('beta', 5, r'l=5 is out of range.*\[1, 4\]')])
def test_select_refuses_a_count_of_no_coordinate(which, k, message):
  """0 is refused everywhere: `select` and `top_k_mask` never return an
  all-False mask."""
  params = {'w': jnp.array([0.5, -3.0, 1.0, 2.0])}
  ctx = selectors.SelectionContext(params, stats_lib.init_stats(params), (),
                                   jax.random.key(0))
  with pytest.raises(ValueError, match=message):
    selectors.select(selectors.get_selector('random'), which, ctx, k)
  with pytest.raises(ValueError, match=message.replace('l=', 'k=')):
    selectors.top_k_mask(params, k)


def test_select_refuses_more_than_within_holds():
  """k beyond `within` would pick coordinates outside it: refused."""
  params = {'w': jnp.array([0.5, -3.0, 1.0, 2.0])}
  ctx = selectors.SelectionContext(params, stats_lib.init_stats(params), (),
                                   jax.random.key(0))
  within = {'w': jnp.array([True, False, True, False])}
  magnitude = selectors.get_selector('magnitude')
  assert selectors.select(magnitude, 'beta', ctx, 2, within)['w'].tolist() == [
      True, False, True, False]
  with pytest.raises(ValueError, match=r'l=3 \(3 coordinates\) is more than '
                     r'`within` holds \(2\); accepted: at most 2'):
    selectors.select(magnitude, 'beta', ctx, 3, within)


@pytest.mark.parametrize('name', sorted(set(selectors.SELECTORS) - {
    'random', 'magnitude'}))
def test_selector_on_empty_statistics_refuses_alpha(name):
  """No update_stats call: the scores would be zeros and the mask arbitrary."""
  params = {'w': jnp.arange(1.0, 5.0)}
  ctx = selectors.SelectionContext(params, stats_lib.init_stats(params),
                                   optax.sgd(0.1).init(params),
                                   jax.random.key(0))
  with pytest.raises(ValueError, match=f"selector '{name}' cannot score"):
    selectors.select(selectors.get_selector(name), 'alpha', ctx, 2)


def test_fisher_without_second_moment_or_statistics_refuses():
  params = {'w': jnp.arange(1.0, 5.0)}
  fisher = selectors.get_selector('fisher')
  empty = stats_lib.init_stats(params)
  sgd = selectors.SelectionContext(params, empty, optax.sgd(0.1).init(params),
                                   jax.random.key(0))
  with pytest.raises(ValueError, match="fisher.*running mean of g²"):
    selectors.select(fisher, 'beta', sgd, 2)
  # Adam holds ν: fisher needs no statistics then.
  tx = optax.adam(0.1)
  _, state = tx.update({'w': jnp.array([1.0, 0.0, 3.0, 0.0])},
                       tx.init(params), params)
  adam = sgd._replace(opt_state=state)
  beta = selectors.select(fisher, 'beta', adam, 2)
  # w² ⊙ ν with ν = (1 - b2) g²: [1e-3, 0, 8.1e-2, 0] → coordinates 2 and 0.
  assert np.asarray(beta['w']).tolist() == [True, False, True, False]
  # With statistics, fisher under SGD reads E[g²] over the window.
  stats = stats_lib.update_stats(empty, {'w': jnp.array([0.0, 0.0, 1.0, 2.0])},
                                 params, params)
  beta = selectors.select(fisher, 'beta', sgd._replace(stats=stats), 2)
  assert np.asarray(beta['w']).tolist() == [False, False, True, True]


def test_beta_of_magnitude_rules_needs_no_statistics():
  params = {'w': jnp.array([0.5, -3.0, 1.0])}
  ctx = selectors.SelectionContext(params, stats_lib.init_stats(params), (),
                                   jax.random.key(0))
  for name in ('topgrad', 'apf', 'magnitude'):
    beta = selectors.select(selectors.get_selector(name), 'beta', ctx, 1)
    assert np.asarray(beta['w']).tolist() == [False, True, False], name


def test_unknown_selector_lists_names():
  with pytest.raises(ValueError, match=r"Unknown selector 'nope'; accepted: .*random.*topgrad"):
    selectors.get_selector('nope')


# --- The comparison selectors and the paper's psgld selectors. ---


def _context_from_steps(grads, params_seq, opt_state=(), eta0_stats=None, alpha=None):
  """Statistics of a hand-made trajectory: grads[t] at params_seq[t] → [t+1]."""
  s = stats_lib.init_stats({'w': params_seq[0]})
  for t, g in enumerate(grads):
    s = stats_lib.update_stats(s, {'w': jnp.asarray(g)}, {'w': params_seq[t]},
                               {'w': params_seq[t + 1]})
  return selectors.SelectionContext({'w': params_seq[-1]}, s, opt_state,
                                    jax.random.key(0), eta0_stats, alpha)


def _picks(name, which, ctx, k):
  return np.flatnonzero(np.asarray(
      selectors.select(selectors.get_selector(name), which, ctx, k)['w'])).tolist()


def _noisy_trajectory(seed=0, steps=200):
  """Coordinate 0: zero-mean noisy gradient, w jitters around 1.0 (converged).
  Coordinate 1: steady gradient 0.5 + the same noise, w drifts down (not
  converged). Coordinate 2: a tiny but steady gradient, 0.001 ± 0.0005: it
  barely moves, but always the same way (not converged either)."""
  rng = np.random.default_rng(seed)
  noise = rng.normal(0, 1.0, (steps, 3))
  grads = noise * np.array([1.0, 1.0, 0.0005]) + np.array([0.0, 0.5, 0.001])
  w = [jnp.array([1.0, 1.0, 1.0])]
  for g in grads:
    w.append(w[-1] - 0.01 * jnp.asarray(g, jnp.float32))
  return grads.astype(np.float32), w


@pytest.mark.parametrize('name', ['psgld', 'psgld_tstat'])
def test_psgld_alpha_keeps_unconverged_coordinate(name):
  # A coordinate with a zero-mean noisy gradient is judged converged.
  grads, w = _noisy_trajectory()
  ctx = _context_from_steps(grads, w)
  assert _picks(name, 'alpha', ctx, 2) == [1, 2]
  # The zero-mean-gradient coordinate is judged the most converged of all.
  scores = np.asarray(selectors.get_selector(name).alpha_scores(ctx)['w'])
  assert scores[0] < scores[1] and scores[0] < scores[2]


def test_psgld_precond_ranks_by_preconditioned_drift_over_spread():
  # Same spread of w for all three; G ⊙ |mean g| = [0.1, 2, 0.5] with G = 1
  # (no optimizer state): coordinate 1, then 2.
  w = [jnp.array([1.0, 1.0, 1.0]) + 0.1 * (t % 2) for t in range(11)]
  grads = np.array([[0.1, 2.0, 0.5]] * 10, np.float32)
  ctx = _context_from_steps(grads, w)
  assert _picks('psgld_precond', 'alpha', ctx, 2) == [1, 2]
  # With pSGLD's G = [100, 1, 1] coordinate 0 (100 * 0.1 = 10) comes first.
  from paramsel_jax.optim import langevin
  state = langevin.scale_by_psgld_preconditioner().init({'w': w[0]})
  state = state._replace(preconditioner={'w': jnp.array([100.0, 1.0, 1.0])})
  assert _picks('psgld_precond', 'alpha', ctx._replace(opt_state=state), 1) == [0]


def test_posterior_snr_beta_and_frozen_coordinates():
  # η0 window: coordinate 0 jitters a lot, 1 a little, 2 not trained in η1.
  rng = np.random.default_rng(1)
  w0 = [jnp.array([0.5, 0.3, 0.4]) + jnp.asarray(rng.normal(0, [0.5, 0.01, 0.05]), jnp.float32)
        for _ in range(50)]
  eta0 = _context_from_steps(np.zeros((49, 3), np.float32), w0).stats
  alpha = {'w': jnp.array([True, True, False])}
  w1 = [jnp.array([0.5, 0.3, 0.4]) + jnp.asarray(rng.normal(0, [0.5, 0.01, 0.0]), jnp.float32)
        for _ in range(50)]
  ctx = _context_from_steps(np.zeros((49, 3), np.float32), w1, eta0_stats=eta0, alpha=alpha)
  mean, std = selectors.posterior_mean_std(ctx)
  # The frozen coordinate's spread comes from η0 (it did not move in η1).
  np.testing.assert_allclose(std['w'][2], np.sqrt(stats_lib.param_variance(eta0)['w'][2]))
  assert float(std['w'][2]) > 0.01
  assert float(mean['w'][2]) == float(w1[-1][2])
  # SNR: coordinate 1 (0.3 / 0.01) > 2 (0.4 / 0.05) > 0 (0.5 / 0.5).
  assert _picks('psgld', 'beta', ctx, 1) == [1]
  assert _picks('psgld', 'beta', ctx, 2) == [1, 2]


def test_posterior_snr_ranks_never_moving_coordinates_last():
  # Coordinate 0 never moves (zero gradient on a dead input): std 0, |w| = 5.
  rng = np.random.default_rng(3)
  w = [jnp.array([5.0, 0.3, 0.2]) + jnp.asarray(rng.normal(0, [0.0, 0.01, 0.1]), jnp.float32)
       for _ in range(30)]
  ctx = _context_from_steps(np.zeros((29, 3), np.float32), w)
  scores = np.asarray(selectors.posterior_snr(ctx)['w'])
  assert scores[0] == 0.0 and np.all(np.isfinite(scores))
  assert _picks('psgld', 'beta', ctx, 2) == [1, 2]


def test_magnitude_saliency_fisher_apf_on_hand_examples():
  # w = [3, -1, 0.5]; mean g = [0.01, 2, 1] → |w g| = [0.03, 2, 0.5].
  w = jnp.array([3.0, -1.0, 0.5])
  grads = np.array([[0.01, 2.0, 1.0]] * 4, np.float32)
  ctx = _context_from_steps(grads, [w] * 5)
  assert _picks('magnitude', 'alpha', ctx, 1) == [0]
  assert _picks('saliency', 'alpha', ctx, 1) == [1]
  # fisher without an optimizer second moment: E[g²] = [1e-4, 4, 1] →
  # w² E[g²] = [9e-4, 4, 0.25].
  assert _picks('fisher', 'beta', ctx, 2) == [1, 2]
  # fisher with Adam's ν: ν = [1, 0, 0] makes coordinate 0 win.
  params = {'w': w}
  adam_state = optax.adam(0.1).init(params)
  adam_state = (adam_state[0]._replace(nu={'w': jnp.array([1.0, 0.0, 0.0])}),) + adam_state[1:]
  ctx_adam = ctx._replace(opt_state=adam_state)
  assert _picks('fisher', 'alpha', ctx_adam, 1) == [0]
  # apf: coordinate 0 moves steadily, 1 oscillates, 2 moves steadily but less.
  traj = [jnp.array([0.1 * t, 0.1 * (t % 2), 0.01 * t]) for t in range(40)]
  ctx_apf = _context_from_steps(np.zeros((39, 3), np.float32), traj)
  scores = np.asarray(selectors.get_selector('apf').alpha_scores(ctx_apf)['w'])
  np.testing.assert_allclose(scores[[0, 2]], 1.0, rtol=1e-5)
  assert scores[1] < 0.1
  assert _picks('apf', 'beta', ctx_apf, 1) == [0]


@pytest.mark.parametrize('name', sorted(selectors.SELECTORS))
@pytest.mark.parametrize('which', ['alpha', 'beta'])
def test_every_selector_gives_exactly_k(name, which):
  grads, w = _noisy_trajectory(seed=2, steps=30)
  ctx = _context_from_steps(grads, w, opt_state=optax.adam(0.1).init({'w': w[0]}))
  for k in (1, 2, 3):
    assert _count(selectors.select(selectors.get_selector(name), which, ctx, k)) == k


@pytest.mark.parametrize('name', sorted(selectors.SELECTORS))
def test_selector_reads_only_the_statistics_it_declares(name):
  """Scores from the declared groups alone equal scores from all of them.

  An SGD state has no second moment, so fisher and psgld_precond read the
  window's statistics (not Adam's ν) and the check covers them.
  """
  rng = np.random.default_rng(0)
  params0 = {'a': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
             'b': jnp.asarray(rng.normal(size=5), jnp.float32)}
  selector = selectors.get_selector(name)
  full = only = stats_lib.init_stats(params0)
  params = params0
  for _ in range(6):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape),
                                               jnp.float32), params)
    new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    full = stats_lib.update_stats(full, grads, params, new)
    only = stats_lib.update_stats(only, grads, params, new,
                                  groups=selector.stats)
    params = new
  key = jax.random.key(3)
  for which in ('alpha', 'beta'):
    scores = lambda s: getattr(selector, f'{which}_scores')(
        selectors.SelectionContext(params, s, optax.sgd(0.1).init(params),
                                   key, eta0_stats=s))
    jax.tree.map(np.testing.assert_array_equal, scores(only), scores(full))
  # And the check has teeth: with no statistics, a selector that declares
  # some scores differently.
  if selector.stats:
    none = stats_lib.update_stats(stats_lib.init_stats(params0), grads,
                                  params0, params, groups=frozenset())
    ctx = lambda s: selectors.SelectionContext(
        params, s, optax.sgd(0.1).init(params), key, eta0_stats=s)
    differs = [not all(np.array_equal(x, y) for x, y in zip(
        jax.tree.leaves(getattr(selector, f'{w}_scores')(ctx(none))),
        jax.tree.leaves(getattr(selector, f'{w}_scores')(ctx(full)))))
               for w in ('alpha', 'beta')]
    assert any(differs)


def test_unknown_statistics_group_is_refused():
  with pytest.raises(ValueError, match="Unknown statistics \\['hessian'\\]"):
    selectors.Selector(alpha_scores=None, beta_scores=None,
                       stats=frozenset({'hessian'}))
