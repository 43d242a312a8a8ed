"""One job over several processes (hosts): `jax.distributed`, set up once.

The main job runs unchanged on one process; over several (a multi-host TPU
or GPU machine, a SLURM allocation, or a few local CPU processes) every
process runs the same program on the *global* device mesh: each holds its
own devices' shards of the state, and every host read of a sharded array
goes through `fetch`, which gathers it from all processes (a collective:
every process must call it, in the same order). Only the writer (process 0,
`is_writer`) writes files; every process prints its progress lines, those
of process i > 0 prefixed ``[process i]`` (`log_prefix`).

How the processes find each other (`Settings`, from the flags of
`define_flags` or the environment):

* ``--distributed=off`` (the default): one process; nothing to set up.
* ``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (all
  three, on every process; process 0 serves at that address), or
  ``--distributed=on`` with them in the environment as
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``.
* ``--distributed=auto``: `jax.distributed.initialize()` detects them on a
  Cloud TPU pod, under SLURM (``srun``) or Open MPI (``mpirun``).

On CPU the collectives run over gloo. If a process dies, the others stop
instead of hanging in a collective. A process i > 0 gone: within about
``--distributed_timeout`` seconds (a watchdog thread asks the coordination
service which processes are alive; a failed collective waits for it) the
others exit with status `PEER_GONE_STATUS` and a message naming it and
saying to rerun. Process 0 (the coordinator, which serves that service)
gone: jax's own client aborts the others at once with "Terminating process
because the JAX distributed service detected fatal errors. This most likely
indicates that another task died" (it cannot be intercepted from Python);
the line every process prints at start says what to do then. A process
whose Python code raises exits at once (so the others see it gone) rather
than waiting at jax's shutdown barrier.

  >>> s = settings('off', None, None, None, environ={})
  >>> s is None, process_count(), is_writer()
  (True, 1, True)
  >>> settings('off', '127.0.0.1:1234', 2, 1, environ={})[:3]
  ('127.0.0.1:1234', 2, 1)
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import traceback
from typing import Any, Callable, Mapping, NamedTuple

import jax
from jax.experimental import multihost_utils
import numpy as np

MODES = ('off', 'on', 'auto')
DEFAULT_TIMEOUT_S = 30
ENV_NAMES = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')
# The exit status of a process that stops because another one is gone.
PEER_GONE_STATUS = 3

_ADDRESS = re.compile(r'^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d+)$')


class Settings(NamedTuple):
  """How this process joins the job (`settings`).

  ``auto``: let `jax.distributed.initialize` detect the rest (TPU pod,
  SLURM, Open MPI); the three others are then None. ``timeout_s``: the
  coordination service's heartbeat timeout, and so about how long the
  others take to stop when a process dies.
  """

  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  auto: bool = False
  timeout_s: int = DEFAULT_TIMEOUT_S


def _int(name: str, value: Any) -> int:
  try:
    return int(str(value).strip())
  except ValueError:
    raise ValueError(f'{name}={value!r}; accepted: an integer.') from None


def settings(mode: str, coordinator_address: str | None,
             num_processes: int | str | None, process_id: int | str | None,
             timeout_s: int = DEFAULT_TIMEOUT_S,
             environ: Mapping[str, str] | None = None) -> Settings | None:
  """The checked `Settings` of the flags (None: one process, nothing to do).

  Any of `coordinator_address`, `num_processes`, `process_id` given means
  all three (and `mode` 'off' or 'on'); `mode='on'` alone reads them from
  `environ` (`ENV_NAMES`; default `os.environ`); `mode='auto'` leaves them
  to jax's detection and takes none. Raises a ValueError naming the bad or
  missing value and what is accepted, before any work.

  Example:
    >>> settings('on', None, None, None, environ={
    ...     'JAX_COORDINATOR_ADDRESS': 'node0:9876', 'JAX_NUM_PROCESSES': '4',
    ...     'JAX_PROCESS_ID': '3'})[:3]
    ('node0:9876', 4, 3)
    >>> settings('auto', None, None, None).auto
    True
  """
  environ = os.environ if environ is None else environ
  if mode not in MODES:
    raise ValueError(f'--distributed={mode!r}; accepted: {", ".join(MODES)}.')
  if not (isinstance(timeout_s, int) and timeout_s >= 1):
    raise ValueError(f'--distributed_timeout={timeout_s!r}; accepted: an '
                     'integer number of seconds >= 1.')
  given = {'coordinator_address': coordinator_address,
           'num_processes': num_processes, 'process_id': process_id}
  named = {k: v for k, v in given.items() if v is not None}
  if mode == 'auto':
    if named:
      raise ValueError(
          f'--distributed=auto with --{", --".join(named)}; accepted: either '
          '--distributed=auto (jax detects the cluster: TPU pod, SLURM, Open '
          'MPI) or the three --coordinator_address, --num_processes, '
          '--process_id.')
    return Settings(None, None, None, auto=True, timeout_s=timeout_s)
  source = 'flags'
  if not named:
    if mode == 'off':
      return None
    source = 'environment'
    given = dict(zip(given, (environ.get(e) for e in ENV_NAMES)))
    named = {k: v for k, v in given.items() if v not in (None, '')}
  missing = [k for k in given if k not in named]
  if missing:
    if source == 'flags':
      what = ', '.join(f'--{k}' for k in missing)
      raise ValueError(
          f'--{", --".join(named)} given without {what}; accepted: all three '
          'of --coordinator_address=HOST:PORT, --num_processes=N, '
          '--process_id=I (0..N-1) on every process, or --distributed=auto.')
    what = ', '.join(e for k, e in zip(given, ENV_NAMES) if k in missing)
    raise ValueError(
        f'--distributed=on but {what} not set in the environment; accepted: '
        f'all three of {", ".join(ENV_NAMES)}, or the flags '
        '--coordinator_address, --num_processes, --process_id, or '
        '--distributed=auto.')
  address = str(given['coordinator_address']).strip()
  match = _ADDRESS.match(address)
  if not match or not 1 <= int(match.group(2)) <= 65535:
    raise ValueError(f'coordinator_address={address!r}; accepted: HOST:PORT '
                     '(the address of process 0, a port 1..65535 free there).')
  n = _int('num_processes', given['num_processes'])
  i = _int('process_id', given['process_id'])
  if n < 1:
    raise ValueError(f'num_processes={n}; accepted: an integer >= 1.')
  if not 0 <= i < n:
    raise ValueError(f'process_id={i} with num_processes={n}; accepted: '
                     f'0..{n - 1}, a different one on each process.')
  return Settings(address, n, i, auto=False, timeout_s=timeout_s)


def define_flags(flag_values: Any = None) -> Callable[[], Settings | None]:
  """Defines the flags of the module docstring; returns their reader.

  The reader returns `settings` of the flags (raising its ValueError); call
  it in ``main`` and pass the result to `initialize` (or call
  `initialize_from`, which does both).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FLAGS if flag_values is None else flag_values
  mode = flags.DEFINE_enum(
      'distributed', 'off', list(MODES),
      'off: one process; on: several, from --coordinator_address, '
      '--num_processes, --process_id or the environment (JAX_COORDINATOR_'
      'ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID); auto: jax detects them '
      '(Cloud TPU pod, SLURM, Open MPI).', flag_values=fv)
  address = flags.DEFINE_string(
      'coordinator_address', None, 'HOST:PORT of process 0 (several '
      'processes; give --num_processes and --process_id too).',
      flag_values=fv)
  count = flags.DEFINE_integer('num_processes', None,
                               'How many processes run the job.',
                               flag_values=fv)
  index = flags.DEFINE_integer('process_id', None,
                               'This process: 0..num_processes-1.',
                               flag_values=fv)
  timeout = flags.DEFINE_integer(
      'distributed_timeout', DEFAULT_TIMEOUT_S,
      'Seconds without a heartbeat after which a process counts as gone (the '
      'others then stop with a message).', flag_values=fv)

  def read() -> Settings | None:
    return settings(mode.value, address.value, count.value, index.value,
                    timeout.value)
  return read


_state: dict[str, Any] = {}


def initialize(s: Settings | None, log: Callable[[str], None] | None = None
               ) -> None:
  """Joins the job of `s` (None: one process, nothing done).

  Call it first in ``main``, before anything touches a device. On CPU the
  collectives use gloo. Starts the watchdog of the module docstring.
  """
  if s is None:
    return
  if jax.distributed.is_initialized():
    raise RuntimeError('distributed.initialize: already initialized.')
  # The CPU backend's collectives across processes (other backends bring
  # their own: NCCL, ICI); harmless where the CPU backend goes unused.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs: dict[str, Any] = dict(
      heartbeat_timeout_seconds=s.timeout_s,
      initialization_timeout=max(60, 4 * s.timeout_s))
  try:
    if s.auto:
      jax.distributed.initialize(**kwargs)
    else:
      jax.distributed.initialize(s.coordinator_address, s.num_processes,
                                 s.process_id, **kwargs)
  except (ValueError, TypeError, RuntimeError) as e:
    how = ('--distributed=auto found no cluster (Cloud TPU pod, SLURM, Open '
           'MPI) or could not use it' if s.auto else
           f'process {s.process_id} of {s.num_processes} could not join the '
           f'coordinator at {s.coordinator_address}')
    raise RuntimeError(f'{how}: {e}') from e
  _start_watchdog(s.timeout_s, log or _stderr)
  _exit_on_exception(s.timeout_s)
  if jax.process_index() > 0:
    sys.stdout = _Prefixed(sys.stdout, log_prefix())
  print(f'distributed: process {jax.process_index()} of '
        f'{jax.process_count()} ({jax.local_device_count()} of '
        f'{jax.device_count()} devices here); if one stops, the others stop '
        'too: then rerun the same command on every process.', flush=True)


class _Prefixed:
  """A text stream that starts each line with `prefix` (process i > 0)."""

  def __init__(self, stream: Any, prefix: str):
    self._stream, self._prefix, self._at_start = stream, prefix, True

  def write(self, text: str) -> int:
    for part in text.splitlines(keepends=True):
      if self._at_start:
        self._stream.write(self._prefix)
      self._stream.write(part)
      self._at_start = part.endswith('\n')
    return len(text)

  def __getattr__(self, name: str) -> Any:
    return getattr(self._stream, name)


def initialize_from(read: Callable[[], Settings | None]) -> None:
  """`initialize(read())`; a bad setting exits 2 with one line on stderr.

  `read`: the reader `define_flags` returned. For a script's ``main``.
  """
  prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
  try:
    s = read()
    initialize(s)
  except (ValueError, RuntimeError) as e:
    print(f'{prog}: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)


def _stderr(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _exit_on_exception(timeout_s: int) -> None:
  """An uncaught exception: its traceback, then exit 1 at once.

  Without it, the process would wait at jax's shutdown barrier for the
  others, which wait for it in their next collective. A failed collective
  (a peer's connection closed) first gives the watchdog up to `timeout_s`
  seconds to name the process that is gone.
  """
  def hook(kind, value, tb):
    text = str(value)
    if any(w in text for w in _PEER_ERRORS):
      stop = _state.get('watchdog')
      if stop is not None:
        stop.wait(timeout_s + 5)  # the watchdog exits first if a peer is gone.
    traceback.print_exception(kind, value, tb)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
  sys.excepthook = hook


# What a collective's error says when another process is gone.
_PEER_ERRORS = ('Gloo', 'Connection closed by peer', 'Connection reset',
                'UNAVAILABLE', 'coordination service')


def _peer_gone(lost: list[int]) -> None:
  """Says which processes are gone and exits (`PEER_GONE_STATUS`)."""
  stop, log = _state['watchdog'], _state['log']
  if stop.is_set():  # this process is exiting anyway.
    return
  me, n, timeout_s = _state['me'], _state['n'], _state['timeout_s']
  who = ' and '.join(f'process {p}' + (' (the coordinator)' if p == 0 else '')
                     for p in lost)
  log(f'[process {me}] error: {who} is gone (killed, crashed or unreachable: '
      f'no heartbeat for {timeout_s} s, or its connection closed); stopping '
      f'this process too. Rerun the same command on all {n} processes: with '
      '--checkpoint_every it resumes from the last checkpoint.')
  sys.stdout.flush()
  os._exit(PEER_GONE_STATUS)


def _start_watchdog(timeout_s: int, log: Callable[[str], None]) -> None:
  """Polls the live processes; on a loss, says which and exits.

  The coordination service counts a process as gone when its heartbeats
  stop for `timeout_s`; the coordinator's own death shows as failed
  requests. Exits with `PEER_GONE_STATUS`.
  """
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  client: Any = jax_distributed.global_state.client
  n = jax.process_count()
  stop = threading.Event()
  _state.update(watchdog=stop, log=log, me=jax.process_index(), n=n,
                timeout_s=timeout_s)

  def watch() -> None:
    failures = 0
    while not stop.wait(1.0):
      try:
        live = client.get_live_nodes(list(range(n)))
        failures = 0
      except Exception:  # pylint: disable=broad-except
        failures += 1  # the coordinator (process 0) does not answer.
        if failures >= 3 and jax.process_index() != 0:
          _peer_gone([0])
        continue
      lost = sorted(set(range(n)) - set(live))
      if lost:
        _peer_gone(lost)

  thread = threading.Thread(target=watch, name='distributed-watchdog',
                            daemon=True)
  thread.start()
  atexit.register(stop.set)  # runs before jax's own shutdown (LIFO).


def process_index() -> int:
  """This process's index, 0..process_count()-1 (0 on one process)."""
  return jax.process_index()


def process_count() -> int:
  """How many processes run the job (1 unless `initialize` joined one)."""
  return jax.process_count()


def is_writer() -> bool:
  """Whether this process writes the job's files: process 0 only."""
  return jax.process_index() == 0


def log_prefix() -> str:
  """'' on process 0, '[process i] ' on the others (their progress lines)."""
  i = jax.process_index()
  return '' if i == 0 else f'[process {i}] '


def fetch(x: Any) -> np.ndarray:
  """A host numpy copy of `x`, gathered from every process when needed.

  A global array some of whose shards live on other processes is gathered
  with `multihost_utils.process_allgather` (a collective: every process
  must call `fetch` on it, in the same order); anything else is
  `np.asarray(x)`.

  Example:
    >>> import jax.numpy as jnp
    >>> fetch(jnp.arange(3)).tolist()
    [0, 1, 2]
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def fetch_tree(tree: Any) -> Any:
  """`fetch` of every leaf of a pytree (host numpy leaves).

  Example:
    >>> import jax.numpy as jnp
    >>> fetch_tree({'a': jnp.ones(2)})['a'].tolist()
    [1.0, 1.0]
  """
  return jax.tree.map(fetch, tree)


def sync(name: str) -> None:
  """Waits until every process gets here (nothing on one process).

  Example:
    >>> sync('doctest')
  """
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
