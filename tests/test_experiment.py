"""End-to-end: experiments/mnist.py on synthetic data, and its input checks."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paramsel_jax import experiment
from paramsel_jax import optimizers
from paramsel_jax import protocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'mnist.py')
TINY = ['--dataset=synthetic', '--model=mlp', '--eta0=20', '--eta1=20',
        '--window=5', '--batch_size=32', '--num_seeds=2', '--chunk_size=10']


def _script(*args, tmp_path):
  return subprocess.run(
      [sys.executable, SCRIPT, *args, f'--output_dir={tmp_path}'],
      capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_tiny_end_to_end_run_writes_results(tmp_path):
  done = _script(*TINY, '--selector=all', tmp_path=tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  out = done.stdout
  assert 'test acc β⊙w %' in out and 'topgrad' in out and 'random' in out
  path = tmp_path / 'synthetic' / 'mlp_adam_all.json'
  results = json.loads(path.read_text())
  assert results['config']['seeds'] == [0, 1]
  assert not [p for p in os.listdir(path.parent) if p.startswith('.tmp')]
  from paramsel_jax import selectors
  assert sorted(c['selector'] for c in results['cells']) == sorted(selectors.SELECTORS)
  for r in results['cells']:
    name = r['selector']
    for part in ('w', 'pruned'):
      for metric, values in r[part].items():
        assert len(values) == 2 and np.all(np.isfinite(values)), (name, metric)
        if 'accuracy' in metric:
          assert all(0 <= v <= 1 for v in values)
    assert r['frozen_moved'] == [False, False]
    assert r['summary']['pruned']['test_accuracy']['mean'] == (
        pytest.approx(np.mean(r['pruned']['test_accuracy'])))


def test_bad_flag_fails_fast_with_one_clear_message(tmp_path):
  done = _script(*TINY, '--selector=nope', tmp_path=tmp_path)
  assert done.returncode != 0
  assert "Unknown selector 'nope'; accepted:" in done.stderr
  assert 'Traceback' not in done.stderr
  assert not (tmp_path / 'synthetic').exists()


BASE = experiment.ExperimentConfig(
    dataset='synthetic', model='mlp', seeds=(0,),
    protocol=protocol.ProtocolConfig(eta0=20, eta1=20, window=5, batch_size=32),
    synthetic_size=256)


@pytest.mark.parametrize('change, message', [
    (dict(dataset='imagenet'), "Unknown dataset 'imagenet'"),
    (dict(model='resnet'), "Unknown model 'resnet'"),
    (dict(selectors=('topgrad', 'best')), "Unknown selector 'best'"),
    (dict(selectors=()), 'No selector given'),
    (dict(seeds=()), 'seeds=()'),
    (dict(optimizer=optimizers.OptimizerConfig(name='lbfgs')), "Unknown optimizer 'lbfgs'"),
    (dict(optimizer=optimizers.OptimizerConfig(learning_rate=float('nan'))), 'learning_rate=nan'),
    (dict(optimizer=optimizers.OptimizerConfig(learning_rate=float('inf'))), 'learning_rate=inf'),
    (dict(optimizer=optimizers.OptimizerConfig(learning_rate=-1.0)), 'learning_rate=-1.0'),
    (dict(optimizer=optimizers.OptimizerConfig(decay_steps=-2)), 'decay_steps=-2'),
    (dict(optimizer=optimizers.OptimizerConfig(name='psgld', decay_steps=100)),
     "decay_steps=100 with optimizer 'psgld'"),
    (dict(protocol=protocol.ProtocolConfig(eta0=0)), 'eta0=0'),
    (dict(protocol=protocol.ProtocolConfig(eta0=50, window=60)), 'window=60'),
    (dict(protocol=protocol.ProtocolConfig(k=2e9)), 'k=2000000000.0 is out of range'),
    (dict(protocol=protocol.ProtocolConfig(l=1.5)), 'l=1.5 is out of range'),
    (dict(protocol=protocol.ProtocolConfig(batch_size=10_000)), 'batch_size=10000 is larger'),
])
def test_bad_input_is_rejected_before_any_work(change, message):
  config = dataclasses.replace(BASE, **change)
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    experiment.run_experiment(config, output_dir=None)


def test_mnist_settings_are_checked_without_loading_mnist():
  # N of LeNet-300-100 is 266,610: k beyond it is caught from known shapes.
  config = dataclasses.replace(
      BASE, dataset='mnist', model='lenet300',
      protocol=protocol.ProtocolConfig(k=266_611))
  with pytest.raises(ValueError, match=r'k=266611 is out of range.*N = 266610'):
    experiment.validate_config(config)
  config = dataclasses.replace(
      BASE, dataset='mnist', protocol=protocol.ProtocolConfig(batch_size=50_001))
  with pytest.raises(ValueError, match='50000 examples'):
    experiment.validate_config(config)


def test_cosine_decay_reaches_zero_and_stops_training():
  """With decay_steps=2, the third SGD step onwards changes nothing."""
  import jax.numpy as jnp
  tx = optimizers.create_optimizer(
      optimizers.OptimizerConfig('sgd', learning_rate=0.5, decay_steps=2))
  w = jnp.ones(3)
  state = tx.init(w)
  moves = []
  for _ in range(4):
    updates, state = tx.update(jnp.ones(3), state, w)
    moves.append(float(jnp.abs(updates).max()))
  np.testing.assert_allclose(moves, [0.5, 0.25, 0.0, 0.0], atol=1e-6)
