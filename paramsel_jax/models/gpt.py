# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""A character-level GPT in flax NNX (nanoGPT's ``shakespeare_char``).

The defaults of :class:`GPTConfig` are nanoGPT's ``shakespeare_char`` CPU
setting (``config/train_shakespeare_char.py`` with ``--n_layer=4 --n_head=4
--n_embd=128 --block_size=64 --dropout=0.0``, and ``bias=False`` of
``train.py``): 4 pre-LayerNorm blocks of 4-head causal self-attention and a 4x
GELU MLP, 128 dimensions, a context of 64 characters.

One difference: the output head is its own ``Linear`` (untied), where
nanoGPT ties it to the token embedding. A tied head is one array used twice,
so freezing or selecting it would freeze or select the embedding too; untied,
every parameter belongs to exactly one module. It adds ``vocab_size *
embed_dim`` parameters: with nanoGPT's 65 characters the model has 812,416
parameters, nanoGPT 804,096 (it prints 0.80M: 795,904, leaving out the
position table); the extra 8,320 are the head. With the 89 ids of
:func:`paramsel_jax.data.shakespeare.corpus_vocab` it has 818,560.

Param paths (one subtree per block, so a block is a unit of freezing):
``token_embed/embedding``, ``pos_embed/embedding``, ``blocks/<i>/ln1/scale``,
``blocks/<i>/attn/{query,key,value,out}/kernel``, ``blocks/<i>/ln2/scale``,
``blocks/<i>/mlp/{fc,proj}/kernel``, ``ln_f/scale`` and ``head/kernel`` (and a
``bias`` next to each ``kernel`` and ``scale`` with ``use_bias=True``). The
attention projections are separate ``nnx.Linear`` s (not nanoGPT's fused
``c_attn``), each kernel ``(in, out)``, so a unit (an output neuron) of
:mod:`paramsel_jax.select.granularity` is a column as in a dense layer.

The functional API (flax NNX's ``nnx.split`` / ``nnx.merge``):
:func:`split_params` gives the static ``GraphDef`` and the params as a plain
nested dict (``nnx.to_pure_dict``: paths like linen's, without NNX's
``.value``), and :func:`apply` / :func:`make_apply_fn` rebuild the model
inside a pure function, so optax, masks and selectors see an ordinary pytree.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import optax
  >>> config = GPTConfig(vocab_size=11, context=8, num_layers=2,
  ...                    embed_dim=16, num_heads=2)
  >>> graphdef, params = init(config, jax.random.key(0))
  >>> apply_fn = make_apply_fn(graphdef)
  >>> tokens = jnp.zeros((3, 8), jnp.int32)
  >>> logits = jax.jit(apply_fn)(params, tokens)
  >>> logits.shape
  (3, 8, 11)
  >>> loss = next_token_loss(logits, tokens)
  >>> bool(jnp.isclose(loss, jnp.log(11), atol=0.1))
  True
  >>> sorted(params['blocks'][0]['attn'])
  ['key', 'out', 'query', 'value']

References:
  Karpathy, nanoGPT (2023), ``model.py`` and
  ``config/train_shakespeare_char.py``, https://github.com/karpathy/nanoGPT.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import functools
import math
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import optax

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]

_INIT_STD = 0.02


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  """The static settings of :class:`GPT` (nanoGPT's names in brackets).

  Attributes:
    vocab_size: the number of token ids [vocab_size].
    context: the longest input, in tokens [block_size].
    num_layers: transformer blocks [n_layer].
    num_heads: attention heads per block [n_head].
    embed_dim: the width of the residual stream [n_embd].
    dropout: the dropout rate of the embeddings, the attention weights and
      each residual branch [dropout]; active only when a dropout key is given.
    use_bias: biases in the Linears and LayerNorms [bias].
    mlp_ratio: the MLP's hidden width over ``embed_dim`` (4 in nanoGPT).

  Example:
    >>> GPTConfig(vocab_size=65).head_dim
    32
  """

  vocab_size: int
  context: int = 64
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 128
  dropout: float = 0.0
  use_bias: bool = False
  mlp_ratio: int = 4

  def __post_init__(self):
    for name in ('vocab_size', 'context', 'num_layers', 'num_heads',
                 'embed_dim', 'mlp_ratio'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name}={value!r}; accepted: an int >= 1.')
    if self.embed_dim % self.num_heads:
      raise ValueError(f'embed_dim={self.embed_dim} is not a multiple of '
                       f'num_heads={self.num_heads}.')
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f'dropout={self.dropout!r}; accepted: 0 <= dropout < 1.')

  @property
  def head_dim(self) -> int:
    """The width of one attention head: ``embed_dim // num_heads``."""
    return self.embed_dim // self.num_heads


def _linear(config: GPTConfig, din: int, dout: int, rngs: nnx.Rngs, *,
            std: float = _INIT_STD) -> nnx.Linear:
  return nnx.Linear(din, dout, use_bias=config.use_bias,
                    kernel_init=nnx.initializers.normal(std), rngs=rngs)


def _layer_norm(config: GPTConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(config.embed_dim, epsilon=1e-5,
                       use_bias=config.use_bias, rngs=rngs)


def _residual_std(config: GPTConfig) -> float:
  """The init std of projections into the residual stream (GPT-2's)."""
  return _INIT_STD / math.sqrt(2 * config.num_layers)


def _deterministic(rngs: nnx.Rngs | None) -> bool:
  return rngs is None


class CausalSelfAttention(nnx.Module):
  """Multi-head self-attention where position t sees positions <= t.

  Example:
    >>> attn = CausalSelfAttention(GPTConfig(vocab_size=5, embed_dim=8,
    ...                                      num_heads=2), rngs=nnx.Rngs(0))
    >>> attn(jnp.ones((1, 3, 8))).shape
    (1, 3, 8)
  """

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    d = config.embed_dim
    self.num_heads = config.num_heads
    self.query = _linear(config, d, d, rngs)
    self.key = _linear(config, d, d, rngs)
    self.value = _linear(config, d, d, rngs)
    self.out = _linear(config, d, d, rngs, std=_residual_std(config))
    self.attn_dropout = nnx.Dropout(config.dropout)
    self.resid_dropout = nnx.Dropout(config.dropout)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    """``(batch, time, embed_dim)`` to the same shape; dropout with ``rngs``."""
    b, t, d = x.shape
    heads = lambda y: y.reshape(b, t, self.num_heads, d // self.num_heads)
    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k) / jnp.sqrt(
        jnp.asarray(d // self.num_heads, x.dtype))
    causal = jnp.tril(jnp.ones((t, t), bool))
    scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
    weights = self.attn_dropout(jax.nn.softmax(scores, axis=-1), rngs=rngs,
                                deterministic=_deterministic(rngs))
    y = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(b, t, d)
    return self.resid_dropout(self.out(y), rngs=rngs,
                              deterministic=_deterministic(rngs))


class FeedForward(nnx.Module):
  """``embed_dim -> mlp_ratio * embed_dim -> GELU -> embed_dim``.

  GELU is the exact one (``approximate=False``), as PyTorch's ``nn.GELU()``
  of nanoGPT.
  """

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    hidden = config.mlp_ratio * config.embed_dim
    self.fc = _linear(config, config.embed_dim, hidden, rngs)
    self.proj = _linear(config, hidden, config.embed_dim, rngs,
                        std=_residual_std(config))
    self.dropout = nnx.Dropout(config.dropout)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    """The same shape as ``x``; dropout with ``rngs``."""
    y = self.proj(jax.nn.gelu(self.fc(x), approximate=False))
    return self.dropout(y, rngs=rngs, deterministic=_deterministic(rngs))


class Block(nnx.Module):
  """A pre-LayerNorm transformer block: ``x + attn(ln1(x))``, ``+ mlp(ln2(.))``."""

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    self.ln1 = _layer_norm(config, rngs)
    self.attn = CausalSelfAttention(config, rngs=rngs)
    self.ln2 = _layer_norm(config, rngs)
    self.mlp = FeedForward(config, rngs=rngs)

  def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    """The same shape as ``x``; dropout with ``rngs``."""
    x = x + self.attn(self.ln1(x), rngs=rngs)
    return x + self.mlp(self.ln2(x), rngs=rngs)


class GPT(nnx.Module):
  """A decoder-only transformer over token ids: logits for the next token.

  Token embedding plus a learned position table, ``num_layers`` :class:`Block`
  s, a final LayerNorm and an untied linear head (see the module doc). Every
  position is predicted, from the tokens up to and including it.

  Args:
    config: the static settings.
    rngs: the initialization keys (the ``params`` stream).

  Example:
    >>> model = GPT(GPTConfig(vocab_size=7, context=4, num_layers=1,
    ...                       embed_dim=8, num_heads=2), rngs=nnx.Rngs(0))
    >>> model(jnp.array([[1, 2, 3]])).shape
    (1, 3, 7)
  """

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    self.config = config
    embed_init = nnx.initializers.normal(_INIT_STD)
    self.token_embed = nnx.Embed(config.vocab_size, config.embed_dim,
                                 embedding_init=embed_init, rngs=rngs)
    self.pos_embed = nnx.Embed(config.context, config.embed_dim,
                               embedding_init=embed_init, rngs=rngs)
    self.embed_dropout = nnx.Dropout(config.dropout)
    self.blocks = nnx.List([Block(config, rngs=rngs)
                            for _ in range(config.num_layers)])
    self.ln_f = _layer_norm(config, rngs)
    self.head = nnx.Linear(config.embed_dim, config.vocab_size, use_bias=False,
                           kernel_init=embed_init, rngs=rngs)

  def __call__(self, tokens: jax.Array, *,
               rngs: nnx.Rngs | None = None) -> jax.Array:
    """Logits ``(batch, time, vocab_size)`` of int tokens ``(batch, time)``.

    Args:
      tokens: ids in ``[0, vocab_size)``, ``time <= context``.
      rngs: the dropout keys (a ``dropout`` stream); none: no dropout.

    Raises:
      ValueError: ``tokens`` is not 2-D or longer than the context.
    """
    if tokens.ndim != 2 or tokens.shape[1] > self.config.context:
      raise ValueError(f'tokens of shape {tokens.shape}; accepted: (batch, '
                       f'time) with time <= context={self.config.context}.')
    x = self.token_embed(tokens) + self.pos_embed(
        jnp.arange(tokens.shape[1]))[None]
    x = self.embed_dropout(x, rngs=rngs, deterministic=_deterministic(rngs))
    for block in self.blocks:
      x = block(x, rngs=rngs)
    return self.head(self.ln_f(x))


# --------------------------------------------------------------------------
# The functional API.


def split_params(model: GPT) -> tuple[nnx.GraphDef, Params]:
  """The model's static graph and its params as a plain nested dict.

  Args:
    model: a :class:`GPT` (any NNX module whose variables are all
      ``nnx.Param`` s).

  Returns:
    ``(graphdef, params)``: ``nnx.split(model, nnx.Param)``'s graph and
    state, the state as ``nnx.to_pure_dict`` gives it (block indices are int
    keys: ``params['blocks'][0]['attn']['query']['kernel']``).

  Raises:
    ValueError: the model holds variables other than params (an RNG stream
      or batch statistics), which a params-only pytree would drop.

  Example:
    >>> model = GPT(GPTConfig(vocab_size=5, num_layers=1, embed_dim=8,
    ...                       num_heads=2), rngs=nnx.Rngs(0))
    >>> graphdef, params = split_params(model)
    >>> params['head']['kernel'].shape
    (8, 5)
  """
  graphdef, state, *rest = nnx.split(model, nnx.Param, ...)
  others = jax.tree.leaves(rest)
  if others:
    raise ValueError(f'the model holds {len(others)} variables that are not '
                     f'nnx.Param: {rest[0]}')
  return graphdef, nnx.to_pure_dict(state)


def init(config: GPTConfig, key: jax.Array) -> tuple[nnx.GraphDef, Params]:
  """A new :class:`GPT`'s graph and params: ``split_params(GPT(config, ...))``.

  Example:
    >>> from paramsel_jax.models import count_params
    >>> graphdef, params = init(GPTConfig(vocab_size=5, num_layers=1,
    ...                                   embed_dim=8, num_heads=2),
    ...                         jax.random.key(0))
    >>> shapes = jax.eval_shape(  # nanoGPT's setting, without computing it
    ...     lambda key: init(GPTConfig(vocab_size=65), key)[1],
    ...     jax.random.key(0))
    >>> count_params(shapes)
    812416
  """
  return split_params(GPT(config, rngs=nnx.Rngs(params=key)))


def apply(graphdef: nnx.GraphDef, params: Params, tokens: jax.Array, *,
          dropout_key: jax.Array | None = None) -> jax.Array:
  """The logits of ``tokens`` under ``params``: a pure function.

  Rebuilds the model with ``nnx.merge(graphdef, params)`` and calls it.

  Args:
    graphdef: from :func:`split_params` (static: closing over it or passing
      it as a static argument costs nothing).
    params: the nested dict of :func:`split_params` (an ``nnx.State`` of
      the same params works too).
    tokens: int ids ``(batch, time)``.
    dropout_key: a PRNG key for dropout; none: no dropout (evaluation).

  Returns:
    Logits ``(batch, time, vocab_size)``.
  """
  model = nnx.merge(graphdef, params)
  rngs = None if dropout_key is None else nnx.Rngs(dropout=dropout_key)
  return model(tokens, rngs=rngs)


def make_apply_fn(graphdef: nnx.GraphDef) -> ApplyFn:
  """``apply_fn(params, tokens) -> logits``, the library's model signature.

  Example:
    >>> graphdef, params = init(GPTConfig(vocab_size=5, num_layers=1,
    ...                                   embed_dim=8, num_heads=2),
    ...                         jax.random.key(0))
    >>> make_apply_fn(graphdef)(params, jnp.zeros((2, 3), int)).shape
    (2, 3, 5)
  """
  return functools.partial(apply, graphdef)


def next_token_loss(logits: jax.Array, targets: ArrayLike,
                    mask: ArrayLike | None = None) -> jax.Array:
  """Mean cross-entropy of every position's next-token prediction.

  Every one of the ``batch * time`` positions counts (not only the last), as
  in nanoGPT's training loss.

  Args:
    logits: ``(batch, time, vocab_size)``.
    targets: int ids ``(batch, time)``.
    mask: optional, broadcastable to ``(batch, time)``: the positions that
      count (e.g. the ``mask`` of
      :func:`paramsel_jax.data.shakespeare.eval_batches`); the mean is over
      them.

  Returns:
    The scalar mean, in nats (float32).

  Example:
    >>> logits = jnp.zeros((2, 3, 4))
    >>> float(next_token_loss(logits, jnp.zeros((2, 3), int))) == float(
    ...     jnp.log(4.0))
    True
  """
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.asarray(targets))
  if mask is None:
    return losses.mean()
  weights = jnp.broadcast_to(jnp.asarray(mask), losses.shape).astype(
      losses.dtype)
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)
