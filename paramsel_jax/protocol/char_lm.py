"""A character-level language model as a `task.Task` (the LM preset).

:func:`char_lm_task` joins the NNX GPT of :mod:`paramsel_jax.models.gpt`
and token splits (e.g. :mod:`paramsel_jax.data.shakespeare`'s plays): the
loss is every position's next-token cross-entropy, the training batches are
host batches of random windows (nanoGPT's ``get_batch``; seed ``s`` draws
its own), and the evaluation is the mean loss over fixed windows of each
held-out split, in nats (``<split>_loss``).

Evaluation windows: a split's :func:`~paramsel_jax.data.shakespeare.eval_batches`
windows, at most ``eval_windows`` of them, evenly spaced over the split (the
same ones at every evaluation), held on the device.

Example:
  >>> import numpy as np
  >>> from paramsel_jax.models import gpt
  >>> config = gpt.GPTConfig(vocab_size=7, context=8, num_layers=1,
  ...                        embed_dim=8, num_heads=2)
  >>> tokens = np.arange(200) % 7
  >>> task = char_lm_task(config, tokens, {'val': tokens}, batch_size=4)
  >>> params = task.init_fn(jax.random.key(0))
  >>> sorted(jax.jit(task.eval_fn)(params))
  ['val_loss']
"""

from __future__ import annotations

from collections.abc import Mapping
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.data import shakespeare
from paramsel_jax.models import gpt
from paramsel_jax.protocol.task import host_batches
from paramsel_jax.protocol.task import Task

PyTree = Any


def layer_order(config: gpt.GPTConfig) -> tuple[str, ...]:
  """The GPT's layers (module names) in forward order.

  For the layer freezing criteria: an NNX model is not traced.

  Example:
    >>> layer_order(gpt.GPTConfig(vocab_size=5, num_layers=1))[:4]
    ('token_embed', 'pos_embed', 'blocks/0/ln1', 'blocks/0/attn/query')
  """
  order = ['token_embed', 'pos_embed']
  for i in range(config.num_layers):
    block = f'blocks/{i}'
    order += [f'{block}/ln1'] + [f'{block}/attn/{p}' for p in
                                 ('query', 'key', 'value', 'out')]
    order += [f'{block}/ln2', f'{block}/mlp/fc', f'{block}/mlp/proj']
  return tuple(order + ['ln_f', 'head'])


def eval_windows(tokens: np.ndarray, context: int, batch_size: int,
                 max_windows: int | None) -> dict[str, np.ndarray]:
  """A split's evaluation windows as ``(batches, batch_size, context)`` arrays.

  At most ``max_windows`` windows (None: all), evenly spaced; the last batch
  padded, with ``mask`` False on the padding.

  Example:
    >>> w = eval_windows(np.arange(100), context=4, batch_size=3, max_windows=5)
    >>> w['inputs'].shape, int(w['mask'].sum())
    ((2, 3, 4), 20)
  """
  full = list(shakespeare.eval_batches(tokens, 1, context))
  rows = np.arange(len(full))
  if max_windows is not None and len(full) > max_windows:
    rows = np.linspace(0, len(full) - 1, max_windows).round().astype(int)
  count = len(rows)
  padded = -(-count // batch_size) * batch_size
  out = {}
  for name in ('inputs', 'targets', 'mask'):
    stacked = np.stack([full[r][name][0] for r in rows])
    pad = np.zeros((padded - count,) + stacked.shape[1:], stacked.dtype)
    out[name] = np.concatenate([stacked, pad]).reshape(
        (-1, batch_size) + stacked.shape[1:])
  return out


def _loss(graphdef: Any, dropout: bool, params: PyTree, batch: PyTree,
          key: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  logits = gpt.apply(graphdef, params, batch['inputs'],
                     dropout_key=key if dropout else None)
  return gpt.next_token_loss(logits, batch['targets']), {}


def _split_loss(graphdef: Any, params: PyTree,
                windows: Mapping[str, jax.Array]) -> jax.Array:
  """The mean next-token loss over a split's windows (one scan)."""
  def body(totals, b):
    logits = gpt.apply(graphdef, params, b['inputs'])
    weights = b['mask'].astype(jnp.float32)
    losses = gpt.next_token_loss(logits, b['targets'], b['mask'])
    return (totals[0] + losses * weights.sum(), totals[1] + weights.sum()), None
  zero = jnp.zeros((), jnp.float32)
  (total, count), _ = jax.lax.scan(body, (zero, zero), dict(windows))
  return total / jnp.maximum(count, 1.0)


def char_lm_task(config: gpt.GPTConfig, train_tokens: np.ndarray,
                 eval_tokens: Mapping[str, np.ndarray], *, batch_size: int,
                 eval_batch_size: int = 64,
                 eval_windows_per_split: int | None = 512,
                 init_params: PyTree | None = None) -> Task:
  """The `Task` of a char-GPT trained on ``train_tokens``.

  Args:
    config: the model (its ``context`` is the window length).
    train_tokens: the training split's ids, 1-D.
    eval_tokens: held-out splits by name (e.g. ``{'val': ..., 'test':
      ...}``); ``eval_fn`` gives ``<name>_loss`` for each.
    batch_size: windows per training step.
    eval_batch_size: windows per evaluation batch.
    eval_windows_per_split: at most this many windows per held-out split
      (evenly spaced; None: all).
    init_params: start from these params (e.g. a pre-trained model's) for
      every seed instead of a fresh initialization.

  Raises:
    ValueError: a context longer than a split, or a bad size (before any
      work).
  """
  splits = {'train': train_tokens, **eval_tokens}
  for name, tokens in splits.items():  # a context longer than a split, etc.
    try:
      shakespeare.check_batching(tokens, batch_size, config.context)
    except ValueError as e:
      raise ValueError(f'split {name!r}: {e}') from None
  graphdef, _ = jax.eval_shape(functools.partial(gpt.init, config),
                               jax.random.key(0))
  windows = {name: jax.tree.map(jnp.asarray, eval_windows(
      tokens, config.context, eval_batch_size, eval_windows_per_split))
             for name, tokens in eval_tokens.items()}

  def init_fn(key: jax.Array) -> PyTree:
    if init_params is not None:
      return jax.tree.map(jnp.asarray, init_params)
    return gpt.init(config, key)[1]

  def eval_fn(params: PyTree) -> dict[str, jax.Array]:
    return {f'{name}_loss': _split_loss(graphdef, params, w)
            for name, w in windows.items()}

  return Task(
      init_fn=init_fn,
      loss_fn=functools.partial(_loss, graphdef, config.dropout > 0),
      train_data=host_batches(lambda seed: shakespeare.sample_batches(
          train_tokens, batch_size, config.context, seed)),
      eval_fn=eval_fn, layer_order=layer_order(config))
