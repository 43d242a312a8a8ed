"""The general task: any model, loss and data through the protocol and online.

An NNX char-GPT with a next-token loss on host batches, and a hand-written
function of a params dict, each train through the active step to the masked
step's parameters (float rounding) at layer granularity; bad input gets one
clear message before any work.
"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.models import gpt
from paramsel_jax.protocol import char_lm
from paramsel_jax.protocol import online
from paramsel_jax.protocol import protocol

TINY_GPT = gpt.GPTConfig(vocab_size=11, context=8, num_layers=2, embed_dim=16,
                         num_heads=2)
CONFIG = protocol.ProtocolConfig(eta0=20, eta1=60, k=0.5, l=0.9, window=10,
                                 chunk_size=25, granularity='layer')


def lm_task():
  tokens = np.random.default_rng(0).integers(0, 11, 3000)
  return char_lm.char_lm_task(TINY_GPT, tokens[:2400], {'val': tokens[2400:]},
                              batch_size=8, eval_windows_per_split=32)


def _mlp_init(key):
  """A hand-made params dict; 'layers/10' sorts before 'layers/2'."""
  sizes = [(6, 16), (16, 16), (16, 3)]
  keys = jax.random.split(key, len(sizes))
  return {'layers': {str(10 ** i): {'w': jax.random.normal(k, s) / s[0] ** .5,
                                    'b': jnp.zeros(s[1])}
                     for i, (k, s) in enumerate(zip(keys, sizes))}}


def _mlp_apply(params, x):
  for i in range(3):
    layer = params['layers'][str(10 ** i)]
    x = x @ layer['w'] + layer['b']
    x = jnp.tanh(x) if i < 2 else x
  return x


def _mlp_loss(params, batch, key):
  del key
  logits = _mlp_apply(params, batch['x'])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
  return loss.mean(), {'accuracy': jnp.mean(logits.argmax(-1) == batch['y'])}


def _mlp_batches(seed, size=16):
  rng = np.random.default_rng(seed)
  while True:
    x = rng.normal(size=(size, 6)).astype(np.float32)
    yield {'x': x, 'y': (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1)}


def plain_task(**change):
  x = np.random.default_rng(99).normal(size=(64, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1)
  eval_fn = lambda p: {'val_loss': _mlp_loss(p, {'x': x, 'y': y}, None)[0]}
  fields = dict(init_fn=_mlp_init, loss_fn=_mlp_loss,
                train_data=paramsel_jax.host_batches(_mlp_batches),
                eval_fn=eval_fn,
                layer_order=['layers/1', 'layers/10', 'layers/100'])
  return paramsel_jax.Task(**(fields | change))


def _run(task, seeds=(0, 1), **change):
  return protocol.run_protocol(
      task, optax.adam(1e-2), dataclasses.replace(CONFIG, **change),
      ['topgrad'], list(seeds), log=lambda _: None, return_arrays=True)


def _assert_active_equals_masked(task, runs=None):
  masked, active = runs or (_run(task, step='masked'),
                            _run(task, step='active'))
  m, a = masked['cells'][0], active['cells'][0]
  assert a['alpha_count'] == m['alpha_count']
  assert a['frozen_moved'] == [False, False]
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5,
                                                       atol=1e-6),
               a['arrays']['params'], m['arrays']['params'])
  phases = active['timing']['phases']
  eta1 = next(v for k, v in phases.items() if k.startswith('eta1'))
  assert eta1['step'].startswith('T|α active')
  assert eta1['flops_per_step'] < phases['eta0']['flops_per_step']
  return active


@pytest.fixture(scope='module')
def plain_runs():
  """The plain task's masked and active runs (seeds 0 and 1)."""
  return _run(plain_task(), step='masked'), _run(plain_task(), step='active')


def test_plain_function_active_step_equals_masked_step(plain_runs):
  """60 adam steps of T|α at layer granularity, host batches, 2 seeds."""
  run = _assert_active_equals_masked(plain_task(), plain_runs)
  assert set(run['cells'][0]['w']) == {'val_loss'}


@pytest.mark.slow
def test_nnx_lm_active_step_equals_masked_step():
  """The NNX GPT, next-token loss, 60 adam steps at layer granularity."""
  run = _assert_active_equals_masked(lm_task())
  assert all(np.isfinite(run['cells'][0]['w']['val_loss']))


@pytest.mark.slow
def test_host_seeds_in_one_program_equal_seeds_one_by_one(plain_runs):
  both = plain_runs[1]['cells'][0]['arrays']['params']
  one = _run(plain_task(), seeds=(1,), step='active')['cells'][0]
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x[1], y[0], rtol=1e-5,
                                                       atol=1e-6),
               both, one['arrays']['params'])


@pytest.mark.slow
def test_on_device_data_for_any_loss():
  x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
  data = paramsel_jax.OnDevice({'x': x, 'y': (x[:, 0] > 0).astype(np.int32)})
  task = plain_task(train_data=data)
  run = _run(task, seeds=(0,), eta1=10, batch_size=8)
  assert np.isfinite(run['cells'][0]['w']['val_loss'][0])


@pytest.mark.slow
def test_online_freezing_on_a_plain_function():
  config = online.OnlineConfig(criterion='autofreeze', steps=40, check_every=10,
                               granularity='layer', threshold=0.5)
  out = online.run_online(plain_task(), optax.adam(1e-2), config, [0],
                          log=lambda _: None)
  assert [c['step'] for c in out['checks']] == [10, 20, 30, 40]
  assert all(np.isfinite(c['metrics']['val_loss'][0]) for c in out['checks'])


# --- Bad input: one message, before any work. ---


def test_non_scalar_loss_is_refused():
  task = plain_task(loss_fn=lambda p, b, k: (_mlp_apply(p, b['x']).sum(-1), {}))
  with pytest.raises(ValueError, match=r'loss of shape \(16,\); accepted: a '
                     'scalar'):
    _run(task)


def test_batch_leaves_differ_in_leading_axis():
  bad = lambda seed: ({'x': b['x'], 'y': b['y'][:-1]} for b in _mlp_batches(seed))
  with pytest.raises(ValueError, match=r'leading \(batch\) axis: x 16, y 15'):
    _run(plain_task(train_data=paramsel_jax.host_batches(bad)))
  with pytest.raises(ValueError, match='leading'):
    plain_task(train_data=paramsel_jax.OnDevice(
        {'x': np.zeros((4, 6)), 'y': np.zeros(3, np.int32)}))


def test_iterator_that_ends_before_the_phase():
  short = lambda seed: itertools.islice(_mlp_batches(seed), 30)
  with pytest.raises(ValueError, match=r'seed 0 ended at global step 30, '
                     'before the phase did'):
    _run(plain_task(train_data=paramsel_jax.host_batches(short)))


def test_unit_granularity_of_a_plain_function_is_refused():
  with pytest.raises(ValueError, match=r"cannot train single units of: "
                     r"layers/1 .*granularity 'layer' or 'element'"):
    _run(plain_task(), granularity='unit', step='active')


def test_context_longer_than_a_split():
  with pytest.raises(ValueError, match=r"split 'val': context=8 is not "
                     'shorter than the split'):
    char_lm.char_lm_task(TINY_GPT, np.arange(100) % 11,
                         {'val': np.arange(5) % 11}, batch_size=4)


_SHARDED_SCRIPT = '''
import json, sys
sys.path.insert(0, sys.argv[1])
import optax
import jax
import test_general_task as t
from paramsel_jax.protocol import protocol
config = protocol.ProtocolConfig(eta0=20, eta1=20, k=0.5, l=0.9, window=10,
                                 chunk_size=25, granularity='layer',
                                 step='active', shard_batch=True)
r = protocol.run_protocol(t.plain_task(), optax.adam(1e-2), config,
                          ['topgrad'], [0, 1], log=print)
print('RESULT', json.dumps({'devices': jax.device_count(), 'cells': r['cells']}))
'''


@pytest.mark.slow
def test_host_batches_sharded_over_8_devices_equal_one_device():
  """Seeds over 2 devices, each host batch over 4: equal to float rounding."""
  import json, os, subprocess, sys
  out = {}
  for count in (8, 1):
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={count}')
    done = subprocess.run(
        [sys.executable, '-c', _SHARDED_SCRIPT, os.path.dirname(__file__)],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    if count == 8:
      assert 'each minibatch over 4 devices' in done.stdout
    line = [l for l in done.stdout.splitlines() if l.startswith('RESULT ')][0]
    out[count] = json.loads(line[len('RESULT '):])
  assert (out[8]['devices'], out[1]['devices']) == (8, 1)
  np.testing.assert_allclose(out[8]['cells'][0]['w']['val_loss'],
                             out[1]['cells'][0]['w']['val_loss'], rtol=2e-4,
                             atol=1e-5)
