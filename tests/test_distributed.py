"""The main job over several processes (`paramsel_jax.train.distributed`).

Default tier: the settings' parsing and its errors, in-process. Slow tier:
experiments/mnist.py on 2 processes x 2 CPU devices (gloo) against 1
process x 4 devices, and a killed process.
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from paramsel_jax.train import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'mnist.py')
TINY = ['--dataset=synthetic', '--model=mlp', '--eta0=20', '--eta1=20',
        '--window=5', '--batch_size=32', '--chunk_size=10',
        '--train_eval_size=0', '--seed_axis=vmap']


# --- Settings: flags, environment, errors (default tier, fast). ---

def test_off_by_default_and_explicit_flags():
  """Off without settings; the three flags make one process of a job."""
  assert distributed.settings('off', None, None, None, environ={}) is None
  s = distributed.settings('off', 'node0:1234', 4, 3, environ={})
  assert s == distributed.Settings('node0:1234', 4, 3, False,
                                   distributed.DEFAULT_TIMEOUT_S)
  assert distributed.settings('on', '[::1]:80', '2', '0', timeout_s=7,
                              environ={})[:3] == ('[::1]:80', 2, 0)


def test_environment_and_auto():
  """--distributed=on reads JAX_*; auto leaves everything to jax."""
  env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:9999', 'JAX_NUM_PROCESSES': '2',
         'JAX_PROCESS_ID': '1'}
  assert distributed.settings('on', None, None, None, environ=env)[:3] == (
      '10.0.0.1:9999', 2, 1)
  # The environment is read only with --distributed=on.
  assert distributed.settings('off', None, None, None, environ=env) is None
  auto = distributed.settings('auto', None, None, None, environ=env)
  assert auto.auto and auto[:3] == (None, None, None)


@pytest.mark.parametrize('args, message', [
    (('off', 'node0:1234', None, None),
     '--coordinator_address given without --num_processes, --process_id'),
    (('off', None, 2, 0), 'without --coordinator_address'),
    (('on', None, None, None), '--distributed=on but JAX_COORDINATOR_ADDRESS, '
     'JAX_NUM_PROCESSES, JAX_PROCESS_ID not set'),
    (('auto', 'node0:1234', 2, 0), '--distributed=auto with '
     '--coordinator_address, --num_processes, --process_id'),
    (('cluster', None, None, None), "--distributed='cluster'; accepted: off, "
     'on, auto'),
    (('off', 'node0', 2, 0), "coordinator_address='node0'; accepted: HOST:PORT"),
    (('off', 'node0:70000', 2, 0), "coordinator_address='node0:70000'"),
    (('off', 'node0:1234', 0, 0), 'num_processes=0; accepted: an integer >= 1'),
    (('off', 'node0:1234', 2, 2), 'process_id=2 with num_processes=2; '
     'accepted: 0..1'),
    (('off', 'node0:1234', 2, -1), 'process_id=-1'),
    (('on', 'node0:1234', 'two', 0), "num_processes='two'; accepted: an integer"),
])
def test_bad_settings_name_the_value(args, message):
  """A bad or partial setting: one ValueError naming it and what is accepted."""
  with pytest.raises(ValueError) as e:
    distributed.settings(*args, environ={})
  assert message in str(e.value)


def test_partial_environment_names_what_is_missing():
  """The environment variable that is missing is named."""
  with pytest.raises(ValueError, match='JAX_PROCESS_ID not set'):
    distributed.settings('on', None, None, None, environ={
        'JAX_COORDINATOR_ADDRESS': 'h:1', 'JAX_NUM_PROCESSES': '2'})


def test_bad_timeout():
  """The heartbeat timeout must be a positive number of seconds."""
  with pytest.raises(ValueError, match='--distributed_timeout=0'):
    distributed.settings('off', 'h:1', 2, 0, timeout_s=0, environ={})


def test_flags_reader_and_script_error_before_any_work():
  """The flags of `define_flags` read into `Settings`, or the ValueError."""
  from absl import flags
  values = flags.FlagValues()
  read = distributed.define_flags(values)
  values(['x', '--coordinator_address=h:1', '--num_processes=2',
          '--process_id=1', '--distributed_timeout=9'])
  assert read() == distributed.Settings('h:1', 2, 1, False, 9)
  values = flags.FlagValues()
  read = distributed.define_flags(values)
  values(['x', '--num_processes=2'])
  with pytest.raises(ValueError, match='--num_processes given without'):
    read()


def test_single_process_helpers():
  """One process: the writer, no prefix, fetch is np.asarray, sync no-op."""
  import jax.numpy as jnp
  assert distributed.process_count() == 1 and distributed.is_writer()
  assert distributed.log_prefix() == ''
  assert distributed.fetch(jnp.arange(4)).tolist() == [0, 1, 2, 3]
  distributed.sync('test')  # nothing to wait for.


# --- The main job over processes (slow tier, subprocesses). ---

def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(devices):
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                         f' --xla_force_host_platform_device_count={devices}'))


def _start(args, out, processes, devices, port):
  """experiments/mnist.py on `processes` processes of `devices` devices.

  Returns the processes and the files their output goes to.
  """
  os.makedirs(out, exist_ok=True)
  extra = lambda i: ([] if processes == 1 else [
      f'--coordinator_address=127.0.0.1:{port}',
      f'--num_processes={processes}', f'--process_id={i}'])
  procs, logs = [], []
  for i in range(processes):
    logs.append(os.path.join(out, f'process{i}.log'))
    with open(logs[-1], 'w', encoding='utf-8') as f:
      procs.append(subprocess.Popen(
          [sys.executable, SCRIPT, *TINY, *args, f'--output_dir={out}',
           *extra(i)], env=_env(devices), cwd=ROOT, stdout=f,
          stderr=subprocess.STDOUT))
  return procs, logs


def _read(path):
  with open(path, encoding='utf-8', errors='replace') as f:
    return f.read()


def _results(args, out, processes, devices):
  procs, paths = _start(args, out, processes, devices, _free_port())
  for p in procs:
    p.wait(timeout=600)
  logs = [_read(path) for path in paths]
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f'process {i}:\n{log[-3000:]}'
  (path,) = glob.glob(os.path.join(out, 'synthetic', '*.json'))
  return json.load(open(path, encoding='utf-8')), logs


def _metrics(results):
  cells = [{k: c[k] for k in ('w', 'pruned', 'alpha_count', 'beta_count',
                              'layers', 'frozen_moved', 'diverged')}
           for c in results['cells']]
  return {'after_eta0': results['after_eta0'], 'cells': cells}


@pytest.mark.slow
def test_two_processes_equal_one_bit_for_bit(tmp_path):
  """Seeds over 2 x 2 devices of 2 processes == over 4 of one process."""
  args = ['--num_seeds=4']
  two, logs = _results(args, str(tmp_path / 'two'), 2, 2)
  one, _ = _results(args, str(tmp_path / 'one'), 1, 4)
  assert 'seeds over 4 devices' in logs[0] and '2 processes' in logs[0]
  assert '[process 1] eta0: step 20/20' in logs[1]  # process 1 prints too,
  assert 'results written' not in logs[1]  # but only process 0 writes.
  assert (two['environment']['processes'], one['environment']['processes']) == (2, 1)
  assert _metrics(two) == _metrics(one)


@pytest.mark.slow
def test_two_processes_batch_sharded_equal_to_rounding(tmp_path):
  """One seed, each minibatch over the 4 devices of 2 processes (gloo).

  The gradient is all-reduced across the processes, in another order than
  on one device: equal to float rounding (NOTES_DIST.md has the numbers).
  """
  args = ['--num_seeds=1', '--shard_batch']
  two, logs = _results(args, str(tmp_path / 'two'), 2, 2)
  one, _ = _results(args, str(tmp_path / 'one'), 1, 4)
  assert 'each minibatch over 4 devices' in logs[0]
  a, b = _metrics(two), _metrics(one)
  for ca, cb in zip(a['cells'], b['cells']):
    assert ca['alpha_count'] == cb['alpha_count']
    for part in ('w', 'pruned'):
      for m in ca[part]:
        np.testing.assert_allclose(ca[part][m], cb[part][m], rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('victim', [1, 0])
def test_a_killed_process_stops_the_other_with_a_message(tmp_path, victim):
  """A SIGKILL of one of 2 processes: the other exits non-zero, naming it.

  Within the heartbeat timeout (plus slack for a loaded machine); process 0
  is the coordinator, whose loss jax's client answers at once by aborting.
  """
  timeout = 10
  procs, logs = _start(['--num_seeds=4', '--eta0=100000',
                        f'--distributed_timeout={timeout}'],
                       str(tmp_path), 2, 2, _free_port())
  survivor, log = procs[1 - victim], logs[1 - victim]
  deadline = time.monotonic() + 300
  while 'eta0: step' not in _read(log):  # training runs on both.
    assert time.monotonic() < deadline and survivor.poll() is None, (
        _read(log)[-3000:])
    time.sleep(0.5)
  procs[victim].send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  try:
    survivor.wait(timeout=3 * timeout + 30)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  waited = time.monotonic() - killed_at
  seen = _read(log)
  print(f'survivor exit {survivor.returncode} after {waited:.1f} s')
  assert survivor.returncode != 0, seen[-3000:]
  assert waited < 3 * timeout + 30
  if victim == 0:  # jax's client aborts at once, with its own message.
    assert 'This most likely indicates that another task died' in seen, seen[-3000:]
    assert 'rerun the same command on every process' in seen  # said at start.
  else:
    assert survivor.returncode == distributed.PEER_GONE_STATUS, seen[-3000:]
    assert '[process 0] error: process 1 is gone' in seen, seen[-3000:]
    assert 'resumes from the last checkpoint' in seen


_CHECKPOINT_SCRIPT = r'''
import sys
from paramsel_jax.train import checkpoints, distributed, mesh as mesh_lib
port, pid, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
distributed.initialize(distributed.settings('on', f'127.0.0.1:{port}', 2, pid))
import jax, jax.numpy as jnp, numpy as np
mesh = mesh_lib.device_mesh(4)
keys = mesh_lib.seed_keys(range(4), mesh)
state = {'w': jax.jit(jax.vmap(lambda k: jax.random.normal(k, (3,))))(keys),
         'key': keys}
ckpt = checkpoints.Checkpointer(workdir, 5, {'run': 1})
ckpt.phase('eta0').save(5, state, {'note': 'x'})
ckpt.wait()
distributed.sync('saved')
step, back, meta = ckpt.phase('eta0').restore(jax.tree.map(jnp.zeros_like, state))
same = bool((distributed.fetch(back['w']) == distributed.fetch(state['w'])).all())
keys_same = bool((distributed.fetch(jax.random.key_data(back['key'])) ==
                  distributed.fetch(jax.random.key_data(keys))).all())
print('RESULT', step, meta, same, keys_same, back['w'].sharding == state['w'].sharding,
      flush=True)
ckpt.close()
try:
  checkpoints.Checkpointer(workdir, 5, {'run': 2})
except ValueError as e:
  print('REFUSED', 'run: 1 -> 2' in str(e), flush=True)
'''


@pytest.mark.slow
def test_checkpoints_are_collective_over_two_processes(tmp_path):
  """Both processes save their shards, restore them bit for bit; one identity."""
  port, workdir = _free_port(), str(tmp_path / 'ckpt')
  procs = [subprocess.Popen(
      [sys.executable, '-c', _CHECKPOINT_SCRIPT, str(port), str(i), workdir],
      env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
    assert "RESULT 5 {'note': 'x'} True True True" in out, out[-3000:]
    assert 'REFUSED True' in out, out[-3000:]
  names = sorted(os.listdir(workdir))  # one phase directory, one identity.
  assert len(names) == 2 and names[0].startswith('eta0') and (
      names[1] == 'identity.json'), names


_HOST_DATA_SCRIPT = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from paramsel_jax.train import distributed
if sys.argv[2] != '-':
  distributed.initialize(distributed.settings(
      'on', f'127.0.0.1:{sys.argv[2]}', 2, int(sys.argv[3])))
import optax
import jax
import test_general_task as t
from paramsel_jax.protocol import protocol
config = protocol.ProtocolConfig(eta0=20, eta1=20, k=0.5, l=0.9, window=10,
                                 chunk_size=25, granularity='layer',
                                 step='active', shard_batch=True)
r = protocol.run_protocol(t.plain_task(), optax.adam(1e-2), config,
                          ['topgrad'], [0, 1], log=print)
print('RESULT', json.dumps({'cells': r['cells'], 'eta0': r['after_eta0']}))
'''


@pytest.mark.slow
def test_host_data_fed_by_each_process_equals_one_process():
  """Host batches (`Feed`): each process feeds its own seed; 2 x 2 == 1 x 4.

  Seeds over 2 processes, each seed's batch over that process's 2 devices:
  the same 2 x 2 mesh as one process of 4 devices, so bit for bit.
  """
  here, port = os.path.dirname(__file__), _free_port()
  run = lambda args, devices: subprocess.Popen(
      [sys.executable, '-c', _HOST_DATA_SCRIPT, here, *args], env=_env(devices),
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  procs = [run([str(port), str(i)], 2) for i in range(2)] + [run(['-'], 4)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  results = []
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
    line = [l for l in out.splitlines() if 'RESULT ' in l][0]
    results.append(json.loads(line.split('RESULT ', 1)[1]))
  assert 'each minibatch over 2 devices' in outs[0]
  assert results[0] == results[1] == results[2]


@pytest.mark.slow
@pytest.mark.parametrize('args, message', [
    (['--distributed=auto'], 'error: --distributed=auto found no cluster'),
    (['--num_processes=2'], 'error: --num_processes given without '
     '--coordinator_address, --process_id'),
])
def test_script_refuses_bad_settings_before_any_work(args, message):
  """experiments/mnist.py: one line on stderr, exit 2, nothing trained."""
  env = {k: v for k, v in _env(1).items() if not k.startswith(
      ('SLURM_', 'OMPI_', 'TPU_'))}
  done = subprocess.run([sys.executable, SCRIPT, *TINY, *args], env=env,
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
  assert 'eta0' not in done.stdout
