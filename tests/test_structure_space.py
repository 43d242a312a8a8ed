# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for paramsel_jax.structure.space and config validation."""

import dataclasses

import pytest

from paramsel_jax.structure import pipeline
from paramsel_jax.structure import regularizer
from paramsel_jax.structure import search
from paramsel_jax.structure import space as space_lib
from paramsel_jax.structure.space import LayerSpace
from paramsel_jax.structure.space import SearchSpace

MNIST = (28, 28, 1)


def test_mlp_space_choices_and_round_trip():
  space = space_lib.mlp_space(MNIST, 10, widths=(16, 32), depth=3)
  names = [n for n, _ in space.choices()]
  assert names == [
      'dense0/activation', 'dense0/width',
      'dense1/activation', 'dense1/width', 'dense1/present',
      'dense2/activation', 'dense2/width', 'dense2/present']
  assert space.num_structures() == (6 * 2) ** 3 * 2 * 2
  assert SearchSpace.from_dict(space.to_dict()) == space
  hash(space)  # Frozen: usable as a static jit argument.


def test_conv_space_choices_and_shapes():
  space = space_lib.conv_space((32, 32, 3), 10)
  kinds = {n.split('/')[1] for n, _ in space.choices()}
  assert kinds == {'activation', 'width', 'kernel', 'present'}
  assert space.spatial_shapes() == [(32, 32), (16, 16), (8, 8), (8, 8)]
  assert space.flat_spatial() == 64
  assert SearchSpace.from_dict(space.to_dict()) == space


def test_single_candidates_are_not_choices():
  space = space_lib.mlp_space(MNIST, 10, widths=(8,), depth=1,
                              activations=('relu',))
  assert space.choices() == []
  assert space.num_structures() == 1


@pytest.mark.parametrize('kwargs, match', [
    (dict(widths=()), r'widths is empty'),
    (dict(activations=()), r'activations is empty'),
    (dict(activations=('relu', 'swish')),
     r"unknown activation 'swish'; accepted: relu, tanh, sigmoid, elu, gelu"),
    (dict(widths=(32, 16)), r'widths \(32, 16\).*strictly increasing'),
    (dict(widths=(0, 4)), r'widths \(0, 4\)'),
    (dict(depth=0), r'depth=0'),
])
def test_bad_mlp_space(kwargs, match):
  with pytest.raises(ValueError, match=match):
    space_lib.mlp_space(MNIST, 10, **kwargs)


@pytest.mark.parametrize('layers, match', [
    ((LayerSpace('conv', (4,), kernel_sizes=()),), r'kernel_sizes is empty'),
    ((LayerSpace('conv', (4,), kernel_sizes=(2, 3)),),
     r'kernel_sizes \(2, 3\).*odd'),
    ((LayerSpace('dense', (4,), optional=True),), r'optional=True needs'),
    ((LayerSpace('dense', (4,)), LayerSpace('dense', (2, 8), optional=True)),
     r'widest candidate equals this one \(8\)'),
    ((LayerSpace('dense', (4,)), LayerSpace('conv', (4,), kernel_sizes=(3,))),
     r'conv layers must come before dense'),
    ((LayerSpace('pool', (4,)),), r"unknown kind 'pool'"),
    ((LayerSpace('dense', (4,), pool=True),), r'kernel_sizes/pool are for conv'),
    ((), r'layers is empty'),
])
def test_bad_layers(layers, match):
  with pytest.raises(ValueError, match=match):
    SearchSpace(MNIST, 10, layers).validate()


def test_bad_structure_indices():
  space = space_lib.mlp_space(MNIST, 10, widths=(4, 8), depth=1)
  with pytest.raises(ValueError, match='lacks choice'):
    space.one_hot({'dense0/width': 0})
  with pytest.raises(ValueError, match=r'index 2 out of range'):
    space.one_hot({'dense0/width': 2, 'dense0/activation': 0})


# ------------------------------------------------------ experiment configs


def _config(**kwargs):
  return pipeline.ExperimentConfig(**kwargs)


@pytest.mark.parametrize('config, match', [
    (_config(search=search.SearchConfig(tau0=1.0, tau_min=2.0)),
     r'tau_min=2.0 > tau0=1.0'),
    (_config(search=search.SearchConfig(schedule='step')),
     r"schedule 'step'; accepted: exponential, linear, constant"),
    (_config(mlp_widths=()), r'widths is empty'),
    (_config(activations=('relu', 'softplus')),
     r"unknown activation 'softplus'"),
    (_config(space='conv', kernel_sizes=()), r'kernel_sizes is empty'),
    (_config(space='conv', conv_widths=((4,), ()), conv_pools=(True, True),
             conv_optional=(False, False)), r'layer 1 \(conv\): widths is empty'),
    (_config(space='conv', conv_widths=((4,),)),
     r'conv_widths, pools, optional have lengths 1, 3, 3'),
    (_config(space='rnn'), r"Unknown space 'rnn'; accepted: mlp, conv"),
    (_config(seeds=()), r'seeds is empty'),
    (_config(seeds=(0, 0)), r'seeds=\(0, 0\)'),
    (_config(random_samples=-1), r'random_samples=-1'),
    (_config(reference_model='vgg'), r"Unknown reference_model 'vgg'"),
    (_config(input_sigmas=(-0.1,)), r'noise sigma -0.1'),
    (_config(search=search.SearchConfig(warmup_steps=-1)),
     r'warmup_steps=-1'),
    (_config(search=search.SearchConfig(arch_lr=0.0)), r'arch_lr=0.0'),
    (_config(search=search.SearchConfig(
        regularizer=regularizer.RegularizerConfig(size_weight=-1.0))),
     r'size_weight=-1.0'),
    (_config(search=search.SearchConfig(
        regularizer=regularizer.RegularizerConfig(target_params=0))),
     r'target_params=0'),
    (_config(search=search.SearchConfig(conv_impl='fft')),
     r"Unknown conv impl 'fft'"),
])
def test_bad_experiment_config(config, match):
  with pytest.raises(ValueError, match=match):
    config.validate()


def test_random_budget_rule():
  config = _config()
  s, r = config.search, config.retrain
  expected = round((s.warmup_steps + 2 * s.search_steps + r.steps) / r.steps)
  assert config.num_random() == max(1, expected)
  assert dataclasses.replace(config, random_samples=0).num_random() == 0
