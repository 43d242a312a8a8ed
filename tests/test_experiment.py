"""End-to-end: experiments/mnist.py on synthetic data, and its input checks."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paramsel_jax.lab import experiment
from paramsel_jax.optim import optimizers
from paramsel_jax.protocol import protocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'mnist.py')
TINY = ['--dataset=synthetic', '--model=mlp', '--eta0=20', '--eta1=20',
        '--window=5', '--batch_size=32', '--num_seeds=2', '--chunk_size=10']


def _script(*args, tmp_path):
  return subprocess.run(
      [sys.executable, SCRIPT, *args, f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_results(tmp_path):
  done = _script(*TINY, '--selector=all', tmp_path=tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  out = done.stdout
  assert 'test acc β⊙w %' in out and 'topgrad' in out and 'random' in out
  (path,) = (tmp_path / 'synthetic').glob('mlp_adam_all_*.json')
  assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
  results = json.loads(path.read_text())
  env = results['environment']
  assert env['jax'] and env['flax'] and env['optax'] and 'git_commit' in env
  assert results['config']['seeds'] == [0, 1]
  assert not [p for p in os.listdir(path.parent) if p.startswith('.tmp')]
  from paramsel_jax.select import selectors
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


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


@pytest.mark.parametrize('flag, message', [
    ('--selector=nope', "Unknown selector 'nope'; accepted:"),
    ('--k=0', 'k=0 is out of range'),
    ('--l=0', 'l=0 is out of range'),
    ('--k=0.0000001', 'k=1e-07 of N = 266610 rounds to 0 coordinates'),
    ('--k=500.0', 'give the integer 500'),
    ('--seed=-3', '--seed=-3 with --num_seeds=2; accepted: seeds in [0, '),
    ('--mode=retrain --k=0.3', '--k=0.3 with --mode=retrain'),
    ('--optimizer=adam,sgd', 'this script runs one optimizer'),
    ('--learning_rate=inf', 'learning_rate=inf; accepted'),
])
@pytest.mark.slow
def test_bad_flag_fails_fast_with_one_clear_line(tmp_path, flag, message):
  done = _script(*TINY, *flag.split(), tmp_path=tmp_path)
  assert done.returncode == 2
  assert message in done.stderr
  assert done.stderr.strip().count('\n') == 0, done.stderr  # one line.
  assert 'Traceback' not in done.stderr
  assert not (tmp_path / 'synthetic').exists()


@pytest.mark.slow
def test_diverging_run_says_so_and_exits_non_zero(tmp_path):
  done = _script(*TINY, '--optimizer=sgd', '--learning_rate=1000',
                 tmp_path=tmp_path)
  assert done.returncode == 1, done.stderr[-2000:]
  out = done.stdout
  assert 'WARNING: seed 0 diverged' in out and 'WARNING: seed 1 diverged' in out
  assert 'EVERY SEED DIVERGED' in out
  assert 'diverged (0/2)' in out
  (path,) = (tmp_path / 'synthetic').glob('*.json')
  results = json.loads(path.read_text())
  assert results['all_diverged'] is True
  cell = results['cells'][0]
  assert all(d['phase'] in ('eta0', 'eta1') for d in cell['diverged'])
  assert cell['pruned']['test_accuracy'] == [None, None]
  assert cell['summary']['pruned']['test_accuracy']['n'] == 0


def test_results_files_are_named_by_selectors_and_config():
  a = dataclasses.replace(BASE, selectors=('topgrad', 'psgld'))
  b = dataclasses.replace(BASE, selectors=('topgrad', 'magnitude'))
  c = dataclasses.replace(a, protocol=dataclasses.replace(a.protocol, l=0.3))
  paths = {experiment.results_path(x, 'out') for x in (a, b, c)}
  assert len(paths) == 3
  assert 'mlp_adam_topgrad+psgld_' in experiment.results_path(a, 'out')


def test_resolved_config_records_the_defaults_used(monkeypatch, tmp_path):
  monkeypatch.setenv('PARAMSEL_DATA_DIR', str(tmp_path))
  config = experiment.resolved(dataclasses.replace(
      BASE, dataset='mnist', optimizer=optimizers.OptimizerConfig('sgd')))
  assert config.data_dir == str(tmp_path)
  assert config.optimizer.learning_rate == optimizers.DEFAULT_LEARNING_RATES['sgd']
  assert config.protocol.seed_axis == 'vmap'


BASE = experiment.ExperimentConfig(
    dataset='synthetic', model='mlp', seeds=(0,),
    protocol=protocol.ProtocolConfig(eta0=20, eta1=20, window=5, batch_size=32),
    synthetic_size=256)


@pytest.mark.parametrize('change, message', [
    (lambda: dict(dataset='imagenet'), "Unknown dataset 'imagenet'"),
    (lambda: dict(model='resnet'), "Unknown model 'resnet'"),
    (lambda: dict(selectors=('topgrad', 'best')), "Unknown selector 'best'"),
    (lambda: dict(selectors=()), 'No selector given'),
    (lambda: dict(seeds=()), 'seeds=()'),
    (lambda: dict(optimizer=optimizers.OptimizerConfig(name='lbfgs')), "Unknown optimizer 'lbfgs'"),
    (lambda: dict(optimizer=optimizers.OptimizerConfig(learning_rate=float('nan'))), 'learning_rate=nan'),
    (lambda: dict(optimizer=optimizers.OptimizerConfig(learning_rate=float('inf'))), 'learning_rate=inf'),
    (lambda: dict(optimizer=optimizers.OptimizerConfig(learning_rate=-1.0)), 'learning_rate=-1.0'),
    (lambda: dict(optimizer=optimizers.OptimizerConfig(decay_steps=-2)), 'decay_steps=-2'),
    (lambda: dict(optimizer=optimizers.OptimizerConfig(name='psgld', decay_steps=100)),
     "decay_steps=100 with optimizer 'psgld'"),
    (lambda: dict(protocol=protocol.ProtocolConfig(eta0=0)), 'eta0=0'),
    (lambda: dict(protocol=protocol.ProtocolConfig(eta0=50, window=60)), 'window=60'),
    (lambda: dict(protocol=protocol.ProtocolConfig(k=2e9)), 'k=2000000000.0 is out of range'),
    (lambda: dict(seeds=(2.5,)), 'seeds=(2.5,); accepted'),
    (lambda: dict(seeds=(-3,)), 'seeds=(-3,); accepted'),
    (lambda: dict(selectors='topgrad'), "selector_names='topgrad' is a string"),
    (lambda: dict(protocol=protocol.ProtocolConfig(mode='retrian')), "mode='retrian'"),
    (lambda: dict(protocol=protocol.ProtocolConfig(mode='retrain', k=0.3)), "k=0.3 with mode='retrain'"),
    (lambda: dict(protocol=protocol.ProtocolConfig(k=0)), 'k=0 is out of range'),
    (lambda: dict(protocol=protocol.ProtocolConfig(l=1.5)), 'l=1.5 is out of range'),
    (lambda: dict(protocol=protocol.ProtocolConfig(batch_size=10_000)), 'batch_size=10000 is larger'),
])
def test_bad_input_is_rejected_before_any_work(change, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    experiment.run_experiment(dataclasses.replace(BASE, **change()),
                              output_dir=None)


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


@pytest.mark.slow
def test_online_freezing_run_prints_the_frozen_share_and_the_comparison(tmp_path):
  done = _script(*TINY, '--freeze=autofreeze', '--check_every=10',
                 '--eval_split=valid', tmp_path=tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  out = done.stdout
  assert 'online [autofreeze] step 40/40: frozen' in out
  assert 'valid acc %' in out and 'online autofreeze' in out
  assert 'time to the dense final accuracy: ' in out
  (path,) = (tmp_path / 'synthetic').glob('*_online_autofreeze.json')
  results = json.loads(path.read_text())
  assert len(results['frozen']['checks']) == 4
  assert results['comparison']['target_accuracy']


def _mnist_flags(*argv):
  """experiments/mnist.py's flags, parsed from `argv` in this process."""
  from absl import flags
  from paramsel_jax.lab import flags as experiment_flags
  values = flags.FlagValues()
  f = experiment_flags.define(
      values, selector=['topgrad'], k=['0.1'], l=['0.2'], eta0=500,
      eta1=1500, window=100, num_seeds=3, train_eval_size=0,
      workdir='results')
  values(['mnist.py', *argv])
  return f


def _check_online_flags(f):
  """What experiments/mnist.py checks before loading anything."""
  from paramsel_jax.lab import flags as experiment_flags
  config = experiment_flags.experiment_config(f)
  experiment.validate_config(config)
  settings = experiment_flags.online_config(f)
  experiment_flags.validate_online(config, settings)
  return settings


@pytest.mark.parametrize('argv, message', [
    # FreezingPolicy's checks, which used to run after the dense reference.
    ('--freeze=psgld --max_frozen=1.5',
     '--max_frozen=1.5; accepted: a fraction in (0, 1]'),
    ('--freeze=psgld --max_frozen=0', '--max_frozen=0.0; accepted'),
    ('--freeze=freezeout --freezeout_t0=-1', '--freezeout_t0=-1.0; accepted'),
    # OnlineConfig's checks, in the flags' names.
    ('--freeze=psgld --freeze_threshold=nan',
     '--freeze_threshold=nan; accepted: a finite float > 0.'),
    ('--freeze=apf --freeze_threshold=-1', '--freeze_threshold=-1.0; accepted'),
    ('--freeze=psgld --check_every=0', '--check_every=0; accepted: an int >= 1.'),
    ('--freeze=autofreeze --granularity=unit',
     "--freeze=autofreeze freezes whole layers; accepted: --granularity=layer"),
    ('--freeze=freezeout --granularity=element', '--freeze=freezeout freezes'),
    ('--freeze=nope', "--freeze=nope: Unknown freezing criterion 'nope'"),
    ('--freeze=fixed', '--freeze=fixed: '),
    # The block criteria (lenet300's Dense_i are layers, not blocks).
    ('--freeze=lisa --gamma=0', '--gamma=0; accepted: an int >= 1.'),
    ('--freeze=lisa', '--freeze=lisa trains blocks, and the model has none'),
    ('--freeze=lisa --blocks=Dense_0,Dense_1 --gamma=3',
     '--gamma=3; accepted: 1..2 (the model has 2 blocks: Dense_0, Dense_1).'),
    ('--freeze=badam --blocks=Dense_0,Dense_9',
     "blocks: pattern 'Dense_9' names no layer"),
])
def test_online_freezing_flags_are_checked_before_any_work(argv, message):
  f = _mnist_flags(*argv.split())
  with pytest.raises(ValueError) as error:
    _check_online_flags(f)
  assert message in str(error.value)
  assert '\n' not in str(error.value)


def test_good_online_freezing_flags_pass_the_checks():
  settings = _check_online_flags(_mnist_flags(
      '--freeze=freezeout', '--max_frozen=0.5', '--freezeout_t0=0.3'))
  assert settings.granularity == 'layer' and settings.t0 == 0.3
  settings = _check_online_flags(_mnist_flags(
      '--freeze=badam', '--blocks=Dense_0,Dense_1', '--block_order=random',
      '--block_seed=3', '--train_outside'))
  assert settings.granularity == 'layer' and settings.blocks == ('Dense_0',
                                                                 'Dense_1')
  assert (settings.block_order, settings.block_seed,
          settings.train_outside) == ('random', 3, True)
  assert _check_online_flags(_mnist_flags()) is None  # no --freeze.


@pytest.mark.slow
def test_bad_online_flag_fails_in_one_line_before_loading_data(tmp_path):
  # The MNIST run: before, the data were loaded and the 2,000-step dense
  # reference trained before FreezingPolicy refused max_frozen.
  done = subprocess.run(
      [sys.executable, SCRIPT, '--freeze=psgld', '--max_frozen=1.5',
       f'--data_dir={tmp_path / "no_data_here"}', f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert done.returncode == 2
  assert done.stderr.strip() == (
      'mnist.py: error: --max_frozen=1.5; accepted: a fraction in (0, 1], '
      'or None.')
  assert done.stdout == ''  # no backend line, no loading, no progress.
  assert not (tmp_path / 'no_data_here').exists()
