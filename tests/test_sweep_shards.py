"""A sweep split over processes: claims, stale takeover, shards = one process."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from paramsel_jax.lab import sweep
from paramsel_jax.lab.sweep import grid
from paramsel_jax.lab.sweep import outputs
from paramsel_jax.lab.sweep import running
from paramsel_jax.lab.sweep import shards
from paramsel_jax.lab.sweep import store as store_lib
import test_sweep_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'sweep.py')
OUTPUTS = ('results.json', 'cells.csv', 'summary.csv', 'tables.txt', 'tables.md')

# The grid and task of test_sweep_task (the same programs: XLA's persistent
# cache compiles them once per test run): 2 η1 groups (random, topgrad at
# k/N = 0.5), one cell each (l/N = 0.5).
CONFIG = test_sweep_task.CONFIG
TASKS = {'my_mlp': test_sweep_task.make_task}


def _read(directory):
  return {name: (directory / name).read_bytes() for name in OUTPUTS}


def _owner(**change):
  return dict(store_lib.make_owner((1, 2)), **change)


def _write_claim(store, kind, key, owner, age_s=0.0):
  path = store.claim_path(kind, key)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(owner, f)
  if age_s:
    then = time.time() - age_s
    os.utime(path, (then, then))


def _dead_pid():
  child = subprocess.Popen([sys.executable, '-c', 'pass'])
  child.wait()
  return child.pid


# Claims ----------------------------------------------------------------------


def test_racing_claims_exactly_one_wins(tmp_path):
  """8 threads (8 stores, as 8 processes would be) claim each of 20 keys."""
  stores = [store_lib.CellStore(str(tmp_path), log=lambda _: None)
            for _ in range(8)]
  for key in range(20):
    barrier, won = threading.Barrier(len(stores)), []

    def race(store, key=key, barrier=barrier, won=won):
      barrier.wait()
      if store.claim('groups', f'g{key}'):
        won.append(store)

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    assert len(won) == 1, key
    holder = stores[0].holder('groups', f'g{key}')
    assert holder == won[0].owner
    assert {'host', 'pid', 'shard', 'time'} <= set(holder)


def test_claim_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
  notes = []
  store = store_lib.CellStore(str(tmp_path), log=notes.append)
  dead = _owner(pid=_dead_pid())
  _write_claim(store, 'groups', 'g', dead)
  assert store.claim('groups', 'g')
  assert store.holder('groups', 'g') == store.owner
  assert len(notes) == 1 and 'took over the claim on groups/g' in notes[0]
  assert f'process {dead["pid"]} is not running on this host' in notes[0]
  assert not os.path.exists(store.claim_path('groups', 'g') + '.takeover')


def test_live_claims_are_left_and_old_ones_taken_over(tmp_path):
  notes = []
  store = store_lib.CellStore(str(tmp_path), claim_timeout_s=60,
                              log=notes.append)
  # This host, a live process (this one, another store): left alone.
  _write_claim(store, 'groups', 'a', _owner(pid=os.getpid()))
  assert not store.claim('groups', 'a')
  # Another host, refreshed recently: its pid cannot be checked, left alone.
  _write_claim(store, 'groups', 'b', _owner(host='elsewhere'), age_s=30)
  assert not store.claim('groups', 'b')
  assert notes == []
  # Another host, not refreshed for longer than the timeout: taken over.
  _write_claim(store, 'groups', 'c', _owner(host='elsewhere'), age_s=90)
  assert store.claim('groups', 'c')
  assert 'not refreshed for 90 s (> claim_timeout_s=60)' in notes[0]
  assert 'elsewhere:' in notes[0]


def test_release_keeps_a_claim_taken_over_by_another(tmp_path):
  notes = []
  mine = store_lib.CellStore(str(tmp_path), log=notes.append)
  assert mine.claim('groups', 'g')
  other = _owner(host='elsewhere')
  _write_claim(mine, 'groups', 'g', other)  # as if taken over meanwhile.
  mine.release('groups', 'g')
  assert mine.holder('groups', 'g') == other
  assert 'was taken over by elsewhere:' in notes[0]


def test_heartbeat_keeps_claims_fresh_and_releases_them(tmp_path):
  store = store_lib.CellStore(str(tmp_path), claim_timeout_s=0.4)
  with store.heartbeat():
    assert store.claim('eta0', 'e')
    path = store.claim_path('eta0', 'e')
    os.utime(path, (time.time() - 100,) * 2)
    time.sleep(0.3)  # the heartbeat beats every 0.1 s.
    assert time.time() - os.stat(path).st_mtime < 0.35
  assert store.holder('eta0', 'e') is None


# Shards ----------------------------------------------------------------------


@pytest.mark.parametrize('n, count', [(1, 1), (7, 3), (36, 4), (2, 5)])
def test_blocks_cover_the_items_once_and_are_balanced(n, count):
  items = list(range(n))
  blocks = [shards.block(items, (i, count)) for i in range(count)]
  assert sum(blocks, []) == items
  assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
  for i, b in enumerate(blocks):
    assert all(shards.owner(items, x, count) == i for x in b)


@pytest.mark.parametrize('shard', [(2, 2), (-1, 2), (0, 0), (0.5, 2), (0,)])
def test_bad_shard_is_refused(shard):
  with pytest.raises(ValueError, match='accepted: \\(index, count\\)'):
    shards.check_shard(shard)


def test_shard_comes_from_flags_slurm_or_jax():
  slurm = {'SLURM_ARRAY_TASK_ID': '5', 'SLURM_ARRAY_TASK_MIN': '4',
           'SLURM_ARRAY_TASK_MAX': '7', 'SLURM_ARRAY_TASK_COUNT': '4'}
  assert shards.resolve(None, None, slurm, (0, 1)) == (1, 4)
  assert shards.resolve(2, 3, slurm, (0, 1)) == (2, 3)
  assert shards.resolve(None, None, {}, (3, 8)) == (3, 8)
  with pytest.raises(ValueError, match='both .* or neither'):
    shards.resolve(1, None, {}, (0, 1))
  with pytest.raises(ValueError, match='contiguous array'):
    shards.resolve(None, None, dict(slurm, SLURM_ARRAY_TASK_STEP='2'), (0, 1))


def _no_plots(monkeypatch):
  # The PNGs are not compared here (the script test writes them); drawing
  # them would double this test's time.
  monkeypatch.setattr(outputs.plots, 'plot_sweep', lambda *a, **k: [])


def test_two_shards_in_turn_give_the_one_process_outputs(tmp_path,
                                                         monkeypatch):
  _no_plots(monkeypatch)
  quiet = lambda _: None
  one = sweep.run_sweep(CONFIG, str(tmp_path / 'one'), log=quiet, tasks=TASKS)
  assert sweep.is_complete(one) and one['total_cells'] == 2
  work = tmp_path / 'sharded'
  config = grid.with_task_ids(
      CONFIG, {'my_mlp': sweep.UserTask(test_sweep_task.make_task).built()})
  group0, _ = grid.expand_groups(config)
  # Shard 0's only group is claimed by another live process: left to it.
  other = store_lib.CellStore(str(work), store_lib.make_owner((5, 9)))
  assert other.claim('groups', grid.group_key(config, *group0))
  lines = []
  sweep.run_sweep(CONFIG, str(work), log=lines.append, tasks=TASKS,
                  shard=(0, 2))
  assert any('left to' in l and '(shard 5/9' in l for l in lines)
  assert not (work / 'cells').exists()
  assert any('2 of 2 cells remain' in l and '1 being computed by' in l
             and "1 not started (shard 1/2's)" in l for l in lines), lines
  other.release('groups', grid.group_key(config, *group0))

  lines = []
  partial = sweep.run_sweep(CONFIG, str(work), log=lines.append, tasks=TASKS,
                            shard=(0, 2))
  assert partial['finished_cells'] == 1 and not sweep.is_complete(partial)
  assert not (work / 'results.json').exists()
  assert any("1 of 2 cells remain" in l and "not started (shard 1/2's)" in l
             for l in lines), lines

  lines = []
  results = sweep.run_sweep(CONFIG, str(work), log=lines.append, tasks=TASKS,
                            shard=(1, 2))
  assert any('eta0: restored from' in l for l in lines)  # shard 0's η0.
  assert results == one
  assert _read(work) == _read(tmp_path / 'one')
  assert os.listdir(work / 'claims' / 'groups') == []
  assert os.listdir(work / 'claims' / 'eta0') == []
  # --collect_only on the finished sweep: the same results, no work.
  again = sweep.run_sweep(CONFIG, str(work), log=quiet, tasks=TASKS,
                          collect_only=True)
  assert again == one


def test_checkpoints_are_per_run_and_shard_and_claims_released_on_error(
    tmp_path, monkeypatch):
  seen = {}

  class Stop(Exception):
    pass

  def run_protocol(*args, **kwargs):
    seen.update(kwargs)
    raise Stop

  monkeypatch.setattr(running.protocol, 'run_protocol', run_protocol)
  with pytest.raises(Stop):
    sweep.run_sweep(CONFIG, str(tmp_path), log=lambda _: None, tasks=TASKS,
                    shard=(1, 2), checkpoint_every=5, keep_checkpoints=2)
  ckpt = seen['checkpointer']
  assert (ckpt.every, ckpt.keep, ckpt.prefix) == (5, 2, 'shard-1-of-2/')
  config = grid.with_task_ids(
      CONFIG, {'my_mlp': sweep.UserTask(test_sweep_task.make_task).built()})
  model, opt = config.models[0], config.optimizers[0]
  assert ckpt.directory == str(tmp_path / 'checkpoints' /
                               grid.checkpoint_name(config, model, opt))
  assert ckpt.identity['selectors'] == ['random', 'topgrad']
  ks, _ = grid.user_task_counts(config, test_sweep_task.make_task())
  assert seen['groups'] == [('topgrad', ks[0])]  # shard 1's group.
  for kind in ('groups', 'eta0'):
    assert os.listdir(tmp_path / 'claims' / kind) == []
  # Off by default: run_protocol is called as before, without the argument.
  seen.clear()
  with pytest.raises(Stop):
    sweep.run_sweep(CONFIG, str(tmp_path), log=lambda _: None, tasks=TASKS)
  assert 'checkpointer' not in seen


@pytest.mark.parametrize('change, message', [
    (dict(shard=(0, 0)), 'shard=\\(0, 0\\); accepted'),
    (dict(checkpoint_every=-1), 'checkpoint_every=-1; accepted'),
    (dict(keep_checkpoints=0), 'keep_checkpoints=0; accepted'),
    (dict(claim_timeout_s=0), 'claim_timeout_s=0; accepted'),
])
def test_bad_arguments_fail_before_any_work(tmp_path, change, message):
  with pytest.raises(ValueError, match=message):
    sweep.run_sweep(CONFIG, str(tmp_path / 'w'), tasks=TASKS, **change)
  assert not (tmp_path / 'w').exists()


# The script, two shards at once ----------------------------------------------


def _script(workdir, *extra):
  return [sys.executable, SCRIPT, '--dataset=synthetic', '--model=mlp',
          '--selector=random,topgrad', '--k=0.1,0.5', '--l=0.05,0.2',
          '--eta0=10', '--eta1=10', '--window=5', '--num_seeds=2',
          '--batch_size=32', '--chunk_size=10', '--train_eval_size=0',
          f'--output_dir={workdir}', *extra]


def _without_timing(obj):
  """results.json without fields that hold times, dates or the environment."""
  if isinstance(obj, dict):
    return {k: _without_timing(v) for k, v in obj.items()
            if not any(w in k for w in ('time', 'date', '_s', 'host'))}
  if isinstance(obj, list):
    return [_without_timing(v) for v in obj]
  return obj


@pytest.mark.slow
def test_two_shard_processes_at_once_give_the_one_process_tables(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('SLURM_ARRAY_TASK_ID', None)
  shared = tmp_path / 'shared'
  procs = [subprocess.Popen(_script(shared, '--num_shards=2',
                                    f'--shard_index={i}'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=env) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  # Each η1 group and the η0 state were computed once, by one process.
  assert sum(o.count('eta0: saved to') for o in outs) == 1, outs
  assert sum(o.count('eta1 [') > 0 for o in outs) == 2
  assert any('wrote ' in o for o in outs)
  one = tmp_path / 'one'
  done = subprocess.run(_script(one), capture_output=True, text=True,
                        timeout=300, cwd=ROOT, env=env)
  assert done.returncode == 0, done.stderr
  for name in OUTPUTS[1:]:
    assert (shared / name).read_text() == (one / name).read_text(), name
  load = lambda d: _without_timing(json.loads((d / 'results.json').read_text()))
  assert load(shared) == load(one)
  assert os.listdir(shared / 'claims' / 'groups') == []
  assert (shared / 'mlp_adam_lr_0.001_loss_vs_k.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.slow
def test_collect_only_on_an_unfinished_sweep_fails_saying_what_remains(tmp_path):
  done = subprocess.run(_script(tmp_path / 'w', '--collect_only'),
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert done.returncode == 1
  assert '8 of 8 cells remain' in done.stdout
  assert 'not complete' in done.stderr
