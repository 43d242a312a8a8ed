"""Granularity of α: groups, per-group scores, whole groups to a budget."""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramsel_jax import granularity
from paramsel_jax import models


def _lenet5():
  model = models.create_model('lenet5')
  params = models.init_params(model, jax.random.key(0), (28, 28, 1))
  return model, params


def test_units_of_conv_and_dense_layers_are_output_channels_and_neurons():
  _, params = _lenet5()
  g = granularity.groups(params, 'unit')
  assert g.module_names == ('Conv2D_0', 'Conv2D_1', 'Dense_0', 'Dense_1')
  assert g.module_units == (20, 50, 500, 10)
  # A conv unit: 5·5·c_in fan-in weights and a bias.
  assert g.sizes[0] == 5 * 5 * 1 + 1 and g.sizes[20] == 5 * 5 * 20 + 1
  assert g.sizes[70] == 800 + 1 and g.sizes[-1] == 500 + 1
  assert g.sizes.sum() == models.count_params(params)
  ids = g.ids['Conv2D_1']['kernel']
  assert (ids[..., 7] == 20 + 7).all()
  layers = granularity.groups(params, 'layer')
  assert layers.num_groups == 4 and layers.sizes.tolist() == [520, 25050, 400500, 5010]


def test_weight_gradient_flops_per_unit_equal_a_hand_count():
  model, params = _lenet5()
  uses = granularity.module_uses(lambda p, x: model.apply({'params': p}, x),
                                 params, jnp.zeros((1, 28, 28, 1)))
  assert uses == [24 * 24, 8 * 8, 1, 1]
  g = granularity.groups(params, 'unit')
  flops = granularity.weight_grad_flops(g, uses)
  assert flops[0] == 2 * 576 * 26 and flops[20] == 2 * 64 * 501
  assert flops[70] == 2 * 801


def test_aggregations_on_a_hand_example():
  params = {'a': {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros(2)}}
  scores = {'a': {'kernel': jnp.array([[1.0, 4.0], [3.0, 0.0]]),
                  'bias': jnp.array([2.0, 2.0])}}
  g = granularity.groups(params, 'unit')  # unit 0: 1, 3, 2; unit 1: 4, 0, 2.
  got = {how: granularity.aggregate(scores, g, how).tolist()
         for how in granularity.AGGREGATIONS}
  assert got['mean'] == [2.0, 2.0] and got['sum'] == [6.0, 6.0]
  assert got['max'] == [3.0, 4.0]
  np.testing.assert_allclose(got['rms'], [np.sqrt(14 / 3), np.sqrt(20 / 3)])


def test_choose_groups_takes_the_prefix_nearest_to_the_budget():
  scores, sizes = jnp.array([5.0, 4.0, 3.0, 2.0]), jnp.array([10.0, 10.0, 10.0, 10.0])
  pick = lambda budget: granularity.choose_groups(scores * sizes, sizes, budget).tolist()
  assert pick(14) == [True, False, False, False]  # 10 is nearer than 20.
  assert pick(15) == [True, True, False, False]  # a tie goes to the larger.
  assert pick(1) == [True, False, False, False]  # at least one group.
  assert pick(1000) == [True] * 4


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(widths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
                  frac=st.floats(0.05, 1.0), seed=st.integers(0, 100))
def test_top_k_groups_meets_k_to_within_half_a_group(widths, frac, seed):
  params, n_in = {}, 3
  for i, w in enumerate(widths):
    params[f'Dense_{i}'] = {'kernel': jnp.zeros((n_in, w)), 'bias': jnp.zeros(w)}
    n_in = w
  g = granularity.groups(params, 'unit')
  n = int(g.sizes.sum())
  k = max(1, round(frac * n))
  scores = jax.tree.map(lambda p: jax.random.uniform(jax.random.key(seed), p.shape),
                        params)
  mask = granularity.top_k_groups(scores, k, g)
  chosen = sum(int(np.sum(np.asarray(m))) for m in jax.tree.leaves(mask))
  assert abs(chosen - k) <= g.sizes.max() / 2 + 1e-9 or chosen == g.sizes[0:1].sum()
  # Whole units only: every unit is all in or all out.
  for leaf_ids, leaf_mask in zip(jax.tree.leaves(g.ids), jax.tree.leaves(mask)):
    for unit in np.unique(leaf_ids):
      assert len(set(np.asarray(leaf_mask)[leaf_ids == unit].tolist())) == 1


def test_a_flops_budget_prefers_cheap_groups():
  """Equal scores per parameter: the FLOPs budget (10% of 4.6 MFLOP per
  example) fills with dense units, which cost 64-576x fewer FLOPs per
  parameter than conv units: all of Dense_1, then ~280 of Dense_0's 500."""
  model, params = _lenet5()
  g = granularity.groups(params, 'unit')
  uses = granularity.module_uses(lambda p, x: model.apply({'params': p}, x),
                                 params, jnp.zeros((1, 28, 28, 1)))
  flops = granularity.weight_grad_flops(g, uses)
  ones = jax.tree.map(jnp.ones_like, params)
  mask = granularity.top_k_groups(ones, 0, g, costs=flops,
                                  budget=0.1 * flops.sum())
  assert not np.asarray(mask['Conv2D_0']['kernel']).any()
  assert not np.asarray(mask['Conv2D_1']['kernel']).any()
  assert np.asarray(mask['Dense_1']['kernel']).all()
  units = np.asarray(mask['Dense_0']['bias']).sum()
  spent = units * flops[70] + 10 * flops[-1]
  assert abs(spent - 0.1 * flops.sum()) <= flops[70] / 2


def test_unit_axis_mismatch_is_named():
  params = {'odd': {'kernel': jnp.zeros((3, 4)), 'scale': jnp.zeros(5)}}
  with pytest.raises(ValueError, match="module 'odd' has leaves of shapes"):
    granularity.groups(params, 'unit')
  assert granularity.groups(params, 'layer').num_groups == 1
