"""experiments/sparsity.py and paramsel_jax.lab.sparsity_experiment: the table, its checks."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paramsel_jax.lab import sparsity_experiment as lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'sparsity.py')


def _script(*args, workdir):
  return subprocess.run([sys.executable, SCRIPT, *args, f'--workdir={workdir}'],
                        capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.parametrize('change, flag', [
    ({'algorithms': ('magnitude', 'foo')}, '--algorithm=foo'),
    ({'sparsities': (1.0,)}, '--sparsity=1.0'),
    ({'model': 'resnet'}, '--model=resnet'),
    ({'data': 'cifar10'}, '--data=cifar10'),
    ({'distribution': 'global'}, '--distribution=global'),
    ({'schedule': 'cubic'}, '--schedule=cubic'),
    ({'steps': 0}, '--steps=0'),
    ({'drop_fraction': 1.5}, '--drop_fraction=1.5'),
    ({'begin': 0.8, 'end': 0.5}, '--begin=0.8'),
])
def test_validate_names_the_bad_value(change, flag):
  config = lib.SparsityConfig(**change)
  with pytest.raises(ValueError, match='accepted') as e:
    lib.validate(config)
  assert flag in str(e.value)


def test_pruners_of_each_algorithm():
  config = lib.validate(lib.SparsityConfig(algorithms=lib.ALGORITHMS,
                                           steps=1000, update_every=50))
  got = {a: lib.make_pruner(config, a, 0.9) for a in lib.ALGORITHMS}
  assert got['global_magnitude'].distribution == 'global'
  assert got['magnitude'].schedule.sparsity(750, 0.9) == pytest.approx(0.9)
  assert float(got['magnitude'].schedule.sparsity(100, 0.9)) == 0.0
  assert got['rigl'].regrow == 'gradient' and got['set'].regrow == 'random'
  assert got['static'].init == 'random' and not got['static'].schedule.updates
  assert got['ste'].ste and got['saliency'].score == 'saliency'
  assert got['ste'].schedule.every == 1  # every 100 diverged at 95%.
  one_shot = lib.make_pruner(
      lib.SparsityConfig(schedule='one_shot', steps=1000), 'magnitude', 0.9)
  hits = one_shot.schedule.is_update(np.arange(1000))
  assert np.flatnonzero(np.asarray(hits)).tolist() == [750]


@pytest.mark.slow  # A subprocess: jax's import alone takes seconds.
def test_bad_flag_is_one_line_before_any_work(tmp_path):
  done = _script('--algorithm=rigl,prune_all', '--data=synthetic',
                 workdir=tmp_path / 'out')
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr.strip().splitlines() == [
      f'sparsity.py: error: --algorithm=prune_all; accepted: '
      f'{", ".join(lib.ALGORITHMS)}.']
  assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_script_writes_the_table(tmp_path):
  done = _script('--data=synthetic', '--algorithm=magnitude,rigl',
                 '--sparsity=0.9,0.5', '--seeds=2', '--steps=12',
                 '--update_every=2', '--eval_every=6', '--batch_size=16',
                 workdir=tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'step 6/12' in done.stdout
  stem = str(tmp_path / 'sparsity_lenet300_synthetic_magnitude-rigl_0.9-0.5')
  with open(stem + '.json') as f:
    results = json.load(f)
  with open(stem + '.md') as f:
    table = f.read()
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.')]
  assert len(results['rows']) == 8 and len(results['summary']) == 4
  assert len(table.strip().splitlines()) == 2 + 4
  for s in results['summary']:
    group = [r for r in results['rows']
             if (r['algorithm'], r['sparsity']) == (s['algorithm'], s['sparsity'])]
    assert [r['seed'] for r in group] == [0, 1]
    assert s['test_error']['mean'] == pytest.approx(
        np.mean([r['test_error'] for r in group]))
    # The masks keep the target; nonzeros are at most those (a regrown weight
    # without gradient, or a ReLU-dead unit's, stays exactly 0).
    for r in group:
      assert r['mask_kept'] == pytest.approx(1 - s['sparsity'], abs=2e-3)
      assert 0 < r['kernel_kept'] <= r['mask_kept']
    assert s['kept']['mean'] > s['kernel_kept']['mean']  # biases are kept.
    line = (f'| {s["algorithm"]} | {s["sparsity"]:g} | 2 | '
            f'{100 * s["test_error"]["mean"]:.2f} ± ')
    assert line in table
