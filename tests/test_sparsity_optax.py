"""`sparsity.sparse` under every optax optimizer, and SET / RigL's drop and regrowth.

The optimizer list is test_masking_optax.py's (every optimizer optax ships,
all of which pass `masked`'s tests), so it tracks that file; the default
tier runs a few of each kind of state, the rest are `slow`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import contrib
import pytest

from paramsel_jax import sparsity as sp
import test_masking_optax as masking_optax

# Per-element moments, matrix-wide updates (muon), schedule-free; lbfgs (a
# memory of past steps, a linesearch) is slow to compile: `slow` with the rest.
DEFAULT_TIER = frozenset({
    'adam(learning_rate=0.1)', 'muon(learning_rate=0.01)',
    'schedule_free_adamw(learning_rate=0.01,warmup_steps=5000)'})


def _tiered(config_id, known=None):
  marks = [] if config_id in DEFAULT_TIER else [pytest.mark.slow]
  if known and config_id in known:
    marks.append(pytest.mark.xfail(strict=True, reason=known[config_id]))
  return pytest.param(config_id, marks=marks)


def _params():
  rng = np.random.default_rng(0)
  normal = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  return {'Dense_0': {'kernel': normal(8, 8), 'bias': normal(8)},
          'Dense_1': {'kernel': normal(8, 4)}}


def _loss(params):  # its gradient is nowhere zero.
  return sum(jnp.sum(jnp.sin(3 * x) + x ** 2) for x in jax.tree.leaves(params))


def _bits(x):
  return np.asarray(x, np.float32).view(np.uint32)


def _run_pruned(inner, config=None, steps=6, prune_at=1):
  """Trains under magnitude pruning at `prune_at`: (params per step, masks, state)."""
  tx = sp.sparse(inner, sp.magnitude(0.5, sp.one_shot(prune_at)))
  params = _params()

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(_loss)(params)
    extra = ({} if config is None else
             masking_optax._extra_args(config, value, grads, _loss))
    updates, state = tx.update(grads, state, params, **extra)
    return optax.apply_updates(params, updates), state

  state = jax.jit(tx.init)(params)
  history = []
  for _ in range(steps):
    params, state = step(params, state)
    history.append(params)
  return history, sp.get_masks(state), state


def _assert_pruned_stay_zero(history, masks, prune_at=1):
  pruned = [~np.asarray(m) for m in jax.tree.leaves(masks)]
  assert sum(p.sum() for p in pruned) > 0
  for params in history[prune_at:]:
    for w, p in zip(jax.tree.leaves(params), pruned):
      assert np.all(_bits(w)[p] == 0), 'a pruned weight is not +0.0'
      assert np.all(np.isfinite(np.asarray(w)))
  # The kept weights trained on after the pruning step.
  kept_moved = [np.any(np.asarray(a)[~p] != np.asarray(b)[~p]) for a, b, p in
                zip(jax.tree.leaves(history[-1]),
                    jax.tree.leaves(history[prune_at]), pruned)]
  return kept_moved


@pytest.mark.parametrize('config_id',
                         [_tiered(i) for i in masking_optax.IDS])
def test_pruned_weights_stay_exactly_zero_under_every_optax_optimizer(
    config_id):
  config = masking_optax.BY_ID[config_id]
  history, masks, _ = _run_pruned(masking_optax._make(config), config)
  _assert_pruned_stay_zero(history, masks)


# schedule_free's model is its eval params `x = (y - (1 - b1) z) / b1`, which
# `sparse` does not see: `masked` keeps z at pruned coordinates, so x is not 0.
_SCHEDULE_FREE_EVAL = {
    i: 'schedule_free_eval_params mixes in z, which `masked` keeps at pruned '
       'coordinates; the evaluated model is not sparse.'
    for i in masking_optax.IDS if masking_optax._is_schedule_free(
        masking_optax.BY_ID[i])}


@pytest.mark.parametrize('config_id', [
    _tiered(i, _SCHEDULE_FREE_EVAL) for i in _SCHEDULE_FREE_EVAL])
def test_schedule_free_eval_params_are_sparse(config_id):
  config = masking_optax.BY_ID[config_id]
  history, masks, state = _run_pruned(masking_optax._make(config), config)
  eval_params = contrib.schedule_free_eval_params(
      state.inner_state.inner_state, history[-1])
  for w, m in zip(jax.tree.leaves(eval_params), jax.tree.leaves(masks)):
    assert np.all(np.asarray(w)[~np.asarray(m)] == 0.0)


def test_pruned_weights_stay_zero_with_weight_decay_and_clipping_inside():
  for inner in (optax.adamw(1e-1, weight_decay=0.5),
                optax.chain(optax.clip_by_global_norm(0.1),
                            optax.adamw(1e-1, weight_decay=0.5))):
    history, masks, _ = _run_pruned(inner)
    assert all(_assert_pruned_stay_zero(history, masks))


@pytest.mark.slow
def test_pruned_weights_stay_zero_with_sparse_inside_a_chain():
  tx = optax.chain(optax.clip(0.01), sp.sparse(optax.sgd(1.0, momentum=0.9),
                                               sp.magnitude(0.5)))
  params = _params()
  state = jax.jit(tx.init)(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(_loss)(p), s, p))
  for _ in range(5):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
    masks = sp.get_masks(state)
    for w, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks)):
      assert np.all(_bits(w)[~np.asarray(m)] == 0)
  assert np.mean(np.asarray(masks['Dense_0']['kernel'])) == 0.5


# --------------------------------------------------------------- SET / RigL


def _drop_count(step, kept, fraction, begin, end):
  """RigL's cosine decay, in float32 as the step computes it."""
  frac = np.clip(np.float32(step - begin) / np.float32(end - begin), 0, 1)
  f = np.float32(fraction) * np.float32(0.5) * (
      np.float32(1) + np.cos(np.float32(np.pi) * np.float32(frac)))
  return int(np.floor(np.float32(f) * np.float32(kept)))


@pytest.mark.parametrize('algorithm', [
    sp.rigl, pytest.param(sp.set_sparse, marks=pytest.mark.slow)],
                         ids=['rigl', 'set'])
def test_set_and_rigl_keep_counts_follow_the_cosine_and_reset_regrown(
    algorithm):
  every, begin, end, fraction = 2, 1, 21, 0.5
  params = _params()
  pruner = algorithm(0.75, every=every, begin=begin, end=end,
                     drop_fraction=fraction)
  tx = sp.sparse(optax.adam(1e-2), pruner, key=3)
  state = jax.jit(tx.init)(params)
  params = sp.apply_masks(params, state)
  counts = {k: int(np.sum(v)) for k, v in zip(
      sp.distributions.leaf_names(params), jax.tree.leaves(sp.get_masks(state)))}
  assert counts['Dense_0/bias'] == 8  # dense.
  assert counts['Dense_0/kernel'] < 64 and counts['Dense_1/kernel'] < 32

  traces = []

  @jax.jit
  def step(params, state, key):
    traces.append(1)  # runs only when jax traces the step.
    grads = jax.tree.map(lambda p: jax.random.normal(key, p.shape), params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  regrown_steps, dropped, turned_on = 0, 0, 0
  for t in range(24):
    old_masks = sp.get_masks(state)
    params, state = step(params, state, jax.random.fold_in(jax.random.key(7), t))
    masks = sp.get_masks(state)
    adam = state.inner_state.inner_state[0]
    for name, m, old, w, mu, nu in zip(
        counts, *map(jax.tree.leaves,
                     (masks, old_masks, params, adam.mu, adam.nu))):
      m, old, w = np.asarray(m), np.asarray(old), np.asarray(w)
      assert m.sum() == counts[name], (t, name)  # fixed at every step.
      assert np.all(_bits(w)[~m] == 0)
      if name == 'Dense_0/bias':
        continue
      # Weights kept at 0 after the step are exactly those off before and
      # regrown now (as RigL: one dropped and regrown at once keeps its value).
      fresh = m & (w == 0)
      assert np.array_equal(fresh, m & ~old), (t, name)
      if (t - begin) % every == 0 and begin <= t < end:
        drop = _drop_count(t, counts[name], fraction, begin, end)
        assert fresh.sum() <= drop, (t, name)
        dropped, turned_on = dropped + drop, turned_on + fresh.sum()
        regrown_steps += fresh.sum() > 0
      else:
        assert fresh.sum() == 0 and np.array_equal(m, old), (t, name)
      mu, nu = np.asarray(mu), np.asarray(nu)
      assert np.all(mu[fresh] == 0) and np.all(nu[fresh] == 0), (t, name)
      assert np.all(mu[m & ~fresh] != 0) and np.all(nu[m & ~fresh] != 0)
  assert regrown_steps >= 10
  # The drop count follows the cosine: most regrown weights were off before
  # (a just-dropped weight is one candidate among the many pruned ones).
  assert turned_on >= 0.7 * dropped, (turned_on, dropped)
  assert len(traces) == 1  # the masks change without recompiling.


@pytest.mark.slow
def test_rigl_resets_regrown_momentum_inside_a_chain():
  params = _params()
  inner = optax.chain(optax.clip_by_global_norm(1.0),
                      optax.sgd(1e-2, momentum=0.9))
  tx = sp.sparse(inner, sp.rigl(0.75, every=2, end=20, drop_fraction=0.5),
                 key=5)
  state = jax.jit(tx.init)(params)
  params = jax.jit(sp.apply_masks)(params, state)

  @jax.jit
  def step(params, state, key):
    grads = jax.tree.map(lambda p: jax.random.normal(key, p.shape), params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  regrown = 0
  for t in range(7):
    params, state = step(params, state, jax.random.key(t))
    trace = optax.tree.get(state, 'trace')
    for name in ('Dense_0', 'Dense_1'):
      m = np.asarray(sp.get_masks(state)[name]['kernel'])
      w = np.asarray(params[name]['kernel'])
      tr = np.asarray(trace[name]['kernel'])
      fresh = m & (w == 0)
      regrown += fresh.sum()
      assert np.all(tr[fresh] == 0), (t, name)
      assert np.all(tr[m & ~fresh] != 0), (t, name)
  assert regrown > 0
