"""Active sets that stay cheap: the inactive optimizer state off the device
('host' bit-identical to 'device', 'reset' gives fresh state where nothing
trained), the frozen-prefix cache built only when it repays itself, and no
recompilation for an active set seen before."""

import dataclasses
import gc

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax.freeze import active as active_lib
from paramsel_jax.freeze import criteria
from paramsel_jax.optim import masking
from paramsel_jax.protocol import online
from paramsel_jax.protocol import protocol
from paramsel_jax.train import memory
from paramsel_jax.train import phase as phase_lib
from paramsel_jax.train import runner as runner_lib


@pytest.fixture(scope='module')
def task(make_task):
  return make_task((12, 8), num_train=256, num_test=64)


def _cycle(trains_of_check):
  """A criterion whose α at check c trains the groups `trains_of_check(c, g)`.

  It forgets what it froze before (so α may change freely) and applies no
  budget.
  """
  def decide(policy, state, step):
    del step
    g = jnp.arange(policy.groups.num_groups)
    frozen = ~trains_of_check(state.checks, g, policy)
    return frozen, jnp.zeros(g.shape, jnp.float32), state._replace(
        frozen=jnp.zeros_like(state.frozen))
  return criteria.Criterion(frozenset(), False, decide, own_budget=True,
                            can_thaw=True)


# The test criteria, registered for this module's tests only (CRITERIA is
# process-wide: a name left behind would show in other tests' lists).
_TEST_CRITERIA = {
    # Layer granularity: layer 0 trains at even checks, layer 1 at odd ones.
    'test_alternate_layers': _cycle(lambda c, g, policy: g == c % 2),
    # Layer granularity: every layer but the first trains (a frozen prefix).
    'test_freeze_first': _cycle(lambda c, g, policy: g > 0),
    # Unit granularity: the even units at even checks, the odd ones at odd
    # checks (same counts per module, different units).
    'test_alternate_units': _cycle(lambda c, g, policy: g % 2 == c % 2),
}


@pytest.fixture(autouse=True, scope='module')
def _test_criteria():
  for name, criterion in _TEST_CRITERIA.items():
    criteria.register_criterion(name, criterion)
  yield
  for name in _TEST_CRITERIA:
    del criteria.CRITERIA[name]


def _online(task, criterion, granularity='layer', **change):
  config = online.OnlineConfig(**(dict(
      criterion=criterion, steps=100, check_every=20, granularity=granularity,
      batch_size=16, eval_batch_size=64, eval_every=100) | change))
  logs = []
  run = online.run_online(task, optax.adam(1e-2), config, [0],
                          log=logs.append, record_alphas=True)
  return run, logs


# --- The inactive optimizer state: 'device', 'host', 'reset'. ---


@pytest.fixture(scope='module')
def phase_runs(task):
  """One active phase (only the middle layer trains) from the same state in
  each mode: {mode: (device bytes held inside the phase beyond those held
  just before it, the state it returns)}."""
  config = protocol.ProtocolConfig(eta0=4, eta1=4, window=2, batch_size=16,
                                   chunk_size=4, eval_batch_size=64,
                                   granularity='layer', step='active')
  runner = runner_lib.Runner(task, optax.adam(1e-2), config,
                             stat_groups=frozenset(), seeds=(0, 1))
  state = runner.init(jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32)))
  state = runner.train(state, 0, 4, 0, lambda _: None, 'dense')
  alpha = jax.tree.map(lambda x: jnp.zeros(x.shape, bool), state.params)
  alpha['Dense_1'] = jax.tree.map(jnp.ones_like, alpha['Dense_1'])
  state = runner.set_alpha(state, alpha)
  p, arrays = active_lib.plan(jax.device_get(alpha), 'layer')
  phase = phase_lib.active(runner, p, arrays['idx'])
  runs = {}
  for mode in ('device', 'host', 'reset'):
    # One Runner, so one compilation; the phase reads the mode from it.
    runner.config = dataclasses.replace(config, inactive_state=mode)
    start = state._replace(opt_state=jax.tree.map(jnp.copy, state.opt_state))
    gc.collect()
    before, seen = memory.device_bytes(), []
    out = phase_lib.run_phase(
        runner, phase, start, 4, 8, 0,
        lambda _, seen=seen, before=before: seen.append(
            memory.device_bytes() - before), 'x', consume=True)
    runs[mode] = max(seen), out
  return runs


def test_host_is_bit_identical_to_device(phase_runs):
  want, got = phase_runs['device'][1], phase_runs['host'][1]
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    assert memory.is_on_device(b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_reset_gives_fresh_state_where_nothing_trained(phase_runs):
  want, got = phase_runs['device'][1], phase_runs['reset'][1]
  for a, b in zip(jax.tree.leaves(want.params), jax.tree.leaves(got.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  adam_want = want.opt_state.inner_state[0]
  adam_got = got.opt_state.inner_state[0]
  np.testing.assert_array_equal(adam_want.count, adam_got.count)  # continues.
  for moments_want, moments_got in ((adam_want.mu, adam_got.mu),
                                    (adam_want.nu, adam_got.nu)):
    for name in moments_want:
      for a, b in zip(jax.tree.leaves(moments_want[name]),
                      jax.tree.leaves(moments_got[name])):
        if name == 'Dense_1':  # trained: the same moments.
          np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        else:  # not trained: adam's init (zeros), where 'device' kept η0's.
          assert np.all(np.asarray(b) == 0) and np.any(np.asarray(a) != 0)
  # The mask is α again.
  for a, b in zip(jax.tree.leaves(masking.get_mask(want.opt_state)),
                  jax.tree.leaves(masking.get_mask(got.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_host_and_reset_free_the_full_state_inside_the_phase(phase_runs):
  """'host' and 'reset' hold less than 'device' by about the full Adam
  state (μ and ν of every layer)."""
  inside = {mode: run[0] for mode, run in phase_runs.items()}
  adam = phase_runs['device'][1].opt_state.inner_state[0]
  full_adam = memory.device_bytes((adam.mu, adam.nu))
  for mode in ('host', 'reset'):
    assert inside['device'] - inside[mode] >= 0.9 * full_adam, inside


def test_inactive_state_is_checked():
  with pytest.raises(ValueError, match="inactive_state='disk'; accepted: "
                     'device, host, reset'):
    protocol.ProtocolConfig(inactive_state='disk')
  with pytest.raises(ValueError, match='inactive_state'):
    online.OnlineConfig(inactive_state='disk')


@pytest.mark.slow
def test_online_host_run_equals_device_run(task):
  device, _ = _online(task, 'test_alternate_layers')
  host, _ = _online(task, 'test_alternate_layers', inactive_state='host')
  for a, b in zip(jax.tree.leaves(device['final_params']),
                  jax.tree.leaves(host['final_params'])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- The frozen-prefix cache: built only when it repays itself. ---


@pytest.mark.parametrize('build, saving, steps_left, pays', [
    (1000.0, 10.0, 500, True),   # 2 x 1000 < 500 x 10.
    (1000.0, 10.0, 201, True),
    (1000.0, 10.0, 200, False),  # equal is not enough.
    (1000.0, 10.0, 100, False),
    (0.0, 0.0, 100, False),      # nothing to save.
])
def test_cache_repays(build, saving, steps_left, pays):
  assert phase_lib.cache_repays(build, saving, steps_left) is pays


def test_cache_repays_checks_its_inputs():
  with pytest.raises(ValueError, match='steps_left'):
    phase_lib.cache_repays(1.0, 1.0, -1)


@pytest.mark.slow
def test_long_online_run_builds_the_cache(task):
  _, logs = _online(task, 'test_freeze_first', steps=400, cache_prefix=True)
  line = [x for x in logs if 'frozen-prefix cache of' in x]
  assert line and 'building it' in line[0], logs
  assert any('caching the inputs of' in x for x in logs)


# --- No recompilation for an active set seen before. ---


def test_revisits_compile_once_and_a_short_run_declines_the_cache(task):
  """Layers 0, 1, 0, 1, ... train in turn (the full state parked on the
  host): one program per distinct plan. While layer 1 trains, layer 0 is a
  frozen prefix, but the run's few remaining steps of 4 examples do not
  repay a cache over 256 examples: it is declined, with both estimates."""
  run, logs = _online(task, 'test_alternate_layers', steps=120, batch_size=4,
                      inactive_state='host', cache_prefix=True)
  plans = [c['plan'] for c in run['checks']]
  assert plans[0] == plans[2] == plans[4] != plans[1] == plans[3], plans
  # The dense step, and one program per distinct plan.
  assert run['compilations'] == 3, run['compilations']
  lines = [x for x in logs if 'frozen-prefix cache of' in x]
  assert lines and all('DECLINED' in x and 'FLOPs' in x for x in lines), logs
  assert not any('caching the inputs of' in x for x in logs)


@pytest.mark.slow
def test_same_bucketed_unit_sets_share_one_program(task):
  run, _ = _online(task, 'test_alternate_units', granularity='unit',
                   steps=100)
  first, second = run['alphas'][0], run['alphas'][1]
  assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(first),
                                            jax.tree.leaves(second)))
  plans = [c['plan'] for c in run['checks'][:-1]]
  assert len(set(plans)) == 1, plans  # the same slot counts every time.
  # The dense step and one active program, though α changes at every check.
  assert run['compilations'] == 2, run['compilations']


# --- The measurement of experiments/active_memory.py, on a small char-GPT. ---


@pytest.mark.slow
def test_one_block_holds_at_most_one_over_l_of_dense_adam():
  from paramsel_jax.lab import lm_data
  from paramsel_jax.lab.benchmarks import active_memory as script
  from paramsel_jax.models import gpt
  from paramsel_jax.protocol import char_lm
  layers = 4
  data = lm_data.synthetic_data('scratch', vocab_size=16, length=2000)
  config = gpt.GPTConfig(vocab_size=16, context=16, num_layers=layers,
                         embed_dim=32, num_heads=2)
  task = char_lm.char_lm_task(config, data.task.train, {'val': data.task.val},
                              batch_size=4, eval_windows_per_split=4)
  limits = {'one block (BAdam-like)': 1 / layers,
            'embeddings + head + one block (LISA-like)': 0.35}
  for name, trains in script.active_sets(1).items():
    m = script.measure(task, trains, steps=2)
    for mode in ('host', 'reset'):
      assert m[mode]['adam_on_device'] <= limits[name] * m[mode]['dense_adam']
      freed = m['device']['phase_extra_live'] - m[mode]['phase_extra_live']
      # What the phase no longer holds is the dense state (μ, ν, mask), up to
      # scalars (optax's count) it shares with the active state.
      dense = m[mode]['dense_adam'] + m[mode]['dense_mask']
      assert abs(freed - dense) <= 64, (name, freed, dense)
