# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""A structure search killed mid-search or mid-retraining resumes bit for bit.

In process, an exception raised by the progress callback after a given line
stands in for a kill; the slow test SIGKILLs `experiments/structure_search.py`
during the search and during the retraining and reruns the same command.
"""

import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from paramsel_jax import data
from paramsel_jax.structure import pipeline
from paramsel_jax.structure import search as search_lib
from paramsel_jax.structure import training
from paramsel_jax.train import checkpoints

from killing import Killed, killer  # tests/killing.py

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The pipeline's saves every 3 steps: inside search chunks (step 3 of a
# 4-step chunk, with its pending metrics) and inside retraining chunks of 5.
EVERY = 3
CONFIG = pipeline.PipelineConfig(
    dataset='synthetic', mlp_widths=(4, 8), mlp_depth=2,
    activations=('relu', 'tanh'), seeds=(0, 1),
    search=search_lib.SearchConfig(warmup_steps=4, search_steps=8,
                                   chunk_steps=4, batch_size=16),
    retrain=training.TrainConfig(steps=10, batch_size=16, chunk_steps=5),
    random_samples=0, fixed=False, input_sigmas=(0.1,), weight_sigmas=(0.1,),
    noise_repeats=1, eval_batch_size=32)


def comparable(results):
  """The results without wall-clock times and dates (and the table, which
  prints times)."""
  if isinstance(results, dict):
    return {k: comparable(v) for k, v in results.items()
            if 'seconds' not in k and k not in ('date', 'table')}
  if isinstance(results, list):
    return [comparable(v) for v in results]
  return results


@pytest.fixture(scope='module')
def tiny():
  return data.synthetic(num_train=128, num_test=32, valid_size=32,
                        image_shape=(8, 8, 1), num_classes=4)


def checkpointer(directory):
  return checkpoints.Checkpointer(
      os.path.join(directory, 'checkpoints'), EVERY,
      pipeline.checkpoint_identity(CONFIG, valid_size=32), log=lambda _: None)


def run(directory, dataset, progress=None, ckpt=None):
  """One pipeline run; its checkpoints waited for (as at a process' end)."""
  try:
    return pipeline.run_pipeline(CONFIG, dataset, directory,
                                 progress=progress, checkpointer=ckpt)
  finally:
    if ckpt is not None:
      ckpt.wait()


def _equal_trees(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype and bool((x == y).all())


@pytest.mark.slow  # ~8 s of CPU (three compilations, orbax): over the default tier's 3 s.
def test_train_killed_mid_chunk_resumes_bit_identical(tmp_path):
  from paramsel_jax import models  # pylint: disable=g-import-not-at-top
  model = models.create_model('mlp', widths=(4,), num_classes=2)
  params = models.init_params(model, jax.random.key(0), (2, 2, 1))
  init = lambda: jax.tree.map(jnp.copy, params)  # `train` donates its params.
  x = jax.random.randint(jax.random.key(3), (16, 2, 2, 1), 0, 255
                         ).astype(jnp.uint8)
  y = jnp.arange(16) % 2
  config = training.TrainConfig(steps=8, batch_size=4, chunk_steps=4)
  train = lambda key=1, **kw: training.train(
      model.apply, init(), x, y, jax.random.key(key), config, **kw)[0]
  whole = train()
  ckpt = checkpoints.Checkpointer(str(tmp_path), 2, {}, log=lambda _: None)
  # Killed at the line of step 4 (before its save): resumed from step 2.
  with pytest.raises(Killed):
    train(checkpoints=ckpt.phase('a'), progress=killer('step 4/8'))
  ckpt.wait()
  assert ckpt.phase('a').steps() == [2]
  _equal_trees(train(checkpoints=ckpt.phase('a')), whole)
  assert ckpt.phase('a').steps()[-1] == 8
  with pytest.raises(ValueError, match='another PRNG key'):
    train(key=2, checkpoints=ckpt.phase('a'))


@pytest.mark.slow
def test_pipeline_killed_mid_search_and_mid_retraining_resumes_bit_identical(
    tiny, tmp_path):
  reference = comparable(run(str(tmp_path / 'off'), tiny))

  d = str(tmp_path / 'killed')
  # Killed in the search's second search chunk (after step 8 of 12; the last
  # save was at step 6, halfway through that chunk).
  with pytest.raises(Killed):
    run(d, tiny, killer('search step 8/12'), checkpointer(d))
  phases = checkpointer(d)
  assert phases.phase('search/seeds 0,1').steps()[-1] == 6
  assert not os.path.exists(os.path.join(d, 'architecture_seed0.json'))
  # Rerun, killed again while retraining seed 1's derived net (at the line of
  # its step 5 of 10; its last save was at step 3).
  with pytest.raises(Killed):
    run(d, tiny, killer('searched seed 1 step 5/10'), checkpointer(d))
  assert phases.phase('search/seeds 0,1').steps()[-1] == 12
  assert phases.phase('train/searched seed 0').steps()[-1] == 10
  assert phases.phase('train/searched seed 1').steps()[-1] == 3
  assert os.path.exists(os.path.join(d, 'architecture_seed1.json'))
  # The search is restored at its end: its progress lines are not printed.
  lines = []
  resumed = run(d, tiny, lines.append, checkpointer(d))
  assert not any('search step' in line for line in lines)
  assert not any('searched seed 0 step' in line for line in lines)
  assert any('searched seed 1 step 5/10' in line for line in lines)
  assert comparable(resumed) == reference
  with open(os.path.join(d, 'results.json'), encoding='utf-8') as f:
    assert comparable(json.load(f)) == comparable(
        json.loads(json.dumps(resumed)))
  # The resumed loops count their earlier runs' time.
  assert resumed['search']['seconds'] > 0


# ---------------------------------------------------------------------------
# The script, SIGKILLed.

SCRIPT_FLAGS = [
    '--dataset=synthetic', '--synthetic_shape=8,8,1', '--synthetic_train=256',
    '--synthetic_test=64', '--widths=8,16', '--depth=2',
    '--activations=relu,tanh', '--seeds=0', '--warmup_steps=50',
    '--search_steps=150', '--chunk_steps=25', '--batch_size=16',
    '--retrain_steps=2000', '--random_samples=0', '--nofixed',
    '--reference_model=none', '--input_sigmas=0.1', '--weight_sigmas=0.1',
    '--noise_repeats=1', '--checkpoint_every=25']


def _script(workdir, kill_at=None):
  """Runs the script; with `kill_at`, SIGKILLs it at the first output line
  containing that text (after the checkpoint of a later step is on disk)."""
  cmd = [sys.executable, os.path.join(REPO, 'experiments',
                                      'structure_search.py'),
         f'--workdir={workdir}', *SCRIPT_FLAGS]
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONUNBUFFERED': '1'}
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)
  out = []
  for line in proc.stdout:
    out.append(line)
    if kill_at is not None and kill_at in line:
      proc.send_signal(signal.SIGKILL)
      break
  proc.stdout.close()
  rc = proc.wait()
  text = ''.join(out)
  if kill_at is None:
    assert rc == 0, text
  else:
    assert rc == -signal.SIGKILL, text
  return text


@pytest.mark.slow
def test_script_sigkilled_mid_search_and_mid_retraining_resumes(tmp_path):
  killed = str(tmp_path / 'killed')
  # During the search (at the step-100 line: the saves of steps 25, ..., 100
  # done or on their way).
  _script(killed, kill_at='search step 100/200')
  assert os.path.isdir(os.path.join(killed, 'checkpoints'))
  assert not os.path.exists(os.path.join(killed, 'results.json'))
  # Rerun: the search resumes; killed during the retraining.
  text = _script(killed, kill_at='searched seed 0 step 1000/2000')
  assert 'resumed from the checkpoint of step' in text
  assert 'search step 25/200' not in text
  # Rerun to the end.
  text = _script(killed)
  assert 'resumed from the checkpoint of step' in text
  assert 'search step' not in text  # The search is restored at its end.
  whole = str(tmp_path / 'whole')
  _script(whole)
  results = []
  for d in (killed, whole):
    with open(os.path.join(d, 'results.json'), encoding='utf-8') as f:
      results.append(comparable(json.load(f)))
  assert results[0] == results[1]
