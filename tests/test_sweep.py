"""The sweep: grid, resumable store, aggregation, outputs, flags."""

import csv
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from paramsel_jax.optim import optimizers
from paramsel_jax.lab import progress
from paramsel_jax.protocol import protocol
from paramsel_jax import report
from paramsel_jax.lab import sweep
from paramsel_jax.lab.sweep import grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'sweep.py')

TINY = sweep.SweepConfig(
    dataset='synthetic', models=('mlp',), selectors=('random', 'topgrad'),
    ks=(0.1, 0.5), ls=(0.05, 0.2), seeds=(0, 1),
    protocol=protocol.ProtocolConfig(eta0=10, eta1=10, window=5, batch_size=32,
                                     chunk_size=10, eval_batch_size=64,
                                     seed_axis='auto'),
    synthetic_size=128, synthetic_shape=(8, 8, 1))
OUTPUTS = ('results.json', 'cells.csv', 'summary.csv', 'tables.txt', 'tables.md')


class _Counter:
  """Counts the η0 and η1 phases run, by wrapping `Runner.train`."""

  def __init__(self, monkeypatch):
    self.labels = []
    original = protocol.Runner.train

    def train(runner, state, first_step, num_steps, window, log, label,
              **kwargs):
      self.labels.append(label)
      return original(runner, state, first_step, num_steps, window, log, label,
                      **kwargs)

    monkeypatch.setattr(protocol.Runner, 'train', train)

  @property
  def eta1(self):
    return [l for l in self.labels if l.startswith('eta1')]


def _quiet(msg):
  del msg


def _read(directory):
  return {name: (directory / name).read_bytes() for name in OUTPUTS}


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  directory = tmp_path_factory.mktemp('full')
  results = sweep.run_sweep(TINY, str(directory), log=_quiet)
  return directory, results


def test_grid_expands_in_table_order():
  cells = sweep.expand_grid(TINY)
  assert len(cells) == 2 * 2 * 2  # selector × k × l
  assert [(c.k, c.l, c.selector) for c in cells[:3]] == [
      (0.1, 0.05, 'random'), (0.1, 0.05, 'topgrad'), (0.1, 0.2, 'random')]
  assert len(sweep.expand_groups(TINY)) == 2 * 2  # selector × k
  two = dataclasses.replace(
      TINY, models=('mlp', 'lenet300'),
      optimizers=(optimizers.OptimizerConfig(),
                  optimizers.OptimizerConfig('sgd', learning_rate=0.1)))
  assert len(sweep.expand_grid(two)) == 4 * 8
  keys = {sweep.cell_key(two, c) for c in sweep.expand_grid(two)}
  assert len(keys) == 32


def test_retrain_grid_has_one_cell_per_selector_and_l():
  retrain = dataclasses.replace(
      TINY, protocol=dataclasses.replace(TINY.protocol, mode='retrain'))
  assert retrain.protocol.k is None
  cells = sweep.expand_grid(retrain)
  assert [(c.selector, c.k, c.l) for c in cells] == [
      ('random', None, 0.05), ('topgrad', None, 0.05),
      ('random', None, 0.2), ('topgrad', None, 0.2)]
  assert len(sweep.expand_groups(retrain)) == 4


@pytest.mark.parametrize('change', [
    dict(protocol=dataclasses.replace(TINY.protocol, eta1=11)),
    dict(protocol=dataclasses.replace(TINY.protocol, mode='retrain')),
    dict(seeds=(0, 2)),
    dict(optimizers=(optimizers.OptimizerConfig(learning_rate=2e-3),)),
    dict(synthetic_size=64),
])
def test_cell_key_depends_on_everything_that_changes_results(change):
  cell = sweep.expand_grid(TINY)[-1]
  other = dataclasses.replace(TINY, **change)
  other_cell = sweep.expand_grid(other)[-1]  # the same selector and l.
  assert sweep.cell_key(TINY, cell) != sweep.cell_key(other, other_cell)
  # Not on how the steps are chunked or where the data lives.
  same = dataclasses.replace(
      TINY, protocol=dataclasses.replace(TINY.protocol, chunk_size=3),
      data_dir='/elsewhere')
  assert sweep.cell_key(TINY, cell) == sweep.cell_key(same, cell)


@pytest.mark.parametrize('change, message', [
    (lambda: dict(selectors=('topgrad', 'best')), "Unknown selector 'best'"),
    (lambda: dict(selectors=()), 'selectors is empty'),
    (lambda: dict(models=('resnet',)), "Unknown model 'resnet'"),
    (lambda: dict(models=()), 'models is empty'),
    (lambda: dict(ks=()), 'ks is empty'),
    (lambda: dict(ls=()), 'ls is empty'),
    (lambda: dict(ks=(0.1, 2.0)), 'ks contains 2.0'),
    (lambda: dict(ks=(5,)), 'ks contains 5'),
    (lambda: dict(ks=(0.0,)), 'ks contains 0.0'),
    (lambda: dict(ls=(0.05, 1.5)), 'ls contains 1.5'),
    (lambda: dict(ls=(-0.1,)), 'ls contains -0.1'),
    (lambda: dict(ks=(0.1, 0.1)), 'repeats'),
    (lambda: dict(seeds=(0, 0)), 'repeats'),
    (lambda: dict(optimizers=(optimizers.OptimizerConfig('lbfgs'),)), "Unknown optimizer 'lbfgs'"),
    (lambda: dict(protocol=dataclasses.replace(TINY.protocol, window=50)), 'window=50'),
    (lambda: dict(ks=(1e-7,)), 'rounds to 0 coordinates'),
])
def test_bad_config_raises_one_clear_error(change, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(')):
    # Most are caught where the config is made, the rest by validate_sweep.
    sweep.validate_sweep(dataclasses.replace(TINY, **change()))


@pytest.mark.slow
def test_bad_flag_fails_before_any_work(tmp_path):
  done = subprocess.run(
      [sys.executable, SCRIPT, '--dataset=synthetic', '--model=mlp',
       '--selector=topgrad,nope', f'--workdir={tmp_path / "out"}'],
      capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert done.returncode != 0
  assert "Unknown selector 'nope'; accepted:" in done.stderr
  assert 'Traceback' not in done.stderr
  assert len(done.stderr.strip().splitlines()) == 1, done.stderr
  assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_outputs_are_written_and_summaries_match(uninterrupted):
  directory, results = uninterrupted
  for name in OUTPUTS + ('mlp_adam_lr_0.001_loss_vs_k.png',
                         'mlp_adam_lr_0.001_loss_vs_l.png'):
    assert (directory / name).stat().st_size > 0, name
  assert (directory / 'mlp_adam_lr_0.001_loss_vs_k.png').read_bytes()[:4] == b'\x89PNG'
  assert results['finished_cells'] == results['total_cells'] == 8
  rows = list(csv.DictReader(io.StringIO((directory / 'cells.csv').read_text())))
  assert len(rows) == 8 * 2  # cells × seeds
  summary = list(csv.DictReader(io.StringIO((directory / 'summary.csv').read_text())))
  assert len(summary) == 8
  for cell, row in zip(results['cells'], summary):
    for part in sweep.PARTS:
      for metric in sweep.METRICS:
        values = cell[part][metric]
        assert len(values) == 2 and np.all(np.isfinite(values))
        want = report.summarize(values)
        assert cell['summary'][part][metric] == want
        assert float(row[f'{part}_{metric}_ci95']) == want['ci95']
    assert cell['frozen_moved'] == [False, False]
  # Exactly one best selector per (k, l), the one with the lowest loss.
  for k in TINY.ks:
    for l in TINY.ls:
      group = [c for c in results['cells'] if c['k'] == k and c['l'] == l]
      best = [c for c in group if c['best']]
      assert len(best) == 1
      assert best[0]['summary']['pruned']['test_loss']['mean'] == min(
          c['summary']['pruned']['test_loss']['mean'] for c in group)
  table = (directory / 'tables.txt').read_text()
  assert 'mean ± 95% CI' in table
  assert len(re.findall(r'[a-z] \* ', table)) == 4  # one best per (k, l).
  markdown = (directory / 'tables.md').read_text()
  rows = [line for line in markdown.splitlines() if re.match(r'\| \d+% \|', line)]
  assert len(rows) == 4 and all(row.count('**') == 2 for row in rows)
  assert json.loads((directory / 'results.json').read_text()) == results


@pytest.mark.slow
def test_resume_after_kill_gives_identical_results(uninterrupted, tmp_path,
                                                   monkeypatch):
  full_dir, _ = uninterrupted

  class Killed(Exception):
    pass

  def kill(self, count, note=''):
    raise Killed(note)

  with monkeypatch.context() as patch:
    patch.setattr(progress.Progress, 'update', kill)  # right after the first group is saved.
    with pytest.raises(Killed):
      sweep.run_sweep(TINY, str(tmp_path), log=_quiet)
  assert len(os.listdir(tmp_path / 'cells')) == 2  # one group: 2 l's.
  assert not (tmp_path / 'results.json').exists()

  counter = _Counter(monkeypatch)
  lines = []
  sweep.run_sweep(TINY, str(tmp_path), log=lines.append)
  assert len(counter.eta1) == 3  # the 3 unfinished (selector, k) groups.
  # η0 was saved before the kill and restored, not recomputed ...
  assert 'eta0' not in counter.labels
  assert any('eta0: restored from' in line for line in lines)
  # ... and the results are those of the uninterrupted sweep, bit for bit.
  assert _read(tmp_path) == _read(full_dir)


@pytest.mark.slow
def test_finished_sweep_is_skipped(uninterrupted, monkeypatch):
  full_dir, _ = uninterrupted
  before = _read(full_dir)
  counter = _Counter(monkeypatch)
  lines = []
  sweep.run_sweep(TINY, str(full_dir), log=lines.append)
  assert counter.labels == []  # not even η0.
  assert any('8 already finished' in line for line in lines)
  assert _read(full_dir) == before


@pytest.mark.slow
def test_other_settings_do_not_mix(uninterrupted, tmp_path, monkeypatch):
  full_dir, full = uninterrupted
  for name in ('cells', 'runs'):
    os.makedirs(tmp_path / name)
    for f in os.listdir(full_dir / name):
      (tmp_path / name / f).write_bytes((full_dir / name / f).read_bytes())
  shutil.copytree(full_dir / 'eta0', tmp_path / 'eta0')
  changed = dataclasses.replace(
      TINY, ks=(0.1, 0.3), protocol=dataclasses.replace(TINY.protocol, eta1=12))
  counter = _Counter(monkeypatch)
  results = sweep.run_sweep(changed, str(tmp_path), log=_quiet)
  assert len(counter.eta1) == 4  # all of them: eta1 changed.
  assert 'eta0' not in counter.labels  # η0 did not change: it is reused.
  other_eta0 = dataclasses.replace(
      changed, protocol=dataclasses.replace(TINY.protocol, eta0=8))
  assert grid.eta0_identity(other_eta0, 'mlp', TINY.optimizers[0]) != (
      grid.eta0_identity(changed, 'mlp', TINY.optimizers[0]))
  assert results['finished_cells'] == 8
  assert sorted({c['k'] for c in results['cells']}) == [0.1, 0.3]
  old = {c['key'] for c in full['cells']}
  assert not old & {c['key'] for c in results['cells']}


@pytest.mark.slow
def test_retrain_mode_reports_anchors(tmp_path, monkeypatch):
  config = dataclasses.replace(
      TINY, selectors=('magnitude',), ls=(0.08, 0.05),
      protocol=dataclasses.replace(TINY.protocol, mode='retrain'))
  counter = _Counter(monkeypatch)
  results = sweep.run_sweep(config, str(tmp_path), log=_quiet)
  assert len(counter.eta1) == 2
  assert [(c['k'], c['l']) for c in results['cells']] == [(None, 0.08), (None, 0.05)]
  anchors = (tmp_path / 'anchors.txt').read_text()
  assert 'Han et al. 2015' in anchors and 'Frankle & Carbin' in anchors
  assert (tmp_path / 'mlp_adam_lr_0.001_loss_vs_l.png').exists()
  assert not (tmp_path / 'mlp_adam_lr_0.001_loss_vs_k.png').exists()


def test_devices_are_described():
  text = sweep.describe_devices(TINY, 'mlp')
  assert 'device' in text and 'seeds by vmap' in text


@pytest.mark.slow
def test_online_sweep_runs_and_resumes(tmp_path, monkeypatch):
  from paramsel_jax.protocol import online
  config = sweep.OnlineSweepConfig(
      dataset='synthetic', models=('mlp',), criteria=('none', 'autofreeze'),
      seeds=(0,), online=online.OnlineConfig(steps=40, check_every=20,
                                             batch_size=16, eval_batch_size=64))
  first = sweep.run_online_sweep(config, str(tmp_path), log=_quiet)
  assert [r['criterion'] for r in first['runs']] == ['none', 'autofreeze']
  assert (tmp_path / 'online_tables.md').read_text().count('| autofreeze |') == 1
  calls = []
  monkeypatch.setattr(online, 'run_online', lambda *a, **k: calls.append(1))
  again = sweep.run_online_sweep(config, str(tmp_path), log=_quiet)
  assert calls == [] and again == first  # every run was stored: none reran.


def test_online_sweep_settings_are_checked_before_any_data(monkeypatch, tmp_path):
  # FreezingPolicy's checks (max_frozen in (0, 1]) ran only when a run
  # started, after the data were loaded and the dense run had trained.
  from paramsel_jax.lab import experiment
  from paramsel_jax.protocol import online
  config = sweep.OnlineSweepConfig(
      dataset='synthetic', models=('mlp',), criteria=('none', 'psgld'),
      seeds=(0,), online=online.OnlineConfig(steps=40, check_every=20,
                                             max_frozen=1.5))
  with pytest.raises(ValueError, match=r'max_frozen=1\.5; accepted'):
    sweep.validate_online_sweep(config)
  monkeypatch.setattr(experiment, 'load_dataset', lambda *a: 1 / 0)
  with pytest.raises(ValueError, match=r'max_frozen=1\.5; accepted'):
    sweep.run_online_sweep(config, str(tmp_path), log=_quiet)
