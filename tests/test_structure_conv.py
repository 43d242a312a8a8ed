# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Issue 12: FLOPs, the conv space end to end, search then select, budgets."""

import jax
import numpy as np
import pytest

from paramsel_jax import data
from paramsel_jax import models
from paramsel_jax.structure import config as config_lib
from paramsel_jax.structure import derive
from paramsel_jax.structure import diagnostics
from paramsel_jax.structure import pipeline
from paramsel_jax.structure import presets
from paramsel_jax.structure import random_budget
from paramsel_jax.structure import records
from paramsel_jax.structure import regularizer
from paramsel_jax.structure import relax
from paramsel_jax.structure import search
from paramsel_jax.structure import selection
from paramsel_jax.structure import training

LENET_SPACE = presets.conv_space((28, 28, 1), 10)


def _indices(space, **picks):
  out = {n: 0 for n, _ in space.choices()}
  out.update({k.replace('__', '/'): v for k, v in picks.items()})
  return out


def test_flops_of_a_derived_network_equal_a_hand_count():
  # conv16k3-relu-avgpool > conv8k5-tanh-pool > (conv2 skipped) >
  # dense64-relu > dense32-elu > fc10, on 28x28x1 with 'SAME' convs.
  indices = _indices(
      LENET_SPACE, conv0__width=2, conv0__kernel=0, conv0__pool=1,
      conv1__activation=1, conv1__width=0, conv1__kernel=1,
      conv2__present=1, dense0__width=2, dense1__width=1,
      dense1__activation=3)
  arch = derive.from_indices(LENET_SPACE, indices)
  assert arch.describe() == ('conv16k3-relu-avgpool > conv8k5-tanh-pool > '
                             'dense64-relu > dense32-elu > fc10')
  hand_flops = 2 * (28 * 28 * 3 * 3 * 1 * 16     # conv0 at 28x28
                    + 14 * 14 * 5 * 5 * 16 * 8   # conv1 at 14x14
                    + 7 * 7 * 8 * 64             # dense0 on 392 inputs
                    + 64 * 32 + 32 * 10)         # dense1, classifier
  assert hand_flops == 1_535_104
  hand_params = ((9 * 16 + 16) + (25 * 16 * 8 + 8) + (392 * 64 + 64)
                 + (64 * 32 + 32) + (32 * 10 + 10))
  assert arch.num_flops() == hand_flops
  assert arch.num_params() == hand_params == 30_930
  model = derive.DiscreteNet(arch)
  assert records.network_flops(model, (28, 28, 1)) == hand_flops
  onehot = LENET_SPACE.one_hot(indices)
  assert float(regularizer.expected_flops(LENET_SPACE, onehot)) == hand_flops
  assert arch.to_dict()['num_flops'] == hand_flops


def test_lenet5_flops_match_the_records_count():
  params, flops = records.lenet5_caffe_cost(20, 50, 800, 500)
  model = models.create_model('lenet5')
  assert records.network_flops(model, (28, 28, 1)) == flops
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 28, 28, 1), 'float32'))
  assert models.count_params(shapes['params']) == params


def test_target_flops_hinge():
  logits = relax.init_logits(LENET_SPACE)
  below = regularizer.RegularizerConfig(flops_weight=1.0, target_flops=10**12)
  r, m = regularizer.structure_regularizer(LENET_SPACE, logits, below)
  assert float(r) == 0.0
  above = regularizer.RegularizerConfig(flops_weight=2.0, target_flops=10**5)
  r, m = regularizer.structure_regularizer(LENET_SPACE, logits, above)
  np.testing.assert_allclose(
      float(r), 2 * np.log(float(m['expected_flops']) / 1e5), rtol=1e-5)


def _fake_train(arch, key, steps):
  acc = float(jax.random.uniform(key)) * steps / 9.0
  return {'w': arch.num_params()}, {'valid_accuracy': acc, 'steps': steps,
                                    'num_params': arch.num_params()}


def test_bracket_halves_on_validation_and_trains_the_winner_fully():
  plan = random_budget.bracket_plan(9, eta=3, rungs=3)
  assert plan == [(9, 1), (3, 3), (1, 9)]
  out = random_budget.run_bracket(LENET_SPACE, jax.random.key(0), _fake_train,
                                  plan)
  trials = out['trials']
  assert [t['rung'] for t in trials] == [0] * 9 + [1] * 3 + [2]
  rung0 = sorted(trials[:9], key=lambda t: -t['valid_accuracy'])
  # The three best of rung 0 go on, the best of rung 1 is trained fully.
  assert {t['structure'] for t in trials[9:12]} == {
      t['structure'] for t in rung0[:3]}
  best1 = max(trials[9:12], key=lambda t: t['valid_accuracy'])
  assert out['final']['structure'] == best1['structure']
  assert out['final']['steps'] == 9 and out['structures'] == 9
  assert out['final_params'] == {'w': out['final']['num_params']}
  # Within a size target, every structure tried fits it.
  small = random_budget.run_bracket(LENET_SPACE, jax.random.key(0),
                                    _fake_train, plan,
                                    limits={'max_params': 20_000,
                                            'max_flops': 10**6})
  assert max(t['num_params'] for t in small['trials']) <= 20_000
  assert max(derive.Architecture.from_dict(t['architecture']).num_flops()
             for t in small['trials']) <= 10**6


def test_budgeted_search_reports_each_budget_from_one_run():
  out = random_budget.budgeted_random_search(
      LENET_SPACE, 0, base_seconds=1e-9, multiples=(1.0, 5.0),
      train_fn=_fake_train, plan=[(1, 9)])
  # A budget that no bracket fits still gets the first bracket.
  assert len(out['brackets']) == 1 and out['chosen'] == {1.0: 0, 5.0: 0}
  brackets = [{'end_seconds': s, 'final': {'valid_accuracy': a}}
              for s, a in [(4, 0.5), (8, 0.9), (12, 0.7)]]
  assert [random_budget.choose(brackets, b) for b in (5, 8, 20)] == [0, 1, 1]


def test_first_bracket_is_one_full_training_then_successive_halving():
  ticks = [0]

  def timed_train(arch, key, steps):  # every training takes one second
    ticks[0] += 1
    return _fake_train(arch, key, steps)

  def search(multiples):
    return random_budget.budgeted_random_search(
        LENET_SPACE, 0, base_seconds=1.0, multiples=multiples,
        train_fn=timed_train, plan=random_budget.bracket_plan(9, 3, 3),
        clock=lambda: float(ticks[0]))

  out = search((1.0, 3.5))
  # A full training fits 1x; a halving bracket (13 trainings) would end
  # after 3.5x and is not started.
  assert [[(t['rung'], t['steps']) for t in b['trials']]
          for b in out['brackets']] == [[(0, 9)]]
  assert out['chosen'] == {1.0: 0, 3.5: 0}
  out = search((1.0, 30.0))
  assert [len(b['trials']) for b in out['brackets']] == [1, 13, 13]
  assert [b['structures'] for b in out['brackets']] == [1, 9, 9]
  assert [b['end_seconds'] for b in out['brackets']] == [1, 14, 27]


def test_effective_agreement_ignores_choices_of_skipped_layers():
  a = _indices(LENET_SPACE, conv2__present=1, conv2__width=2)
  b = _indices(LENET_SPACE, conv2__present=1, conv2__width=0)
  assert diagnostics.effective_agreement(LENET_SPACE, [a, b])['all_agree'] == 1
  c = _indices(LENET_SPACE, conv2__present=0, conv1__pool=1)
  agree = diagnostics.effective_agreement(LENET_SPACE, [a, b, c])
  assert agree['disagree'] == ['conv1/pool', 'conv2/present']
  assert collapse_counts(a) == (1, 2, 0, 4)


def collapse_counts(indices):
  c = diagnostics.collapse(LENET_SPACE, indices)
  return c['skipped'], c['optional'], c['identity'], c['kept']


@pytest.fixture(scope='module')
def conv_run(tmp_path_factory):
  """The conv space searched and retrained on 28x28x1 data."""
  ds = data.synthetic(num_train=256, num_test=64, valid_size=64,
                      image_shape=(28, 28, 1))
  config = config_lib.PipelineConfig(
      dataset='synthetic', space='conv', conv_widths=((2, 4), (4,)),
      conv_pools=(True, True), conv_optional=(False, True),
      kernel_sizes=(1, 3), dense_widths=(4, 8), dense_depth=2,
      activations=('relu', 'identity'), seeds=(0,), vmap_seeds=False,
      # Warm-up and search chunks of one length share one compilation.
      search=search.SearchConfig(warmup_steps=4, search_steps=4,
                                 chunk_steps=4, batch_size=16),
      retrain=training.TrainConfig(steps=6, batch_size=16, chunk_steps=6),
      random_samples=0, fixed=False, input_sigmas=(0.1,),
      weight_sigmas=(0.1,), noise_repeats=1, eval_batch_size=64)
  workdir = tmp_path_factory.mktemp('conv')
  return pipeline.run_pipeline(config, ds, str(workdir), progress=None), workdir


@pytest.mark.slow
def test_conv_search_runs_end_to_end_on_mnist_shaped_data(conv_run):
  results, workdir = conv_run
  assert tuple(results['space']['input_shape']) == (28, 28, 1)
  run = results['methods']['searched']['runs'][0]
  arch = derive.Architecture.from_dict(run['architecture'])
  assert arch.layers[0].kind == 'conv'
  assert run['num_params'] == arch.num_params()
  assert run['num_flops'] == arch.num_flops() > 0
  assert 0.0 <= run['accuracy'] <= 1.0 and np.isfinite(run['loss'])
  diag = results['methods']['searched']['diagnostics']
  assert 0.0 <= diag['seeds'][0]['supernet']['argmax'] <= 1.0
  assert 'FLOPs' in results['table'] and 'L0 regularization' in results['table']
  assert (workdir / 'accuracy_vs_cost.png').stat().st_size > 1000
