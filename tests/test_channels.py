"""Channel-pruned steps: `active.forward(pruned=True)` and `sparsity.channels`.

Exactness against the dense computation on params whose pruned units are
zero, the refusals, and XLA FLOPs (deterministic) of the cheap step.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax.freeze import active
from paramsel_jax.models import nets
from paramsel_jax.models.conv import Conv2D
from paramsel_jax.sparsity import channels


def _loss(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _unit_mask(params, keep=0.5, skip=(), seed=0):
  """Prunes a random `1 - keep` of each module's units (not those in skip)."""
  rng = np.random.default_rng(seed)
  mask = {}
  for name, leaves in params.items():
    n = leaves['kernel'].shape[-1]
    live = np.ones(n, bool)
    if name not in skip:
      live[rng.permutation(n)[:n - max(1, int(round(keep * n)))]] = False
    mask[name] = {k: np.broadcast_to(live, v.shape) for k, v in leaves.items()}
  return mask


def _pruned(params, mask):
  return jax.tree.map(lambda p, m: p * m, params, mask)


class Flatten(nn.Module):
  """A channel-last flatten (NHWC -> (batch, H*W*C))."""

  @nn.compact
  def __call__(self, x):
    return x.reshape(x.shape[0], -1)


def _case(name):
  """(model, input, names of modules whose units are never pruned)."""
  x4 = jax.random.normal(jax.random.key(1), (3, 12, 12, 2))
  if name == 'dense':
    return (nn.Sequential([nn.Dense(7), nn.relu, nn.Dense(4)]),
            jax.random.normal(jax.random.key(1), (3, 5)), ('layers_2',))
  if name == 'conv':
    return (nn.Sequential([nn.Conv(6, (3, 3)), nn.relu, Flatten(),
                           nn.Dense(4)]), x4, ('layers_3',))
  if name in ('conv2d_im2col', 'conv2d_xla'):
    impl = name.split('_')[1]
    return (nn.Sequential([Conv2D(6, (3, 3), impl=impl), nn.relu,
                           Conv2D(5, (3, 3), impl=impl), Flatten(),
                           nn.Dense(4)]), x4, ('layers_4',))
  if name == 'lenet5':
    return (nets.LeNet5(conv_impl='im2col'),
            jax.random.normal(jax.random.key(1), (3, 28, 28, 1)), ('Dense_1',))
  if name == 'mlp':
    return (nets.MLP(widths=(30, 20)),
            jax.random.normal(jax.random.key(1), (3, 784)), ('Dense_2',))
  raise ValueError(name)


# LeNet-5 and the im2col convolution compile slowly on the shared 2-core CPU.
CASES = ('dense', 'conv', 'conv2d_xla', 'mlp',
         pytest.param('conv2d_im2col', marks=pytest.mark.slow),
         pytest.param('lenet5', marks=pytest.mark.slow))


def _setup(name):
  model, x, skip = _case(name)
  params = model.init(jax.random.key(0), x)['params']
  mask = _unit_mask(params, skip=skip)
  params = _pruned(params, mask)
  y = jnp.arange(x.shape[0]) % 4
  apply_fn = lambda p, x: model.apply({'params': p}, x)  # noqa: E731
  return apply_fn, params, mask, x, y


def _dense_grad(apply_fn, params, x, y):
  return jax.value_and_grad(lambda p: _loss(apply_fn(p, x), y))(params)


def _close(a, b):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5,
                             atol=2e-6)


# The traced-index (scatter) path is phase.py's, not the channel step's: its
# cases run in the slow tier, the default tier keeps the constant-index path.
@pytest.mark.parametrize('name', [
    pytest.param(c, marks=pytest.mark.slow) if c in ('dense', 'conv') else c
    for c in CASES])  # 'mlp' covers Dense, 'conv' runs in the step's test.
@pytest.mark.parametrize(
    'traced_idx', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_forward_pruned_equals_dense(name, traced_idx):
  apply_fn, params, mask, x, y = _setup(name)
  p, arrays = active.plan(mask, 'unit', batched=False)
  assert 'partial' in p.kinds
  idx = {n: jnp.asarray(i) for n, i in arrays['idx'].items()}
  act = active.split(params, p, idx)

  def loss(a, idx):
    return _loss(active.forward(apply_fn, p, params, a, idx, x, pruned=True), y)
  fn = jax.value_and_grad(loss)
  if traced_idx:  # idx an argument of the program: the scatter path.
    got_loss, got = jax.jit(fn)(act, idx)
  else:           # idx a constant: the concatenated-runs path.
    got_loss, got = jax.jit(lambda a: fn(a, idx))(act)
  want_loss, want = _dense_grad(apply_fn, params, x, y)
  _close(got_loss, want_loss)
  jax.tree.map(_close, got, active.split(want, p, idx))
  out = active.forward(apply_fn, p, params, act, idx, x, pruned=True)
  _close(out, apply_fn(params, x))


# The default tier steps nn.Conv; Dense, the MLP and Conv2D (whose forward
# and gradient the test above checks) step in the slow tier.
@pytest.mark.parametrize('name', [
    pytest.param(c, marks=pytest.mark.slow)
    if c in ('dense', 'mlp', 'conv2d_xla') else c for c in CASES])
@pytest.mark.parametrize(
    'narrow', [True, pytest.param(False, marks=pytest.mark.slow)])
def test_channel_step_equals_dense_masked(name, narrow):
  """(narrow=False's forward and gradient: test_forward_pruned_equals_dense.)"""
  apply_fn, params, mask, x, y = _setup(name)
  plan = channels.channel_plan(apply_fn, mask, x, narrow=narrow)
  assert bool(plan.narrow) == narrow
  # Momentum SGD: Adam's g / sqrt(v) turns float rounding of near-zero
  # gradients into differences of a whole learning rate.
  tx = optax.sgd(0.05, momentum=0.9)
  act = channels.compact(params, plan)
  _close(channels.channel_apply(apply_fn, plan)(act, x), apply_fn(params, x))
  step = channels.channel_step(apply_fn, _loss, tx, plan)
  state = tx.init(act)
  dense, dense_state = params, tx.init(params)
  for _ in range(2):
    act, state, loss = step(act, state, x, y)
    want_loss, grads = _dense_grad(apply_fn, dense, x, y)
    # The dense masked run: pruned units get no update (their gradient
    # need not be zero: nothing but a ReLU's zero slope stops it).
    grads = jax.tree.map(lambda g, m: g * m, grads, mask)
    updates, dense_state = tx.update(grads, dense_state, dense)
    dense = optax.apply_updates(dense, updates)
    _close(loss, want_loss)
  full = channels.expand(act, plan, like=params)
  jax.tree.map(_close, full, dense)
  jax.tree.map(lambda v, m: np.testing.assert_array_equal(
      np.asarray(v)[~m], 0.0), full, mask)


def test_expand_inverts_compact():
  apply_fn, params, mask, x, _ = _setup('conv2d_xla')
  plan = channels.channel_plan(apply_fn, mask, x)
  act = channels.compact(params, plan)
  jax.tree.map(np.testing.assert_array_equal,
               channels.expand(act, plan, like=params), params)
  # Without `like`, the rows that read pruned channels come back zero.
  bare = channels.expand(act, plan)
  kernel = np.asarray(bare['layers_2']['kernel'])
  dead = ~mask['layers_0']['bias']
  assert (kernel[:, :, dead, :] == 0).all()
  assert (kernel[:, :, ~dead, :][..., mask['layers_2']['bias']] != 0).all()


def _flops(fn, *args):
  """XLA's FLOPs of the lowered program (deterministic; no compile)."""
  analysis = fn.lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis['flops'])


def test_channel_step_costs_fewer_flops_than_dense():
  model, _, skip = _case('conv2d_xla')  # LeNet-5's shape, small.
  x = jnp.ones((4, 12, 12, 2))
  y = jnp.zeros(4, jnp.int32)
  params = model.init(jax.random.key(0), x)['params']
  mask = _unit_mask(params, skip=skip)
  params = _pruned(params, mask)
  apply_fn = lambda p, x: model.apply({'params': p}, x)  # noqa: E731
  tx = optax.adam(1e-3)

  @jax.jit
  def dense_step(p, s, x, y):
    loss, g = jax.value_and_grad(lambda p: _loss(apply_fn(p, x), y))(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  dense = _flops(dense_step, params, tx.init(params), x, y)
  costs = {}
  for narrow in (False, True):
    plan = channels.channel_plan(apply_fn, mask, x, narrow=narrow)
    act = channels.compact(params, plan)
    costs[narrow] = _flops(channels.channel_step(apply_fn, _loss, tx, plan),
                           act, tx.init(act), x, y)
  # Half the output channels: about half the dense FLOPs; narrow inputs too:
  # about a quarter in the second convolution.
  assert costs[False] < 0.6 * dense, (costs, dense)
  assert costs[True] < 0.8 * costs[False], (costs, dense)


def test_check_pruned_refuses_a_nonzero_pruned_unit():
  apply_fn, params, mask, x, _ = _setup('conv2d_xla')
  unit = int(np.flatnonzero(~mask['layers_2']['bias'])[0])
  bad = jax.tree.map(lambda v: v, params)
  bad['layers_2'] = dict(bad['layers_2'])
  bad['layers_2']['kernel'] = bad['layers_2']['kernel'].at[0, 0, 0, unit].set(1.)
  with pytest.raises(ValueError, match=f"unit {unit} of module 'layers_2'.*kernel"):
    active.check_pruned(bad, mask)
  plan = channels.channel_plan(apply_fn, mask, x)
  with pytest.raises(ValueError, match='layers_2'):
    channels.compact(bad, plan)
  bad['layers_2']['kernel'] = params['layers_2']['kernel']
  bad['layers_2']['bias'] = bad['layers_2']['bias'].at[unit].set(0.1)
  with pytest.raises(ValueError, match=f"unit {unit} of module 'layers_2'.*bias"):
    active.check_pruned(bad, mask)
  active.check_pruned(params, mask)  # the zeroed params pass.


def test_channel_plan_refuses_inexact_narrowing():
  # sigmoid(0) = 0.5: a pruned unit's zero output does not stay zero.
  model = nn.Sequential([nn.Dense(6), nn.sigmoid, nn.Dense(3)])
  x = jax.random.normal(jax.random.key(1), (2, 4))
  params = model.init(jax.random.key(0), x)['params']
  mask = _unit_mask(params, skip=('layers_2',))
  apply_fn = lambda p, x: model.apply({'params': p}, x)  # noqa: E731
  with pytest.raises(ValueError, match='narrow.*not exact.*narrow=False'):
    channels.channel_plan(apply_fn, mask, x)
  # Without narrowing the pruned units are written as zeros: exact.
  plan = channels.channel_plan(apply_fn, mask, x, narrow=False)
  params = _pruned(params, mask)
  _close(channels.channel_apply(apply_fn, plan)(
      channels.compact(params, plan), x), apply_fn(params, x))


def test_channel_plan_refuses_bad_masks():
  apply_fn, params, mask, x, _ = _setup('mlp')
  empty = dict(mask)
  empty['Dense_0'] = jax.tree.map(np.zeros_like, mask['Dense_0'])
  with pytest.raises(ValueError, match=r"every unit of \['Dense_0'\]"):
    channels.channel_plan(apply_fn, empty, x)
  split = dict(mask)
  kernel = mask['Dense_0']['kernel'].copy()
  kernel[0, ~mask['Dense_0']['bias']] = True
  split['Dense_0'] = {'kernel': kernel, 'bias': mask['Dense_0']['bias']}
  with pytest.raises(ValueError, match='whole units'):
    channels.channel_plan(apply_fn, split, x)
