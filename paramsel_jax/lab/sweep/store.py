"""The resumable store of a sweep: one JSON file per finished cell and run.

Every file is written atomically (`paramsel_jax.io`), so a kill at any point
leaves either the whole file or none; a restarted sweep computes only the
cells whose files are missing. The state after each run's η0 is kept too
(`state_dir`, an orbax checkpoint), so a restarted or extended sweep does
not recompute η0.

Several processes may share one store (a sharded sweep, `shards`). Before
computing anything a process *claims* it (`claim`): a file
``claims/<kind>/<key>.claim`` created with ``O_CREAT | O_EXCL``, so of two
processes claiming at once exactly one wins; it holds the claimer's host,
pid, shard and time. The winner checks again that the work is still missing
(another process may have finished it just before), computes it, saves the
results (atomically) and then releases the claim. A claim whose process is
gone (same host, pid not alive) or that was not refreshed for
``claim_timeout_s`` seconds (a live holder's `heartbeat` refreshes its claims'
times) is taken over, with a logged note. So no cell is lost and none is
computed twice, except after a holder was presumed dead while alive (a host
unreachable longer than the timeout): then both compute it, identically, and
the atomic writes keep one copy.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Sequence

from paramsel_jax import io as io_lib

CLAIM_TIMEOUT_S = 600.0  # a live holder refreshes its claims 4× as often.
_TAKEOVER_GRACE_S = 60.0  # a takeover lock older than this was abandoned.


def make_owner(shard: Sequence[int] = (0, 1)) -> dict[str, Any]:
  """Who claims: host, pid, shard, time and a token unique to this store.

  Example:
    >>> sorted(make_owner((1, 2)))
    ['host', 'pid', 'shard', 'time', 'token']
  """
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'shard': list(shard),
          'time': datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec='seconds'),
          'token': uuid.uuid4().hex}


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process.
    return True
  return True


def describe_owner(owner: dict[str, Any] | None) -> str:
  """E.g. 'host:1234 (shard 1/2, since 2026-12-04T03:00:00+00:00)'.

  Example:
    >>> describe_owner({'host': 'h', 'pid': 7, 'shard': [1, 2], 'time': 't'})
    'h:7 (shard 1/2, since t)'
  """
  if owner is None:
    return 'an unknown process (claim unreadable)'
  index, count = owner.get('shard', ('?', '?'))
  return (f'{owner.get("host")}:{owner.get("pid")} (shard {index}/{count}, '
          f'since {owner.get("time")})')


class CellStore:
  """Finished cells (and each run's dense η0 metrics), one JSON file each.

  Args:
    directory: the store's root (a sweep's workdir).
    owner: who this process is when it claims work (`make_owner`).
    claim_timeout_s: a claim not refreshed for this long is taken over.
    log: where notes about claims go (a takeover, a lost claim).

  Example:
    >>> import tempfile
    >>> store = CellStore(tempfile.mkdtemp())
    >>> store.save('cells', 'a', {'x': 1}); store.load('cells', 'a')
    {'x': 1}
    >>> store.claim('groups', 'a'), CellStore(store.directory).claim('groups', 'a')
    (True, False)
    >>> store.release('groups', 'a'); store.holder('groups', 'a') is None
    True
  """

  def __init__(self, directory: str, owner: dict[str, Any] | None = None,
               claim_timeout_s: float = CLAIM_TIMEOUT_S,
               log: Callable[[str], None] = print):
    if not claim_timeout_s > 0:
      raise ValueError(f'claim_timeout_s={claim_timeout_s!r}; accepted: '
                       'seconds > 0.')
    self.directory = directory
    self.owner = owner or make_owner()
    self.claim_timeout_s = float(claim_timeout_s)
    self.log = log
    self._held: set[str] = set()
    self._lock = threading.Lock()

  def path(self, kind: str, key: str) -> str:
    """The file of record ``key`` of ``kind`` (``'cells'`` or ``'runs'``)."""
    return os.path.join(self.directory, kind, f'{key}.json')

  def has(self, kind: str, key: str) -> bool:
    """Whether record ``key`` of ``kind`` has been saved."""
    return os.path.exists(self.path(kind, key))

  def load(self, kind: str, key: str) -> dict[str, Any]:
    """The saved record ``key`` of ``kind``."""
    with open(self.path(kind, key), encoding='utf-8') as f:
      return json.load(f)

  def state_dir(self, key: str) -> str:
    """The directory of the saved η0 state ``key`` (orbax, `checkpoints`)."""
    return os.path.join(self.directory, 'eta0', key)

  def save(self, kind: str, key: str, record: dict[str, Any]) -> None:
    """Writes ``record`` as ``key`` of ``kind``, atomically."""
    io_lib.write_json_atomic(record, self.path(kind, key))

  # Claims -------------------------------------------------------------------

  def claim_path(self, kind: str, key: str) -> str:
    """The claim file of work ``key`` of ``kind`` (e.g. 'groups', 'eta0')."""
    return os.path.join(self.directory, 'claims', kind, f'{key}.claim')

  def holder(self, kind: str, key: str) -> dict[str, Any] | None:
    """Who holds the claim on ``key`` of ``kind``; None if unclaimed.

    ``{}`` for a claim whose content cannot be read (being written).
    """
    try:
      with open(self.claim_path(kind, key), encoding='utf-8') as f:
        return json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}

  def claim(self, kind: str, key: str) -> bool:
    """Claims work ``key`` of ``kind``: True if this store now holds it.

    Exactly one of several processes (or threads) claiming at once gets
    True. A stale claim (`is_stale`) is taken over, with a note in the log;
    a live one is left alone (False). Claiming what this store holds
    already is True.
    """
    path = self.claim_path(kind, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for _ in range(3):  # a takeover that raced with a release: try again.
      if self._create(path):
        return True
      current = self.holder(kind, key)
      if current is None:
        continue  # released meanwhile.
      if current.get('token') == self.owner['token']:
        with self._lock:
          self._held.add(path)
        return True
      why = self.stale_reason(path, current)
      if why is None:
        return False
      if self._take_over(path, current):
        self.log(f'[sweep] took over the claim on {kind}/{key} of '
                 f'{describe_owner(current or None)}: {why}.')
        return True
      return False
    return False

  def _create(self, path: str) -> bool:
    content = (json.dumps(self.owner) + '\n').encode()
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    try:
      os.write(fd, content)
      os.fsync(fd)
    finally:
      os.close(fd)
    with self._lock:
      self._held.add(path)
    return True

  def stale_reason(self, path: str, current: dict[str, Any]) -> str | None:
    """Why the claim at ``path`` (held by ``current``) is stale; None if live.

    Stale: its process is gone (same host, pid not alive), or its file was
    not refreshed for `claim_timeout_s` (an unreadable one: for 60 s, the
    time to write a few bytes, or the timeout if shorter).
    """
    try:
      age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
      return None
    if not current:
      limit = min(_TAKEOVER_GRACE_S, self.claim_timeout_s)
      return (f'its file has been unreadable for {age:.0f} s' if age > limit
              else None)
    if (current.get('host') == self.owner['host']
        and isinstance(current.get('pid'), int)
        and current['pid'] != os.getpid() and not _alive(current['pid'])):
      return f'process {current["pid"]} is not running on this host'
    if age > self.claim_timeout_s:
      return (f'not refreshed for {age:.0f} s (> claim_timeout_s='
              f'{self.claim_timeout_s:g})')
    return None

  def _take_over(self, path: str, stale: dict[str, Any]) -> bool:
    """Replaces the stale claim at ``path`` by ours; one taker at a time."""
    lock = path + '.takeover'
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      try:
        if time.time() - os.stat(lock).st_mtime > _TAKEOVER_GRACE_S:
          os.remove(lock)  # its taker died mid-takeover; the next try wins.
      except FileNotFoundError:
        pass
      return False
    os.close(fd)
    try:
      current = self.holder(*self._kind_key(path))
      if current != stale:  # changed meanwhile (released, refreshed, taken).
        return False
      io_lib.write_text_atomic(json.dumps(self.owner) + '\n', path)
      with self._lock:
        self._held.add(path)
      return True
    finally:
      os.remove(lock)

  def _kind_key(self, path: str) -> tuple[str, str]:
    kind = os.path.basename(os.path.dirname(path))
    return kind, os.path.basename(path)[:-len('.claim')]

  def release(self, kind: str, key: str) -> None:
    """Gives up the claim on ``key`` of ``kind`` (only if this store holds it)."""
    path = self.claim_path(kind, key)
    with self._lock:
      self._held.discard(path)
    current = self.holder(kind, key)
    if current is None:
      return
    if current.get('token') != self.owner['token']:
      self.log(f'[sweep] note: the claim on {kind}/{key} was taken over by '
               f'{describe_owner(current or None)} while this process held '
               'it; its results are saved all the same (atomically, and '
               'identical).')
      return
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)

  def release_all(self) -> None:
    """Releases every claim this store holds."""
    with self._lock:
      held = sorted(self._held)
    for path in held:
      self.release(*self._kind_key(path))

  def refresh(self) -> None:
    """Sets the time of every claim this store holds to now (alive)."""
    with self._lock:
      held = sorted(self._held)
    for path in held:
      with contextlib.suppress(FileNotFoundError):
        os.utime(path)

  @contextlib.contextmanager
  def heartbeat(self) -> Iterator[None]:
    """Refreshes this store's claims in a thread while the block runs.

    Every quarter of `claim_timeout_s` (at most every minute), so a live
    holder's claims never look stale; every claim is released at the end.
    """
    stop = threading.Event()
    period = min(self.claim_timeout_s / 4, 60.0)

    def beat() -> None:
      while not stop.wait(period):
        self.refresh()

    thread = threading.Thread(target=beat, name='claims-heartbeat',
                              daemon=True)
    thread.start()
    try:
      yield
    finally:
      stop.set()
      thread.join()
      self.release_all()
