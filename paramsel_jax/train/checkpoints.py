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

import copy
import hashlib
import json
import os
import shutil
from typing import Any, Callable

import jax
import numpy as np
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


def _is_empty(x: Any) -> bool:
  return np.size(x) == 0


def _raw(tree: PyTree) -> PyTree:
  """What orbax can store: PRNG key arrays as their uint32 data.

  A zero-size array (e.g. the active part of a frozen module) as a uint8
  placeholder: orbax refuses zero-size arrays, and one holds no data (it is
  restored as the like state's).
  """
  return jax.tree.map(
      lambda x: (np.zeros((), np.uint8) if _is_empty(x) else
                 jax.random.key_data(x) if _is_key(x) else x), tree)


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
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(os.path.abspath(path), _abstract(like))
  return _unraw(like, restored)


def exists(path: str) -> bool:
  """Whether a complete checkpoint is at ``path``."""
  return os.path.isdir(path) and bool(os.listdir(path))


# Periodic checkpoints of a resumable run ------------------------------------

IDENTITY_FILE = 'identity.json'


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  """A JSON-like dict as {'a.b': leaf}; lists stay leaves."""
  if isinstance(tree, dict) and tree:
    out: dict[str, Any] = {}
    for k, v in tree.items():
      out.update(_flatten(v, f'{prefix}{k}.'))
    return out
  return {prefix[:-1]: tree}


def identity_differences(saved: dict[str, Any], given: dict[str, Any]
                         ) -> list[str]:
  """`'name: saved -> given'` for each setting that differs (dotted names).

  Example:
    >>> identity_differences({'eta0': 500, 'opt': {'lr': 1e-3}},
    ...                      {'eta0': 400, 'opt': {'lr': 1e-3}})
    ['eta0: 500 -> 400']
  """
  a, b = _flatten(saved), _flatten(given)
  missing = object()
  return [f'{k}: {a.get(k, "(unset)")!r} -> {b.get(k, "(unset)")!r}'
          for k in sorted(set(a) | set(b))
          if a.get(k, missing) != b.get(k, missing)]


def _slug(label: str) -> str:
  """A directory name for a phase label: readable, unique by a hash."""
  safe = ''.join(c if c.isalnum() or c in '-_.=' else '_' for c in label)
  digest = hashlib.sha256(label.encode()).hexdigest()[:8]
  return f'{safe.strip("_")[:60]}-{digest}'


class IdentityMismatch(ValueError):
  """Another run's checkpoints; `differences`: `'name: saved -> given'`."""

  def __init__(self, differences: list[str], message: str):
    super().__init__(message)
    self.differences = differences


class Checkpointer:
  """The checkpoints of one resumable run under `directory`.

  The directory belongs to one run: its `identity` (a JSON-able dict of
  everything that determines the results, e.g. the run's config) is written
  there on first use, and a later run with another identity is refused
  (ValueError naming the settings that differ) before any work, so that
  states are never mixed. Each phase of the run (a label: 'eta0', 'eta1
  [topgrad, k=0.1]', ...) keeps its own checkpoints (`phase`), saved every
  `every` global steps and at the phase's end, the last `keep` of them.

  Args:
    directory: where the checkpoints go (e.g. ``<workdir>/checkpoints``).
    every: save every this many global steps (> 0).
    identity: what the run is (JSON-able).
    keep: how many checkpoints each phase keeps.
    log: where notes go (a corrupt checkpoint, a restore).

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> d = tempfile.mkdtemp()
    >>> ckpt = Checkpointer(d, every=10, identity={'eta0': 500}, log=lambda _: None)
    >>> phase = ckpt.phase('eta0')
    >>> phase.save(10, {'w': jnp.ones(2)}, {'note': 'x'}); phase.wait()
    >>> phase.restore({'w': jnp.zeros(2)})[0], phase.restore({'w': jnp.zeros(2)})[2]
    (10, {'note': 'x'})
    >>> Checkpointer(d, 10, {'eta0': 400})
    Traceback (most recent call last):
    ...
    paramsel_jax.train.checkpoints.IdentityMismatch: ...another run: eta0: 500 -> 400;...
  """

  def __init__(self, directory: str, every: int, identity: dict[str, Any],
               keep: int = 3, log: Callable[[str], None] = print):
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
      raise ValueError(f'checkpoint_every={every!r}; accepted: an int >= 1 '
                       '(0 turns checkpoints off where a script offers it).')
    if not isinstance(keep, int) or keep < 1:
      raise ValueError(f'keep={keep!r}; accepted: an int >= 1.')
    self.directory, self.every, self.keep, self.log = (
        os.path.abspath(directory), every, keep, log)
    self.identity = json.loads(json.dumps(identity, sort_keys=True,
                                          default=str))
    self._phases: dict[str, PhaseCheckpoints] = {}  # shared by every scope.
    self.prefix = ''  # of the phase labels (`scope`).
    self._check_identity()

  def _check_identity(self) -> None:
    path = os.path.join(self.directory, IDENTITY_FILE)
    if os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        saved = json.load(f)
      diff = identity_differences(saved, self.identity)
      if diff:
        raise IdentityMismatch(diff,
            f'{self.directory} was written by another run: '
            f'{"; ".join(diff)}; accepted: the same settings as that run (to '
            'resume it), or another --workdir (or delete this one) for a new '
            'run.')
      return
    if jax.process_index() == 0:
      from paramsel_jax import io as io_lib  # pylint: disable=g-import-not-at-top
      io_lib.write_json_atomic(self.identity, path)

  def scope(self, name: str) -> Checkpointer:
    """A view whose phases are named ``'<name>/<label>'``.

    For several runs in one process (the arms of a benchmark, the cells of a
    sweep): each gets its own scope, so their phase labels never collide.
    The view shares this one's directory, identity and pending saves.

    Example:
      >>> import tempfile
      >>> ckpt = Checkpointer(tempfile.mkdtemp(), 10, {}, log=lambda _: None)
      >>> ckpt.scope('arm a').phase('eta0').label
      'arm a/eta0'
    """
    view = copy.copy(self)
    view.prefix = f'{self.prefix}{name}/'
    return view

  def phase(self, label: str) -> PhaseCheckpoints:
    """The checkpoints of the phase called `label` (made once)."""
    label = self.prefix + label
    if label not in self._phases:
      self._phases[label] = PhaseCheckpoints(
          os.path.join(self.directory, _slug(label)), label, self.every,
          self.keep, self.log)
    return self._phases[label]

  def discard(self, label: str) -> None:
    """Removes the checkpoints of phase `label` (one no longer needed).

    E.g. an online run's interval once the run's state after it is saved.
    Its pending save is waited for first.
    """
    phase = self._phases.pop(self.prefix + label, None)
    if phase is not None:
      phase.close()
    path = os.path.join(self.directory, _slug(self.prefix + label))
    if jax.process_index() == 0 and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)

  def wait(self) -> None:
    """Blocks until every pending (asynchronous) save is on disk."""
    for phase in self._phases.values():
      phase.wait()

  def close(self) -> None:
    """Waits for pending saves and releases the phases' managers."""
    for phase in self._phases.values():
      phase.close()
    self._phases.clear()


class PhaseCheckpoints:
  """One phase's checkpoints: (global step, state pytree, JSON metadata).

  Saved asynchronously by orbax (the arrays are copied off first, so the
  state may change at once), atomically (a temporary directory renamed when
  complete: a killed save leaves nothing that `restore` reads), the last
  `keep` kept. A checkpoint that cannot be read is reported, moved aside
  (``corrupt-<step>``) and the one before it is used.
  """

  def __init__(self, directory: str, label: str, every: int, keep: int,
               log: Callable[[str], None]):
    self.directory, self.label, self.every, self.log = (
        directory, label, every, log)
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, cleanup_tmp_directories=True,
            enable_async_checkpointing=True))

  def next_save(self, step: int) -> int:
    """The first global step after `step` at which a checkpoint is due.

    Example:
        >>> p = PhaseCheckpoints.__new__(PhaseCheckpoints); p.every = 100
      >>> p.next_save(0), p.next_save(250), p.next_save(300)
      (100, 300, 400)
    """
    return (step // self.every + 1) * self.every

  def steps(self) -> list[int]:
    """The steps of the complete checkpoints on disk, oldest first."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: PyTree, meta: dict[str, Any] | None = None
           ) -> None:
    """Saves `state` (a pytree of arrays) and `meta` (JSON) as `step`.

    A step already saved is left as it is.
    """
    if step in self._manager.all_steps():
      return
    # `meta` is copied now: the save is asynchronous, and the caller's lists
    # (history records) may grow before orbax writes them.
    frozen = json.loads(json.dumps(meta or {}))
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_raw(state)),
        meta=ocp.args.JsonSave(frozen)))

  def restore(self, like: PyTree
              ) -> tuple[int, PyTree, dict[str, Any]] | None:
    """(step, state, meta) of the latest readable checkpoint; None if none.

    `like`: a state of the same structure, dtypes and shardings (e.g. the
    freshly initialized one). Bit-identical to what was saved.
    """
    self._manager.wait_until_finished()
    for step in reversed(self.steps()):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(like)),
            meta=ocp.args.JsonRestore()))
        state = _unraw(like, restored['state'])
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(step, e)
        continue
      self.log(f'{self.label}: resumed from the checkpoint of step {step} '
               f'({self.directory})')
      return step, state, dict(restored['meta'] or {})
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    path = os.path.join(self.directory, str(step))
    aside = os.path.join(self.directory, f'corrupt-{step}')
    if jax.process_index() == 0 and os.path.isdir(path):
      os.replace(path, aside)
    self._manager.reload()
    self.log(f'{self.label}: WARNING: the checkpoint of step {step} cannot be '
             f'read ({type(error).__name__}: {str(error)[:200]}); it was moved '
             f'to {aside} and the one before it is used.')

  def wait(self) -> None:
    """Blocks until the pending save (if any) is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the pending save and releases orbax's resources."""
    self._manager.wait_until_finished()
    self._manager.close()


def _abstract(like: PyTree) -> PyTree:
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                     sharding=getattr(x, 'sharding', None)),
      _raw(like))


def _unraw(like: PyTree, restored: PyTree) -> PyTree:
  """`restored` (orbax's tree of raw arrays) in `like`'s structure and keys."""
  leaves = jax.tree.leaves(restored)
  raw = jax.tree.unflatten(jax.tree.structure(_raw(like)), leaves)
  return jax.tree.map(
      lambda x, r: x if _is_empty(x) else jax.random.wrap_key_data(
          r, impl=jax.random.key_impl(x)) if _is_key(x) else r, like, raw)
