"""Periodic checkpoints (`train.checkpoints.Checkpointer`): identity, fallback."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramsel_jax.train import checkpoints


def _state(x):
  return {'w': jnp.full((3,), x, jnp.float32), 'key': jax.random.key(7),
          'step': jnp.asarray(x, jnp.int32)}


def _quiet(_):
  pass


def test_restore_is_bit_identical_and_keeps_the_last_few(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), every=5, identity={'a': 1},
                                  keep=2, log=_quiet)
  phase = ckpt.phase('eta1 [topgrad, k=0.1]')
  for step in (5, 10, 15):
    phase.save(step, _state(step / 3), {'step': step})
  ckpt.wait()
  assert phase.steps() == [10, 15]
  step, state, meta = phase.restore(_state(0.0))
  assert (step, meta) == (15, {'step': 15})
  np.testing.assert_array_equal(state['w'], _state(15 / 3)['w'])
  assert state['key'].dtype == _state(0)['key'].dtype
  assert bool(jnp.all(jax.random.key_data(state['key'])
                      == jax.random.key_data(jax.random.key(7))))
  ckpt.close()


def test_a_corrupt_checkpoint_is_reported_and_the_previous_one_used(tmp_path):
  lines = []
  ckpt = checkpoints.Checkpointer(str(tmp_path), every=5, identity={},
                                  log=lines.append)
  phase = ckpt.phase('eta0')
  phase.save(5, _state(1.0))
  phase.save(10, _state(2.0))
  ckpt.wait()
  # Break every data file of step 10.
  for root, _, files in os.walk(os.path.join(phase.directory, '10')):
    for name in files:
      if 'metadata' not in name.lower():
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'garbage')
  step, state, _ = phase.restore(_state(0.0))
  assert step == 5
  np.testing.assert_array_equal(state['w'], _state(1.0)['w'])
  assert any('cannot be read' in line for line in lines)
  assert os.path.isdir(os.path.join(phase.directory, 'corrupt-10'))
  ckpt.close()


def test_a_partial_checkpoint_is_ignored(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), every=5, identity={},
                                  log=_quiet)
  phase = ckpt.phase('eta0')
  phase.save(5, _state(1.0))
  phase.wait()
  # What a save killed mid-write leaves: orbax's temporary directory.
  os.makedirs(os.path.join(phase.directory,
                           '10.orbax-checkpoint-tmp-123', 'state'))
  fresh = checkpoints.Checkpointer(str(tmp_path), every=5, identity={},
                                   log=_quiet).phase('eta0')
  assert fresh.restore(_state(0.0))[0] == 5
  ckpt.close()


def test_another_run_in_the_same_directory_is_refused(tmp_path):
  checkpoints.Checkpointer(str(tmp_path), 5, {'eta0': 500, 'lr': 1e-3},
                           log=_quiet)
  with pytest.raises(ValueError, match=r'eta0: 500 -> 400') as e:
    checkpoints.Checkpointer(str(tmp_path), 5, {'eta0': 400, 'lr': 1e-3},
                             log=_quiet)
  assert 'lr' not in str(e.value)
  checkpoints.Checkpointer(str(tmp_path), 7, {'eta0': 500, 'lr': 1e-3},
                           log=_quiet)  # the same run: accepted.


@pytest.mark.parametrize('every', [0, -1, 2.5, True])
def test_bad_checkpoint_every_is_refused(tmp_path, every):
  with pytest.raises(ValueError, match='checkpoint_every'):
    checkpoints.Checkpointer(str(tmp_path), every, {})


def test_no_restore_when_nothing_was_saved(tmp_path):
  phase = checkpoints.Checkpointer(str(tmp_path), 5, {}, log=_quiet).phase('x')
  assert phase.restore(_state(0.0)) is None


def test_meta_is_saved_as_it_was_when_save_was_called(tmp_path):
  # The save is asynchronous: a history list that grows after `save` returns
  # must not reach the checkpoint (a resumed run would repeat its records).
  phase = checkpoints.Checkpointer(str(tmp_path), 5, {}, log=_quiet).phase('x')
  rows = [{'step': 5}]
  phase.save(5, _state(1.0), {'rows': rows})
  rows.append({'step': 10})
  phase.wait()
  assert phase.restore(_state(0.0))[2] == {'rows': [{'step': 5}]}
