# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for paramsel_jax.structure.space and config validation."""

import dataclasses
import math

import numpy as np
import pytest

from paramsel_jax.structure import pipeline
from paramsel_jax.structure import regularizer
from paramsel_jax.structure import search
from paramsel_jax.structure import presets
from paramsel_jax.structure import space as space_lib
from paramsel_jax.structure import training
from paramsel_jax.structure.space import LayerSpace
from paramsel_jax.structure.space import SearchSpace

MNIST = (28, 28, 1)


def test_mlp_space_choices_and_round_trip():
  space = presets.mlp_space(MNIST, 10, widths=(16, 32), depth=3)
  names = [n for n, _ in space.choices()]
  assert names == [
      'dense0/activation', 'dense0/width',
      'dense1/activation', 'dense1/width', 'dense1/present',
      'dense2/activation', 'dense2/width', 'dense2/present']
  assert space.num_structures() == (6 * 2) ** 3 * 2 * 2
  assert SearchSpace.from_dict(space.to_dict()) == space
  hash(space)  # Frozen: usable as a static jit argument.


def test_conv_space_choices_and_shapes():
  space = presets.conv_space((32, 32, 3), 10)
  kinds = {n.split('/')[1] for n, _ in space.choices()}
  assert kinds == {'activation', 'width', 'kernel', 'present', 'pool'}
  assert [n for n, _ in space.choices() if n.endswith('/pool')] == [
      'conv0/pool', 'conv1/pool']  # conv2 has no pool.
  assert space.spatial_shapes() == [(32, 32), (16, 16), (8, 8), (8, 8),
                                    (8, 8)]
  assert space.flat_spatial() == 64
  assert SearchSpace.from_dict(space.to_dict()) == space


def test_single_candidates_are_not_choices():
  space = presets.mlp_space(MNIST, 10, widths=(8,), depth=1,
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
    presets.mlp_space(MNIST, 10, **kwargs)


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
    ((LayerSpace('conv', (4,), kernel_sizes=(3,), pool=True,
                 pool_types=('max', 'min')),),
     r"pool_types \('max', 'min'\) are invalid; accepted: distinct names "
     r'from max, avg'),
    ((LayerSpace('conv', (4,), kernel_sizes=(3,), pool_types=()),),
     r'pool_types \(\) are invalid'),
    ((), r'layers is empty'),
])
def test_bad_layers(layers, match):
  with pytest.raises(ValueError, match=match):
    SearchSpace(MNIST, 10, layers).validate()


def test_bad_structure_indices():
  space = presets.mlp_space(MNIST, 10, widths=(4, 8), depth=1)
  with pytest.raises(ValueError, match='lacks choice'):
    space.one_hot({'dense0/width': 0})
  with pytest.raises(ValueError, match=r'index 2 out of range'):
    space.one_hot({'dense0/width': 2, 'dense0/activation': 0})


# ---------------------------------------------------------------- configs
#
# Every config checks its fields when it is made; each case below was
# accepted at construction before (and the ones marked "hole" even by the
# old `validate()`).

_INF, _NAN = math.inf, math.nan
_REG = regularizer.RegularizerConfig


@pytest.mark.parametrize('cls, kwargs, match', [
    # Floats must be finite (holes: inf learning rates, tau0=inf, ...).
    (search.SearchConfig, dict(weight_lr=_INF),
     r'SearchConfig.weight_lr=inf; accepted: a finite float > 0\.'),
    (search.SearchConfig, dict(arch_lr=_INF), r'SearchConfig.arch_lr=inf'),
    (search.SearchConfig, dict(tau0=_INF),
     r'SearchConfig.tau0=inf; accepted: a finite float > 0\.'),
    (search.SearchConfig, dict(tau_min=_NAN), r'SearchConfig.tau_min=nan'),
    (search.SearchConfig, dict(arch_b1=_NAN),
     r'SearchConfig.arch_b1=nan; accepted: a finite float >= 0 and < 1\.'),
    (search.SearchConfig, dict(arch_b1=1.0), r'SearchConfig.arch_b1=1.0'),
    (search.SearchConfig, dict(arch_lr=0.0), r'SearchConfig.arch_lr=0.0'),
    (training.TrainConfig, dict(learning_rate=_INF),
     r'TrainConfig.learning_rate=inf; accepted: a finite float > 0\.'),
    (_REG, dict(size_weight=_INF), r'RegularizerConfig.size_weight=inf'),
    (_REG, dict(flops_weight=_NAN), r'RegularizerConfig.flops_weight=nan'),
    (_REG, dict(entropy_weight=-_INF),
     r'RegularizerConfig.entropy_weight=-inf; accepted: a finite float\.'),
    (_REG, dict(size_weight=-1.0),
     r'RegularizerConfig.size_weight=-1.0; accepted: a finite float >= 0\.'),
    (_REG, dict(size_weight=True), r'RegularizerConfig.size_weight=True'),
    # Ints must be ints: not floats, not bools (holes).
    (search.SearchConfig, dict(search_steps=10.0),
     r'SearchConfig.search_steps=10.0; accepted: an int >= 1\.'),
    (search.SearchConfig, dict(batch_size=True),
     r'SearchConfig.batch_size=True; accepted: an int >= 1\.'),
    (search.SearchConfig, dict(warmup_steps=-1),
     r'SearchConfig.warmup_steps=-1; accepted: an int >= 0\.'),
    (training.TrainConfig, dict(steps=10.0), r'TrainConfig.steps=10.0'),
    (training.TrainConfig, dict(chunk_steps=False),
     r'TrainConfig.chunk_steps=False'),
    (_REG, dict(target_params=1000.0),
     r'RegularizerConfig.target_params=1000.0; accepted: None or an int >= 1'),
    (_REG, dict(target_params=0), r'RegularizerConfig.target_params=0'),
    # Bools, names and nested configs.
    (search.SearchConfig, dict(hard=1),
     r'SearchConfig.hard=1; accepted: True or False\.'),
    (search.SearchConfig, dict(schedule='step'),
     r"SearchConfig.schedule='step'; accepted: exponential, linear, constant"),
    (search.SearchConfig, dict(tau0=1.0, tau_min=2.0),
     r'SearchConfig.tau_min=2.0 > SearchConfig.tau0=1.0'),
    (search.SearchConfig, dict(conv_impl='fft'),
     r"SearchConfig.conv_impl='fft'; accepted: auto, im2col, xla, xla_vjp"),
    (search.SearchConfig, dict(regularizer=None),
     r'SearchConfig.regularizer=None; accepted: a RegularizerConfig'),
    # The pipeline's own fields.
    (pipeline.PipelineConfig, dict(seeds=(-1,)),
     r'PipelineConfig.seeds=\(-1,\); accepted: one or more distinct ints in '
     r'\[0, 2\*\*32\)'),
    (pipeline.PipelineConfig, dict(seeds=(1.0,)), r'seeds=\(1.0,\)'),
    (pipeline.PipelineConfig, dict(seeds=(True,)), r'seeds=\(True,\)'),
    (pipeline.PipelineConfig, dict(seeds=(2**32,)), r'seeds=\(4294967296,\)'),
    (pipeline.PipelineConfig, dict(seeds=()), r'seeds=\(\)'),
    (pipeline.PipelineConfig, dict(seeds=(0, 0)), r'seeds=\(0, 0\)'),
    (pipeline.PipelineConfig, dict(conv_pools=(2, True, False)),
     r'PipelineConfig.conv_pools=\(2, True, False\); accepted: a sequence of '
     r'bools'),
    (pipeline.PipelineConfig, dict(conv_optional=(0, 0, 1)),
     r'PipelineConfig.conv_optional'),
    (pipeline.PipelineConfig, dict(mlp_widths=(8.0, 16)),
     r'PipelineConfig.mlp_widths=\(8.0, 16\); accepted: a sequence of ints'),
    (pipeline.PipelineConfig, dict(conv_widths=((4, 8.5),)),
     r'PipelineConfig.conv_widths'),
    (pipeline.PipelineConfig, dict(mlp_depth=0), r'PipelineConfig.mlp_depth=0'),
    (pipeline.PipelineConfig, dict(noise_repeats=2.0),
     r'PipelineConfig.noise_repeats=2.0; accepted: an int >= 1\.'),
    (pipeline.PipelineConfig, dict(eval_batch_size=0),
     r'PipelineConfig.eval_batch_size=0'),
    (pipeline.PipelineConfig, dict(random_samples=-1),
     r'PipelineConfig.random_samples=-1; accepted: None or an int >= 0\.'),
    (pipeline.PipelineConfig, dict(random_samples=1.0),
     r'PipelineConfig.random_samples=1.0'),
    (pipeline.PipelineConfig, dict(input_sigmas=(-0.1,)),
     r'PipelineConfig.input_sigmas=\(-0.1,\); accepted: a sequence of finite '
     r'floats >= 0\.'),
    (pipeline.PipelineConfig, dict(weight_sigmas=(0.1, _INF)),
     r'PipelineConfig.weight_sigmas=\(0.1, inf\)'),
    (pipeline.PipelineConfig, dict(random_budgets=(1.0, 1.0)),
     r'PipelineConfig.random_budgets=\(1.0, 1.0\); accepted: finite floats > 0, '
     r'increasing, distinct\.'),
    (pipeline.PipelineConfig, dict(random_budgets=(0.0,)),
     r'PipelineConfig.random_budgets=\(0.0,\)'),
    (pipeline.PipelineConfig, dict(random_budgets=[1.0]),
     r'PipelineConfig.random_budgets=\[1.0\]'),
    (pipeline.PipelineConfig, dict(random_eta=0),
     r'PipelineConfig.random_eta=0; accepted: an int >= 1\.'),
    (pipeline.PipelineConfig, dict(dense_depth=-1),
     r'PipelineConfig.dense_depth=-1; accepted: an int >= 0\.'),
    (pipeline.PipelineConfig, dict(evaluate_test=1),
     r'PipelineConfig.evaluate_test=1; accepted: True or False\.'),
    (pipeline.PipelineConfig, dict(select={'l': 0.1}),
     r"PipelineConfig.select=\{'l': 0.1\}; accepted: a SelectionConfig"),
    (pipeline.PipelineConfig, dict(space='rnn'),
     r"PipelineConfig.space='rnn'; accepted: mlp, conv\."),
    (pipeline.PipelineConfig, dict(reference_model='vgg'),
     r"PipelineConfig.reference_model='vgg'; accepted: None or one of .*"
     r'lenet300'),
    (pipeline.PipelineConfig, dict(fixed=1), r'PipelineConfig.fixed=1'),
    (pipeline.PipelineConfig, dict(search=None),
     r'PipelineConfig.search=None; accepted: a SearchConfig'),
])
def test_bad_config_is_rejected_when_made(cls, kwargs, match):
  with pytest.raises(ValueError, match=match):
    cls(**kwargs)


@pytest.mark.parametrize('cls, kwargs', [
    (search.SearchConfig, dict(warmup_steps=0, arch_b1=0, tau0=2, tau_min=2,
                               schedule='constant', hard=np.bool_(False))),
    (training.TrainConfig, dict(steps=np.int64(3), learning_rate=1)),
    (_REG, dict(target_params=np.int32(5), entropy_weight=-0.5)),
    (pipeline.PipelineConfig, dict(seeds=(0, 2**32 - 1, np.uint32(7)),
                                   random_samples=0, input_sigmas=(0, 0.5),
                                   reference_model='lenet300')),
])
def test_good_edge_values_are_accepted(cls, kwargs):
  cls(**kwargs)


@pytest.mark.parametrize('kwargs, match', [
    (dict(mlp_widths=()), r'widths is empty'),
    (dict(activations=('relu', 'softplus')), r"unknown activation 'softplus'"),
    (dict(space='conv', kernel_sizes=()), r'kernel_sizes is empty'),
    (dict(space='conv', conv_widths=((4,), ()), conv_pools=(True, True),
          conv_optional=(False, False)), r'layer 1 \(conv\): widths is empty'),
    (dict(space='conv', conv_widths=((4,),)),
     r'conv_widths, pools, optional have lengths 1, 3, 3'),
    (dict(space='conv', conv_widths=((4,), (4,)), conv_pools=(True, True),
          conv_optional=(False, False)), r'pool on a 1x1 map'),
])
def test_space_is_checked_against_the_data_shape(kwargs, match):
  config = pipeline.PipelineConfig(**kwargs)  # Shape-independent: accepted.
  with pytest.raises(ValueError, match=match):
    config.validate((2, 2, 1) if 'pool on' in match else MNIST, 10)


def test_random_search_modes():
  config = pipeline.PipelineConfig()
  assert config.random_mode() == 'budget' and config.num_random() == 0
  assert config.random_budgets == (1.0,)
  count = dataclasses.replace(config, random_samples=4)
  assert count.random_mode() == 'count' and count.num_random() == 4
  assert dataclasses.replace(config, random_samples=0).random_mode() == 'none'
  assert dataclasses.replace(config, random_budgets=()).random_mode() == 'none'
  with pytest.raises(ValueError, match='random_samples=-2'):
    dataclasses.replace(config, random_samples=-2)
