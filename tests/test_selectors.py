"""Tests of the selectors: exact counts, hand-computed picks, tie-breaking."""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramsel_jax import selectors
from paramsel_jax import stats as stats_lib


def _count(mask):
  return sum(int(np.sum(np.asarray(m))) for m in jax.tree.leaves(mask))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    scores=st.lists(st.sampled_from([0.0, 1.0, -1.0, 2.5, float('nan')]),
                    min_size=1, max_size=30),
    data=st.data())
def test_top_k_mask_has_exactly_k_ones(scores, data):
  k = data.draw(st.integers(0, len(scores)))
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


@pytest.mark.parametrize('value, want', [(0.1, 27), (0.5, 134), (5, 5), (0, 0),
                                         (267, 267), (1, 1), (5.0, 5)])
def test_resolve_count(value, want):
  assert selectors.resolve_count(value, 267) == want


@pytest.mark.parametrize('value', [268, -1, 2.5, float('nan'), 'x', True])
def test_resolve_count_rejects(value):
  with pytest.raises(ValueError, match='k='):
    selectors.resolve_count(value, 267)


def test_unknown_selector_lists_names():
  with pytest.raises(ValueError, match=r"Unknown selector 'nope'; accepted: .*random.*topgrad"):
    selectors.get_selector('nope')
