# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests for paramsel_jax.structure.relax: Gumbel-softmax and schedules."""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramsel_jax.structure import relax

_LOGITS = st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=7)
_TAU = st.floats(0.05, 20.0)
_SEED = st.integers(0, 2**31 - 1)
_sample = jax.jit(relax.gumbel_softmax, static_argnames=('hard',))


@settings(max_examples=25, deadline=None)
@given(logits=_LOGITS, tau=_TAU, seed=_SEED)
def test_hard_sample_is_exactly_one_hot(logits, tau, seed):
  y = np.asarray(_sample(jax.random.key(seed), jnp.asarray(logits), tau,
                         hard=True))
  assert set(np.unique(y).tolist()) <= {0.0, 1.0}
  assert y.sum() == 1.0


@settings(max_examples=25, deadline=None)
@given(logits=_LOGITS, tau=_TAU, seed=_SEED)
def test_soft_sample_is_a_distribution(logits, tau, seed):
  y = np.asarray(_sample(jax.random.key(seed), jnp.asarray(logits), tau,
                         hard=False))
  assert (y >= 0).all()
  np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-5)


def test_hard_argmax_matches_soft_argmax_and_gradients_are_soft():
  key, logits = jax.random.key(3), jnp.array([0.3, -1.0, 2.0, 0.5])
  soft = relax.gumbel_softmax(key, logits, 0.7)
  hard = relax.gumbel_softmax(key, logits, 0.7, hard=True)
  assert int(jnp.argmax(hard)) == int(jnp.argmax(soft))
  w = jnp.array([1.0, 2.0, 3.0, 4.0])
  g_soft = jax.grad(lambda l: relax.gumbel_softmax(key, l, 0.7) @ w)(logits)
  g_hard = jax.grad(
      lambda l: relax.gumbel_softmax(key, l, 0.7, hard=True) @ w)(logits)
  np.testing.assert_allclose(g_hard, g_soft, rtol=1e-6)
  assert float(jnp.abs(g_soft).sum()) > 0


def test_soft_sample_approaches_one_hot_as_tau_goes_to_zero():
  logits = jnp.array([0.1, 0.4, -0.3, 0.2, 0.0])
  keys = jax.random.split(jax.random.key(0), 200)
  batch = jax.vmap(relax.gumbel_softmax, in_axes=(0, None, None))
  dist, close = [], []
  for tau in (10.0, 1.0, 0.1, 0.01, 0.001):
    y = batch(keys, logits, tau)
    one_hot = jax.nn.one_hot(jnp.argmax(y, -1), 5)
    d = jnp.abs(y - one_hot).sum(-1)
    dist.append(float(d.mean()))
    close.append(float((d < 1e-3).mean()))
  assert all(a > b for a, b in zip(dist, dist[1:])), dist
  assert dist[-1] < 0.01, dist
  assert close[0] == 0.0 and close[-1] > 0.95, close


def test_hard_samples_follow_the_softmax_probabilities():
  logits = jnp.log(jnp.array([0.6, 0.3, 0.1]))
  keys = jax.random.split(jax.random.key(1), 4000)
  y = jax.vmap(lambda k: relax.gumbel_softmax(k, logits, 1.0, hard=True))(keys)
  np.testing.assert_allclose(y.mean(0), [0.6, 0.3, 0.1], atol=0.03)


@pytest.mark.parametrize('kind', relax.SCHEDULES)
def test_schedule_endpoints_and_monotone(kind):
  schedule = relax.temperature_schedule(kind, 10.0, 0.1, 100)
  taus = np.asarray([float(schedule(t)) for t in range(0, 121, 10)])
  np.testing.assert_allclose(taus[0], 10.0, rtol=1e-6)
  end = 10.0 if kind == 'constant' else 0.1
  np.testing.assert_allclose(taus[-1], end, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(100)), end, rtol=1e-5)
  assert (np.diff(taus) <= 1e-6).all()


@pytest.mark.parametrize('kind', ['linear', 'exponential'])
def test_schedule_is_the_closed_form_clipped_to_its_steps(kind):
  tau0, tau_min, steps = 5.0, 0.1, 40
  schedule = jax.jit(relax.temperature_schedule(kind, tau0, tau_min, steps))
  for step in (-3, 0, 7, 20, 39, 40, 41, 1000):
    frac = min(max(step / steps, 0.0), 1.0)
    want = (tau0 + (tau_min - tau0) * frac if kind == 'linear'
            else tau0 * (tau_min / tau0) ** frac)
    got = schedule(jnp.int32(step))
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_schedule_shapes():
  lin = relax.temperature_schedule('linear', 10.0, 0.1, 100)
  exp = relax.temperature_schedule('exponential', 10.0, 0.1, 100)
  np.testing.assert_allclose(float(lin(50)), 5.05, rtol=1e-6)
  np.testing.assert_allclose(float(exp(50)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(float(jax.jit(exp)(jnp.int32(25))),
                             10.0 * 0.01**0.25, rtol=1e-5)


@pytest.mark.parametrize('args, match', [
    (('linear', 0.1, 10.0, 100), r'tau_min=10.0 > tau0=0.1'),
    (('cosine', 10.0, 0.1, 100), r"'cosine'.*exponential, linear, constant"),
    (('linear', 0.0, 0.0, 100), r'tau0=0.0'),
    (('linear', 1.0, -1.0, 100), r'tau_min=-1.0'),
    (('linear', 1.0, 0.1, 0), r'steps=0'),
    (('exponential', float('inf'), 0.1, 100),
     r'tau0=inf; accepted: a finite float > 0'),
    (('linear', 1.0, float('nan'), 100), r'tau_min=nan'),
    (('linear', 1.0, 0.1, 10.0), r'steps=10.0; accepted: an int >= 1'),
])
def test_schedule_bad_settings(args, match):
  with pytest.raises(ValueError, match=match):
    relax.temperature_schedule(*args)


def test_entropy_and_probabilities():
  probs = relax.probabilities({'a': jnp.zeros(4), 'b': jnp.array([0.0, -1e9])})
  np.testing.assert_allclose(probs['b'], [1.0, 0.0])
  np.testing.assert_allclose(float(relax.entropy(probs)), np.log(4) / 2,
                             rtol=1e-6)


def test_sample_structure_is_deterministic_per_key():
  logits = {'x': jnp.zeros(3), 'y': jnp.zeros(5)}
  a = relax.sample_structure(jax.random.key(0), logits, 1.0)
  b = relax.sample_structure(jax.random.key(0), logits, 1.0)
  c = relax.sample_structure(jax.random.key(1), logits, 1.0)
  for k in logits:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a['x'], c['x'])
