"""optax's optimizer contract, run on every optax optimizer bare and under `masked`.

The contrib list is imported from the installed optax
(`optax/contrib/_common_test.py`, shipped in the wheel), so it tracks optax.
`optax/_src/alias_test.py` imports scikit-learn, which is not installed here,
so its list is copied below (optax 0.2.8), with `lbfgs` (tested apart in
optax) and contrib's `sam` added: together every optimizer optax ships.

The checks are optax's, merged so that each optimizer compiles few programs:
`tree_map_params` works on the state; the update accepts extra arguments it
does not expect; inside `jit`, `lax.scan` and `lax.cond` the state keeps its
shapes and dtypes (`cond` rejects any drift); the toy problem is solved (the
mixed 1-D + 2-D target of `_common_test.py`, with optax's step counts);
dtypes are preserved (bfloat16), `optax.MultiSteps` accumulates, and
`inject_hyperparams` gives the same step. Every check runs on the bare
optimizer (the control) and on `masked(...)` with an all-True mask, whose
trajectory must equal the bare one to float rounding. A bare failure is an
`xfail(strict=True)` with its reason; masked must then still match bare.

Then masked-specific checks with a partly-False mask on a >= 128 x 128 matrix
(so Adafactor factors it): frozen params bit-identical, per-element state
unchanged at frozen coordinates, and the rule for other state.
"""

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import contrib
from optax.contrib import _common_test as optax_contrib_test
import pytest

import paramsel_jax

# optax/_src/alias_test.py's _OPTIMIZERS_UNDER_TEST (optax 0.2.8), copied.
_ALIAS = (
    ('adabelief', {'learning_rate': 1e-2}),
    ('adadelta', {'learning_rate': 0.1}),
    ('adadelta', {}),
    ('adafactor', {'learning_rate': 5e-3}),
    ('adafactor', {}),
    ('adagrad', {'learning_rate': 1.0}),
    ('adam', {'learning_rate': 1e-1}),
    ('adamax', {'learning_rate': 1e-1}),
    ('adamaxw', {'learning_rate': 1e-1}),
    ('adamw', {'learning_rate': 1e-1}),
    ('adan', {'learning_rate': 1e-1}),
    ('amsgrad', {'learning_rate': 1e-1}),
    ('fromage', {'learning_rate': 5e-3}),
    ('lamb', {'learning_rate': 1e-3}),
    ('lars', {'learning_rate': 1.0}),
    ('lion', {'learning_rate': 1e-2, 'weight_decay': 1e-4}),
    ('nadam', {'learning_rate': 1e-2}),
    ('nadamw', {'learning_rate': 1e-2}),
    ('noisy_sgd', {'learning_rate': 1e-3, 'eta': 1e-4, 'key': 0}),
    ('novograd', {'learning_rate': 1e-3}),
    ('optimistic_adam_v2', {'learning_rate': 2e-3}),
    ('optimistic_gradient_descent',
     {'learning_rate': 2e-3, 'alpha': 0.7, 'beta': 0.1}),
    ('polyak_sgd', {'max_learning_rate': 1.0}),
    ('radam', {'learning_rate': 5e-3}),
    ('rmsprop', {'learning_rate': 5e-3}),
    ('rmsprop', {'learning_rate': 5e-3, 'momentum': 0.9}),
    ('rprop', {'learning_rate': 1e-1}),
    ('sgd', {'learning_rate': 1e-3, 'momentum': 0.9}),
    ('sign_sgd', {'learning_rate': 1e-1}),
    ('signum', {'learning_rate': 1e-2}),
    ('sm3', {'learning_rate': 1.0}),
    ('yogi', {'learning_rate': 1e-1}),
)
# optimistic_adam is deprecated in favour of optimistic_adam_v2 (above).


def _alias_config(name, kwargs):
  return {'opt_name': name, 'opt_kwargs': kwargs, 'wrapper_name': None,
          'wrapper_kwargs': None, 'steps': 10_000, 'main': True}


def _contrib_config(config, main):
  return dict(config, steps=30_000, main=main)


CONFIGS = (
    [_alias_config(n, k) for n, k in _ALIAS]
    + [dict(_alias_config('lbfgs', {}), main=False)]
    + [_contrib_config(c, True)
       for c in optax_contrib_test._MAIN_OPTIMIZERS_UNDER_TEST]
    + [_contrib_config(c, False)
       for c in optax_contrib_test._OTHER_OPTIMIZERS_UNDER_TEST]
    + [{'opt_name': 'sgd', 'opt_kwargs': {'learning_rate': 1e-2},
        'wrapper_name': 'sam', 'wrapper_kwargs': {}, 'steps': 10_000,
        'main': False}]
)


def _config_id(c):
  kwargs = ','.join(f'{k}={v}' for k, v in c['opt_kwargs'].items())
  name = f"{c['opt_name']}({kwargs})"
  return f"{c['wrapper_name']}[{name}]" if c['wrapper_name'] else name


IDS = [_config_id(c) for c in CONFIGS]
assert len(set(IDS)) == len(IDS), 'each optimizer is tested once'
BY_ID = dict(zip(IDS, CONFIGS))

# The default tier runs the compiling checks on one optimizer of each kind of
# state (per-element moments, factored, per-leaf, per-param lists, matrix-wide
# updates, memory of past steps, a wrapper, a linesearch, schedule-free); the
# full matrix (74 optimizers, ~10 minutes of compilation on 2 cores) runs
# under the `slow` marker, as CI does.
DEFAULT_TIER = frozenset({
    'adam(learning_rate=0.1)', 'sgd(learning_rate=0.001,momentum=0.9)',
    'adafactor(learning_rate=0.005)', 'novograd(learning_rate=0.001)',
    'sm3(learning_rate=1.0)', 'lion(learning_rate=0.01,weight_decay=0.0001)',
    'lbfgs()', 'muon(learning_rate=0.01)',
    'schedule_free_adamw(learning_rate=0.01,warmup_steps=5000)',
    'sam[sgd(learning_rate=0.01)]',
})


def _tiered(config_id, known=None):
  """`config_id` as a param: `slow` outside the default tier, xfail if known."""
  marks = [] if config_id in DEFAULT_TIER else [pytest.mark.slow]
  if known and config_id in known:
    marks.append(pytest.mark.xfail(strict=True, reason=known[config_id]))
  return pytest.param(config_id, marks=marks)

# Bare optax optimizers that fail a check of optax's contract, with the reason
# (neither is in optax's own lists for these checks). `masked` forwards the
# call, so it fails the same way: not a regression of `masked`.
_NO_TREE_MAP_PARAMS = {
    'lbfgs()': 'optax.tree.map_params fails on lbfgs: its init indexes the '
               "params' leaves, and optax's placeholder params have none "
               '(IndexError, optax/_src/linesearch.py:1507).'}
_REJECTS_EXTRA_ARGS = {
    'sam[sgd(learning_rate=0.01)]': 'contrib.sam (transparent mode) does not '
                                    'accept extra arguments (TypeError).',
    'lbfgs()': 'the zoom linesearch of lbfgs passes extra arguments on to '
               'value_fn, which rejects them (TypeError).'}
_FAILS_TREE_MAP_OR_EXTRA_ARGS = {
    i: ' '.join(d[i] for d in (_NO_TREE_MAP_PARAMS, _REJECTS_EXTRA_ARGS) if i in d)
    for i in {**_NO_TREE_MAP_PARAMS, **_REJECTS_EXTRA_ARGS}}


def _factory(config):
  name = config['opt_name']
  if hasattr(contrib, name):
    return getattr(contrib, name)
  return getattr(optax, name)


def _make(config):
  opt = _factory(config)(**config['opt_kwargs'])
  wrapper = config['wrapper_name']
  if wrapper == 'sam':
    return contrib.sam(opt, optax.sgd(1e-3), sync_period=2)
  if wrapper is not None:
    opt = optax_contrib_test._wrap_opt(opt, wrapper, config['wrapper_kwargs'])
  return opt


def _extra_args(config, value, grads, obj_fn):
  name = config['opt_name']
  if name == 'lbfgs':
    return {'value': value, 'grad': grads, 'value_fn': obj_fn}
  if name in ('polyak_sgd', 'momo', 'momo_adam') or (
      config['wrapper_name'] == 'reduce_on_plateau'):
    return {'value': value}
  if name == 'sophia':
    return {'obj_fn': obj_fn}
  return {}


def _wrap(tx, masked):
  return paramsel_jax.masked(tx) if masked else tx


def _is_schedule_free(config):
  return (config['opt_name'] in ('schedule_free_sgd', 'schedule_free_adamw')
          or config['wrapper_name'] == 'schedule_free')


@functools.cache
def _solve(config_id, masked):
  """optax's toy-problem contract in one program: final params, first steps' params."""
  config = BY_ID[config_id]
  tx = _wrap(_make(config), masked)
  params, _, obj_fn = optax_contrib_test._setup_mixed_tensor_target(jnp.float32)
  state = tx.init(params)

  @jax.jit
  def run(params, state):
    def body(carry, _):
      params, state = carry
      value, grads = jax.value_and_grad(obj_fn)(params)
      kwargs = _extra_args(config, value, grads, obj_fn)
      if config_id not in _REJECTS_EXTRA_ARGS:  # tested apart, below.
        kwargs['unexpected_extra_args_your_optimizer_doesnt_expect'] = 1
      # cond rejects a state whose shapes or dtypes drift; optax uses it so.
      updates, state = jax.lax.cond(
          jnp.isfinite(value),
          lambda: tx.update(grads, state, params, **kwargs),
          lambda: (jax.tree.map(jnp.zeros_like, params), state))
      params = optax.apply_updates(params, updates)
      return (params, state), params
    carry, trajectory = jax.lax.scan(body, (params, state),
                                     length=config['steps'])
    return carry, jax.tree.map(lambda x: x[:50], trajectory)  # first steps.

  (params, state), trajectory = run(params, state)
  if _is_schedule_free(config):
    params = contrib.schedule_free_eval_params(
        state.inner_state if masked else state, params)
  return params, trajectory


def _converges(config_id, masked):
  config = BY_ID[config_id]
  params, _ = _solve(config_id, masked)
  final = optax_contrib_test._setup_mixed_tensor_target(jnp.float32)[1]
  if config['opt_name'] in ('adadelta', 'adafactor') and (
      'learning_rate' not in config['opt_kwargs']):
    # As in optax's alias_test: no convergence claim without a learning rate.
    return bool(all(jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)))
  return all(np.allclose(p, f, rtol=3e-2, atol=3e-2)
             for p, f in zip(jax.tree.leaves(params), jax.tree.leaves(final)))


@pytest.mark.parametrize('masked', [False, True], ids=['bare', 'masked'])
@pytest.mark.parametrize(
    'config_id', [_tiered(i, _FAILS_TREE_MAP_OR_EXTRA_ARGS) for i in IDS])
def test_tree_map_params_and_unexpected_extra_args(config_id, masked):
  config = BY_ID[config_id]
  tx = _wrap(_make(config), masked)
  params, _, obj_fn = optax_contrib_test._setup_mixed_tensor_target(jnp.float32)
  state = tx.init(params)
  # A no-op map, as in optax's tests, must keep the state as it is.
  chex.assert_trees_all_equal(optax.tree.map_params(tx, lambda v: v, state),
                              state)
  value, grads = jax.value_and_grad(obj_fn)(params)
  kwargs = _extra_args(config, value, grads, obj_fn)
  kwargs['unexpected_extra_args_your_optimizer_doesnt_expect'] = 1
  jax.eval_shape(lambda: tx.update(grads, state, params, **kwargs))


@pytest.mark.parametrize('config_id', [_tiered(i) for i in IDS])
def test_bare_optimizer_solves_toy_problem(config_id):
  assert _converges(config_id, masked=False)


@pytest.mark.parametrize('config_id', [_tiered(i) for i in IDS])
def test_masked_all_true_matches_bare_and_solves_toy_problem(config_id):
  _, want = _solve(config_id, False)
  _, got = _solve(config_id, True)
  # The first steps match to float rounding (XLA may fuse the two programs
  # differently); later, chaotic optimizers may drift apart by rounding.
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
  assert _converges(config_id, masked=True) == _converges(config_id, False)


_UNINJECTABLE = ('warmup_steps', 'num_betas', 'clip_value_fn', 'ns_steps',
                 'rank', 'update_proj_gap', 'min_dim_size_to_factor')
# reduce_on_plateau is not supported by inject_hyperparams (optax skips it);
# lbfgs and sam are not in optax's lists for these checks.
MAIN_IDS = [i for i in IDS if BY_ID[i]['main']
            and BY_ID[i]['wrapper_name'] != 'reduce_on_plateau']


@pytest.mark.parametrize('masked', [False, True], ids=['bare', 'masked'])
@pytest.mark.parametrize('config_id', [_tiered(i) for i in MAIN_IDS])
def test_dtype_multisteps_and_inject_hyperparams(config_id, masked):
  config = BY_ID[config_id]
  if config['wrapper_name'] is None:
    factory, hparams = _factory(config), config['opt_kwargs']
  else:
    factory = functools.partial(getattr(contrib, config['wrapper_name']),
                                _factory(config)(**config['opt_kwargs']))
    hparams = config['wrapper_kwargs']
  static = tuple(a for a in _UNINJECTABLE
                 if a in inspect.signature(factory).parameters)
  tx = _wrap(factory(**hparams), masked)
  tx_inject = _wrap(optax.inject_hyperparams(factory, static)(**hparams), masked)
  tx_steps = optax.MultiSteps(tx, every_k_schedule=4)

  fun = lambda x: jnp.sum(x ** 2)
  tree_fun = lambda x: optax.tree.norm(x, squared=True)
  x16 = jnp.array([1.0, 2.0], jnp.bfloat16)
  tree = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
  tree_grads = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]

  @jax.jit
  def run():
    value, g16 = jax.value_and_grad(fun)(x16)
    u16, _ = tx.update(g16, tx.init(x16), x16,
                       **_extra_args(config, value, g16, fun))
    acc, _ = tx_steps.update(g16, tx_steps.init(x16), x16,
                             **_extra_args(config, value, g16, fun))
    kwargs = _extra_args(config, jnp.array(1.0), tree_grads, tree_fun)
    plain = tx.update(tree_grads, tx.init(tree), tree, **kwargs)
    inject = tx_inject.update(tree_grads, tx_inject.init(tree), tree, **kwargs)
    return u16, acc, plain, inject

  u16, acc, (updates, state), (updates_inject, state_inject) = run()
  assert u16.dtype == jnp.bfloat16
  chex.assert_trees_all_equal(acc, jnp.zeros_like(x16))
  chex.assert_trees_all_close(updates_inject, updates, rtol=1e-5)
  if masked:
    state, state_inject = state.inner_state, state_inject.inner_state
  chex.assert_trees_all_close(
      optax.tree.unwrap_random_key_data(state_inject.inner_state),
      optax.tree.unwrap_random_key_data(state), rtol=1e-5, atol=1e-5)


def _big_params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {'w': jax.random.normal(k1, (256, 160)), 'b': jax.random.normal(k2, (160,))}


def _partial_mask(params):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return treedef.unflatten(
      [jax.random.bernoulli(k, 0.5, x.shape) for k, x in zip(keys, leaves)])


def _loss(params):  # its gradient is nowhere zero.
  return sum(jnp.sum(jnp.sin(3 * x) + x ** 2) for x in jax.tree.leaves(params))


def _per_element_leaves(state, params):
  """(path, leaf, param name) of state leaves under a param's key, of its shape."""
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    name = next((n for n in names if n in params), None)
    if name is not None and jnp.shape(leaf) == params[name].shape:
      found.append((jax.tree_util.keystr(path), leaf, name))
  return found


# lbfgs's params-shaped state (last params, last gradient) is a memory of past
# steps: it advances from the masked gradient and is not restored.
_MEMORY_OF_PAST_STEPS = ('lbfgs',)


@pytest.mark.parametrize('config_id', [_tiered(i) for i in IDS])
def test_partly_frozen_params_and_per_element_state_stay(config_id):
  config = BY_ID[config_id]
  tx = paramsel_jax.masked(_make(config))
  params = _big_params()
  mask = _partial_mask(params)

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(_loss)(params)
    updates, state = tx.update(grads, state, params,
                               **_extra_args(config, value, grads, _loss))
    return optax.apply_updates(params, updates), state, updates

  state = tx.init(params)
  for _ in range(2):  # dense steps, so that the state is not all zeros.
    params, state, _ = step(params, state)
  state = paramsel_jax.set_mask(state, mask)
  params0, state0 = params, state
  for _ in range(3):
    params, state, updates = step(params, state)
    for u, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mask)):
      assert np.all(np.asarray(u)[~np.asarray(m)] == 0.0)
  bits = lambda x: np.asarray(x).view(np.uint32)
  for p0, p, m in zip(*map(jax.tree.leaves, (params0, params, mask))):
    frozen = ~np.asarray(m)
    np.testing.assert_array_equal(bits(p)[frozen], bits(p0)[frozen])
    assert np.all(np.isfinite(np.asarray(p)))
  if config['opt_name'] in _MEMORY_OF_PAST_STEPS:
    return
  before = _per_element_leaves(state0.inner_state, params)
  after = _per_element_leaves(state.inner_state, params)
  assert [p for p, *_ in before] == [p for p, *_ in after]
  for (path, b, name), (_, a, _) in zip(before, after):
    frozen = ~np.asarray(mask[name])
    np.testing.assert_array_equal(np.asarray(a)[frozen], np.asarray(b)[frozen],
                                  err_msg=path)


def _masked_vs_bare_on_zeroed_grads(inner, steps=3):
  """(masked run, bare run on the gradients zeroed where frozen): (updates, state)."""
  params = _big_params()
  mask = _partial_mask(params)
  tx = paramsel_jax.masked(inner, mask)
  grads = jax.grad(_loss)(params)
  zeroed = jax.tree.map(lambda g, m: jnp.where(m, g, 0.0), grads, mask)

  @jax.jit
  def run():
    state, bare_state = tx.init(params), inner.init(params)
    for _ in range(steps):
      updates, state = tx.update(grads, state, params)
      bare_updates, bare_state = inner.update(zeroed, bare_state, params)
    return (updates, state.inner_state), (bare_updates, bare_state), mask

  return run()


def test_adafactor_factored_moments_come_from_the_masked_gradient():
  (updates, state), (bare_updates, bare_state), mask = (
      _masked_vs_bare_on_zeroed_grads(optax.adafactor(1e-2)))
  factored = optax.tree.get(state, 'v_row')['w'], optax.tree.get(state, 'v_col')['w']
  assert sorted(f.shape for f in factored) == [(160,), (256,)]  # w is factored.
  for key in ('v_row', 'v_col'):
    chex.assert_trees_all_close(optax.tree.get(state, key),
                                optax.tree.get(bare_state, key), rtol=1e-6)
  # Trainable coordinates get the bare optimizer's update; frozen ones 0.
  chex.assert_trees_all_close(
      updates, jax.tree.map(lambda u, m: jnp.where(m, u, 0.0), bare_updates, mask),
      rtol=1e-6, atol=1e-9)


def test_novograd_per_leaf_norm_comes_from_the_masked_gradient():
  (_, state), (_, bare_state), _ = _masked_vs_bare_on_zeroed_grads(
      optax.novograd(1e-2))
  nu = optax.tree.get(state, 'nu')
  assert jax.tree.map(jnp.shape, nu) == {'w': (), 'b': ()}  # per-leaf scalars.
  chex.assert_trees_all_close(nu, optax.tree.get(bare_state, 'nu'), rtol=1e-6)


def test_muon_update_is_a_function_of_the_masked_gradient():
  (updates, _), (bare_updates, _), mask = _masked_vs_bare_on_zeroed_grads(
      contrib.muon(1e-2))
  chex.assert_trees_all_close(
      updates, jax.tree.map(lambda u, m: jnp.where(m, u, 0.0), bare_updates, mask),
      rtol=1e-5, atol=1e-7)
