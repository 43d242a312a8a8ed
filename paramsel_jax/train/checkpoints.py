"""Saving and restoring the protocol's state with orbax.

The state after η0 (:class:`paramsel_jax.train.runner.TrainState`: params,
optimizer state, trajectory statistics, the seeds' PRNG keys and divergence
steps) is what every η1 phase of a run starts from. :func:`save_state`
writes it once with orbax (which writes into a temporary directory and
renames it when complete, so a killed run leaves no half-written
checkpoint); :func:`restore_state` reads it back into the structure,
dtypes and shardings of a like state, bit for bit. :func:`state_key` names a
checkpoint by a hash of everything that determines it, so that a later run
with the same settings finds it and one with other settings does not.

Example:
  >>> import jax, jax.numpy as jnp, tempfile, os
  >>> state = {'w': jnp.arange(3.0), 'key': jax.random.key(0)}
  >>> path = os.path.join(tempfile.mkdtemp(), state_key({'eta0': 10}))
  >>> save_state(path, state)
  >>> back = restore_state(path, state)
  >>> bool((back['w'] == state['w']).all()), back['key'].dtype == state['key'].dtype
  (True, True)
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

PyTree = Any


def state_key(identity: dict[str, Any]) -> str:
  """A stable name for a checkpoint: ``eta0-<hash of identity>``.

  Example:
    >>> state_key({'eta0': 500, 'seeds': [0, 1]}) == state_key(
    ...     {'seeds': [0, 1], 'eta0': 500})
    True
  """
  canonical = json.dumps(identity, sort_keys=True, separators=(',', ':'))
  return 'eta0-' + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _is_key(x: Any) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def _raw(tree: PyTree) -> PyTree:
  """PRNG key arrays as their uint32 data (what orbax can store)."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x,
                      tree)


def save_state(path: str, state: PyTree) -> None:
  """Writes ``state`` (a pytree of arrays) to the directory ``path``.

  The directory appears only once complete (orbax's temporary directory,
  renamed); an existing one is replaced.
  """
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(os.path.abspath(path), _raw(state), force=True)
    checkpointer.wait_until_finished()


def restore_state(path: str, like: PyTree) -> PyTree:
  """The state saved at ``path``, bit-identical to what was saved.

  It takes the structure, dtypes and shardings of ``like`` (e.g. a freshly
  initialized state).
  """
  raw_like = _raw(like)
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=getattr(x, 'sharding', None)),
      raw_like)
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(os.path.abspath(path), target)
  # orbax returns tuples where the state has NamedTuples: same leaf order.
  leaves = jax.tree.leaves(restored)
  raw = jax.tree.unflatten(jax.tree.structure(raw_like), leaves)
  return jax.tree.map(
      lambda x, r: jax.random.wrap_key_data(
          r, impl=jax.random.key_impl(x)) if _is_key(x) else r, like, raw)


def exists(path: str) -> bool:
  """Whether a complete checkpoint is at ``path``."""
  return os.path.isdir(path) and bool(os.listdir(path))
