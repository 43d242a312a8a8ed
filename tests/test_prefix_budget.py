"""The backward-cost budget (`prefix_budget`): a cut's input gradients count.

Brute force over every subset of small random instances (≤ 10 groups over
≤ 4 layers) checks the chooser: within the budget always; with equal group
costs the best set of all; never worse than any cut's greedy set; with no
input-gradient costs its first cut is the per-group FLOPs choice; with large
ones it trains an upper suffix. Then `budget='backward'` through the
protocol on a tiny MLP, and the refusals before any training.
"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax.protocol import protocol
from paramsel_jax.select import granularity
from paramsel_jax.select import prefix_budget as pb


def _instance(rng, equal_costs=False, zero_input=False):
  """Random scores, sizes and `BackwardCosts`: every layer has a group."""
  # A few shapes only: eager jax compiles each op once per shape.
  num_layers = int(rng.choice([2, 4]))
  num_groups = int(rng.choice([6, 10]))
  position = np.concatenate([np.arange(num_layers), rng.integers(
      0, num_layers, num_groups - num_layers)]).astype(np.int32)
  rng.shuffle(position)
  sizes = rng.integers(1, 6, num_groups)
  weight = (np.full(num_groups, 4.0) if equal_costs
            else rng.integers(1, 20, num_groups).astype(float))
  inputs = (np.zeros(num_layers) if zero_input
            else rng.integers(0, 15, num_layers).astype(float))
  costs = pb.BackwardCosts(weight, position, inputs)
  scores = rng.uniform(0.0, 1.0, num_groups).astype(np.float32)
  budget = float(rng.uniform(0.05, 1.0) * costs.dense)
  return scores, sizes, costs, budget


def _value(chosen, scores, sizes):
  return float(np.sum(np.where(chosen, scores * sizes, 0.0)))


def _subsets(n):
  for bits in itertools.product([False, True], repeat=n):
    yield np.asarray(bits)


def _lowest(chosen, costs):
  return int(np.min(costs.position[chosen]))


def _fits_some(costs, budget):
  alone = costs.weight + costs.above[costs.position]
  return budget >= alone.min()


@pytest.mark.parametrize('seed', range(8))
def test_within_budget_and_best_over_cuts(seed):
  _check_within_budget_and_best_over_cuts(seed)


def _check_within_budget_and_best_over_cuts(seed):
  rng = np.random.default_rng(seed)
  scores, sizes, costs, budget = _instance(rng)
  chosen = np.asarray(pb.choose_prefix(scores, sizes, costs, budget))
  assert chosen.any()
  if not _fits_some(costs, budget):  # the one cheapest group, over budget.
    assert chosen.sum() == 1
    return
  assert pb.cost_of(chosen, costs) <= budget + 1e-6
  rank_by = granularity.rank(scores, sizes, costs.weight)
  per_cut = np.asarray(pb.candidates(rank_by, costs, budget))
  for candidate in per_cut:  # every cut's greedy set is within budget too.
    assert pb.cost_of(candidate, costs) <= budget + 1e-6
  if not per_cut.any():  # each cut's best-ranked group is too dear alone:
    assert chosen.sum() == 1  # the cheapest group (it fits).
    return
  best = max(_value(c, scores, sizes) for c in per_cut if c.any())
  assert _value(chosen, scores, sizes) == pytest.approx(best, rel=1e-5)


@pytest.mark.parametrize('seed', range(8))
def test_equal_costs_give_the_best_set_of_all(seed):
  """With equal w the greedy is optimal within a cut, so the best over cuts
  is the brute-force best of every subset within the budget (and the best
  of its own cut)."""
  _check_equal_costs_give_the_best_set_of_all(seed)


@pytest.mark.slow
def test_many_random_instances():
  for seed in range(8, 200):
    _check_within_budget_and_best_over_cuts(seed)
    _check_equal_costs_give_the_best_set_of_all(seed)


def _check_equal_costs_give_the_best_set_of_all(seed):
  rng = np.random.default_rng(100 + seed)
  scores, sizes, costs, budget = _instance(rng, equal_costs=True)
  if not _fits_some(costs, budget):
    budget = float(costs.weight[0] + costs.above.max())
  chosen = np.asarray(pb.choose_prefix(scores, sizes, costs, budget))
  feasible = [s for s in _subsets(len(scores))
              if s.any() and pb.cost_of(s, costs) <= budget + 1e-9]
  best = max(_value(s, scores, sizes) for s in feasible)
  cut = _lowest(chosen, costs)
  best_cut = max(_value(s, scores, sizes) for s in feasible
                 if _lowest(s, costs) == cut)
  got = _value(chosen, scores, sizes)
  assert pb.cost_of(chosen, costs) <= budget + 1e-6
  assert got == pytest.approx(best, rel=1e-5)
  assert got == pytest.approx(best_cut, rel=1e-5)


@pytest.mark.parametrize('seed', range(8))
def test_no_input_costs_first_cut_is_the_per_group_choice(seed):
  """i ≡ 0: the first cut's set is the per-group FLOPs choice (same greedy
  rule, 'at_most'); the chosen set scores at least as much."""
  rng = np.random.default_rng(200 + seed)
  scores, sizes, costs, budget = _instance(rng, zero_input=True)
  rank_by = granularity.rank(scores, sizes, costs.weight)
  per_group = np.asarray(granularity.choose_groups(
      rank_by, costs.weight, budget, 'at_most'))
  first_cut = np.asarray(pb.candidates(rank_by, costs, budget))[0]
  np.testing.assert_array_equal(first_cut, per_group)
  chosen = np.asarray(pb.choose_prefix(scores, sizes, costs, budget))
  if per_group.any():
    assert (_value(chosen, scores, sizes)
            >= _value(per_group, scores, sizes) - 1e-5)


def test_one_layer_equals_the_per_group_choice():
  rng = np.random.default_rng(7)
  scores = rng.uniform(size=8).astype(np.float32)
  sizes = rng.integers(1, 5, 8)
  weight = rng.integers(1, 9, 8).astype(float)
  costs = pb.BackwardCosts(weight, np.zeros(8, np.int32), np.array([3.0]))
  budget = 0.5 * costs.dense
  per_group = granularity.choose_groups(
      granularity.rank(scores, sizes, weight), weight, budget, 'at_most')
  np.testing.assert_array_equal(pb.choose_prefix(scores, sizes, costs, budget),
                                per_group)


def test_large_input_costs_train_an_upper_suffix():
  """Layers 0..3, two groups each; the lower layers score best, so the
  per-group choice scatters over them, but their input gradients cost more
  than the budget allows: the choice is the whole top two layers."""
  position = np.repeat(np.arange(4), 2).astype(np.int32)
  scores = np.array([9., 8., 7., 6., 2., 2., 1., 1.], np.float32)
  sizes = np.ones(8)
  costs = pb.BackwardCosts(np.ones(8), position, np.full(4, 100.0))
  budget = 110.0  # one input gradient and the top 4 weight gradients.
  per_group = np.asarray(granularity.choose_groups(
      granularity.rank(scores, sizes, costs.weight), costs.weight, budget,
      'at_most'))
  assert per_group[:2].all()  # ignoring i, layer 0 is taken.
  chosen = np.asarray(pb.choose_prefix(scores, sizes, costs, budget))
  np.testing.assert_array_equal(chosen, position >= 2)
  assert pb.cost_of(chosen, costs) == 104.0


def test_budget_below_every_group_takes_the_cheapest():
  costs = pb.BackwardCosts(np.array([5., 1.]), np.array([0, 1], np.int32),
                           np.array([0., 9.]))
  chosen = pb.choose_prefix(np.array([1., 1.]), np.ones(2), costs, 0.5)
  assert chosen.tolist() == [False, True]


def test_choose_is_jittable_with_a_traced_budget():
  rng = np.random.default_rng(3)
  scores, sizes, costs, budget = _instance(rng)
  jitted = jax.jit(lambda s, b: pb.choose_prefix(s, sizes, costs, b))
  np.testing.assert_array_equal(jitted(scores, budget),
                                pb.choose_prefix(scores, sizes, costs, budget))


def test_bad_layer_order_is_refused():
  g = granularity.groups({'a': {'w': jnp.zeros(2)}, 'b': {'w': jnp.zeros(2)}},
                         'layer')
  with pytest.raises(ValueError, match=r"missing: \['b'\]"):
    pb.layer_positions(g, ['a', 'c'])
  with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
    pb.layer_positions(g, ['a', 'a', 'b'])


# --- budget='backward' through the protocol. ---

PCONFIG = protocol.ProtocolConfig(eta0=20, eta1=20, k=0.3, l=0.5, window=10,
                                  batch_size=64, chunk_size=20,
                                  eval_batch_size=100, granularity='layer',
                                  budget='backward')


@pytest.fixture(scope='module')
def task(make_task):
  return make_task((16, 12))  # Dense_0 (64 -> 16), Dense_1, Dense_2 (-> 4).


def test_the_mlp_costs(task):
  """w = 2·(fan-in + 1)·fan-out per layer, i = 2·kernel above the first."""
  from paramsel_jax.train import runner as runner_lib
  runner = runner_lib.Runner(task, optax.adam(1e-2), PCONFIG)
  costs = runner.backward_costs()
  assert runner.layer_order() == ('Dense_0', 'Dense_1', 'Dense_2')
  assert costs.weight.tolist() == [2 * 65 * 16, 2 * 17 * 12, 2 * 13 * 4]
  assert costs.input.tolist() == [2 * 64 * 16, 2 * 16 * 12, 2 * 12 * 4]
  assert costs.dense == 2080 + 408 + 104 + 384 + 96


def _forward_flops(task, batch_size):
  """XLA's FLOPs of the loss alone on one minibatch (the step's forward)."""
  params = task.init_fn(jax.random.key(0))
  batch = (task.train_images[:batch_size], task.train_labels[:batch_size])
  fn = jax.jit(lambda p: task.loss_fn(p, batch, jax.random.key(0))[0])
  cost = fn.lower(params).compile().cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)['flops']


@pytest.mark.slow
def test_protocol_trains_an_upper_suffix_within_the_share(task):
  """Layer granularity, k = 30% of the dense backward pass: training
  Dense_0 alone would cost 2080 + 480 of 3072 FLOPs per example, so α is
  Dense_1 and Dense_2 (608): the frozen set is the forward prefix Dense_0.
  XLA's FLOPs of the active step beyond its forward are at most 30% of the
  dense step's (the optimizer's update is in both and follows α too)."""
  run = protocol.run_protocol(task, optax.adam(1e-2), PCONFIG, ['topgrad'],
                              [0], log=lambda _: None)
  cell = run['cells'][0]
  trained = {name.split('/')[0] for name, layer in cell['layers'].items()
             if layer['alpha'][0] == layer['size']}
  partial = [name for name, layer in cell['layers'].items()
             if 0 < layer['alpha'][0] < layer['size']]
  assert trained == {'Dense_1', 'Dense_2'} and not partial
  phases = run['timing']['phases']
  dense = phases['eta0']['flops_per_step']
  active = phases['eta1 [topgrad, k=0.3]']['flops_per_step']
  forward = _forward_flops(task, PCONFIG.batch_size)
  assert active - forward <= 0.3 * (dense - forward)


def _plain_task(make_task):
  """An ImageTask whose apply_fn calls no flax module (layer order untraceable)."""
  base = make_task((8,))
  def init(key):
    k1, k2 = jax.random.split(key)
    return {'a': {'kernel': 0.1 * jax.random.normal(k1, (64, 8)),
                  'bias': jnp.zeros(8)},
            'b': {'kernel': 0.1 * jax.random.normal(k2, (8, 4)),
                  'bias': jnp.zeros(4)}}
  def apply(p, x):
    h = jax.nn.relu(x.reshape(x.shape[0], -1) @ p['a']['kernel']
                    + p['a']['bias'])
    return h @ p['b']['kernel'] + p['b']['bias']
  return protocol.ImageTask(init, apply, base.train_images, base.train_labels,
                            base.test_images, base.test_labels)


def test_missing_layer_order_is_refused_before_training(make_task):
  logs = []
  with pytest.raises(ValueError, match='layer_order='):
    protocol.run_protocol(_plain_task(make_task), optax.adam(1e-2),
                          dataclasses.replace(PCONFIG, step='masked'),
                          ['topgrad'], [0], log=logs.append)
  assert not any('eta0' in line for line in logs), logs


@pytest.mark.parametrize('change, message', [
    (dict(budget='backwards'),
     "budget='backwards'; accepted: params, flops, backward"),
    (dict(budget='backward', granularity='element'),
     "budget='backward' with granularity='element'"),
    (dict(budget='backward', k=5), "k=5 with budget='backward'"),
])
def test_bad_backward_budget_settings_are_refused(change, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(PCONFIG, **change)


def test_online_freezing_refuses_the_backward_budget():
  from paramsel_jax.protocol import online
  with pytest.raises(ValueError, match="budget='backward'; accepted here"):
    online.OnlineConfig(criterion='fixed', budget='backward')
