"""How the seeds and the minibatches of a run are laid out over the devices.

A ('seed', 'batch') `jax.sharding.Mesh`: vmapped seeds are sharded over
'seed'; with `shard_batch`, each training minibatch over 'batch' (data
parallelism; the gradient is then all-reduced, which may sum in another order
than one device does: results agree to float rounding, not bit for bit).
"""

from __future__ import annotations

import jax
import numpy as np

from paramsel_jax import models

SEED_AXES = ('auto', 'vmap', 'map')


def resolve_seed_axis(seed_axis: str, model: str | None = None) -> str:
  """The seed axis to run: 'vmap' or 'map' ('auto' resolved; the only place).

  'auto' is 'map' (seeds in turn) for a conv net of `models.CONV_MODELS` on
  CPU, where vmapping convolutions is ~2.6x slower (BUILD_NOTES.md), and
  'vmap' (seeds in parallel) otherwise, a task of unknown `model` (None)
  included.

  Example:
    >>> resolve_seed_axis('auto'), resolve_seed_axis('map', 'lenet300')
    ('vmap', 'map')
  """
  if seed_axis not in SEED_AXES:
    raise ValueError(f'seed_axis={seed_axis!r}; accepted: '
                     f'{", ".join(SEED_AXES)}.')
  if seed_axis != 'auto':
    return seed_axis
  on_cpu = jax.default_backend() == 'cpu'
  return 'map' if on_cpu and model in models.CONV_MODELS else 'vmap'


def device_mesh(num_seeds: int, batch_size: int | None = None
                ) -> jax.sharding.Mesh | None:
  """The devices as a ('seed', 'batch') mesh; None when it would be 1 x 1.

  'seed' gets the largest device count that divides `num_seeds` (pass 1 when
  the seeds are not vmapped); 'batch', when `batch_size` is given, the
  largest count dividing both the devices left and `batch_size`. Data and
  other unbatched arrays are replicated by jit.

  Example:
    >>> device_mesh(3) is None or device_mesh(3).shape['seed'] > 1
    True
  """
  devices = jax.devices()
  seed = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
  rest = len(devices) // seed
  batch = 1 if batch_size is None else max(
      d for d in range(1, rest + 1) if rest % d == 0 and batch_size % d == 0)
  if seed * batch == 1:
    return None
  used = devices[:seed * batch]
  if jax.process_count() > 1 and len({d.process_index for d in used}) < (
      jax.process_count()):
    raise ValueError(
        f'{num_seeds} seeds{"" if batch_size is None else f", batch_size={batch_size}"} '
        f'fill {seed * batch} of the {len(devices)} devices of '
        f'{jax.process_count()} processes, leaving a process without work; '
        'accepted: a seed count (with shard_batch: seeds x batch) that '
        'spans every process, e.g. a multiple of the device count.')
  return jax.sharding.Mesh(
      np.array(used).reshape(seed, batch), ('seed', 'batch'))


def describe_mesh(mesh: jax.sharding.Mesh | None) -> str:
  """E.g. 'seeds over 4 devices, each minibatch over 2'.

  Example:
    >>> describe_mesh(None)
    'one device'
  """
  if mesh is None:
    return 'one device'
  parts = []
  if mesh.shape['seed'] > 1:
    parts.append(f'seeds over {mesh.shape["seed"]} devices')
  if mesh.shape['batch'] > 1:
    parts.append(f'each minibatch over {mesh.shape["batch"]} devices')
  return ', '.join(parts)


def seed_keys(seeds, mesh: jax.sharding.Mesh | None) -> jax.Array:
  """One PRNG key per seed, sharded over `mesh`'s 'seed' axis where > 1.

  Made by one jitted call that places them, so that with several processes
  each gets a global array (every process passes the same seeds).

  Example:
    >>> seed_keys((0, 7), None).shape
    (2,)
  """
  make = jax.vmap(jax.random.key)
  seeds = np.asarray(seeds, np.uint32)
  if mesh is None or mesh.shape['seed'] == 1:
    return make(jax.numpy.asarray(seeds))
  sharding = jax.sharding.NamedSharding(mesh,
                                        jax.sharding.PartitionSpec('seed'))
  return jax.jit(make, out_shardings=sharding)(seeds)
