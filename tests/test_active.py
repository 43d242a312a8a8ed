"""The active-set step: the same parameters as `masked`, cheaper.

`T|α` built on `active` (frozen params as constants, the active units as the
only thing differentiated and optimized) must give the parameters of today's
`masked` step with the equivalent element mask, to float rounding, over many
steps; frozen values stay bit-identical; the optimizer's state has the active
shapes; and XLA's cost analysis of the compiled step shows the weight-gradient
FLOPs of the frozen layer gone.
"""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.freeze import active
from paramsel_jax.select import granularity
from paramsel_jax import models
from paramsel_jax.train import steps

B = 32
MODEL = models.create_model('mlp', widths=(24, 16), num_classes=5)
APPLY = lambda p, x: MODEL.apply({'params': p}, x)


def _data():
  k1, k2 = jax.random.split(jax.random.key(3))
  x = jax.random.randint(k1, (256, 6, 6, 1), 0, 256).astype(jnp.uint8)
  y = jax.random.randint(k2, (256,), 0, 5)
  return x, y


def _params():
  return models.init_params(MODEL, jax.random.key(0), (6, 6, 1))


def _unit_alpha(params, spec):
  """spec: module -> list of active units, 'all', or absent (frozen)."""
  def leaf(path, x):
    name = granularity.module_name(granularity.module_path(path))
    units = spec.get(name, [])
    n = x.shape[-1]
    on = np.zeros(n, bool)
    on[np.arange(n) if units == 'all' else units] = True
    return jnp.asarray(np.broadcast_to(on, x.shape))
  return jax.tree_util.tree_map_with_path(leaf, params)


def _masked_run(tx, params, alpha, x, y, num_steps, warm=5):
  mtx = paramsel_jax.masked(tx)
  state = mtx.init(params)
  def step(params, state, t):
    idx = steps.batch_indices(jax.random.key(t), x.shape[0], B)
    loss = lambda p: steps.cross_entropy(APPLY(p, steps.to_float(x[idx])), y[idx])
    g = jax.grad(loss)(params)
    u, state = mtx.update(g, state, params)
    return optax.apply_updates(params, u), state
  step = jax.jit(step)
  for t in range(warm):
    params, state = step(params, state, t)
  warm_params, warm_state = params, state
  state = paramsel_jax.set_mask(state, alpha)
  for t in range(warm, warm + num_steps):
    params, state = step(params, state, t)
  return warm_params, warm_state, params


def _active_run(tx, warm_params, warm_state, alpha, x, y, num_steps, warm=5,
                gran='unit'):
  mtx = paramsel_jax.masked(tx)
  batched = jax.tree.map(lambda a: a[None], alpha)
  plan, arrays = active.plan(batched, gran)
  idx = jax.tree.map(lambda a: jnp.asarray(a[0]), arrays['idx'])
  act = active.split(warm_params, plan, idx)
  state = active.state_to_active(
      paramsel_jax.set_mask(warm_state, alpha), warm_params, plan, idx)
  def step(act, state, t):
    bidx = steps.batch_indices(jax.random.key(t), x.shape[0], B)
    loss = lambda a: steps.cross_entropy(
        active.forward(APPLY, plan, warm_params, a, idx, steps.to_float(x[bidx])),
        y[bidx])
    g = jax.grad(loss)(act)
    u, state = mtx.update(g, state, act)
    return optax.apply_updates(act, u), state
  step = jax.jit(step)
  for t in range(warm, warm + num_steps):
    act, state = step(act, state, t)
  return plan, idx, active.merge(warm_params, act, plan, idx), state


FIRST_PARTIAL = {'Dense_0': [1, 5, 7], 'Dense_2': 'all'}  # partial first, full last
MIDDLE_ONLY = {'Dense_1': [0, 3, 15]}  # only a middle layer, partly
FULL_THEN_ONE = {'Dense_0': 'all', 'Dense_1': [2]}


@pytest.mark.parametrize('name, tx, spec', [
    ('sgd', optax.sgd(0.1), FIRST_PARTIAL),
    ('momentum', optax.sgd(0.05, momentum=0.9), FIRST_PARTIAL),
    ('adam', optax.adam(3e-3), FIRST_PARTIAL),
    ('adam', optax.adam(3e-3), MIDDLE_ONLY),
    ('momentum', optax.sgd(0.05, momentum=0.9), FULL_THEN_ONE),
])
def test_active_step_equals_masked_step(name, tx, spec):
  x, y = _data()
  params = _params()
  alpha = _unit_alpha(params, spec)
  warm_params, warm_state, want = _masked_run(tx, params, alpha, x, y, 60)
  _, _, got, _ = _active_run(tx, warm_params, warm_state, alpha, x, y, 60)
  for w, g, a, p0 in zip(*map(jax.tree.leaves, (want, got, alpha, warm_params))):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5,
                               atol=2e-6, err_msg=name)
    frozen = ~np.asarray(a)
    np.testing.assert_array_equal(np.asarray(g)[frozen], np.asarray(p0)[frozen])


def test_packed_element_step_equals_masked_and_state_is_o_k():
  x, y = _data()
  params = _params()
  scores = jax.tree.map(lambda p: jax.random.uniform(jax.random.key(9), p.shape), params)
  alpha = paramsel_jax.top_k_mask(scores, 0.1)
  tx = optax.adam(3e-3)
  warm_params, warm_state, want = _masked_run(tx, params, alpha, x, y, 40)
  plan, _, got, state = _active_run(tx, warm_params, warm_state, alpha, x, y, 40,
                                    gran='element')
  n = models.count_params(params)
  assert plan.mode == 'packed' and plan.packed == round(0.1 * n)
  for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5, atol=2e-6)
  adam = state.inner_state[0]
  assert adam.mu[active.PACKED].shape == (plan.packed,)
  dense = sum(2 * p.nbytes for p in jax.tree.leaves(params))
  assert adam.mu[active.PACKED].nbytes + adam.nu[active.PACKED].nbytes <= 0.1 * dense + 8


def test_unit_state_has_the_active_shapes():
  x, y = _data()
  params = _params()
  alpha = _unit_alpha(params, {'Dense_0': [1, 2], 'Dense_2': 'all'})
  warm_params, warm_state, _ = _masked_run(optax.adam(1e-3), params, alpha, x, y, 1)
  _, _, _, state = _active_run(optax.adam(1e-3), warm_params, warm_state, alpha,
                               x, y, 1)
  mu = state.inner_state[0].mu
  assert mu['Dense_0']['kernel'].shape == (36, 2)
  assert mu['Dense_1']['kernel'].shape == (24, 0)
  assert mu['Dense_2']['kernel'].shape == (16, 5)


def _step_flops(fn, *args):
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)['flops']


def test_frozen_first_layer_removes_its_weight_gradient_flops():
  """XLA's cost analysis (deterministic): freezing the first layer removes
  at least its weight gradient, 2·B·n_in·n_out FLOPs, from the step."""
  model = models.create_model('lenet300')
  apply = lambda p, x: model.apply({'params': p}, x)
  params = models.init_params(model, jax.random.key(0), (28, 28, 1))
  x = jnp.zeros((128, 28, 28, 1), jnp.uint8)
  y = jnp.zeros((128,), jnp.int32)
  tx = optax.adam(1e-3)
  def dense(p, s):
    g = jax.grad(lambda q: steps.cross_entropy(apply(q, steps.to_float(x)), y))(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s
  alpha = jax.tree.map(lambda a: a[None], _unit_alpha(
      params, {'Dense_1': 'all', 'Dense_2': 'all'}))
  plan, arrays = active.plan(alpha, 'layer')
  idx = {}
  act = active.split(params, plan, idx)
  def cheap(a, s):
    g = jax.grad(lambda q: steps.cross_entropy(
        active.forward(apply, plan, params, q, idx, steps.to_float(x)), y))(a)
    u, s = tx.update(g, s, a)
    return optax.apply_updates(a, u), s
  full = _step_flops(dense, params, tx.init(params))
  frozen = _step_flops(cheap, act, tx.init(act))
  assert plan.kinds == ('frozen', 'full', 'full')
  assert full - frozen >= 2 * 128 * 784 * 300


# --- The protocol on the active set. ---

from paramsel_jax.protocol import protocol  # noqa: E402

PCONFIG = protocol.ProtocolConfig(eta0=30, eta1=40, k=0.3, l=0.5, window=10,
                                  batch_size=16, chunk_size=25,
                                  eval_batch_size=64, granularity='unit')


@pytest.fixture(scope='module')
def task(make_task):
  return make_task((16, 12))


def _protocol(task, seeds=(0, 1), **change):
  import dataclasses
  config = dataclasses.replace(PCONFIG, **change)
  return protocol.run_protocol(task, optax.adam(1e-2), config,
                               ['topgrad', 'random'], list(seeds),
                               log=lambda _: None)


@pytest.fixture(scope='module')
def unit_runs(task):
  return (_protocol(task, granularity='unit', step='masked'),
          _protocol(task, granularity='unit', step='active'))


@pytest.mark.slow
@pytest.mark.parametrize('gran', ['unit', 'layer'])
def test_protocol_active_step_equals_masked_step(task, unit_runs, gran):
  """Same α (whole units or layers), same numbers to float rounding; frozen
  coordinates bit-identical; the active phase is cheaper in FLOPs."""
  if gran == 'unit':
    masked_run, active_run = unit_runs
  else:
    masked_run = _protocol(task, granularity=gran, step='masked')
    active_run = _protocol(task, granularity=gran, step='active')
  for a, m in zip(active_run['cells'], masked_run['cells']):
    assert a['alpha_count'] == m['alpha_count'] and a['frozen_moved'] == [False] * 2
    for part in ('w', 'pruned'):
      for metric in a[part]:
        np.testing.assert_allclose(a[part][metric], m[part][metric],
                                   rtol=1e-4, atol=1e-5, err_msg=metric)
  phases = active_run['timing']['phases']
  dense = phases['eta0']['flops_per_step']
  for label, cost in phases.items():
    assert cost['steps_per_s'] > 0 and cost['opt_state_bytes'] > 0, label
    if label != 'eta0':
      assert cost['step'].startswith('T|α active')
      assert cost['flops_per_step'] < dense, label


@pytest.mark.slow
def test_unit_granularity_takes_whole_units_near_k(task, unit_runs):
  run = unit_runs[1]
  n = run['num_params']
  g = granularity.groups(jax.eval_shape(task.init_fn, jax.random.key(0)), 'unit')
  half_unit = g.sizes.max() / 2
  for cell in run['cells']:
    for count in cell['alpha_count']:
      assert abs(count - round(0.3 * n)) <= half_unit


@pytest.mark.slow
def test_frozen_prefix_cache_gives_the_same_numbers(task):
  """Layer granularity with the first layer frozen (k small enough): the
  cached run equals the uncached one."""
  import dataclasses
  config = dataclasses.replace(PCONFIG, granularity='layer', k=0.05,
                               cache_prefix=True)
  logs = []
  cached = protocol.run_protocol(task, optax.adam(1e-2), config, ['topgrad'],
                                 [0, 1], log=logs.append)
  plain = protocol.run_protocol(
      task, optax.adam(1e-2), dataclasses.replace(config, cache_prefix=False),
      ['topgrad'], [0, 1], log=lambda _: None)
  assert any('caching the inputs of' in line for line in logs), logs
  for part in ('w', 'pruned'):
    for metric in cached['cells'][0][part]:
      np.testing.assert_allclose(cached['cells'][0][part][metric],
                                 plain['cells'][0][part][metric], rtol=1e-5,
                                 atol=1e-6)


@pytest.mark.slow
def test_cache_over_budget_is_refused_and_runs_uncached(task):
  import dataclasses
  config = dataclasses.replace(PCONFIG, granularity='layer', k=0.05,
                               cache_prefix=True, cache_budget_mb=1e-6)
  logs = []
  protocol.run_protocol(task, optax.adam(1e-2), config, ['topgrad'], [0],
                        log=logs.append)
  assert any('cache REFUSED' in line and 'budget' in line for line in logs)


@pytest.mark.parametrize('change, message', [
    (dict(granularity='neuron'), "granularity='neuron'"),
    (dict(budget='flops', granularity='element'), "budget='flops' with granularity='element'"),
    (dict(budget='flops', k=5), "k=5 with budget='flops'"),
    (dict(cache_prefix=True, granularity='element'), 'cache_prefix=True needs the active step'),
    (dict(mode='retrain', k=None), "mode='retrain' trains the l kept weights"),
])
def test_bad_freezing_settings_are_refused(change, message):
  import dataclasses
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(PCONFIG, **change)


# --- Models the active step cannot train at unit granularity: refused. ---

import dataclasses  # noqa: E402

import flax.linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

from paramsel_jax.freeze import active_check  # noqa: E402
from paramsel_jax.protocol import online  # noqa: E402
from paramsel_jax.train import runner as runner_lib  # noqa: E402
from paramsel_jax.select import selectors  # noqa: E402

TINY = dataclasses.replace(PCONFIG, eta0=10, eta1=10, window=5, chunk_size=10,
                           k=0.5)


def _hand_written_task(make_task):
  """An MLP as a plain function of a params dict (no flax module)."""
  base = make_task((12,))
  def init_fn(key):
    k1, k2 = jax.random.split(key)
    return {'hidden': {'kernel': 0.1 * jax.random.normal(k1, (64, 12)),
                       'bias': jnp.zeros(12)},
            'out': {'kernel': 0.1 * jax.random.normal(k2, (12, 4)),
                    'bias': jnp.zeros(4)}}
  def apply_fn(p, x):
    h = jnp.tanh(x.reshape(x.shape[0], -1) @ p['hidden']['kernel']
                 + p['hidden']['bias'])
    return h @ p['out']['kernel'] + p['out']['bias']
  return dataclasses.replace(base, init_fn=init_fn, apply_fn=apply_fn)


class _NnxMLP(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(64, 12, rngs=rngs)
    self.out = nnx.Linear(12, 4, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x.reshape(x.shape[0], -1))))


def _nnx_task(make_task):
  """An NNX module through the Functional API (split once, merge per call)."""
  graphdef, _ = nnx.split(_NnxMLP(nnx.Rngs(0)), nnx.Param)
  return dataclasses.replace(
      make_task((12,)),
      init_fn=lambda key: nnx.split(_NnxMLP(nnx.Rngs(key)), nnx.Param)[1],
      apply_fn=lambda p, x: nnx.merge(graphdef, p)(x))


class _Transformer(nn.Module):
  """Embed, a learned position table at the root, attention, LayerNorm."""

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], 16, 4)
    h = nn.Embed(10, 8)((x[..., 0] * 9).astype(jnp.int32))
    h = h + self.param('pos', nn.initializers.normal(0.02), (16, 8))
    h = h + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)(h)
    return nn.Dense(4)(nn.LayerNorm()(h).mean(axis=1))


def _transformer_task(make_task):
  model = _Transformer()
  return dataclasses.replace(
      make_task((12,)),
      init_fn=lambda key: model.init(key, jnp.zeros((1, 8, 8, 1)))['params'],
      apply_fn=lambda p, x: model.apply({'params': p}, x))


MODELS = {'hand_written': _hand_written_task, 'nnx': _nnx_task}


@pytest.mark.parametrize('model', sorted(MODELS))
def test_active_step_refuses_a_model_the_interceptor_does_not_reach(
    make_task, model):
  """A hand-written apply_fn or an NNX module: the interceptor never sees
  their layers, so T|α at unit granularity would give partly active layers a
  gradient of exactly zero. One clear error, before η0 (nothing logged)."""
  task = MODELS[model](make_task)
  logs = []
  with pytest.raises(ValueError, match=r"cannot train single units of: hidden"
                     r".*not called through flax linen's method interceptor.*"
                     r"gradient of exactly zero.*step='masked'"):
    protocol.run_protocol(task, optax.adam(1e-2), TINY, ['topgrad'], [0],
                          log=logs.append)
  assert logs == []  # η0 did not start.


@pytest.mark.parametrize('model', sorted(MODELS))
def test_masked_step_trains_those_models(make_task, model):
  """With step='masked' the same models train: every coordinate of α moves
  in η1, every other one stays bit-identical."""
  task = MODELS[model](make_task)
  config = dataclasses.replace(TINY, step='masked', window=10)
  runner = runner_lib.Runner(task, optax.sgd(0.1), config)
  state = runner.init(jax.vmap(jax.random.key)(jnp.arange(1, dtype=jnp.uint32)))
  state = runner.train(state, 0, 10, 10, lambda _: None, 'eta0')
  alpha = runner.select(state, selectors.get_selector('topgrad'), 'alpha',
                        0.5, state.stats)
  start = runner.start_phase1(state, alpha)
  end = runner.train(start, 10, 10, 10, lambda _: None, 'eta1')
  moved = jax.tree.map(lambda a, b: np.asarray(a != b), end.params,
                       start.params)
  for m, a in zip(jax.tree.leaves(moved), jax.tree.leaves(alpha)):
    np.testing.assert_array_equal(m, np.asarray(a))
  assert 0 < sum(int(np.sum(a)) for a in jax.tree.leaves(alpha))


def test_online_refuses_a_model_the_interceptor_does_not_reach(make_task):
  config = online.OnlineConfig(criterion='psgld', steps=20, check_every=10,
                               granularity='unit', batch_size=16,
                               eval_batch_size=64)
  logs = []
  with pytest.raises(ValueError, match='cannot train single units of: hidden'):
    online.run_online(_hand_written_task(make_task), optax.sgd(0.1), config,
                      [0], log=logs.append)
  assert logs == []


def test_forward_refuses_a_partial_module_it_does_not_reach():
  """The last guard, at trace time: `forward` never returns a zero gradient
  for a partly active module it did not reach."""
  params = {'Dense_0': {'kernel': jnp.ones((3, 4)), 'bias': jnp.zeros(4)}}
  alpha = jax.tree.map(lambda p: jnp.broadcast_to(
      jnp.array([True, False, True, False]), p.shape), params)
  p, arrays = active.plan(alpha, 'unit', batched=False)
  act = active.split(params, p, arrays['idx'])
  hand = lambda q, x: x @ q['Dense_0']['kernel'] + q['Dense_0']['bias']
  with pytest.raises(ValueError, match=r"\['Dense_0'\] were not called through"):
    active.forward(hand, p, params, act, arrays['idx'], jnp.ones((2, 3)))


@pytest.mark.slow
def test_transformer_trains_at_layer_granularity_and_unit_is_refused(
    make_task):
  """Layer granularity trains whole modules (nothing is split): it runs. At
  unit granularity the one module it cannot split, (root)'s 'pos', is named
  before η0 (Embed and attention's DenseGeneral split since issue 20, and a
  LayerNorm is one unit: tests/test_active_linen.py)."""
  task = _transformer_task(make_task)
  logs = []
  with pytest.raises(ValueError, match=r'cannot train single units of: \(root\)'
                     r" \(_Transformer with params \['pos'\][^;]*; accepted.*"
                     r"granularity 'layer' or 'element', or step='masked'") as err:
    protocol.run_protocol(task, optax.adam(1e-2), TINY, ['topgrad'], [0],
                          log=logs.append)
  assert 'Embed_0 (' not in str(err.value) and '/query (' not in str(err.value)
  assert logs == []
  runs = [protocol.run_protocol(
      task, optax.adam(1e-2), dataclasses.replace(
          TINY, granularity='layer', step=step, window=10,
          evaluate_after_eta0=False),
      ['topgrad'], [0], log=lambda _: None) for step in ('active', 'masked')]
  steps_run = [cost['step'] for run in runs
               for label, cost in run['timing']['phases'].items()
               if label.startswith('eta1')]
  assert steps_run[0].startswith('T|α active') and 'frozen' in steps_run[0]
  assert steps_run[1] == 'T|α masked'
  active_cell, masked_cell = (run['cells'][0] for run in runs)
  assert active_cell['frozen_moved'] == [False]
  for part in ('w', 'pruned'):
    for metric, value in active_cell[part].items():
      np.testing.assert_allclose(value, masked_cell[part][metric], rtol=1e-4,
                                 atol=1e-5, err_msg=metric)


def test_check_active_step_accepts_dense_conv_and_out_projection(make_task):
  """What `forward` splits right passes (the repo's MLP and conv nets,
  attention's output projection); a grouped Conv does not."""
  for name, shape in (('mlp', (6, 6, 1)), ('lenet5', (28, 28, 1))):
    model = models.create_model(name, num_classes=5)
    params = models.init_params(model, jax.random.key(0), shape)
    active_check.check_active_step(lambda p, x, m=model: m.apply({'params': p}, x),
                             params, jnp.zeros((1,) + shape), 'unit')
  task = _transformer_task(make_task)
  params = task.init_fn(jax.random.key(0))
  x = steps.to_float(task.train_images[:2])
  active_check.check_active_step(task.apply_fn, params, x, 'unit',
                           modules=['MultiHeadDotProductAttention_0/out',
                                    'Dense_0'])
  grouped = nn.Conv(4, (3, 3), feature_group_count=2)
  gp = grouped.init(jax.random.key(0), jnp.zeros((1, 5, 5, 2)))['params']
  with pytest.raises(ValueError, match=r'\(root\) \(Conv\(features=4, '
                     r'feature_group_count=2\)'):
    active_check.check_active_step(lambda p, x: grouped.apply({'params': p}, x), gp,
                             jnp.zeros((1, 5, 5, 2)), 'unit')


def test_forward_on_accepted_transformer_modules_equals_the_dense_gradient(
    make_task):
  """Partly active output projection and Dense, the rest full or frozen: the
  gradient w.r.t. the active tree is the dense gradient's active slice."""
  task = _transformer_task(make_task)
  params = task.init_fn(jax.random.key(0))
  x = steps.to_float(task.train_images[:8])
  y = task.train_labels[:8]
  units = {'MultiHeadDotProductAttention_0/out': [1, 0, 1, 1, 0, 0, 1, 0],
           'Dense_0': [0, 1, 1, 0], 'LayerNorm_0': [1] * 8}
  def alpha_of(path, leaf):
    name = granularity.module_name(granularity.module_path(path))
    if name not in units:
      return jnp.zeros(leaf.shape, bool)
    return jnp.broadcast_to(jnp.array(units[name], bool), leaf.shape)
  alpha = jax.tree_util.tree_map_with_path(alpha_of, params)
  p, arrays = active.plan(alpha, 'unit', batched=False)
  assert sorted(p.kinds) == ['frozen'] * 5 + ['full'] + ['partial'] * 2
  act = active.split(params, p, arrays['idx'])
  loss = lambda q: steps.cross_entropy(task.apply_fn(q, x), y)
  cheap = jax.jit(jax.grad(lambda a: steps.cross_entropy(active.forward(
      task.apply_fn, p, params, a, arrays['idx'], x), y)))(act)
  want = active.split(jax.jit(jax.grad(loss))(params), p, arrays['idx'])
  for got, ref in zip(jax.tree.leaves(cheap), jax.tree.leaves(want)):
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  assert any(np.abs(np.asarray(g)).sum() > 0 for g in jax.tree.leaves(cheap))
