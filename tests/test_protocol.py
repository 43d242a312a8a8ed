"""Tests of the protocol: seeds in parallel equal seeds in turn; determinism."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax import models
from paramsel_jax.protocol import protocol
from paramsel_jax.train import runner as runner_lib
from paramsel_jax.select import selectors

CONFIG = protocol.ProtocolConfig(eta0=30, eta1=40, k=0.3, l=0.5, window=10,
                                 batch_size=16, chunk_size=25, eval_batch_size=64)


@pytest.fixture(scope='module')
def task(make_task):
  return make_task((16,))


def _run(task, seeds, config=CONFIG, selectors=('random', 'topgrad')):
  return protocol.run_protocol(task, optax.adam(1e-2), config, selectors,
                               seeds, log=lambda _: None)


def _metrics(results, seed_index):
  out = {'after_eta0': {m: v[seed_index] for m, v in results['after_eta0'].items()}}
  for r in results['cells']:
    for part in ('w', 'pruned'):
      out[f'{r["selector"]}/{r["k"]}/{r["l"]}/{part}'] = {
          m: v[seed_index] for m, v in r[part].items()}
  return out


@pytest.fixture(scope='module')
def results(task):
  return _run(task, [0, 1, 2])


def test_counts_are_exact_and_frozen_coordinates_do_not_move(results):
  r = results
  n = r['num_params']
  assert (r['ks'], r['ls']) == ([round(0.3 * n)], [round(0.5 * n)])
  assert [c['selector'] for c in r['cells']] == ['random', 'topgrad']
  for s in r['cells']:
    name = s['selector']
    assert s['alpha_count'] == r['ks'] * 3, name
    assert s['beta_count'] == r['ls'] * 3, name
    assert s['frozen_moved'] == [False] * 3, name
    for part in ('w', 'pruned'):
      for metric, values in s[part].items():
        assert np.all(np.isfinite(values)), (name, part, metric)
  # Training did something: better than chance (0.25) on this learnable data.
  assert min(r['cells'][1]['w']['test_accuracy']) > 0.5
  # Different seeds give different runs.
  assert len(set(r['after_eta0']['train_loss'])) == 3


def _assert_same_metrics(a, i, b, j, what):
  for key, metrics in _metrics(a, i).items():
    for m, v in metrics.items():
      np.testing.assert_allclose(v, _metrics(b, j)[key][m], rtol=2e-4,
                                 atol=1e-5, err_msg=f'{what}: {key} {m}')


@pytest.mark.slow
def test_seeds_in_parallel_equal_seeds_one_by_one(task, results):
  # vmap over seeds 0..2 (the fixture) == lax.map over them == seed 1 alone.
  mapped = _run(task, [0, 1, 2], dataclasses.replace(CONFIG, seed_axis='map'))
  alone = _run(task, [1])
  for i in range(3):
    _assert_same_metrics(results, i, mapped, i, f'vmap vs map, seed {i}')
  _assert_same_metrics(results, 1, alone, 0, 'vmap vs alone, seed 1')


def test_same_seed_same_numbers(task, results):
  again = _run(task, [0, 1, 2])
  for part in ('after_eta0', 'cells'):
    assert again[part] == results[part]


@pytest.mark.slow
def test_grid_of_k_and_l_and_resumable_groups(task):
  config = dataclasses.replace(CONFIG, k=(0.1, 0.5), l=(5, 0.2, 0.4))
  saved = []
  r = protocol.run_protocol(task, optax.adam(1e-2), config, ['topgrad'], [0],
                            log=lambda _: None, on_cells=saved.append)
  n = r['num_params']
  assert r['ks'] == [round(0.1 * n), round(0.5 * n)]
  assert r['ls'] == [5, round(0.2 * n), round(0.4 * n)]
  assert [(c['k'], c['l']) for c in r['cells']] == [
      (k, l) for k in r['ks'] for l in r['ls']]
  assert [len(group) for group in saved] == [3, 3]
  for c in r['cells']:
    assert c['alpha_count'] == [c['k']] and c['beta_count'] == [c['l']]
  # All l's of one k are read off the same η1 phase.
  assert r['cells'][0]['w'] == r['cells'][2]['w']
  # Keeping more weights costs less (same w, nested top-l masks).
  losses = [c['pruned']['train_loss'][0] for c in r['cells'][3:]]
  assert losses[0] > losses[1] > losses[2]
  # Running only the second group (as a resumed sweep would) gives its cells.
  again = protocol.run_protocol(task, optax.adam(1e-2), config, ['topgrad'],
                                [0], log=lambda _: None,
                                groups=[('topgrad', r['ks'][1])])
  assert again['cells'] == r['cells'][3:]


def test_retrain_mode_trains_only_the_kept_weights(task):
  config = dataclasses.replace(CONFIG, mode='retrain', k=None, l=(0.1, 0.3))
  r = protocol.run_protocol(task, optax.adam(1e-2), config, ['topgrad'], [0, 1],
                            log=lambda _: None)
  assert [c['l'] for c in r['cells']] == r['ls']
  for c in r['cells']:
    assert c['alpha_count'] == [c['l']] * 2 and c['beta_count'] == [c['l']] * 2
    assert c['frozen_moved'] == [False, False]
    # Pruned weights were zeroed before η1 and never moved: β⊙w == w.
    assert c['pruned'] == c['w']
  # Retraining recovers: 30% of the weights, retrained, beats chance well.
  assert min(r['cells'][1]['pruned']['test_accuracy']) > 0.5


def test_gradual_pruning_keeps_nested_masks_and_exact_counts(task):
  """3 rounds: each round's kept set is inside the previous one's."""
  config = dataclasses.replace(CONFIG, mode='retrain', k=None, l=0.1, eta1=30,
                               prune_rounds=3, seed_axis='vmap')
  runner = protocol.Runner(task, optax.adam(1e-2), config)
  keys = jax.vmap(jax.random.key)(jnp.array([0, 1], jnp.uint32))
  state0 = runner.train(runner.init(keys), 0, config.eta0, config.window,
                        lambda _: None, 'eta0')
  n = models.count_params(jax.tree.map(lambda x: x[0], state0.params))
  counts = protocol.round_counts(n, round(0.1 * n), 3)
  assert counts[-1] == round(0.1 * n) and counts[0] > counts[1] > counts[2]
  masks, log = [], []
  original = runner.start_phase1
  def spy(state, alpha):
    masks.append(alpha)
    return original(state, alpha)
  runner.start_phase1 = spy
  state, alpha, _ = protocol._prune_and_retrain(
      runner, state0, selectors.get_selector('magnitude'), 'magnitude',
      counts[-1], n, log.append)
  assert len(masks) == 3 and len(log) == 3  # one chunk of 10 steps per round.
  for mask, count in zip(masks, counts):
    assert np.asarray(runner_lib.count_per_seed(mask)).tolist() == [count, count]
  for outer, inner in zip(masks, masks[1:]):
    for o, i in zip(jax.tree.leaves(outer), jax.tree.leaves(inner)):
      assert not np.any(np.asarray(i) & ~np.asarray(o))
  # Everything outside the final mask is exactly zero.
  for p, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(alpha)):
    assert np.all(np.asarray(p)[~np.asarray(m)] == 0)


_SHARDED_SCRIPT = '''
import json, sys
import jax, jax.numpy as jnp, optax
from paramsel_jax import data
from paramsel_jax import models
from paramsel_jax.protocol import protocol
ds = data.synthetic(num_train=200, num_test=100, image_shape=(8, 8, 1), num_classes=4)
model = models.create_model('mlp', widths=(16,), num_classes=4)
task = protocol.ImageTask(
    init_fn=lambda key: models.init_params(model, key, (8, 8, 1)),
    apply_fn=lambda p, x: model.apply({'params': p}, x),
    train_images=jnp.asarray(ds.train.images), train_labels=jnp.asarray(ds.train.labels),
    test_images=jnp.asarray(ds.test.images), test_labels=jnp.asarray(ds.test.labels))
num_seeds, shard_batch = int(sys.argv[1]), sys.argv[2] == 'True'
config = protocol.ProtocolConfig(eta0=30, eta1=40, k=0.3, l=0.5, window=10,
                                 batch_size=16, chunk_size=25, eval_batch_size=64,
                                 shard_batch=shard_batch)
r = protocol.run_protocol(task, optax.adam(1e-2), config, ['random', 'topgrad'],
                          list(range(num_seeds)), log=print)
print('RESULT', json.dumps({'devices': jax.device_count(),
                            'cells': r['cells'], 'after_eta0': r['after_eta0']}))
'''


@pytest.mark.parametrize('num_seeds, shard_batch, layout', [
    (8, False, 'seeds over 8 devices'),
    (2, True, 'seeds over 2 devices, each minibatch over 4 devices'),
])
@pytest.mark.slow
def test_sharded_over_8_devices_equals_one_device(num_seeds, shard_batch, layout):
  import json, os, subprocess, sys
  out = {}
  for count in (8, 1):
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={count}',
               JAX_PLATFORMS='cpu')
    done = subprocess.run(
        [sys.executable, '-c', _SHARDED_SCRIPT, str(num_seeds), str(shard_batch)],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    if count == 8:
      assert layout in done.stdout
    line = [l for l in done.stdout.splitlines() if l.startswith('RESULT ')][0]
    out[count] = json.loads(line[len('RESULT '):])
  assert (out[8]['devices'], out[1]['devices']) == (8, 1)
  for a, b in zip(out[8]['cells'], out[1]['cells']):
    assert a['alpha_count'] == b['alpha_count']
    for part in ('w', 'pruned'):
      for m in a[part]:
        np.testing.assert_allclose(a[part][m], b[part][m], rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize('change, message', [
    (dict(eta0=0), 'eta0=0'),
    (dict(eta1=-5), 'eta1=-5'),
    (dict(window=31), 'window=31'),
    (dict(batch_size=201), 'batch_size=201'),
    (dict(k=10**9), 'k=1000000000'),
    (dict(l=-1), 'l=-1'),
    (dict(seed_axis='pmap'), "seed_axis='pmap'"),
    (dict(mode='lottery'), "mode='lottery'"),
    (dict(k=()), 'give at least one'),
    (dict(train_eval_size=0), 'train_eval_size=0'),
    (dict(prune_rounds=2), "prune_rounds=2 needs mode='retrain'"),
    (dict(mode='retrain', k=None, prune_rounds=0), 'prune_rounds=0'),
    (dict(mode='retrain', k=None, prune_rounds=5), 'longer than a pruning round'),
    (dict(mode='retrain'), "k=0.3 with mode='retrain'"),
    (dict(k=0), 'k=0 is out of range'),
    (dict(k=1e-9), 'rounds to 0 coordinates'),
    (dict(l=0), 'l=0 is out of range'),
    (dict(k=(0.1, 0.1)), 'repeats a value'),
    (dict(k=1.5), 'k=1.5 is out of range'),
    (dict(eta0=2.5), 'eta0=2.5'),
    (dict(shard_batch=1), 'shard_batch=1'),
    (dict(train_eval_size=201), 'train_eval_size=201'),
])
def test_bad_settings_raise_before_work(task, change, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(')):
    _run(task, [0], dataclasses.replace(CONFIG, **change))


def test_unknown_selector_raises(task):
  with pytest.raises(ValueError, match="Unknown selector 'best'"):
    _run(task, [0], selectors=('best',))


def test_statistics_cover_exactly_the_window(task):
  """Σ|g| collected by the chunked loop equals a plain Python loop's."""
  config = dataclasses.replace(CONFIG, eta0=12, window=5, chunk_size=4)
  runner = protocol.Runner(task, optax.sgd(0.1), config)
  keys = jax.vmap(jax.random.key)(jnp.array([0], jnp.uint32))
  state = runner.train(runner.init(keys), 0, 12, 5, lambda _: None, 'eta0')
  # Reference: the same steps one by one, summing |g| over steps 7..11.
  params = jax.tree.map(lambda x: x[0], runner.init(keys).params)
  opt_state = runner.tx.init(params)
  total = jax.tree.map(jnp.zeros_like, params)
  key = keys[0]
  from paramsel_jax.train import steps
  # Each step jitted on its own (compiled once, called 12 times), not fused
  # with the others as in the chunked loop.
  sample_batch = jax.jit(steps.sample_batch, static_argnums=3)
  train_step = jax.jit(steps.train_step, static_argnums=(0, 1))
  for t in range(12):
    batch_key = jax.random.fold_in(jax.random.fold_in(key, 1), t)
    x, y = sample_batch(batch_key, task.train_images, task.train_labels,
                        config.batch_size)
    new, opt_state, _, grads = train_step(task.apply_fn, runner.tx,
                                          params, opt_state, x, y)
    if t >= 7:
      total = jax.tree.map(lambda s, g: s + jnp.abs(g), total, grads)
    params = new
  assert int(state.stats.count[0]) == 5
  for got, want in zip(jax.tree.leaves(state.stats.grad_abs_sum), jax.tree.leaves(total)):
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-6)


def test_only_the_compared_selectors_statistics_are_collected(task):
  """topgrad alone: Σ|g| is collected, the Welford moments stay zero."""
  config = dataclasses.replace(CONFIG, eta0=12, window=5, chunk_size=4)
  runner = protocol.Runner(task, optax.sgd(0.1), config,
                           stat_groups=frozenset({'grad_abs_sum'}))
  keys = jax.vmap(jax.random.key)(jnp.array([0], jnp.uint32))
  state = runner.train(runner.init(keys), 0, 12, 5, lambda _: None, 'eta0')
  assert int(state.stats.count[0]) == 5
  assert all(np.any(np.asarray(x) != 0)
             for x in jax.tree.leaves(state.stats.grad_abs_sum))
  assert all(np.all(np.asarray(x) == 0)
             for x in jax.tree.leaves((state.stats.grad_m2, state.stats.param_mean)))


@pytest.mark.slow
def test_train_eval_size_changes_only_the_train_metrics(task):
  full = _run(task, [0], selectors=('topgrad',))
  config = dataclasses.replace(CONFIG, train_eval_size=50,
                               evaluate_after_eta0=False)
  part = _run(task, [0], config, selectors=('topgrad',))
  assert part['after_eta0'] is None
  for a, b in zip(full['cells'], part['cells']):
    for m in ('test_loss', 'test_accuracy'):
      assert a['pruned'][m] == b['pruned'][m]
    assert a['pruned']['train_loss'] != b['pruned']['train_loss']
    # An accuracy over 50 examples is a multiple of 1/50 (over 200, not so).
    acc = b['pruned']['train_accuracy'][0]
    assert abs(acc * 50 - round(acc * 50)) < 1e-4, acc


@pytest.mark.parametrize('seeds, message', [
    (2, 'seeds=2; accepted: one or more distinct ints'),
    ([-3], r'seeds=\[-3\]; accepted'),
    ([2.5], r'seeds=\[2.5\]; accepted'),
    ([2 ** 32], r'seeds=\[4294967296\]; accepted'),
    ([1, 1], r'seeds=\[1, 1\]; accepted: one or more distinct'),
    ([], r'seeds=\[\]; accepted'),
])
def test_bad_seeds_raise_before_work(task, seeds, message):
  with pytest.raises(ValueError, match=message):
    _run(task, seeds)


def test_selector_names_as_a_string_is_refused(task):
  with pytest.raises(ValueError, match="selector_names='topgrad' is a string"):
    protocol.run_protocol(task, optax.adam(1e-2), CONFIG, 'topgrad', [0],
                          log=lambda _: None)


def _exploding_task(task, bad_seed_key_bit):
  """The task, with an init that blows the weights up for some seeds."""
  def init_fn(key):
    params = task.init_fn(key)
    bad = jax.random.bits(jax.random.fold_in(key, 7)) % 2 == bad_seed_key_bit
    return jax.tree.map(lambda p: jnp.where(bad, p * 1e30, p), params)
  return dataclasses.replace(task, init_fn=init_fn)


@pytest.mark.slow
def test_divergence_is_reported_and_other_seeds_are_unchanged(task):
  """One seed diverges in η0: it is named in the log and the results, its
  metrics are None, and the healthy seed's numbers equal a run without it."""
  # Which seeds explode depends on a key bit: find one bad and two good seeds.
  bits = [int(jax.random.bits(jax.random.fold_in(jax.random.fold_in(
      jax.random.key(s), runner_lib.INIT_STREAM), 7)) % 2) for s in range(20)]
  good = [s for s, b in enumerate(bits) if b == 0]
  bad = [s for s, b in enumerate(bits) if b == 1]
  exploding = _exploding_task(task, 1)
  log = []
  mixed = protocol.run_protocol(exploding, optax.sgd(0.1), CONFIG, ['topgrad'],
                                [good[0], bad[0]], log=log.append)
  healthy = protocol.run_protocol(exploding, optax.sgd(0.1), CONFIG,
                                  ['topgrad'], [good[0], good[1]],
                                  log=lambda _: None)
  warnings = [l for l in log if 'WARNING' in l]
  assert len(warnings) == 1 and f'seed {bad[0]} diverged' in warnings[0]
  assert 'eta0' in warnings[0]
  assert mixed['after_eta0_diverged'][0] is None
  assert mixed['after_eta0_diverged'][1]['phase'] == 'eta0'
  cell = mixed['cells'][0]
  assert cell['diverged'][0] is None and cell['diverged'][1]['phase'] == 'eta0'
  for part in ('w', 'pruned'):
    for m, values in cell[part].items():
      assert values[1] is None, (part, m)
      assert values[0] == healthy['cells'][0][part][m][0], (part, m)
  assert not protocol.all_diverged(mixed)
  assert protocol.all_diverged(protocol.run_protocol(
      exploding, optax.sgd(0.1), CONFIG, ['topgrad'], [bad[0]],
      log=lambda _: None))
