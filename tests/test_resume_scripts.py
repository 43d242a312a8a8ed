"""experiments/mnist.py killed with SIGKILL and rerun: the same numbers.

The same command with `--checkpoint_every` resumes every phase from its
latest checkpoint; its results JSON equals an uninterrupted run's, bit for
bit, except the timings. Another flag in the same workdir is refused.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'mnist.py')
TINY = ['--dataset=synthetic', '--model=mlp', '--eta0=20', '--eta1=40',
        '--window=5', '--batch_size=32', '--num_seeds=2', '--chunk_size=10',
        '--k=0.3', '--l=0.5']
# Fields that differ between runs with the same numbers.
NOT_METRICS = {'timing', 'wall_s', 'environment', 'resumed', 'compile_s',
               'comparison', 'steps_per_s', 'overhead_s'}


def _command(workdir, *flags):
  return [sys.executable, '-u', SCRIPT, *TINY, *flags, f'--workdir={workdir}']


def _run_until(command, marker):
  """Runs `command`; SIGKILLs it at a stdout line containing all of `marker`."""
  proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if all(part in line for part in marker):
      proc.send_signal(signal.SIGKILL)
      break
  proc.wait(timeout=300)
  assert proc.returncode == -signal.SIGKILL, ''.join(lines[-20:])
  return lines


def _run(command):
  done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                        cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def _results(workdir):
  (path,) = (workdir / 'synthetic').glob('*.json')
  return json.loads(path.read_text())


def _metrics(tree):
  """`tree` without the fields that are timings (at any depth)."""
  if isinstance(tree, dict):
    return {k: _metrics(v) for k, v in tree.items() if k not in NOT_METRICS}
  if isinstance(tree, list):
    return [_metrics(v) for v in tree]
  return tree


def _killed_then_finished(tmp_path, flags, kills):
  workdir = tmp_path / 'killed'
  for marker in kills:
    _run_until(_command(workdir, *flags), marker)
  out = _run(_command(workdir, *flags))
  return workdir, out


@pytest.mark.slow
def test_mnist_killed_in_eta1_resumes_bit_identical(tmp_path):
  flags = ['--selector=random,topgrad', '--checkpoint_every=10']
  _run(_command(tmp_path / 'whole', *flags))
  # Killed twice inside η1: in random's (global step 40), then, after the
  # rerun resumed it, in topgrad's (global step 50). A kill loses the save
  # still being written (orbax's asynchronous one), never the one before it:
  # a phase's save waits for its previous one.
  workdir, out = _killed_then_finished(
      tmp_path, flags, [('eta1 [random, k=', ': step 20/40'),
                        ('eta1 [topgrad, k=', ': step 30/40')])
  resumed, whole = _results(workdir), _results(tmp_path / 'whole')
  k = resumed['ks'][0]
  steps = resumed['resumed']
  assert steps['eta0'] == 20 and steps[f'eta1 [random, k={k}]'] in (50, 60)
  assert steps[f'eta1 [topgrad, k={k}]'] in (40, 50), steps
  assert f'resumed from the checkpoint of step {steps["eta0"]}' in out
  assert _metrics(resumed) == _metrics(whole)
  assert resumed['cells'] and resumed['after_eta0'] is not None

  # Another flag in the same workdir: one line naming it, exit status 2.
  done = subprocess.run(_command(workdir, *flags, '--eta1=30'),
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert done.returncode == 2, done.stderr[-2000:]
  (line,) = [x for x in done.stderr.splitlines() if 'error' in x]
  assert '--eta1 differ' in line and 'eta1: 40 -> 30' in line, line


@pytest.mark.slow
def test_mnist_online_killed_resumes_bit_identical(tmp_path):
  flags = ['--freeze=autofreeze', '--check_every=20', '--checkpoint_every=10']
  _run(_command(tmp_path / 'whole', *flags))
  # In the online run, at its check of step 40 (the driver's state of step
  # 20 saved; the dense reference's done).
  workdir, out = _killed_then_finished(
      tmp_path, flags, [('online [autofreeze] step 40/60',)])
  assert 'resumed at step 20' in out
  resumed, whole = _results(workdir), _results(tmp_path / 'whole')
  assert resumed['frozen']['resumed']['autofreeze/driver'] == 20
  assert resumed['dense']['resumed']['dense/driver'] == 60
  assert _metrics(resumed) == _metrics(whole)
  assert len(whole['frozen']['checks']) == 3
