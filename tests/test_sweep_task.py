"""The sweep over a user's general Task: outputs with its metrics, resuming."""

import csv
import dataclasses
import io
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.lab import sweep
from paramsel_jax.lab.sweep import grid
from paramsel_jax.optim import optimizers
from paramsel_jax.protocol import protocol

OUTPUTS = ('results.json', 'cells.csv', 'summary.csv', 'tables.txt', 'tables.md')
CONFIG = sweep.SweepConfig(
    models=('my_mlp',), selectors=('random', 'topgrad'), ks=(0.5,), ls=(0.5,),
    seeds=(0,),
    protocol=protocol.ProtocolConfig(eta0=8, eta1=8, window=4, batch_size=16,
                                     chunk_size=8))


def _init(key, width=8):
  k1, k2 = jax.random.split(key)
  return {'hidden': {'w': jax.random.normal(k1, (4, width)) / 2,
                     'b': jnp.zeros(width)},
          'out': {'w': jax.random.normal(k2, (width, 2)) / width ** .5}}


def _logits(params, x):
  h = jnp.tanh(x @ params['hidden']['w'] + params['hidden']['b'])
  return h @ params['out']['w']


def _loss(params, batch, key):
  del key
  logits = _logits(params, batch['x'])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
  return loss.mean(), {}


def _data(seed, size):
  x = np.random.default_rng(seed).normal(size=(size, 4)).astype(np.float32)
  return {'x': x, 'y': (x[:, 0] > 0).astype(np.int32)}


def make_task(width=8, host=False):
  """A plain-function MLP; its evaluation: val_loss and val_accuracy."""
  val = _data(99, 32)

  def eval_fn(params):
    logits = _logits(params, val['x'])
    return {'val_loss': _loss(params, val, None)[0],
            'val_accuracy': jnp.mean(logits.argmax(-1) == val['y'])}

  if host:
    train = paramsel_jax.host_batches(
        lambda seed: (_data(seed * 1000 + t, 16) for t in range(10 ** 6)))
  else:
    train = paramsel_jax.OnDevice(_data(0, 128))
  return paramsel_jax.Task(lambda key: _init(key, width), _loss, train,
                           eval_fn)


def _quiet(msg):
  del msg


def _read(directory):
  return {name: (directory / name).read_bytes() for name in OUTPUTS}


class _Counter:
  """Counts the phases run, by wrapping `Runner.train`."""

  def __init__(self, monkeypatch):
    self.labels = []
    original = protocol.Runner.train

    def train(runner, state, first_step, num_steps, window, log, label,
              **kwargs):
      self.labels.append(label)
      return original(runner, state, first_step, num_steps, window, log, label,
                      **kwargs)

    monkeypatch.setattr(protocol.Runner, 'train', train)


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  directory = tmp_path_factory.mktemp('task_sweep')
  results = sweep.run_sweep(CONFIG, str(directory), log=_quiet,
                            tasks={'my_mlp': make_task})
  return directory, results


def test_outputs_carry_the_task_metrics(finished):
  directory, results = finished
  assert results['finished_cells'] == results['total_cells'] == 2
  for cell in results['cells']:
    assert set(cell['w']) == set(cell['pruned']) == {'val_loss', 'val_accuracy'}
    assert np.all(np.isfinite(cell['pruned']['val_loss']))
    assert len(cell['w']['val_loss']) == 1  # seeds.
  assert sum(c['best'] for c in results['cells']) == 1
  assert json.loads((directory / 'results.json').read_text()) == results
  assert results['config']['task_ids'][0][0] == 'my_mlp'
  rows = list(csv.DictReader(io.StringIO((directory / 'cells.csv').read_text())))
  assert len(rows) == 2  # cells × seeds
  assert {'w_val_loss', 'pruned_val_accuracy'} <= set(rows[0])
  assert not any('test' in name for name in rows[0])
  summary = (directory / 'summary.csv').read_text()
  assert 'pruned_val_loss_ci95' in summary.splitlines()[0]
  table = (directory / 'tables.txt').read_text()
  assert '== user task / my_mlp' in table
  assert 'val loss β⊙w' in table and 'val acc w %' in table
  assert 'lowest mean val loss of β⊙w' in table
  markdown = (directory / 'tables.md').read_text()
  assert 'val loss of β⊙w, mean' in markdown and markdown.count('**') == 2
  png = directory / 'my_mlp_adam_lr_0.001_loss_vs_k.png'
  assert png.read_bytes()[:4] == b'\x89PNG'
  assert not (directory / 'anchors.txt').exists()


@pytest.mark.slow
def test_resume_runs_only_missing_cells(finished, tmp_path, monkeypatch):
  full_dir, _ = finished
  for name in ('cells', 'runs', 'eta0'):
    shutil.copytree(full_dir / name, tmp_path / name)
  cells = sorted(os.listdir(tmp_path / 'cells'))
  os.remove(tmp_path / 'cells' / cells[0])
  counter = _Counter(monkeypatch)
  lines = []
  sweep.run_sweep(CONFIG, str(tmp_path), log=lines.append,
                  tasks={'my_mlp': make_task})
  # One η1 group; η0 restored, not rerun.
  assert len(counter.labels) == 1 and counter.labels[0].startswith('eta1')
  assert any('eta0: restored from' in line for line in lines)
  assert _read(tmp_path) == _read(full_dir)
  # A finished sweep: nothing runs at all.
  counter.labels.clear()
  sweep.run_sweep(CONFIG, str(tmp_path), log=lines.append,
                  tasks={'my_mlp': make_task})
  assert counter.labels == []
  assert any('2 already finished' in line for line in lines)


def test_unknown_model_without_a_task_is_refused(tmp_path):
  out = tmp_path / 'out'
  with pytest.raises(ValueError, match=r"Unknown model 'my_mlp'; accepted: "
                     r".*lenet300.*or a name given a Task"):
    sweep.run_sweep(CONFIG, str(out), log=_quiet)
  with pytest.raises(ValueError, match=r"Unknown model 'my_mlp'.*given: "
                     r"my_mpl"):
    sweep.run_sweep(CONFIG, str(out), log=_quiet,
                    tasks={'my_mpl': make_task})
  with pytest.raises(ValueError, match=r"tasks names 'other', not in models"):
    sweep.validate_sweep(CONFIG, {'my_mlp': make_task, 'other': make_task})
  with pytest.raises(ValueError, match=r"task name 'a/b'; accepted"):
    sweep.validate_sweep(dataclasses.replace(CONFIG, models=('a/b',)),
                         {'a/b': make_task})
  assert not out.exists()


def test_langevin_needs_num_data_with_host_batches():
  langevin = dataclasses.replace(
      CONFIG, optimizers=(optimizers.OptimizerConfig('sgld'),))
  host = lambda: make_task(host=True)
  with pytest.raises(ValueError, match=r"optimizer 'sgld' scales its noise.*"
                     r"UserTask\(task, num_data=n\)"):
    sweep.validate_sweep(langevin, {'my_mlp': host})
  sweep.validate_sweep(langevin, {'my_mlp': sweep.UserTask(host, num_data=64)})
  sweep.validate_sweep(langevin, {'my_mlp': make_task})  # OnDevice: its size.
  assert sweep.UserTask(make_task()).resolved_num_data() == 128


def _keys(**user):
  config = grid.with_task_ids(CONFIG, {'my_mlp': sweep.UserTask(**user).built()})
  return [grid.cell_key(config, c) for c in grid.expand_grid(config)]


def test_cell_keys_identify_the_task():
  same = _keys(task=make_task)
  assert same == _keys(task=make_task())
  assert same[0].startswith('my_mlp-adam-random-k0.5-l0.5-')
  for other in (_keys(task=lambda: make_task(width=9)),  # param shapes.
                _keys(task=make_task, version='v2'),
                _keys(task=lambda: make_task(host=True))):
    assert not set(same) & set(other)
  # Image sweeps' keys do not change: no task_ids, no 'task' entry.
  assert 'task' not in grid.run_identity(
      dataclasses.replace(CONFIG, models=('mlp',)), 'mlp', CONFIG.optimizers[0])


def _record(config, cell, metrics):
  values = {m: [0.5 + 0.1 * len(cell.selector), 0.25] for m in metrics}
  return {'identity': grid.cell_identity(config, cell), 'num_params': 10,
          'k_count': 5, 'l_count': 5, 'alpha_count': [5], 'beta_count': [5],
          'frozen_moved': [False], 'diverged': [None], 'w': values,
          'pruned': values}


def test_outputs_of_mixed_metrics_never_crash(tmp_path):
  # An image model next to a task reporting no loss at all: CSV columns for
  # every metric (empty where a cell lacks one), no best selector and no
  # plot for the task, with a note.
  config = dataclasses.replace(CONFIG, models=('mlp', 'no_loss'),
                               task_ids=(('no_loss', 'v-0'),))
  store = sweep.CellStore(str(tmp_path))
  for cell in grid.expand_grid(config):
    metrics = (sweep.METRICS if cell.model == 'mlp' else ('val_acc',))
    store.save('cells', grid.cell_key(config, cell),
               _record(config, cell, metrics))
  results = sweep.sweep_results(config, store)
  notes = []
  sweep.write_outputs(results, str(tmp_path), log=notes.append)
  header = (tmp_path / 'cells.csv').read_text().splitlines()
  assert header[0].endswith('pruned_train_accuracy,pruned_val_acc')
  assert header[1].endswith(',')  # the image cell has no val_acc.
  table = (tmp_path / 'tables.txt').read_text()
  assert 'val acc β⊙w %' in table and 'no best selector marked' in table
  assert not any(c['best'] for c in results['cells'] if c['model'] == 'no_loss')
  assert len(notes) == 1 and 'no plot of no_loss' in notes[0]
  assert (tmp_path / 'mlp_adam_lr_0.001_loss_vs_k.png').exists()
  assert not (tmp_path / 'no_loss_adam_lr_0.001_loss_vs_k.png').exists()
