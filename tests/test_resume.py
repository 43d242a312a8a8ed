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

CONFIG = protocol.ProtocolConfig(eta0=20, eta1=30, k=0.3, l=0.5, window=10,
                                 batch_size=16, chunk_size=7,
                                 eval_batch_size=64)
SELECTORS = ('random', 'topgrad')
# What differs between two runs with the same numbers.
NOT_METRICS = ('timing', 'resumed', 'compile_s', 'cases', 'final_params',
               'alphas')


class Killed(Exception):
  """A stand-in for SIGKILL: raised by the log after some progress lines."""


def _killer(after: int, marker: str):
  """A log that raises `Killed` at the `after`-th line containing `marker`."""
  seen = []

  def log(line: str) -> None:
    if marker in line and ': step ' in line:
      seen.append(line)
      if len(seen) == after:
        raise Killed(line)
  return log


def _quiet(_):
  pass


@pytest.fixture(scope='module')
def task(make_task):
  return make_task((16,))


def _ckpt(path, every=10, identity=None):
  return checkpoints.Checkpointer(
      str(path), every, identity or {'config': dataclasses.asdict(CONFIG)},
      log=_quiet)


def _protocol(task, log=_quiet, checkpointer=None, config=CONFIG):
  return protocol.run_protocol(task, optax.adam(1e-2), config, SELECTORS,
                               [0, 1], log=log, checkpointer=checkpointer)


def _metrics(results):
  return {k: v for k, v in results.items() if k not in NOT_METRICS}


@pytest.fixture(scope='module')
def uninterrupted(task):
  return _protocol(task)


def _killed_then_resumed(task, path, kills, run):
  """`run(log, checkpointer)` killed at each of `kills`, then to its end."""
  for after, marker in kills:
    ckpt = _ckpt(path)
    with pytest.raises(Killed):
      run(_killer(after, marker), ckpt)
    ckpt.close()  # the saves a kill would have let finish.
  ckpt = _ckpt(path)
  results = run(_quiet, ckpt)
  ckpt.close()
  return results


def test_protocol_killed_mid_eta1_resumes_bit_identical(task, uninterrupted,
                                                        tmp_path):
  run = lambda log, ckpt: _protocol(task, log, ckpt)
  # Killed in η1 of the first selector (after its 2nd chunk: step 34, a
  # checkpoint at 30), then in η1 of the second (after its 2nd chunk: step 30, saved).
  resumed = _killed_then_resumed(
      task, tmp_path, [(2, 'eta1 [random'), (2, 'eta1 [topgrad')], run)
  assert _metrics(resumed) == _metrics(uninterrupted)
  assert resumed['resumed'] == {'eta0': 20, 'eta1 [random, k=332]': 50,
                                'eta1 [topgrad, k=332]': 30}


def test_protocol_with_checkpoints_equals_without(task, uninterrupted,
                                                  tmp_path):
  ckpt = _ckpt(tmp_path)
  results = _protocol(task, checkpointer=ckpt)
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
