"""mask_by_name: α from module names or globs, for any kind of params."""

import re

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.freeze import by_name
from paramsel_jax.freeze import mask_by_name
from paramsel_jax.models import gpt
from paramsel_jax.select import granularity


class MLP(nn.Module):
  widths: tuple = (8, 8, 3)

  @nn.compact
  def __call__(self, x):
    for i, w in enumerate(self.widths):
      x = nn.Dense(w)(x)
      if i < len(self.widths) - 1:
        x = nn.relu(x)
    return x


def _shapes(module, x):
  """The params' shapes (jax.eval_shape: no compute)."""
  return jax.eval_shape(module.init, jax.random.key(0), x)['params']


def _by_path(mask):
  return dict(zip(by_name.leaf_names(mask),
                  (bool(m.all()) if m.all() == m.any() else None
                   for m in jax.tree.leaves(mask))))


def _frozen(mask):
  return sorted(p for p, v in _by_path(mask).items() if not v)


def _is_layer_alpha(params, mask):
  """Each module all-True or all-False (α at layer granularity)."""
  g = granularity.groups(params, 'layer')
  for module in range(g.num_groups):
    values = np.concatenate([
        np.asarray(m)[np.asarray(ids) == module]
        for m, ids in zip(jax.tree.leaves(mask), jax.tree.leaves(g.ids))])
    if values.size and values.min() != values.max():
      return False
  return True


def test_linen_mlp_freeze_and_train():
  params = _shapes(MLP(), jnp.zeros((1, 4)))
  mask = mask_by_name(params, freeze=['Dense_0'])
  assert _frozen(mask) == ['Dense_0/bias', 'Dense_0/kernel']
  assert jax.tree.structure(mask) == jax.tree.structure(params)
  for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params)):
    assert m.shape == p.shape and m.dtype == jnp.bool_
  train = mask_by_name(params, train='Dense_2')
  assert _frozen(train) == ['Dense_0/bias', 'Dense_0/kernel', 'Dense_1/bias',
                            'Dense_1/kernel']
  assert _is_layer_alpha(params, mask) and _is_layer_alpha(params, train)


def test_linen_deep_model_components_are_exact():
  params = _shapes(MLP(widths=(4,) * 14), jnp.zeros((1, 4)))
  assert len(params) == 14
  # 'Dense_1' is one module, not Dense_10..Dense_13 too.
  assert _frozen(mask_by_name(params, freeze='Dense_1')) == [
      'Dense_1/bias', 'Dense_1/kernel']
  frozen = {p.split('/')[0] for p in _frozen(
      mask_by_name(params, freeze=['Dense_1?', 'Dense_[0-2]']))}
  assert frozen == {'Dense_0', 'Dense_1', 'Dense_2', 'Dense_10', 'Dense_11',
                    'Dense_12', 'Dense_13'}
  only_biases = mask_by_name(params, freeze='**/bias')
  assert all(p.endswith('/bias') for p in _frozen(only_biases))
  assert len(_frozen(only_biases)) == 14
  assert not _is_layer_alpha(params, only_biases)  # A leaf pattern splits.


def _tiny_gpt():
  config = gpt.GPTConfig(vocab_size=11, context=8, num_layers=2, embed_dim=16,
                         num_heads=2)
  return config


def test_nnx_gpt_dict():
  _, params = gpt.init(_tiny_gpt(), jax.random.key(0))
  mask = mask_by_name(params, freeze=['token_embed', 'pos_embed', 'blocks/0'])
  frozen = _frozen(mask)
  assert 'token_embed/embedding' in frozen and 'pos_embed/embedding' in frozen
  assert all(p.startswith(('token_embed', 'pos_embed', 'blocks/0/'))
             for p in frozen)
  assert 'blocks/0/attn/value/kernel' in frozen
  assert not any(p.startswith('blocks/1/') for p in frozen)
  assert _is_layer_alpha(params, mask)
  # The attention's 'value' projection is a module, not NNX's `.value`.
  value = mask_by_name(params, train='blocks/*/attn/value')
  assert sorted(p for p, v in _by_path(value).items() if v) == [
      'blocks/0/attn/value/kernel', 'blocks/1/attn/value/kernel']
  head = mask_by_name(params, train=['head'], freeze=['**/*embed', 'blocks',
                                                      'ln_f'])
  assert [p for p, v in _by_path(head).items() if v] == ['head/kernel']


def test_nnx_state_drops_value_and_keeps_its_structure():
  model = gpt.GPT(_tiny_gpt(), rngs=nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  assert 'blocks/0/ln1/scale' in by_name.leaf_names(state)
  mask = mask_by_name(state, freeze=['blocks/1', 'head'])
  assert jax.tree.structure(mask) == jax.tree.structure(state)
  assert isinstance(mask, nnx.State)
  _, pure = gpt.init(_tiny_gpt(), jax.random.key(0))
  assert _by_path(mask) == _by_path(mask_by_name(pure,
                                                 freeze=['blocks/1', 'head']))
  tx = paramsel_jax.masked(optax.sgd(0.1))
  opt_state = paramsel_jax.set_mask(tx.init(state), mask)
  grads = jax.tree.map(jnp.ones_like, state)
  updates, _ = tx.update(grads, opt_state, state)
  assert not updates['head']['kernel'][...].any()
  assert updates['ln_f']['scale'][...].all()


def test_hand_written_lists_and_tuples():
  params = {'embed': jnp.ones((5, 2)),
            'layers': [{'w': jnp.ones((2, 2)), 'b': jnp.ones(2)}
                       for _ in range(3)],
            'out': (jnp.ones(2), jnp.ones(1))}
  assert by_name.leaf_names(params)[:3] == ['embed', 'layers/0/b',
                                            'layers/0/w']
  mask = mask_by_name(params, freeze=['layers/[12]', 'out/1'])
  assert _frozen(mask) == ['layers/1/b', 'layers/1/w', 'layers/2/b',
                           'layers/2/w', 'out/1']
  assert isinstance(mask['out'], tuple) and isinstance(mask['layers'], list)
  everything = mask_by_name(params, freeze='**')
  assert not any(bool(m.any()) for m in jax.tree.leaves(everything))
  assert _frozen(mask_by_name(params, train='*')) == []


def test_path_matches_rule():
  assert by_name.path_matches('a/**/k', 'a/k')
  assert by_name.path_matches('a/**/k', 'a/b/c/k/x')
  assert not by_name.path_matches('a/**/k', 'a/b/c')
  assert by_name.path_matches('*/b', 'a/b/c')
  assert not by_name.path_matches('Dense', 'dense')  # Case counts.


def test_errors():
  params = {'Dense_0': {'kernel': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)},
            'Dense_1': {'kernel': jnp.zeros((2, 1)), 'bias': jnp.zeros(1)}}
  with pytest.raises(ValueError, match='got neither'):
    mask_by_name(params)
  with pytest.raises(ValueError, match=re.escape(
      "freeze pattern(s) ['Dense_2', 'conv*'] match no leaf; the params' "
      "modules: 'Dense_0', 'Dense_1'")):
    mask_by_name(params, freeze=['Dense_0', 'Dense_2', 'conv*'])
  with pytest.raises(ValueError, match=re.escape(
      "train pattern(s) ['kernel'] match no leaf")):
    mask_by_name(params, train='kernel')  # '**/kernel' is every kernel.
  with pytest.raises(ValueError, match=re.escape(
      "1 leaves are matched by both train= and freeze=: 'Dense_0/kernel' "
      "(train ['Dense_0'], freeze ['**/kernel'])")):
    mask_by_name(params, train=['Dense_0'], freeze=['Dense_1', '**/kernel'])
  with pytest.raises(ValueError, match=re.escape(
      "named by neither: ['Dense_1/bias', 'Dense_1/kernel']")):
    mask_by_name(params, train=['Dense_0'], freeze=[])
  with pytest.raises(ValueError, match='empty component'):
    mask_by_name(params, freeze='Dense_0/')
  with pytest.raises(ValueError, match='empty component'):
    mask_by_name(params, freeze='')
  with pytest.raises(TypeError, match=r"freeze= holds 3 \(int\)"):
    mask_by_name(params, freeze=['Dense_0', 3])


def test_error_lists_some_modules_of_a_big_model():
  params = {f'layer_{i}': {'w': jnp.zeros(1)} for i in range(20)}
  with pytest.raises(ValueError, match=r"'layer_0', .* and 8 more"):
    mask_by_name(params, freeze='nope')


def test_training_keeps_the_frozen_module_bit_identical():
  model = MLP()
  x = jax.random.normal(jax.random.key(1), (16, 4))
  y = jax.random.randint(jax.random.key(2), (16,), 0, 3)
  params = model.init(jax.random.key(0), x)['params']
  tx = paramsel_jax.masked(optax.adam(1e-2))
  opt_state = paramsel_jax.set_mask(tx.init(params),
                                    mask_by_name(params, freeze=['Dense_0']))

  @jax.jit
  def step(params, opt_state):
    def loss(p):
      logits = model.apply({'params': p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  new = params
  for _ in range(20):
    new, opt_state = step(new, opt_state)
  for name in params:
    for leaf in params[name]:
      same = np.array_equal(np.asarray(new[name][leaf]),
                            np.asarray(params[name][leaf]))
      assert same == (name == 'Dense_0'), (name, leaf)
