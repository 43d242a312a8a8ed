# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for the size regularizer, the supernet and derivation."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramsel_jax import models
from paramsel_jax.structure import derive
from paramsel_jax.structure import regularizer
from paramsel_jax.structure import relax
from paramsel_jax.structure import presets
from paramsel_jax.structure import space as space_lib
from paramsel_jax.structure import supernet

MLP = presets.mlp_space((28, 28, 1), 10, widths=(16, 64, 300), depth=3,
                        activations=('relu', 'tanh'))
CONV = presets.conv_space((32, 32, 3), 10, conv_widths=((4, 8), (6, 8), (6, 8)),
                          pool_types=('max',), dense_widths=(5, 12),
                          dense_depth=1, activations=('relu', 'gelu'))
SPACES = {'mlp': MLP, 'conv': CONV}
# Small inputs keep the compiled conv programs small.
SMALL_CONV = presets.conv_space((10, 10, 2), 3, conv_widths=((3, 5), (4, 5)),
                                pools=(True, False), optional=(False, True),
                                dense_widths=(4, 6), dense_depth=2,
                                activations=('relu', 'tanh'))


def _count_params(model, input_shape):
  # Shapes only (no compilation): the same count as models.count_params.
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, *input_shape)))['params']
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def _random_indices(space, seed):
  rng = np.random.default_rng(seed)
  return {n: int(rng.integers(len(c))) for n, c in space.choices()}


def test_expected_params_of_lenet300_by_hand():
  space = presets.mlp_space((28, 28, 1), 10, widths=(100, 300), depth=3,
                            activations=('relu',))
  onehot = space.one_hot({'dense0/width': 1, 'dense1/width': 0,
                          'dense1/present': 0, 'dense2/width': 1,
                          'dense2/present': 1})
  hand = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
  assert hand == 266_610
  assert float(regularizer.expected_params(space, onehot)) == hand
  hand_flops = 2 * (784 * 300 + 300 * 100 + 100 * 10)
  assert float(regularizer.expected_flops(space, onehot)) == hand_flops


def test_expected_params_of_a_conv_net_by_hand():
  onehot = CONV.one_hot({
      'conv0/activation': 0, 'conv0/width': 1, 'conv0/kernel': 1,  # 8, k5
      'conv1/activation': 0, 'conv1/width': 0, 'conv1/kernel': 0,  # 6, k3
      'conv2/activation': 0, 'conv2/width': 1, 'conv2/kernel': 0,
      'conv2/present': 1,  # skipped
      'dense0/activation': 0, 'dense0/width': 1})  # 12
  hand = ((5 * 5 * 3 * 8 + 8) + (3 * 3 * 8 * 6 + 6)
          + (8 * 8 * 6 * 12 + 12) + (12 * 10 + 10))
  assert float(regularizer.expected_params(CONV, onehot)) == hand
  hand_flops = 2 * (32 * 32 * 25 * 3 * 8 + 16 * 16 * 9 * 8 * 6
                    + 8 * 8 * 6 * 12 + 12 * 10)
  assert float(regularizer.expected_flops(CONV, onehot)) == hand_flops


@pytest.mark.parametrize('name', sorted(SPACES))
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_derived_model_param_count_matches(name, seed):
  space = SPACES[name]
  indices = _random_indices(space, seed)
  arch = derive.from_indices(space, indices)
  count = _count_params(derive.DiscreteNet(arch), space.input_shape)
  assert count == arch.num_params()
  assert float(regularizer.expected_params(space, space.one_hot(indices))
               ) == count


def test_expected_params_is_the_exact_expectation():
  space = presets.mlp_space((4, 4, 1), 3, widths=(2, 5), depth=3,
                            activations=('relu',))
  logits = relax.init_logits(space, jax.random.key(0), scale=1.0)
  probs = relax.probabilities(logits)
  choices = space.choices()
  total = 0.0
  for pick in itertools.product(*[range(len(c)) for _, c in choices]):
    indices = dict(zip([n for n, _ in choices], pick))
    weight = math.prod(float(probs[n][i]) for n, i in indices.items())
    total += weight * derive.from_indices(space, indices).num_params()
  np.testing.assert_allclose(float(regularizer.expected_params(space, probs)),
                             total, rtol=1e-5)


def test_regularizer_modes_and_gradients():
  logits = relax.init_logits(MLP)
  r, m = regularizer.structure_regularizer(
      MLP, logits, regularizer.RegularizerConfig(size_weight=1.0))
  big = regularizer.expected_params(MLP, regularizer.max_structure(MLP))
  np.testing.assert_allclose(float(r), float(m['expected_params'] / big),
                             rtol=1e-6)
  below = regularizer.RegularizerConfig(size_weight=1.0, target_params=10**9)
  assert float(regularizer.structure_regularizer(MLP, logits, below)[0]) == 0
  above = regularizer.RegularizerConfig(size_weight=1.0, target_params=1000)
  r_above = regularizer.structure_regularizer(MLP, logits, above)[0]
  np.testing.assert_allclose(
      float(r_above), np.log(float(m['expected_params']) / 1000), rtol=1e-5)
  # The size term pushes every width logit towards narrower candidates.
  g = jax.grad(lambda l: regularizer.structure_regularizer(
      MLP, l, regularizer.RegularizerConfig(size_weight=1.0))[0])(logits)
  assert float(g['dense0/width'][0]) < 0 < float(g['dense0/width'][-1])
  # The entropy term is minimised by discrete distributions.
  ent = regularizer.RegularizerConfig(entropy_weight=1.0)
  sharp = {k: 20.0 * jax.nn.one_hot(0, len(v)) for k, v in logits.items()}
  assert (float(regularizer.structure_regularizer(MLP, sharp, ent)[0])
          < 1e-6 < float(regularizer.structure_regularizer(MLP, logits, ent)[0]))


@pytest.mark.parametrize('name', ['mlp', 'conv'])
def test_supernet_at_one_hot_equals_the_derived_net(name):
  space = {'mlp': MLP, 'conv': SMALL_CONV}[name]
  net, params = supernet.init_supernet(space, jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (3, *space.input_shape))
  apply = jax.jit(net.apply)
  for seed in (3, 4):
    indices = _random_indices(space, seed)
    arch = derive.from_indices(space, indices)
    small = derive.inherit_params(arch, params)
    expected = apply({'params': params}, x, space.one_hot(indices))
    got = jax.jit(derive.DiscreteNet(arch).apply)({'params': small}, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_derive_picks_the_argmax_and_serialises():
  logits = relax.init_logits(MLP)
  target = _random_indices(MLP, 7)
  logits = {k: v.at[target[k]].set(1.0) for k, v in logits.items()}
  arch, indices = derive.derive_architecture(MLP, logits)
  assert indices == target
  assert arch == derive.from_indices(MLP, target)
  text = arch.to_json()
  assert derive.Architecture.from_json(text) == arch
  assert '"num_params": %d' % arch.num_params() in text


def test_skipped_layers_are_left_out():
  indices = {n: 0 for n, _ in MLP.choices()}
  indices['dense1/present'] = 1
  arch = derive.from_indices(MLP, indices)
  assert arch.describe() == 'dense16-relu > dense16-relu > fc10'
  shapes = jax.eval_shape(derive.DiscreteNet(arch).init, jax.random.key(0),
                          jnp.zeros((1, 28, 28, 1)))['params']
  assert sorted(shapes) == ['dense0', 'dense2', 'head']


def test_count_params_agrees_with_models():
  arch = derive.from_indices(MLP, _random_indices(MLP, 0))
  model = derive.DiscreteNet(arch)
  params = models.init_params(model, jax.random.key(0), MLP.input_shape)
  assert models.count_params(params) == arch.num_params()
