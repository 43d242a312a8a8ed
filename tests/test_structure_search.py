# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for the bilevel search and a tiny end-to-end run of the pipeline."""

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramsel_jax import data
from paramsel_jax.structure import pipeline
from paramsel_jax.structure import search
from paramsel_jax.structure import presets
from paramsel_jax.structure import space as space_lib
from paramsel_jax.structure import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SPACE = presets.mlp_space((8, 8, 1), 4, widths=(4, 8), depth=2,
                                 activations=('relu', 'tanh'))
TINY_SEARCH = search.SearchConfig(warmup_steps=4, search_steps=8,
                                  chunk_steps=4, batch_size=16)


@pytest.fixture(scope='module')
def tiny_data():
  ds = data.synthetic(num_train=128, num_test=32, valid_size=32,
                      image_shape=(8, 8, 1), num_classes=4)
  return ((jnp.asarray(ds.train.images), jnp.asarray(ds.train.labels)),
          (jnp.asarray(ds.valid.images), jnp.asarray(ds.valid.labels)))


@pytest.mark.slow
def test_search_is_deterministic_and_vmap_matches_in_turn(tiny_data):
  train, valid = tiny_data
  a = search.run_search(TINY_SPACE, TINY_SEARCH, train, valid, seeds=(0, 1))
  b = search.run_search(TINY_SPACE, TINY_SEARCH, train, valid, seeds=(0, 1))
  c = search.run_search(TINY_SPACE, TINY_SEARCH, train, valid, seeds=(0, 1),
                        vmap_seeds=False)
  for k in a.logits:
    np.testing.assert_array_equal(a.logits[k], b.logits[k])
    np.testing.assert_allclose(a.logits[k], c.logits[k], rtol=1e-4,
                               atol=1e-5)
    assert not np.allclose(a.logits[k][0], 0.0)  # The structure moved.
  assert not np.allclose(a.logits['dense0/width'][0],
                         a.logits['dense0/width'][1])  # Seeds differ.
  assert [r['step'] for r in a.history] == [4, 8, 12]
  assert a.history[0]['warmup'] and 'valid_loss' not in a.history[0]
  assert np.isfinite(a.history[-1]['valid_loss']).all()


def test_warmup_moves_weights_only(tiny_data):
  train, valid = tiny_data
  # The in-turn search of the previous test compiled these already.
  states, keys = search.init_states(TINY_SPACE, TINY_SEARCH,
                                    jnp.array([0], jnp.int32))
  state, key = jax.tree.map(lambda a: a[0], (states, keys))
  chunk = search.compiled_chunk_fn(TINY_SPACE, TINY_SEARCH, False)
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # The chunk donates.
  new, _ = chunk(copy(state), key, train, valid, jnp.asarray(True), 4)
  for k in state.logits:
    np.testing.assert_array_equal(new.logits[k], state.logits[k])
  assert not np.allclose(new.params['dense0']['kernel'],
                         state.params['dense0']['kernel'])
  # A structure step with zero weight gradient: the weights' Adam state is
  # separate, so the logits' updates never leak into the weights' moments.
  after, _ = chunk(copy(new), key, train, valid, jnp.asarray(False), 4)
  assert int(after.step) == 8
  assert not np.allclose(after.logits['dense0/width'],
                         new.logits['dense0/width'])
  assert jax.tree.structure(after.weight_opt_state) == jax.tree.structure(
      state.weight_opt_state)


def test_run_search_checks_seeds_before_work(tiny_data):
  train, valid = tiny_data
  for seeds, match in [((-1,), r'seeds=\(-1,\)'), ((2**32,), r'2\*\*32'),
                       ((0.5,), r'seeds=\(0.5,\)'), ((), r'seeds=\(\)'),
                       ((1, 1), r'distinct')]:
    with pytest.raises(ValueError, match=match):
      search.run_search(TINY_SPACE, TINY_SEARCH, train, valid, seeds=seeds)


def test_seeds_are_uint32():
  # The same program as the searches above (2 seeds, uint32): no recompile.
  states, _ = search.init_states(TINY_SPACE, TINY_SEARCH,
                                 jnp.asarray([5, 2**32 - 1], jnp.uint32))
  small, _ = search.init_states(TINY_SPACE, TINY_SEARCH,
                                jnp.asarray([5, 6], jnp.uint32))
  kernel = lambda s, i: s.params['dense0']['kernel'][i]
  np.testing.assert_array_equal(kernel(states, 0), kernel(small, 0))
  assert not np.allclose(kernel(states, 1), kernel(small, 1))


def _tiny_pipeline(**kwargs):
  kwargs = {'seeds': (0,), 'random_samples': 1, **kwargs}
  return pipeline.PipelineConfig(
      dataset='synthetic',
      search=search.SearchConfig(warmup_steps=5, search_steps=10,
                                 chunk_steps=5, batch_size=16),
      retrain=training.TrainConfig(steps=10, batch_size=16, chunk_steps=10),
      input_sigmas=(0.2,), weight_sigmas=(0.2,), noise_repeats=1,
      eval_batch_size=64, **kwargs)


def _run_script(flags, **kwargs):
  # XLA's backend optimisation only costs compile time on these tiny runs.
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': '--xla_backend_optimization_level=0'}
  return subprocess.run(
      [sys.executable, os.path.join(REPO, 'experiments', 'structure_search.py'),
       *flags], capture_output=True, text=True, timeout=600, cwd=REPO,
      env=env, **kwargs)


_TINY_FLAGS = ['--dataset=synthetic', '--synthetic_train=128',
               '--synthetic_test=64', '--warmup_steps=5', '--search_steps=10',
               '--chunk_steps=5', '--batch_size=16', '--retrain_steps=10',
               '--seeds=0', '--input_sigmas=0.2', '--weight_sigmas=0.2',
               '--noise_repeats=1', '--reference_model=none']


# The conv run skips the baselines: on CPU every extra network is another
# few seconds of compilation, and the MLP run covers them.
@pytest.mark.parametrize('flags, methods', [
    (['--synthetic_shape=28,28,1', '--widths=8,16', '--depth=2',
      '--activations=relu,tanh', '--random_budgets=0.01', '--random_eta=2',
      '--random_rungs=2', '--select', '--select_eta0=4', '--select_eta1=4',
      '--select_window=2', '--select_k=90', '--select_l=37'],
     {'searched', 'random_0.01x', 'fixed'}),
    (['--synthetic_shape=32,32,3', '--space=conv', '--conv_widths=4,8;4,8',
      '--conv_pools=1,1', '--conv_optional=0,1', '--kernel_sizes=1,3',
      '--dense_widths=8', '--activations=relu,identity',
      '--random_samples=0', '--nofixed'],
     {'searched'}),
], ids=['mnist_shaped_mlp', 'cifar_shaped_conv'])
@pytest.mark.slow
def test_tiny_end_to_end_run_writes_results(tmp_path, flags, methods):
  proc = _run_script([*_TINY_FLAGS, f'--workdir={tmp_path}', *flags])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / 'results.json') as f:
    written = json.load(f)
  assert set(written['methods']) - {'random_small'} == methods
  for method in written['methods'].values():
    for run in method['runs']:
      assert 0.0 <= run['accuracy'] <= 1.0
      assert np.isfinite(run['loss'])
      assert set(run['input_noise']) == {'0.2'}
  searched = written['methods']['searched']['runs'][0]
  with open(tmp_path / 'architecture_seed0.json') as f:
    arch = json.load(f)
  assert arch['num_params'] == searched['num_params']
  space = space_lib.SearchSpace.from_dict(written['space'])
  assert tuple(space.input_shape) == tuple(
      int(d) for d in flags[0].split('=')[1].split(','))
  assert set(arch['indices']) == {n for n, _ in space.choices()}
  assert (tmp_path / 'accuracy_vs_cost.png').stat().st_size > 1000
  assert searched['num_flops'] == arch['num_flops'] > 0
  assert 'search step 15/15' in proc.stdout
  assert 'searched (argmax, retrained)' in proc.stdout
  assert '± is the sample standard deviation over seeds' in proc.stdout
  summary = written['methods']['searched']['summary']
  assert summary['accuracy']['n'] == summary['accuracy']['n_total'] == 1
  assert summary['accuracy']['mean'] == searched['accuracy']
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp')]
  if 'random_0.01x' in written['methods']:
    # One bracket, whatever the time: the first is one full training.
    run = written['methods']['random_0.01x']['runs'][0]
    assert run['structures'] == 1 and run['brackets'] == 1
    assert [(t['rung'], t['steps']) for t in run['trials']] == [(0, 10)]
    assert run['budget_seconds'] == pytest.approx(
        0.01 * searched['method_seconds'])
    # The budget is the search's share and the retraining, not the
    # stability evaluation (random search's structures do not get one).
    assert searched['method_seconds'] == pytest.approx(
        written['search']['seconds'] + searched['train_seconds'])
    assert searched['train_seconds'] < searched['seconds']
  if '--select' in flags:
    _check_searched_then_pruned(written, proc.stdout)


def _check_searched_then_pruned(written, stdout):
  # The protocol ran on the derived net: exactly k trained, exactly l kept.
  sel = written['selection']['runs'][0]
  cell = sel['protocol']['cells'][0]
  n = written['methods']['searched']['runs'][0]['num_params']
  assert sel['protocol']['num_params'] == n
  assert cell['beta_count'] == [37] and cell['alpha_count'] == [90]
  assert not any(cell['frozen_moved'])
  stages = sel['stages']
  assert stages['derived']['num_params'] == stages['eta0']['num_params'] == n
  assert stages['eta1']['trained'] == 90
  assert stages['pruned']['num_params'] == 37
  for stage in stages.values():
    assert 0.0 <= stage['accuracy'] <= 1.0
  assert 'protocol: β ⊙ w (l kept)' in stdout


def test_bad_data_shape_is_caught_before_work(tmp_path):
  ds = data.synthetic(num_train=16, num_test=8, valid_size=8,
                      image_shape=(2, 2, 1))
  config = _tiny_pipeline(space='conv')
  with pytest.raises(ValueError, match='pool on a 1x1 map'):
    pipeline.run_pipeline(config, ds, str(tmp_path / 'out'), progress=None)
  assert not os.listdir(tmp_path)


# The run these flags would start is tiny, so that a flag that is wrongly
# accepted fails the test quickly (exit 0) instead of training for minutes.
_QUICK_FLAGS = [*_TINY_FLAGS, '--widths=8,16', '--depth=2',
                '--random_samples=0', '--nofixed']


@pytest.mark.parametrize('flags, match', [
    (['--conv_pools=2'], r"--conv_pools contains '2'; accepted: 1 or 0"),
    (['--tau0=inf'], r'--tau0=inf; accepted: a finite float > 0'),
    (['--seeds=-1'], r'--seeds=\(-1,\); accepted: one or more '
     r'distinct ints in \[0, 2\*\*32\)'),
    (['--dataset=nope'],
     r"--dataset='nope'; accepted: mnist, fashion_mnist, cifar10, synthetic"),
    (['--tau0=1', '--tau_min=2'], r'--tau_min=2.0 > --tau0=1.0'),
    (['--activations=relu,swish'], r"unknown activation 'swish'"),
    # The space is checked against the data's shape before the data exist.
    (['--synthetic_shape=2,2,1', '--space=conv', '--conv_widths=4;4',
      '--conv_pools=1,1', '--conv_optional=0,0'], r'pool on a 1x1 map'),
], ids=['conv_pools_2', 'tau0_inf', 'negative_seed', 'unknown_dataset',
        'tau_order', 'unknown_activation', 'space_vs_shape'])
@pytest.mark.slow
def test_script_rejects_bad_flags_with_one_line(tmp_path, flags, match):
  proc = _run_script([*_QUICK_FLAGS, f'--workdir={tmp_path / "out"}',
                      f'--data_dir={tmp_path / "data"}', *flags])
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith('structure_search.py: error: '), lines[0]
  assert re.search(match, lines[0]), lines[0]
  assert len(lines[0]) < 300 and 'Traceback' not in proc.stderr
  assert not proc.stdout
  assert not os.listdir(tmp_path)  # No workdir, no data cache.
