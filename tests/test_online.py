"""The online-freezing driver: it switches to the cheap step, equals the same
sequence of α replayed by hand with dense masked steps, keeps frozen values
bit-identical, and bounds its compilations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax.protocol import online
from paramsel_jax.train import runner as runner_lib


@pytest.fixture(scope='module')
def task(make_task):
  return make_task((12, 8), num_train=256, num_test=128)


def _replay(task, tx, config, seeds, alphas):
  """Dense masked steps with the driver's α sequence set by hand."""
  runner = runner_lib.Runner(task, tx, config.protocol_config(),
                             stat_groups=frozenset(), seeds=tuple(seeds))
  state = runner.init(jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32)))
  t = 0
  for i in range(config.steps // config.check_every):
    if i > 0:
      state = runner.set_alpha(state, alphas[i - 1])
    state = runner.train(state, t, config.check_every, 0, lambda _: None, 'x')
    t += config.check_every
  return state.params


@pytest.mark.slow
@pytest.mark.parametrize('criterion, granularity, threshold', [
    ('psgld', 'unit', 3.0), ('apf', 'unit', 0.5), ('freezeout', 'layer', None)])
def test_driver_equals_the_same_alphas_by_hand(task, criterion, granularity,
                                               threshold):
  config = online.OnlineConfig(criterion=criterion, steps=100, check_every=20,
                               granularity=granularity, threshold=threshold,
                               buckets=0, batch_size=16, eval_batch_size=64)
  seeds = [0, 1]
  tx = optax.adam(1e-2)
  run = online.run_online(task, tx, config, seeds, log=lambda _: None,
                          record_alphas=True)
  if criterion == 'freezeout':  # the driver chains FreezeOut's annealing.
    policy = online.make_policy(config, runner_lib.Runner(
        task, tx, config.protocol_config()))
    from paramsel_jax.freeze import policy as freezing
    tx = optax.chain(tx, freezing.freezeout_annealing(
        policy.params, policy.layer_order, config.steps))
  by_hand = _replay(task, tx, config, seeds, run['alphas'])
  for got, want in zip(jax.tree.leaves(run['final_params']),
                       jax.tree.leaves(by_hand)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4,
                               atol=1e-5)
  shares = [np.mean(c['frozen_share']) for c in run['checks']]
  assert max(shares) > 0, shares  # something froze and the cheap step ran.
  assert any(c['plan'] != 'dense' for c in run['checks'])
  assert run['compilations'] <= config.max_compiles


@pytest.mark.slow
def test_frozen_coordinates_stay_bit_identical_while_frozen(task):
  config = online.OnlineConfig(criterion='psgld', steps=120, check_every=20,
                               threshold=3.0, batch_size=16, eval_batch_size=64)
  run = online.run_online(task, optax.adam(1e-2), config, [0],
                          log=lambda _: None, record_alphas=True)
  first_frozen = None
  for i, alpha in enumerate(run['alphas']):
    if not all(np.asarray(a).all() for a in jax.tree.leaves(alpha)):
      first_frozen = i
      break
  assert first_frozen is not None
  # Replay up to that check: the frozen values then equal the final ones.
  head = online.OnlineConfig(criterion='psgld', steps=20 * (first_frozen + 1),
                             check_every=20, threshold=3.0, batch_size=16,
                             eval_batch_size=64)
  early = online.run_online(task, optax.adam(1e-2), head, [0],
                            log=lambda _: None)
  alpha = run['alphas'][first_frozen]
  for a, p_early, p_final in zip(jax.tree.leaves(alpha),
                                 jax.tree.leaves(early['final_params']),
                                 jax.tree.leaves(run['final_params'])):
    frozen = ~np.asarray(a)
    np.testing.assert_array_equal(np.asarray(p_final)[frozen],
                                  np.asarray(p_early)[frozen])


def _one_more(policy, state, step):
  """A test criterion: one more unit of the first layer freezes per check."""
  del step
  n = policy.groups.module_units[0]
  first = jnp.argmin(state.frozen[:n])  # the first unfrozen unit.
  candidates = jnp.zeros_like(state.frozen).at[first].set(~state.frozen[first])
  return candidates, jnp.arange(state.frozen.shape[0], dtype=jnp.float32)


def test_buckets_bound_the_compilations(task):
  """α changes at every check (one more frozen unit): exact sizes would be a
  new program each time; 4 buckets and a cap of 3 programs keep it at 3."""
  from paramsel_jax.freeze import policy as freezing
  freezing.register_criterion('one_more', freezing.Criterion(
      frozenset(), False, _one_more))
  try:
    config = online.OnlineConfig(criterion='one_more', steps=110,
                                 check_every=10, buckets=4, max_compiles=3,
                                 batch_size=16, eval_batch_size=64)
    run = online.run_online(task, optax.adam(1e-2), config, [0],
                            log=lambda _: None)
  finally:
    del freezing.CRITERIA['one_more']
  shares = [c['frozen_share'][0] for c in run['checks']]
  assert shares == sorted(shares) and shares[-1] > shares[0]  # it kept freezing.
  assert len({c['plan'] for c in run['checks']}) >= 2  # and switched,
  assert run['compilations'] <= 3  # within the cap.


def test_bucket_rounding_gives_a_few_sizes():
  from paramsel_jax.freeze import active
  params = {'Dense_0': {'kernel': jnp.zeros((3, 12)), 'bias': jnp.zeros(12)}}
  sizes = set()
  for count in range(1, 13):
    on = np.arange(12) < count
    alpha = jax.tree.map(lambda p: jnp.asarray(np.broadcast_to(on, p.shape)), params)
    plan, _ = active.plan(alpha, 'unit', batched=False, buckets=4)
    sizes.add(plan.slots[0])
  assert sizes == {3, 6, 9, 12}


def test_bad_online_settings_are_refused():
  with pytest.raises(ValueError, match='freezes whole layers'):
    online.OnlineConfig(criterion='autofreeze', granularity='unit')
  with pytest.raises(ValueError, match='eval_every=30'):
    online.OnlineConfig(check_every=20, eval_every=30)
