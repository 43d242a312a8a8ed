# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of paramsel_jax.models.gpt: shapes, causality, size, training, jit."""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramsel_jax import models
from paramsel_jax.data import shakespeare
from paramsel_jax.models import gpt
from paramsel_jax.select import granularity

_TINY = gpt.GPTConfig(vocab_size=13, context=16, num_layers=2, num_heads=2,
                      embed_dim=16)


@pytest.fixture(scope='module')
def tiny():
  """A tiny model, its graphdef and params, and a batch of tokens."""
  model = gpt.GPT(_TINY, rngs=nnx.Rngs(0))
  graphdef, params = gpt.split_params(model)
  tokens = jax.random.randint(jax.random.key(1), (3, 16), 0, 13)
  return model, graphdef, params, tokens


def _abstract_params(config):
  return jax.eval_shape(lambda key: gpt.init(config, key)[1],
                        jax.random.key(0))


# Jitted: NNX's eager calls dispatch op by op (seconds per call on CPU).
_apply = jax.jit(gpt.apply, static_argnums=0)


def test_shapes(tiny):
  _, graphdef, params, tokens = tiny
  shape = lambda x: jax.eval_shape(gpt.apply, graphdef, params, x).shape
  assert shape(tokens) == (3, 16, 13)
  assert shape(tokens[:, :5]) == (3, 5, 13)  # shorter than the context
  with pytest.raises(ValueError, match=r'time <= context=16'):
    shape(jnp.zeros((1, 17), int))
  with pytest.raises(ValueError, match=r'accepted: \(batch, time\)'):
    shape(jnp.zeros(4, int))


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_heads=3), 'embed_dim=128 is not a multiple of num_heads=3'),
    (dict(num_layers=0), 'num_layers=0; accepted: an int >= 1'),
    (dict(context=True), 'context=True'),
    (dict(dropout=1.0), 'dropout=1.0; accepted: 0 <= dropout < 1'),
])
def test_config_rejects(kwargs, message):
  with pytest.raises(ValueError, match=message):
    gpt.GPTConfig(vocab_size=65, **kwargs)


def test_causal(tiny):
  model, _, _, tokens = tiny
  logits = model(tokens)
  for t in (0, 7, 14):
    changed = tokens.at[:, t + 1].set((tokens[:, t + 1] + 1) % 13)
    other = model(changed)
    np.testing.assert_allclose(other[:, :t + 1], logits[:, :t + 1], rtol=0,
                               atol=1e-6)
    assert not np.allclose(other[:, t + 1], logits[:, t + 1])


def test_param_count_of_nanogpts_setting():
  config = gpt.GPTConfig(vocab_size=65)
  count = models.count_params(_abstract_params(config))
  head = 65 * config.embed_dim           # the untied head, tied in nanoGPT
  pos = config.context * config.embed_dim  # left out of nanoGPT's print
  print(f'\nGPT, nanoGPT shakespeare_char CPU setting, vocab 65: {count:,} '
        f'params; nanoGPT counts {count - head:,} and prints '
        f'{(count - head - pos) / 1e6:.2f}M')
  assert count == 812_416
  assert count - head - pos == 795_904  # nanoGPT's "0.80M"
  assert models.count_params(_abstract_params(
      gpt.GPTConfig(vocab_size=89))) == 818_560  # the corpus vocabulary
  assert models.count_params(_abstract_params(
      gpt.GPTConfig(vocab_size=65, use_bias=True))) == 812_416 + (
          4 * (2 * 128 + 3 * 128 + 128 + 512 + 128) + 128)


def test_param_paths_make_one_subtree_per_block(tiny):
  _, _, params, _ = tiny
  assert sorted(params) == ['blocks', 'head', 'ln_f', 'pos_embed',
                            'token_embed']
  assert sorted(params['blocks']) == [0, 1]
  block = params['blocks'][1]
  assert sorted(block) == ['attn', 'ln1', 'ln2', 'mlp']
  assert block['attn']['query']['kernel'].shape == (16, 16)
  assert block['mlp']['fc']['kernel'].shape == (16, 64)
  names = granularity.groups(params, 'layer').module_names
  assert 'blocks/1/attn/query' in names and 'head' in names
  unit = granularity.groups(params, 'unit')  # every module has a unit axis
  assert unit.sizes.sum() == models.count_params(params)


def test_split_merge_round_trip_is_exact(tiny):
  model, graphdef, params, tokens = tiny
  direct = model(tokens)
  np.testing.assert_array_equal(gpt.apply(graphdef, params, tokens), direct)
  state = nnx.state(model, nnx.Param)
  np.testing.assert_array_equal(gpt.apply(graphdef, state, tokens), direct)
  again = gpt.split_params(nnx.merge(graphdef, params))[1]
  assert jax.tree.all(jax.tree.map(np.array_equal, again, params))


def test_jit(tiny):
  _, graphdef, params, tokens = tiny
  apply_fn = jax.jit(gpt.make_apply_fn(graphdef))
  np.testing.assert_allclose(apply_fn(params, tokens),
                             gpt.apply(graphdef, params, tokens),
                             rtol=1e-5, atol=1e-5)


def test_adam_steps_reduce_the_loss():
  config = gpt.GPTConfig(vocab_size=8, context=16, num_layers=1, num_heads=2,
                         embed_dim=16)
  graphdef, params = gpt.init(config, jax.random.key(0))
  apply_fn = gpt.make_apply_fn(graphdef)
  tx = optax.adam(1e-2)
  rng = np.random.default_rng(0)
  corpus = np.tile(rng.integers(0, 8, size=11), 40)  # a period of 11 tokens
  batches = shakespeare.sample_batches(corpus, batch_size=8, context=16,
                                       seed=0)

  def loss_fn(p, batch):
    return gpt.next_token_loss(apply_fn(p, batch['inputs']), batch['targets'])

  @jax.jit
  def step(p, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(p, batch)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = tx.init(params)
  losses = []
  for _ in range(60):
    params, opt_state, loss = step(params, opt_state, next(batches))
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[0] == pytest.approx(np.log(8), abs=0.2)
  assert np.mean(losses[-5:]) < losses[0] - 1.0


def test_dropout_needs_a_key():
  config = gpt.GPTConfig(vocab_size=5, context=8, num_layers=1, num_heads=2,
                         embed_dim=8, dropout=0.5)
  graphdef, params = gpt.init(config, jax.random.key(0))
  tokens = jnp.arange(8)[None] % 5
  plain = _apply(graphdef, params, tokens)
  np.testing.assert_array_equal(plain, _apply(graphdef, params, tokens))
  a = _apply(graphdef, params, tokens, dropout_key=jax.random.key(1))
  b = _apply(graphdef, params, tokens, dropout_key=jax.random.key(1))
  c = _apply(graphdef, params, tokens, dropout_key=jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, plain) and not np.allclose(a, c)


def test_next_token_loss():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 5))
  targets = jnp.array([[0, 1, 2], [3, 4, 0]])
  logp = jax.nn.log_softmax(logits)
  each = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
  assert float(gpt.next_token_loss(logits, targets)) == pytest.approx(
      float(each.mean()), rel=1e-6)
  mask = jnp.array([[True, True, False], [False, False, False]])
  assert float(gpt.next_token_loss(logits, targets, mask)) == pytest.approx(
      float(each[0, :2].mean()), rel=1e-6)
  assert float(gpt.next_token_loss(logits, targets, jnp.zeros((2, 3)))) == 0.0


def test_split_params_rejects_other_variables():

  class WithStats(nnx.Module):

    def __init__(self):
      self.w = nnx.Param(jnp.zeros(2))
      self.mean = nnx.BatchStat(jnp.zeros(2))

  with pytest.raises(ValueError, match='1 variables that are not nnx.Param'):
    gpt.split_params(WithStats())  # type: ignore[arg-type]
