"""The block criteria: lisa, badam and psgld_prefix, their blocks, their bad
input, and short `run_online` runs (a plain MLP; the NNX char-GPT, slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramsel_jax
from paramsel_jax.freeze import blocks as blocks_lib
from paramsel_jax.freeze import policy as freezing
from paramsel_jax.protocol import online

NUM_BLOCKS = 4


def _params(num_blocks=NUM_BLOCKS, width=4):
  """An embedding, `blocks/i/{attn,mlp}`, a final norm and a head."""
  z = lambda *s: jnp.zeros(s)
  return {'token_embed': {'w': z(3, width)},
          'blocks': {str(i): {'attn': {'w': z(width, width)},
                              'mlp': {'w': z(width, 2 * width)}}
                     for i in range(num_blocks)},
          'ln_f': {'scale': z(width)}, 'head': {'w': z(width, 3)}}


def _order(num_blocks=NUM_BLOCKS):
  return (['token_embed'] + [f'blocks/{i}/{m}' for i in range(num_blocks)
                             for m in ('attn', 'mlp')] + ['ln_f', 'head'])


def _policy(criterion, params=None, **kw):
  kw.setdefault('check_every', 5)
  return freezing.FreezingPolicy(criterion, _params() if params is None
                                 else params, granularity='layer', **kw)


def _frozen_over_checks(policy, num_checks, seeds=2):
  """Per interval, the frozen groups `(seeds, groups)` of a vmapped policy.

  The first is `init`'s (lisa and badam decide the first interval there),
  then one per check.
  """
  params = jax.tree.map(lambda x: jnp.stack([x] * seeds), policy.params)
  state = jax.jit(jax.vmap(policy.init))(params)
  check = jax.jit(jax.vmap(policy.check, in_axes=(0, None)))
  out = [np.asarray(state.frozen)]
  for c in range(num_checks - 1):
    _, state = check(state, 5 * (c + 1))
    out.append(np.asarray(state.frozen))
  return out


def _blocks_training(policy, frozen):
  """Per block, whether it trains (all its layers) under `frozen` (groups)."""
  masks = policy.block_set.masks()
  trains = [bool(~frozen[m].any()) for m in masks]
  for m in masks:  # a block trains or freezes whole.
    assert frozen[m].all() or ~frozen[m].any()
  return np.asarray(trains)


# --- Blocks. ---


def test_default_blocks_of_the_nnx_gpt_and_a_linen_model():
  p = _policy('lisa', layer_order=_order())
  b = p.block_set
  assert b.names == tuple(f'blocks/{i}' for i in range(NUM_BLOCKS))
  names = p.groups.module_names
  assert sorted(names[i] for i in b.outside) == ['head', 'ln_f', 'token_embed']
  linen = blocks_lib.find_blocks(('Block_0/Dense_0', 'Block_0/Dense_1',
                                  'Block_10/Dense_0', 'Block_2/Dense_0',
                                  'Dense_0', 'Embed_0'))
  assert linen.names == ('Block_0', 'Block_2', 'Block_10')  # by the integer.
  assert linen.outside == (4, 5)


def test_blocks_follow_the_forward_order_and_patterns():
  reverse = _order()[:1] + [f'blocks/{i}/{m}' for i in reversed(range(4))
                            for m in ('attn', 'mlp')] + _order()[-2:]
  p = _policy('lisa', layer_order=reverse)
  assert p.block_set.names == ('blocks/3', 'blocks/2', 'blocks/1', 'blocks/0')
  p = _policy('badam', blocks=('blocks/[0-1]', 'blocks/[2-3]', 'token_embed'))
  assert p.block_set.names == ('blocks/[0-1]', 'blocks/[2-3]', 'token_embed')
  assert [len(m) for m in p.block_set.members] == [4, 4, 1]


# --- lisa. ---


def test_lisa_trains_the_outside_and_gamma_blocks_the_same_for_every_seed():
  p = _policy('lisa', gamma=2, layer_order=_order())
  outside = p.block_set.outside_mask()
  chosen = []
  for frozen in _frozen_over_checks(p, 8, seeds=3):
    assert (frozen == frozen[0]).all()  # every seed: the same α.
    assert not frozen[0][outside].any()  # embedding, norm, head train.
    trains = _blocks_training(p, frozen[0])
    assert trains.sum() == 2
    chosen.append(tuple(np.flatnonzero(trains)))
  assert len(set(chosen)) > 1  # resampled at the checks.
  again = [tuple(np.flatnonzero(_blocks_training(p, f[0])))
           for f in _frozen_over_checks(_policy('lisa', gamma=2), 8)]
  assert again == chosen  # deterministic given block_seed.
  other = [tuple(np.flatnonzero(_blocks_training(p, f[0]))) for f in
           _frozen_over_checks(_policy('lisa', gamma=2, block_seed=7), 8)]
  assert other != chosen


def test_lisa_train_outside_false_freezes_the_outside():
  p = _policy('lisa', train_outside=False)
  frozen = _frozen_over_checks(p, 1)[0][0]
  assert frozen[p.block_set.outside_mask()].all()
  assert _blocks_training(p, frozen).sum() == 1


# --- badam. ---


@pytest.mark.parametrize('order', ['ascending', 'descending', 'random'])
def test_badam_trains_each_block_once_per_sweep(order):
  p = _policy('badam', block_order=order, block_seed=3)
  sequence = []
  for frozen in _frozen_over_checks(p, 3 * NUM_BLOCKS):
    assert (frozen == frozen[0]).all()
    assert frozen[0][p.block_set.outside_mask()].all()  # BAdam's default.
    trains = _blocks_training(p, frozen[0])
    assert trains.sum() == 1
    sequence.append(int(np.flatnonzero(trains)[0]))
  sweeps = [sequence[i:i + NUM_BLOCKS] for i in range(0, len(sequence),
                                                       NUM_BLOCKS)]
  for sweep in sweeps:
    assert sorted(sweep) == list(range(NUM_BLOCKS))
  if order == 'ascending':
    assert sweeps[0] == [0, 1, 2, 3]
  elif order == 'descending':
    assert sweeps[0] == [3, 2, 1, 0]
  else:
    assert len({tuple(s) for s in sweeps}) > 1  # a new permutation per sweep.


def test_badam_train_outside_keeps_the_outside_training():
  p = _policy('badam', train_outside=True)
  frozen = _frozen_over_checks(p, 1)[0][0]
  assert not frozen[p.block_set.outside_mask()].any()


# --- psgld_prefix. ---


def _feed(policy, noisy, steps=20):
  """`steps` steps: the layers in `noisy` move as noise, the others drift."""
  def step(state_params, t):
    state, params = state_params
    noise = 0.01 * jax.random.normal(jax.random.fold_in(jax.random.key(0), t))
    def move(path, w):
      drift = 0.0 if path[0].key in noisy else 0.05
      return w + noise + drift
    new = jax.tree_util.tree_map_with_path(move, params)
    return (policy.update(state, params, params, new), new), None
  (state, _), _ = jax.jit(lambda s: jax.lax.scan(step, s, jnp.arange(steps)))(
      (policy.init(policy.params), policy.params))
  return state


def _three_layers():
  return {'a': {'w': jnp.zeros((4, 4))}, 'b': {'w': jnp.zeros((4, 4))},
          'c': {'w': jnp.zeros((4, 2))}}


def test_psgld_prefix_freezes_a_forward_prefix_only():
  params = _three_layers()
  kw = dict(check_every=40, threshold=2.0, layer_order=('a', 'b', 'c'))
  prefix = _policy('psgld_prefix', params, **kw)
  plain = _policy('psgld', params, **kw)
  state = _feed(prefix, noisy={'a', 'c'})
  check, check_plain = jax.jit(prefix.check), jax.jit(plain.check)
  _, after = check(state, 40)
  _, plain_after = check_plain(state, 40)
  assert plain_after.frozen.tolist() == [True, False, True]
  assert after.frozen.tolist() == [True, False, False]  # c waits for b.
  # When psgld's candidates are a prefix, both freeze the same groups.
  state = _feed(prefix, noisy={'a', 'b'})
  assert (check(state, 40)[1].frozen.tolist()
          == check_plain(state, 40)[1].frozen.tolist() == [True, True, False])


def test_psgld_prefix_z_is_psgld_z():
  from paramsel_jax.freeze import criteria  # pylint: disable=g-import-not-at-top
  params = _three_layers()
  prefix = _policy('psgld_prefix', params, threshold=2.0,
                   layer_order=('a', 'b', 'c'))
  state = _feed(prefix, noisy={'a'})
  _, z = jax.jit(lambda s: criteria._psgld(prefix, s, 40))(state)
  assert (np.asarray(z) < 2.0).tolist() == [True, False, False]


def test_psgld_prefix_whole_blocks_and_a_capped_prefix():
  order = tuple(reversed(_order()))  # the head first: not the key order.
  p = _policy('psgld_prefix', threshold=10.0, layer_order=order,
              max_frozen=0.5)
  fed = _feed(p, noisy={'token_embed', 'blocks', 'ln_f', 'head'})
  check, state = jax.jit(p.check), fed
  for _ in range(3):
    _, state = check(state, 40)
    state = state._replace(stats=fed.stats)
    frozen = np.asarray(state.frozen)[list(p.forward_order())]
    k = int(frozen.sum())
    assert k > 0 and frozen[:k].all() and not frozen[k:].any()  # a prefix.
    assert float(p.frozen_share(state)) <= 0.5


def test_psgld_prefix_uncapped_freezes_whole_blocks():
  p = _policy('psgld_prefix', threshold=10.0, layer_order=_order())
  check = jax.jit(p.check)
  _, state = check(_feed(p, noisy={'token_embed', 'blocks', 'ln_f',
                                   'head'}), 40)
  assert np.asarray(state.frozen).all()
  state = _feed(p, noisy={'token_embed'})  # the blocks drift.
  _, state = check(state, 40)
  names = np.asarray(p.groups.module_names)
  assert names[np.asarray(state.frozen)].tolist() == ['token_embed']


# --- Bad input: one clear error, before any training. ---


@pytest.mark.parametrize('criterion, kw, message', [
    ('lisa', dict(check_every=0), r'check_every=0; accepted: an int >= 1'),
    ('lisa', dict(gamma=0), r'gamma=0; accepted: an int >= 1'),
    ('lisa', dict(gamma=5), r'gamma=5; accepted: 1\.\.4 \(the model has 4 '
     r'blocks: blocks/0, blocks/1, blocks/2, blocks/3\)'),
    ('badam', dict(blocks=('blocks/0', 'decoder')), r"pattern 'decoder' "
     r"names no layer.*'token_embed'"),
    ('badam', dict(blocks=('blocks/*', 'blocks/1')), r"pattern 'blocks/1' "
     r"names \['blocks/1/attn', 'blocks/1/mlp'\], already in block "
     r"'blocks/\*'"),
    ('psgld_prefix', dict(threshold=float('nan'), layer_order=_order()),
     r'threshold=nan; accepted: a finite float > 0'),
    ('badam', dict(block_order='sideways'), r"block_order='sideways'; "
     r'accepted: descending, ascending, random'),
    ('lisa', dict(max_frozen=0.5), r'max_frozen=0.5.*accepted: None'),
    ('psgld_prefix', {}, r"criterion 'psgld_prefix' freezes layers in "
     r'forward order'),
])
def test_bad_settings_are_refused(criterion, kw, message):
  with pytest.raises(ValueError, match=message):
    _policy(criterion, **kw)


def test_a_model_without_blocks_is_refused():
  with pytest.raises(ValueError, match=r"criterion 'lisa' trains blocks.*"
                     r"accepted: blocks= patterns.*\['a', 'b', 'c'\]"):
    _policy('lisa', _three_layers())


@pytest.mark.parametrize('kw, message', [
    (dict(gamma=0), r'gamma=0'), (dict(block_order='up'), r"block_order='up'"),
    (dict(check_every=-1), r'check_every=-1'),
    (dict(threshold=float('nan')), r'threshold=nan')])
def test_online_config_refuses_bad_block_settings(kw, message):
  with pytest.raises(ValueError, match=message):
    online.OnlineConfig(criterion='lisa', granularity='layer', **kw)


def test_run_online_refuses_before_training():
  logged = []
  config = online.OnlineConfig(criterion='lisa', steps=20, check_every=5,
                               granularity='layer', gamma=9, batch_size=8)
  with pytest.raises(ValueError, match=r'gamma=9; accepted: 1\.\.3 \(the '
                     r'model has 3 blocks: layers/0, layers/1, layers/2\)'):
    online.run_online(_mlp_task(), optax.adam(1e-2), config, [0],
                      log=logged.append)
  assert not logged


# --- run_online: it trains, α changes, compilations are bounded. ---


def _mlp_init(key):
  sizes = {'embed': (6, 8), 'layers/0': (8, 12), 'layers/1': (12, 16),
           'layers/2': (16, 8), 'head': (8, 3)}  # blocks of unequal sizes.
  params = {'layers': {}}
  for i, (name, s) in enumerate(sizes.items()):
    w = {'w': jax.random.normal(jax.random.fold_in(key, i), s) / s[0] ** .5}
    if name.startswith('layers/'):
      params['layers'][name[7:]] = w
    else:
      params[name] = w
  return params


def _mlp_loss(params, batch, key):
  del key
  x = jnp.tanh(batch['x'] @ params['embed']['w'])
  for i in range(3):
    x = jnp.tanh(x @ params['layers'][str(i)]['w'])
  logits = x @ params['head']['w']
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
  return loss.mean(), {'accuracy': jnp.mean(logits.argmax(-1) == batch['y'])}


def _mlp_batches(seed, size=16):
  rng = np.random.default_rng(seed)
  while True:
    x = rng.normal(size=(size, 6)).astype(np.float32)
    yield {'x': x, 'y': (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1)}


def _mlp_task():
  x = np.random.default_rng(99).normal(size=(64, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1)
  return paramsel_jax.Task(
      init_fn=_mlp_init, loss_fn=_mlp_loss,
      train_data=paramsel_jax.host_batches(_mlp_batches),
      eval_fn=lambda p: {'val_loss': _mlp_loss(p, {'x': x, 'y': y}, None)[0]},
      layer_order=['embed', 'layers/0', 'layers/1', 'layers/2', 'head'])


def _check_run(run, config, shares_change=True):
  """It trained, α changed, and each active set compiled once at most.

  `shares_change`: the frozen share changes across checks (blocks of
  unequal sizes; else it is only above 0, as after the dense interval).
  """
  losses = [np.mean(c['metrics']['val_loss']) for c in run['checks']]
  assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  shares = [c['frozen_share'] for c in run['checks']]
  for share in shares:
    assert len(set(share)) == 1  # every seed: the same α.
  assert min(s[0] for s in shares) > 0
  if shares_change:
    assert len({s[0] for s in shares}) > 1, shares
  sets = {tuple(np.asarray(a)[0].all() for a in jax.tree.leaves(alpha))
          for alpha in run['alphas']}
  assert len(sets) > 1  # the active set changes across checks.
  assert run['compilations'] <= len(sets) + 1, (run['compilations'], sets)
  assert len(run['checks']) == config.steps // config.check_every


def test_run_online_badam_on_an_mlp():
  # Intervals: blocks 0, 1, 2, 0 (its program reused) and 1.
  config = online.OnlineConfig(criterion='badam', steps=25, check_every=5,
                               granularity='layer', batch_size=16,
                               block_order='ascending', buckets=0)
  run = online.run_online(_mlp_task(), optax.adam(3e-2), config, [0, 1],
                          log=lambda _: None, record_alphas=True)
  _check_run(run, config)
  assert run['alphas'][0]['layers']['0']['w'].all()  # sampled from step 0.
  assert not run['alphas'][0]['layers']['1']['w'].any()
  assert run['checks'][0]['label'] != 'T (dense)'
  assert run['compilations'] <= 3  # one per block; the dense step never ran.


@pytest.mark.slow
def test_run_online_lisa_on_an_mlp():
  config = online.OnlineConfig(criterion='lisa', steps=30, check_every=5,
                               granularity='layer', batch_size=16, buckets=0)
  run = online.run_online(_mlp_task(), optax.adam(3e-2), config, [0, 1],
                          log=lambda _: None, record_alphas=True)
  _check_run(run, config)
  assert run['compilations'] <= 4  # 3 blocks, reentered: + the dense.


@pytest.mark.slow
@pytest.mark.parametrize('criterion', ['lisa', 'badam', 'psgld_prefix'])
def test_run_online_on_the_nnx_char_gpt(criterion):
  from paramsel_jax.lab import lm_data  # pylint: disable=g-import-not-at-top
  from paramsel_jax.models import gpt  # pylint: disable=g-import-not-at-top
  from paramsel_jax.protocol import char_lm  # pylint: disable=g-import-not-at-top
  data = lm_data.synthetic_data('scratch')
  model = gpt.GPTConfig(vocab_size=data.vocab_size, context=8, num_layers=3,
                        embed_dim=16, num_heads=2)
  task = char_lm.char_lm_task(model, data.task.train, {'val': data.task.val},
                              batch_size=8, eval_windows_per_split=32)
  config = online.OnlineConfig(criterion=criterion, steps=60, check_every=10,
                               granularity='layer', batch_size=8,
                               threshold=50.0, gamma=1)
  run = online.run_online(task, optax.adam(1e-2), config, [0, 1],
                          log=lambda _: None, record_alphas=True)
  if criterion != 'psgld_prefix':
    _check_run(run, config, shares_change=False)  # equal blocks.
    return
  from paramsel_jax.select import granularity  # pylint: disable=g-import-not-at-top
  for alpha in run['alphas']:  # the frozen layers: a forward prefix.
    first = jax.tree.map(lambda a: np.asarray(a)[0], alpha)
    g = granularity.groups(first, 'layer')
    frozen = ~np.asarray(granularity.aggregate(first, g, 'mean') > 0.5)
    order = [g.module_names.index(n) for n in char_lm.layer_order(model)]
    k = int(frozen.sum())
    assert frozen[order][:k].all(), frozen[order]
  assert any(c['frozen_share'][0] > 0 for c in run['checks'])
  assert run['compilations'] <= config.max_compiles


@pytest.mark.slow
def test_badam_run_equals_its_alphas_replayed_with_dense_masked_steps():
  from paramsel_jax.train import runner as runner_lib  # pylint: disable=g-import-not-at-top
  config = online.OnlineConfig(criterion='badam', steps=20, check_every=5,
                               granularity='layer', batch_size=16, buckets=0,
                               block_order='random')
  task, tx, seeds = _mlp_task(), optax.adam(3e-2), [0, 1]
  run = online.run_online(task, tx, config, seeds, log=lambda _: None,
                          record_alphas=True)
  runner = runner_lib.Runner(task, tx, config.protocol_config(),
                             stat_groups=frozenset(), seeds=tuple(seeds))
  state = runner.init(jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32)))
  for i in range(config.steps // config.check_every):  # α set first, as LISA.
    state = runner.set_alpha(state, run['alphas'][i])
    state = runner.train(state, i * config.check_every, config.check_every, 0,
                         lambda _: None, 'x')
  for got, want in zip(jax.tree.leaves(run['final_params']),
                       jax.tree.leaves(state.params)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4,
                               atol=1e-5)
