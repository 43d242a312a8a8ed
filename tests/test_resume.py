"""Kill anywhere, rerun: the protocol and the online driver resume from
their checkpoints (`checkpoints.Checkpointer`) to bit-identical results."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

from paramsel_jax.protocol import online
from paramsel_jax.protocol import protocol
from paramsel_jax.train import checkpoints

from killing import Killed, killer  # tests/killing.py

CONFIG = protocol.ProtocolConfig(eta0=20, eta1=30, k=0.3, l=0.5, window=10,
                                 batch_size=16, chunk_size=7,
                                 eval_batch_size=64)
SELECTORS = ('random', 'topgrad')
# What differs between two runs with the same numbers.
NOT_METRICS = ('timing', 'resumed', 'compile_s', 'cases', 'final_params',
               'alphas')


def _quiet(_):
  pass


@pytest.fixture(scope='module')
def task(make_task):
  return make_task((16,))


def _ckpt(path, every=10, identity=None):
  return checkpoints.Checkpointer(
      str(path), every, identity or {'config': dataclasses.asdict(CONFIG)},
      log=_quiet)


def _protocol(task, log=_quiet, checkpointer=None, selectors=SELECTORS):
  return protocol.run_protocol(task, optax.adam(1e-2), CONFIG, selectors,
                               [0, 1], log=log, checkpointer=checkpointer)


def _metrics(results):
  return {k: v for k, v in results.items() if k not in NOT_METRICS}


@pytest.fixture(scope='module')
def uninterrupted(task):
  return _protocol(task, selectors=('random',))


@pytest.fixture(scope='module')
def uninterrupted_two(task):
  return _protocol(task)


def _killed_then_resumed(task, path, kills, run):
  """`run(log, checkpointer)` killed at each of `kills`, then to its end."""
  for after, marker in kills:
    ckpt = _ckpt(path)
    with pytest.raises(Killed):
      run(killer(marker, after), ckpt)
    ckpt.close()  # the saves a kill would have let finish.
  ckpt = _ckpt(path)
  results = run(_quiet, ckpt)
  ckpt.close()
  return results


@pytest.mark.slow
def test_protocol_killed_in_two_eta1_phases_resumes_bit_identical(
    task, uninterrupted_two, tmp_path):
  run = lambda log, ckpt: _protocol(task, log, ckpt)
  # Killed in η1 of the first selector (after its 2nd chunk: step 34, a
  # checkpoint at 30), then in η1 of the second (after its 2nd chunk: step 30, saved).
  resumed = _killed_then_resumed(
      task, tmp_path, [(2, 'eta1 [random, k=332]: step '),
                            (2, 'eta1 [topgrad, k=332]: step ')], run)
  assert _metrics(resumed) == _metrics(uninterrupted_two)
  assert resumed['resumed'] == {'eta0': 20, 'eta1 [random, k=332]': 50,
                                'eta1 [topgrad, k=332]': 30}


def test_protocol_killed_once_resumes_bit_identical(task, uninterrupted,
                                                    tmp_path):
  run = lambda log, ckpt: _protocol(task, log, ckpt, selectors=('random',))
  resumed = _killed_then_resumed(task, tmp_path,
                                 [(2, 'eta1 [random, k=332]: step ')], run)
  assert _metrics(resumed) == _metrics(uninterrupted)
  assert resumed['resumed'] == {'eta0': 20, 'eta1 [random, k=332]': 30}


def test_protocol_with_checkpoints_equals_without(task, uninterrupted,
                                                  tmp_path):
  ckpt = _ckpt(tmp_path)
  results = _protocol(task, checkpointer=ckpt, selectors=('random',))
  ckpt.close()
  assert _metrics(results) == _metrics(uninterrupted)
  assert results['resumed'] == {}
  steps = checkpoints.Checkpointer(str(tmp_path), 10, ckpt.identity,
                                   log=_quiet).phase('eta0').steps()
  assert steps == [10, 20]


def test_other_settings_in_the_same_directory_are_refused(task, tmp_path):
  ckpt = _ckpt(tmp_path)
  ckpt.close()
  other = dataclasses.replace(CONFIG, eta1=40)
  with pytest.raises(ValueError, match=r'config\.eta1: 30 -> 40'):
    _ckpt(tmp_path, identity={'config': dataclasses.asdict(other)})


# Layers freeze at the checks of steps 20 and 40, each time a new plan whose
# frozen prefix's outputs are cached.
ONLINE = online.OnlineConfig(criterion='autofreeze', granularity='layer',
                             steps=100, check_every=20, cache_prefix=True,
                             batch_size=16, eval_batch_size=64)
CHECK_TIMING = ('steps_per_s', 'overhead_s')


@pytest.fixture(scope='module')
def online_task(make_task):
  return make_task((12, 8), num_train=256, num_test=128)


def _online(task, log=_quiet, checkpointer=None):
  return online.run_online(task, optax.adam(1e-2), ONLINE, [0, 1], log=log,
                           record_alphas=True, checkpointer=checkpointer)


def _online_metrics(results):
  out = _metrics(results)
  out['checks'] = [{k: v for k, v in c.items() if k not in CHECK_TIMING}
                   for c in results['checks']]
  return out


def _same_arrays(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope='module')
def online_uninterrupted(online_task):
  run = _online(online_task)
  assert len({c['plan'] for c in run['checks']}) == 3  # two active plans.
  return run


@pytest.mark.slow
@pytest.mark.parametrize('kills', [
    # Mid-interval (step 50 of the interval 40..60), then at the end of one
    # (step 80, its checkpoint saved, the driver's not yet).
    [(5, ': step '), (1, 'online [autofreeze] step 80')],
    # Right after a check (the driver's state at step 40 saved).
    [(4, ': step ')],
])
def test_online_killed_resumes_bit_identical(online_task, online_uninterrupted,
                                             tmp_path, kills):
  def run(log, ckpt):
    return _online(online_task, log, ckpt)
  resumed = _killed_then_resumed(online_task, tmp_path, kills, run)
  assert _online_metrics(resumed) == _online_metrics(online_uninterrupted)
  _same_arrays(resumed['final_params'], online_uninterrupted['final_params'])
  _same_arrays(resumed['alphas'], online_uninterrupted['alphas'])
  assert resumed['resumed'].get('driver') is not None


@pytest.mark.slow
def test_online_with_checkpoints_equals_without(online_task,
                                                online_uninterrupted,
                                                tmp_path):
  ckpt = _ckpt(tmp_path)
  results = _online(online_task, checkpointer=ckpt)
  ckpt.close()
  assert _online_metrics(results) == _online_metrics(online_uninterrupted)
  _same_arrays(results['final_params'], online_uninterrupted['final_params'])
  assert results['resumed'] == {}
  # Only the driver's checkpoints stay once the run is over.
  assert sorted(p.name.split('-')[0] for p in tmp_path.iterdir()
                if p.is_dir()) == ['driver']
