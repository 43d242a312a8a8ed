"""The active step at unit granularity on a linen transformer (issue 20).

A tiny language model (Embed, two pre-norm blocks of flax's
`MultiHeadDotProductAttention` and a Dense MLP, LayerNorm/RMSNorm, a Dense
or tied `Embed.attend` head) trained by `T|α` on the active set must give
the parameters of the masked step (dense compute, frozen updates zeroed) to
float rounding over many Adam steps, with frozen values bit-identical; what
the active step cannot split is refused by one ValueError naming the module.

Compiling a transformer's train step takes seconds on CPU, so every
equivalence run is `slow` (the smallest, `Mini`, measured 13.5 s on a loaded
2-core machine); the default tier checks the groups and every refusal,
tracing only (`jax.eval_shape`). Adam's eps is 1e-3: the key projection's
bias has a gradient of exactly zero in exact arithmetic (softmax ignores a
shift shared by all keys), so its float gradient is rounding noise, which
Adam with a tiny eps would blow up to steps of size lr in both runs,
differently.
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.freeze import active
from paramsel_jax.freeze import active_check
from paramsel_jax.select import granularity

V, T, D, H = 13, 8, 16, 2
B, STEPS = 8, 30
TX = optax.adam(3e-3, eps=1e-3)
# XLA's CPU backend without LLVM's optimizations compiles ~2.5x faster; both
# runs of a comparison are compiled alike.
jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})


class Block(nn.Module):
  """Pre-norm: x + attn(LayerNorm(x)), then x + mlp(RMSNorm(x))."""

  use_bias: bool = True

  @nn.compact
  def __call__(self, x, _=None):
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
    h = nn.LayerNorm(name='ln1')(x)
    x = x + nn.MultiHeadDotProductAttention(
        num_heads=H, use_bias=self.use_bias, name='attn')(h, mask=mask)
    h = nn.Dense(2 * D, name='fc')(nn.RMSNorm(name='ln2')(x))
    return x + nn.Dense(D, name='proj')(nn.gelu(h)), None


class LM(nn.Module):
  """Embed, `blocks` blocks (or an `nn.scan` of them), LayerNorm, a head."""

  tied: bool = False
  use_bias: bool = True
  scan: bool = False
  blocks: int = 2

  @nn.compact
  def __call__(self, tokens):
    embed = nn.Embed(V, D, name='embed')
    x = embed(tokens)
    if self.scan:
      stack = nn.scan(Block, variable_axes={'params': 0},
                      split_rngs={'params': True}, length=self.blocks)
      x, _ = stack(self.use_bias, name='blocks')(x, None)
    else:
      for i in range(self.blocks):
        x, _ = Block(self.use_bias, name=f'block{i}')(x)
    x = nn.LayerNorm(name='ln_f')(x)
    return embed.attend(x) if self.tied else nn.Dense(V, name='head')(x)


@functools.cache
def _setup(shapes=False, **kw):
  """`(apply, params, tokens)`; `shapes`: params as `jax.eval_shape` gives
  them (what the checks read; nothing compiled)."""
  model = LM(**kw)
  tokens = jax.random.randint(jax.random.key(1), (64, T), 0, V)
  init = jax.eval_shape if shapes else lambda f, *a: jit(f)(*a)
  params = init(model.init, jax.random.key(0), tokens[:1])['params']
  return (lambda p, x: model.apply({'params': p}, x)), params, tokens


def _forward_shapes(apply, params, alpha, x):
  """`active.forward` of α's plan, traced only (refusals come at trace time)."""
  plan, arrays = active.plan(alpha, 'unit', batched=False)
  idx = jax.tree.map(jnp.asarray, arrays['idx'])
  return jax.eval_shape(lambda p: active.forward(
      apply, plan, p, active.split(p, plan, idx), idx, x), params)


def _loss(logits, tokens):
  return optax.softmax_cross_entropy_with_integer_labels(
      logits[:, :-1], tokens[:, 1:]).mean()


def _batch(tokens, t):
  return tokens[jax.random.choice(jax.random.key(t), tokens.shape[0], (B,))]


def _masked_run(apply, params, alpha, tokens, tx):
  mtx = paramsel_jax.masked(tx)
  state0 = jit(lambda p, a: paramsel_jax.set_mask(mtx.init(p), a))(params, alpha)

  @jit
  def run(params, state):
    def step(carry, t):
      p, s = carry
      x = _batch(tokens, t)
      g = jax.grad(lambda q: _loss(apply(q, x), x))(p)
      u, s = mtx.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    return jax.lax.scan(step, (params, state), jnp.arange(STEPS))[0]
  return run(params, state0)[0], state0


def _active_run(apply, params, state0, alpha, tokens, tx, gran='unit',
                unit_axes=None):
  mtx = paramsel_jax.masked(tx)
  plan, arrays = active.plan(alpha, gran, batched=False, unit_axes=unit_axes)
  idx = jax.tree.map(jnp.asarray, arrays['idx'])

  @jit
  def run(params, state0):
    act = active.split(params, plan, idx)
    state = active.state_to_active(state0, params, plan, idx)

    def step(carry, t):
      a, s = carry
      x = _batch(tokens, t)
      g = jax.grad(lambda q: _loss(
          active.forward(apply, plan, params, q, idx, x), x))(a)
      u, s = mtx.update(g, s, a)
      return (optax.apply_updates(a, u), s), None
    act = jax.lax.scan(step, (act, state), jnp.arange(STEPS))[0][0]
    return active.merge(params, act, plan, idx)
  return plan, run(params, state0)


def _assert_same(got, want, alpha, params):
  for g, w, a, p0 in zip(*map(jax.tree.leaves, (got, want, alpha, params))):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)
    frozen = ~np.asarray(a)
    np.testing.assert_array_equal(np.asarray(g)[frozen], np.asarray(p0)[frozen])


def _random_alpha(params, seed, partial=(), gran='unit', unit_axes=None):
  """Per module at random: frozen, full, or a random subset of its units;
  the modules named in `partial` always partly active."""
  rng = np.random.default_rng(seed)
  g = granularity.groups(params, gran, unit_axes)
  on = np.zeros(g.num_groups, bool)
  start = 0
  for name, n in zip(g.module_names, g.module_units):
    kind = 'partial' if name in partial else rng.choice(['frozen', 'full', 'partial'])
    if kind == 'full':
      on[start:start + n] = True
    elif kind == 'partial' and n > 1:
      on[start + rng.choice(n, rng.integers(1, n), replace=False)] = True
    start += n
  return jax.tree.map(lambda ids: jnp.asarray(on[ids]), g.ids)


ATTN = [f'block{i}/attn/{p}' for i in range(2) for p in ('query', 'key', 'value', 'out')]


def test_units_of_attention_are_output_features_and_norms_are_whole():
  _, params, _ = _setup(shapes=True)
  g = granularity.groups(params, 'unit')
  units = dict(zip(g.module_names, g.module_units))
  assert units['block0/attn/query'] == D  # (heads, head_dim) pairs: H * D/H.
  assert units['block0/attn/out'] == D and units['embed'] == D
  assert units['block0/ln1'] == units['block0/ln2'] == units['ln_f'] == 1
  ids = g.ids['block0']['attn']['query']
  assert ids['bias'].shape == (H, D // H)
  assert len(np.unique(ids['bias'])) == D  # one group per (head, d) pair.
  np.testing.assert_array_equal(ids['kernel'][3], ids['bias'])


def _unit_equivalence(seed, partial, **model):
  apply, params, tokens = _setup(**model)
  alpha = _random_alpha(params, seed, partial=partial)
  active_check.check_active_step(apply, params, tokens[:2], 'unit')
  want, state0 = _masked_run(apply, params, alpha, tokens, TX)
  plan, got = _active_run(apply, params, state0, alpha, tokens, TX)
  kinds = dict(zip(plan.modules, plan.kinds))
  assert all(kinds[m] == 'partial' for m in partial)
  assert 'partial' not in {kinds[m] for m in plan.modules if 'ln' in m}
  _assert_same(got, want, alpha, params)
  return kinds


class Mini(nn.Module):
  """The default tier's model: one attention-shaped projection pair, no
  softmax: embed, q `(heads, head_dim)`, out `axis=(-2, -1)`, LayerNorm,
  the tied head `attend`."""

  @nn.compact
  def __call__(self, tokens):
    embed = nn.Embed(V, D, name='embed')
    h = nn.DenseGeneral((H, D // H), name='query')(embed(tokens))
    h = nn.DenseGeneral(D, axis=(-2, -1), name='out')(jnp.tanh(h))
    return embed.attend(nn.LayerNorm(name='ln')(h))


@pytest.mark.slow
def test_partial_projections_and_tied_embedding_equal_masked():
  """Multi-axis q and out projections and the embedding (looked up and used
  as the tied head, `attend`) partly active; the norm full."""
  model = Mini()
  tokens = jax.random.randint(jax.random.key(1), (64, T), 0, V)
  params = jit(model.init)(jax.random.key(0), tokens[:1])['params']
  apply = lambda p, x: model.apply({'params': p}, x)
  alpha = _random_alpha(params, 0, partial=['embed', 'query', 'out'])
  alpha['ln'] = jax.tree.map(jnp.ones_like, alpha['ln'])
  active_check.check_active_step(apply, params, tokens[:2], 'unit')
  want, state0 = _masked_run(apply, params, alpha, tokens, TX)
  plan, got = _active_run(apply, params, state0, alpha, tokens, TX)
  assert plan.kinds == ('partial', 'full', 'partial', 'partial')  # embed, ln, out, query
  assert plan.unit_axes == (1, 0, 1, 2)
  _assert_same(got, want, alpha, params)


@pytest.mark.slow
@pytest.mark.parametrize('seed', [0, 1])
def test_random_unit_alpha_active_equals_masked(seed):
  kinds = _unit_equivalence(seed, ATTN[:4] + ['embed', 'block1/fc'])
  assert set(kinds.values()) == {'frozen', 'full', 'partial'}


@pytest.mark.slow
def test_bias_less_attention_trains_with_traced_unit_axes():
  apply, params, tokens = _setup(use_bias=False)
  axes = active_check.unit_axes(apply, params, tokens[:2])
  assert axes['block0/attn/query'] == 2 and axes['block0/attn/out'] == 1
  assert axes['block0/ln1'] == 0 and axes['embed'] == 1
  alpha = _random_alpha(params, 3, partial=ATTN, unit_axes=axes)
  active_check.check_active_step(apply, params, tokens[:2], 'unit', unit_axes=axes)
  tx = TX
  want, state0 = _masked_run(apply, params, alpha, tokens, tx)
  _, got = _active_run(apply, params, state0, alpha, tokens, tx, unit_axes=axes)
  _assert_same(got, want, alpha, params)


def test_bias_less_attention_planned_along_its_last_axis_is_refused():
  apply, params, tokens = _setup(shapes=True, use_bias=False)
  with pytest.raises(ValueError, match=(
      r'block0/attn/query \(DenseGeneral\(features=\(2, 8\).*planned along its '
      r'last 1.*unit_axes=active_check.unit_axes\(apply_fn, params, example\)')):
    active_check.check_active_step(apply, params, tokens[:2], 'unit')
  alpha = _random_alpha(params, 0, partial=['block0/attn/query'])
  with pytest.raises(ValueError, match='module block0/attn/query is partly active'):
    _forward_shapes(apply, params, alpha, tokens[:2])


@pytest.mark.slow
def test_layer_granularity_lower_half_frozen_active_equals_masked():
  apply, params, tokens = _setup()
  g = granularity.groups(params, 'layer')
  upper = ('block1/', 'ln_f', 'head')
  on = np.array([n.startswith(upper) for n in g.module_names])
  alpha = granularity.expand(jnp.asarray(on), g)
  active_check.check_active_step(apply, params, tokens[:2], 'layer')
  tx = TX
  want, state0 = _masked_run(apply, params, alpha, tokens, tx)
  plan, got = _active_run(apply, params, state0, alpha, tokens, tx, gran='layer')
  assert set(plan.kinds) == {'frozen', 'full'}
  _assert_same(got, want, alpha, params)


@pytest.mark.slow
def test_scanned_blocks_train_whole_at_layer_granularity():
  apply, params, tokens = _setup(scan=True)
  assert params['blocks']['fc']['kernel'].shape == (2, D, 2 * D)
  g = granularity.groups(params, 'layer')
  train = ('blocks/attn/value', 'blocks/fc', 'blocks/ln2', 'head')
  alpha = granularity.expand(jnp.asarray([n in train for n in g.module_names]), g)
  tx = TX
  want, state0 = _masked_run(apply, params, alpha, tokens, tx)
  _, got = _active_run(apply, params, state0, alpha, tokens, tx, gran='layer')
  _assert_same(got, want, alpha, params)


def test_units_of_a_scanned_module_are_refused_naming_it():
  apply, params, tokens = _setup(shapes=True, scan=True)
  with pytest.raises(ValueError, match=(
      r"blocks/fc \(Dense\(features=32\) inside nn.scan.*stacked along leading "
      r"axes \[\(2,\)\].*granularity 'layer'.*or step='masked'")):
    active_check.check_active_step(apply, params, tokens[:2], 'unit',
                                   modules=['blocks/fc'])
  alpha = jax.tree_util.tree_map_with_path(
      lambda p, x: np.broadcast_to((np.arange(x.shape[-1]) < 3) & (
          granularity.module_name(granularity.module_path(p)) == 'blocks/fc'),
                                   x.shape), params)
  with pytest.raises(ValueError, match='module blocks/fc is partly active.*nn.scan'):
    _forward_shapes(apply, params, alpha, tokens[:2])


def test_a_norm_is_never_partly_active():
  apply, params, tokens = _setup(shapes=True)
  alpha = jax.tree.map(lambda x: np.broadcast_to(
      np.arange(x.shape[-1]) % 2 == 0, x.shape), params)
  only_ln = jax.tree_util.tree_map_with_path(
      lambda p, a: a if 'ln1' in granularity.module_name(p) else a & False, alpha)
  with pytest.raises(ValueError, match="not made of whole units in module 'block0/ln1'"):
    active.plan(only_ln, 'unit', batched=False)
  forced = {'block0/ln1': 1}  # a hand-made map that splits a norm: refused.
  with pytest.raises(ValueError, match=r'block0/ln1 \(LayerNorm with params'):
    active_check.check_active_step(apply, params, tokens[:2], 'unit',
                                   modules=['block0/ln1'], unit_axes=forced)


@pytest.mark.slow
def test_protocol_at_unit_granularity_on_a_bias_less_linen_transformer():
  """run_protocol with a next-token Task: the Runner traces the unit axes
  (bias-less attention), and T|α on the active set gives the masked step's
  params; α takes single output features of the attention projections."""
  from paramsel_jax.protocol import protocol
  model = LM(use_bias=False)
  tokens = np.asarray(jax.random.randint(jax.random.key(1), (64, T), 0, V))
  apply = lambda p, x: model.apply({'params': p}, x)
  task = paramsel_jax.Task(
      init_fn=lambda key: model.init(key, tokens[:1])['params'],
      loss_fn=lambda p, b, key: (_loss(apply(p, b['tokens']), b['tokens']), {}),
      train_data=paramsel_jax.OnDevice({'tokens': tokens}),
      eval_fn=lambda p: {'val_loss': _loss(apply(p, tokens), tokens)})
  config = protocol.ProtocolConfig(eta0=10, eta1=30, k=0.3, l=1.0, window=10,
                                   batch_size=B, chunk_size=40,
                                   granularity='unit')
  runs = {step: protocol.run_protocol(
      task, TX, dataclasses.replace(config, step=step), ['topgrad'], [0],
      log=lambda _: None, return_arrays=True) for step in ('masked', 'active')}
  a, m = runs['active']['cells'][0], runs['masked']['cells'][0]
  assert a['frozen_moved'] == [False]
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5,
                                                       atol=1e-6),
               a['arrays']['params'], m['arrays']['params'])
  alpha = np.asarray(a['arrays']['alpha']['block0']['attn']['query']['kernel'][0])
  assert (alpha == alpha[:1]).all()  # whole (head, d) output features
  eta1 = next(v for k, v in runs['active']['timing']['phases'].items()
              if k.startswith('eta1'))
  assert eta1['step'].startswith('T|α active')
