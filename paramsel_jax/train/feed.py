"""Training batches: a dataset on the device, or host batches fed by chunk.

`OnDevice` data is sampled inside the jitted training loop (the image
preset's, and the main job's).

A phase of a `Runner` runs in chunks of up to ``chunk_size`` steps, each one
jitted call. With host data (`task.Task`'s ``train_data`` a function
``(seed, first_step) -> iterator``), a :class:`Feed` pulls the chunk's
batches from every seed's stream, stacks them to ``(seeds, chunk_size,
batch, ...)`` (steps past the chunk's end repeat its last batch and are never
trained on: one shape, one compilation) and puts them on the device, sharded
over the mesh's 'seed' and 'batch' axes where those are > 1. `prefetch`
prepares the next chunk while the device runs the current one (jax dispatch
is asynchronous), so the host's work overlaps the device's.

  >>> import numpy as np
  >>> streams = lambda seed, first: iter([{'x': np.full((2,), seed + first + t)}
  ...                                     for t in range(3)])
  >>> feed = Feed(streams, seeds=(0, 10), first_step=0, chunk_size=4)
  >>> feed.next(2)['x'][:, :, 0].tolist()  # seeds x chunk slots
  [[0, 1, 1, 1], [10, 11, 11, 11]]
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import numpy as np

PyTree = Any


class OnDevice(NamedTuple):
  """Training data held on the device, sampled inside the jitted loop.

  ``arrays``: a pytree of arrays with one leading example axis (e.g.
  ``(images, labels)``). Step ``t`` of a seed takes ``batch_size`` examples
  (the config's), uniformly with replacement, from the seed's key and ``t``
  alone, so every phase and selector sees the same batches.
  """

  arrays: PyTree

  @property
  def num_examples(self) -> int:
    """The dataset's size (its leading axis)."""
    return int(jax.tree.leaves(self.arrays)[0].shape[0])


class Feed:
  """Stacked host batches of one phase, chunk by chunk (module docstring).

  Args:
    streams: ``(seed, first_step) -> iterator`` of batches.
    seeds: the seed numbers, in the state's seed order.
    first_step: the phase's first global step.
    chunk_size: the stacked chunk's step axis (the config's).
    mesh: a `mesh.device_mesh` to shard the chunk over (None: the default
      device).
    label: the phase, for messages.
  """

  def __init__(self, streams: Callable[[int, int], Iterator[PyTree]],
               seeds: Sequence[int], first_step: int, chunk_size: int,
               mesh: jax.sharding.Mesh | None = None,
               label: str = 'training'):
    self.seeds, self.chunk_size = tuple(seeds), chunk_size
    self.mesh, self.label = mesh, label
    self.step = first_step  # the global step of the next batch to pull.
    # The seeds (indices) whose batches this process feeds: all of them on
    # one process; with several, those its devices hold (`local_seeds`).
    self.local = local_seeds(mesh, len(self.seeds))
    self._its = {i: iter(streams(self.seeds[i], first_step))
                 for i in self.local}
    self._ready: tuple[int, Any] | None = None

  def _pull(self, seed_index: int, n: int) -> list[PyTree]:
    batches = []
    for t in range(n):
      try:
        batches.append(next(self._its[seed_index]))
      except StopIteration:
        raise ValueError(
            f'{self.label}: the training data of seed '
            f'{self.seeds[seed_index]} ended at global step {self.step + t}, '
            f'before the phase did; accepted: a stream with a batch for '
            'every step (repeat the data, e.g. itertools.cycle or an '
            'endless sampler).') from None
    return batches

  def _stack(self, batches: list[PyTree], seed_index: int) -> PyTree:
    """``(chunk_size, batch, ...)`` of one seed: the batches, then padding."""
    padded = batches + [batches[-1]] * (self.chunk_size - len(batches))
    try:
      return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                          *padded)
    except ValueError as e:
      raise ValueError(
          f'{self.label}: the batches of seed {self.seeds[seed_index]} from '
          f'global step {self.step} differ in structure or shape ({e}); '
          'accepted: every batch of one pytree structure and shape.') from None

  def _build(self, n: int) -> Any:
    if not 1 <= n <= self.chunk_size:
      raise ValueError(f'Feed: a chunk of {n} steps; accepted: 1..'
                       f'{self.chunk_size}.')
    per_seed = [self._stack(self._pull(i, n), i) for i in self.local]
    chunk = jax.tree.map(lambda *xs: np.stack(xs), *per_seed)
    self.step += n
    first, total = self.local[0], len(self.seeds)  # local: one block.
    def put(x):
      sharding = chunk_sharding(self.mesh, x.ndim)
      if sharding is None or sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
      def part(index):  # a device's part: its seeds are all local ones.
        seeds = slice(index[0].start or 0, index[0].stop or total)
        local = slice(seeds.start - first, seeds.stop - first)
        return x[(local,) + tuple(index[1:])]
      return jax.make_array_from_callback((total,) + x.shape[1:], sharding,
                                          part)
    return jax.tree.map(put, chunk)

  def prefetch(self, n: int) -> None:
    """Builds the next chunk of `n` steps now (while the device works)."""
    if self._ready is None:
      self._ready = (n, self._build(n))

  def next(self, n: int) -> Any:
    """The next `n` steps' batches, ``(seeds, chunk_size, batch, ...)``."""
    if self._ready is not None:
      ready_n, chunk = self._ready
      self._ready = None
      if ready_n != n:
        raise ValueError(f'Feed: prefetched {ready_n} steps, asked for {n}.')
      return chunk
    return self._build(n)


def chunk_sharding(mesh: jax.sharding.Mesh | None, ndims: int
                   ) -> jax.sharding.Sharding | None:
  """The sharding of a stacked chunk leaf of `ndims` dims (None: default).

  ``(seeds, steps, batch, ...)``: seeds over the mesh's 'seed' axis and the
  batch over its 'batch' axis, where those are > 1.
  """
  if mesh is None or (mesh.shape['seed'] == 1 and mesh.shape['batch'] == 1):
    return None
  seed = 'seed' if mesh.shape['seed'] > 1 else None
  batch = 'batch' if mesh.shape['batch'] > 1 else None
  spec = (seed, None, batch) + (None,) * max(ndims - 3, 0)
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def local_seeds(mesh: jax.sharding.Mesh | None, num_seeds: int
                ) -> tuple[int, ...]:
  """The seed indices whose data this process's devices hold.

  All of them on one process, or when the seeds are not sharded; with
  several processes, the block of seeds of this process's rows of the
  mesh's 'seed' axis: each process feeds its own share (and the whole of
  each of its seeds' batches; the 'batch' axis is cut on the device side).

  Example:
    >>> local_seeds(None, 3)
    (0, 1, 2)
  """
  if mesh is None or jax.process_count() == 1 or mesh.shape['seed'] == 1:
    return tuple(range(num_seeds))
  per_row = num_seeds // mesh.shape['seed']
  me = jax.process_index()
  rows = sorted({r for r, row in enumerate(mesh.devices)
                 for d in row if d.process_index == me})
  if rows != list(range(rows[0], rows[-1] + 1)):
    raise ValueError(f'process {me} holds the mesh seed rows {rows}; '
                     'accepted: a contiguous block (`mesh.device_mesh`).')
  return tuple(range(rows[0] * per_row, (rows[-1] + 1) * per_row))
