"""Device memory: what is resident, and moving a pytree to the host and back.

An active phase (`phase.run_phase`) can park the full optimizer state off
the device while only the active set trains (`inactive_state='host'`). It
goes to the host memory kind of the array's own device when the backend has
one (`'pinned_host'`: XLA's CPU backend has it too in jax 0.10, so the same
path runs everywhere; the array stays a `jax.Array`, listed by
`jax.live_arrays()` with `sharding.memory_kind == 'pinned_host'`), else to
numpy (`jax.device_get`). The way back puts every leaf on the sharding it
came from, so the round trip is bit-identical.

`device_bytes` sums the bytes of the live arrays in device memory (host
memory kinds left out), which works on every backend; `peak_bytes` is the
backend's own peak (`Device.memory_stats()`), which GPU and TPU report and
the CPU backend does not (None).

Example:
  >>> import jax.numpy as jnp
  >>> tree = {'w': jnp.arange(4.0)}
  >>> parked = to_host(tree)
  >>> back = to_device(parked, shardings(tree))
  >>> back['w'].tolist(), is_on_device(back['w'])
  ([0.0, 1.0, 2.0, 3.0], True)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

PyTree = Any
HOST_KIND = 'pinned_host'


def host_memory_kind(device: Any = None) -> str | None:
  """`'pinned_host'` when `device` (default: the first) has it, else None.

  Example:
    >>> host_memory_kind() in ('pinned_host', None)
    True
  """
  device = device or jax.devices()[0]
  try:
    kinds = {m.kind for m in device.addressable_memories()}
  except (AttributeError, NotImplementedError, RuntimeError):
    return None
  return HOST_KIND if HOST_KIND in kinds else None


def is_on_device(x: Any) -> bool:
  """Whether `x` is a live `jax.Array` in device memory (not a host kind).

  Example:
    >>> import numpy as np
    >>> is_on_device(np.zeros(2))
    False
  """
  if not isinstance(x, jax.Array) or x.is_deleted():
    return False
  kind = getattr(x.sharding, 'memory_kind', None)
  return kind is None or not kind.endswith('host')


def shardings(tree: PyTree) -> PyTree:
  """Each `jax.Array` leaf's sharding (None for other leaves)."""
  return jax.tree.map(
      lambda x: x.sharding if isinstance(x, jax.Array) else None, tree)


def to_host(tree: PyTree) -> PyTree:
  """`tree` in host memory: the host memory kind if any, else numpy.

  PRNG key leaves stay as they are (a few bytes each; numpy cannot hold
  them). The device buffers are not freed here: they go when the last
  reference does, or by `free`.
  """
  def one(x):
    if not isinstance(x, jax.Array) or _is_key(x):
      return x
    kind = host_memory_kind(next(iter(x.devices())))
    if kind is None:
      return np.asarray(jax.device_get(x))
    return jax.device_put(x, x.sharding.with_memory_kind(kind))
  return jax.tree.map(one, tree)


def to_device(tree: PyTree, like: PyTree) -> PyTree:
  """`tree` back on the device, each leaf on its sharding in `like`.

  `like`: `shardings` of the tree before `to_host`.
  """
  return jax.tree.map(
      lambda x, s: x if s is None or (isinstance(x, jax.Array)
                                      and x.sharding == s)
      else jax.device_put(x, s), tree, like)


def free(tree: PyTree, keep: PyTree = None) -> None:
  """Deletes the device buffers of `tree`'s array leaves (not those in `keep`).

  Only for a tree nothing else reads any more: a later use of a leaf fails.
  """
  kept = {id(x) for x in jax.tree.leaves(keep)}
  for x in jax.tree.leaves(tree):
    if is_on_device(x) and id(x) not in kept:
      x.delete()


def device_bytes(tree: PyTree = None) -> int:
  """Bytes of device memory held by the arrays of `tree` (None: all live ones).

  Counted once per array, host memory kinds left out.

  Example:
    >>> import jax.numpy as jnp
    >>> device_bytes({'a': jnp.zeros((2, 3)), 'b': np.zeros(5)})
    24
  """
  arrays = jax.live_arrays() if tree is None else jax.tree.leaves(tree)
  seen: dict[int, int] = {}
  for x in arrays:
    if is_on_device(x):
      seen[id(x)] = int(x.nbytes)
  return sum(seen.values())


def peak_bytes(device: Any = None) -> int | None:
  """The backend's peak bytes in use on `device`, or None where not reported.

  GPU and TPU report it (`Device.memory_stats()['peak_bytes_in_use']`); the
  CPU backend reports no memory statistics.
  """
  device = device or jax.devices()[0]
  try:
    stats = device.memory_stats()
  except (AttributeError, NotImplementedError, RuntimeError):
    return None
  return None if not stats else stats.get('peak_bytes_in_use')


def _is_key(x: jax.Array) -> bool:
  return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
