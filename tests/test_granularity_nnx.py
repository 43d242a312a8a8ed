"""Granularity of α on flax NNX state: the same groups as its pure dict."""

from flax import linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramsel_jax.models import gpt
from paramsel_jax.select import granularity


class _NnxNet(nnx.Module):
  """An embedding, two linears with a LayerNorm between, and a conv."""

  def __init__(self, rngs: nnx.Rngs):
    self.embed = nnx.Embed(5, 4, rngs=rngs)
    self.l1 = nnx.Linear(4, 6, rngs=rngs)
    self.ln = nnx.LayerNorm(6, rngs=rngs)
    self.l2 = nnx.Linear(6, 2, rngs=rngs)
    self.conv = nnx.Conv(1, 3, (2, 2), rngs=rngs)


class _LinenNet(nn.Module):
  """`_NnxNet` in linen, with the same module names."""

  @nn.compact
  def __call__(self, tokens, image):
    x = nn.Embed(5, 4, name='embed')(tokens)
    x = nn.Dense(2, name='l2')(nn.LayerNorm(name='ln')(nn.Dense(6, name='l1')(x)))
    return x, nn.Conv(3, (2, 2), name='conv')(image)


@pytest.fixture(scope='module')
def small():
  """The NNX state and the linen params, shapes only (groups read shapes)."""
  state = nnx.state(nnx.eval_shape(lambda: _NnxNet(nnx.Rngs(0))), nnx.Param)
  linen = jax.eval_shape(_LinenNet().init, jax.random.key(0),
                         jnp.zeros((1, 3), int), jnp.zeros((1, 4, 4, 1)))
  return state, linen['params']


@pytest.fixture(scope='module')
def tiny_gpt():
  config = gpt.GPTConfig(vocab_size=11, context=8, num_layers=2, num_heads=2,
                         embed_dim=16, use_bias=True)
  return nnx.state(nnx.eval_shape(lambda: gpt.GPT(config, rngs=nnx.Rngs(0))),
                   nnx.Param)


def _scores(state: nnx.State) -> nnx.State:
  """Distinct made-up scores of the state's shapes (numpy: no compiling)."""
  leaves, treedef = jax.tree.flatten(state)
  return jax.tree.unflatten(treedef, [
      np.cos(np.arange(x.size) + 7.0 * i).reshape(x.shape).astype(np.float32)
      for i, x in enumerate(leaves)])


def _same_groups(a: granularity.Groups, b: granularity.Groups) -> None:
  assert a.module_names == b.module_names
  assert a.module_units == b.module_units
  np.testing.assert_array_equal(a.sizes, b.sizes)
  np.testing.assert_array_equal(a.modules, b.modules)
  np.testing.assert_array_equal(a.units, b.units)
  for x, y in zip(jax.tree.leaves(a.ids), jax.tree.leaves(b.ids), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize('how', granularity.GRANULARITIES)
def test_nnx_state_has_the_groups_of_its_pure_dict(small, how):
  state, _ = small
  g = granularity.groups(state, how)
  _same_groups(g, granularity.groups(nnx.to_pure_dict(state), how))
  assert g.module_names == ('conv', 'embed', 'l1', 'l2', 'ln')
  _same_groups(granularity.groups(_scores(state), how), g)  # arrays too


def test_nnx_modules_group_like_the_linen_ones(small):
  state, linen = small
  for how in ('layer', 'unit'):
    _same_groups(granularity.groups(state, how), granularity.groups(linen, how))
  layers = granularity.groups(state, 'layer')
  assert layers.sizes.tolist() == [2 * 2 * 3 + 3, 5 * 4, 4 * 6 + 6,
                                   6 * 2 + 2, 6 + 6]
  units = granularity.groups(state, 'unit')
  # The last axis: conv channels, embedding features, output neurons; the
  # LayerNorm is one unit, trained or frozen whole (issue 20).
  assert units.module_units == (3, 4, 6, 2, 1)
  assert units.module_unit_axes == (1, 1, 1, 1, 0)
  assert units.sizes.tolist()[:3] == [2 * 2 + 1] * 3
  assert (units.ids['l1']['kernel'][...][:, 5] == 3 + 4 + 5).all()


def test_module_path_of_a_raw_nnx_leaf_path_names_its_module(small):
  state, _ = small
  names = [granularity.module_name(granularity.module_path(p))
           for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  assert names == ['conv', 'conv', 'embed', 'l1', 'l1', 'l2', 'l2', 'ln', 'ln']
  leaves = [granularity.module_name(p)
            for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  assert leaves[:3] == ['conv/bias', 'conv/kernel', 'embed/embedding']
  assert [granularity.module_name(p) for p in granularity.leaf_paths(state)] == (
      leaves)


@pytest.mark.parametrize('how', ['layer', 'unit'])
def test_gpt_state_has_the_groups_of_its_pure_dict(tiny_gpt, how):
  g = granularity.groups(tiny_gpt, how)
  _same_groups(g, granularity.groups(nnx.to_pure_dict(tiny_gpt), how))
  # The attention's `value` projection is a module (a dict key), kept.
  assert 'blocks/1/attn/value' in g.module_names and 'head' in g.module_names
  assert 'blocks/1/attn/value/kernel' not in g.module_names
  assert int(g.sizes.sum()) == sum(x.size for x in jax.tree.leaves(tiny_gpt))


@pytest.mark.parametrize('model, how', [('small', 'layer'), ('small', 'unit'),
                                        ('tiny_gpt', 'unit')])
def test_top_k_groups_give_the_same_alpha_for_state_and_pure_dict(request,
                                                                  model, how):
  state = request.getfixturevalue(model)
  state = state[0] if model == 'small' else state
  pure = nnx.to_pure_dict(state)
  g_state, g_pure = (granularity.groups(state, how),
                     granularity.groups(pure, how))
  scores = _scores(state)
  k = int(g_pure.sizes.sum()) // 3
  top_k = jax.jit(granularity.top_k_groups, static_argnums=(1, 2))
  alpha = top_k(scores, k, g_state)
  want = top_k(nnx.to_pure_dict(scores), k, g_pure)
  assert isinstance(alpha, nnx.State)
  assert jax.tree.all(jax.tree.map(np.array_equal,
                                   nnx.to_pure_dict(alpha), want))
  assert 0 < sum(int(m.sum()) for m in jax.tree.leaves(alpha)) < 2 * k
  # The ranking and the greedy rule alone, with a FLOPs cost per group.
  costs = granularity.weight_grad_flops(g_state, [3] * len(g_state.module_names))
  choose = jax.jit(lambda s, g: granularity.choose_groups(
      granularity.rank(granularity.aggregate(s, g), g.sizes, costs), costs,
      0.4 * costs.sum()), static_argnums=1)
  np.testing.assert_array_equal(choose(scores, g_state),
                                choose(nnx.to_pure_dict(scores), g_pure))


def test_a_plain_leaf_named_value_is_a_name_not_a_wrapper():
  params = {'gate': {'value': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)},
            'value': jnp.zeros(4)}
  g = granularity.groups(params, 'unit')
  assert g.module_names == ('gate', '(root)')
  assert g.module_units == (2, 4) and g.sizes.tolist() == [4, 4, 1, 1, 1, 1]
  assert [granularity.module_name(p) for p in granularity.leaf_paths(params)] == [
      'gate/bias', 'gate/value', 'value']


def test_a_leaf_named_value_inside_nnx_state_keeps_its_name():
  class Gate(nnx.Module):

    def __init__(self):
      self.value = nnx.Param(jnp.zeros((3, 2)))
      self.bias = nnx.Param(jnp.zeros(2))

  g = granularity.groups(nnx.state(Gate(), nnx.Param), 'unit')
  assert g.module_names == ('(root)',) and g.sizes.tolist() == [4, 4]
  assert [granularity.module_name(p) for p in granularity.leaf_paths(
      nnx.state(Gate(), nnx.Param))] == ['bias', 'value']
