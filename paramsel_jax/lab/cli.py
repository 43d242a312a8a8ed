"""Command-line plumbing shared by the scripts in `experiments/`.

Scripts declare their flags at import (absl), read them only in `main`, turn
them into plain config objects and call the library. This module holds what
every script needs for that and would otherwise repeat:

* `fail`: one clear line on stderr and exit status 2 (not a traceback, not
  the flag help);
* `run(main)`: `absl.app.run` with a quiet start (no alarming backend log
  lines);
* `config_or_exit(build)`: builds and validates a config, turning the first
  `ValueError` into that one line, before any data is loaded, then prints
  the backend and devices once (`backend_line`);
* `as_flags(names)`: re-raises a config's `ValueError` with its field names
  (`threshold=nan`) written as the flags the user typed
  (`--freeze_threshold=nan`);
* `parse_count`: the count-or-fraction rule of `k` and `l` as typed on a
  command line (see `paramsel_jax.select.selectors.resolve_count`);
* `ints`, `floats`, `bools`: comma-separated lists with messages naming the
  flag;
* `define_run_dir`: ``--workdir`` (``--output_dir``, its deprecated name),
  ``--checkpoint_every`` and ``--keep_checkpoints``, the same in every script.

  >>> parse_count('500'), parse_count('0.1'), parse_count('1.0'), parse_count('5%')
  (500, 0.1, 1.0, 0.05)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
from typing import Callable, Iterator, Mapping, NamedTuple, NoReturn, Sequence, TypeVar

from absl import app
from absl import flags
from absl import logging as absl_logging
import jax

T = TypeVar('T')

_INT = re.compile(r'^[+-]?\d+$')


def prog() -> str:
  """The running script's name, for messages."""
  return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'paramsel_jax'


def quiet_jax_logs() -> None:
  """Silences jax's INFO lines at backend start-up.

  On a machine without a TPU, jax logs "Unable to initialize backend 'tpu'"
  at INFO level when it starts, which reads like an error; `config_or_exit`
  prints the backend used instead (`backend_line`). Warnings and errors
  still show.
  """
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)


def backend_line() -> str:
  """The backend and devices jax uses, in one plain line.

  Example:
    >>> backend_line().startswith('backend: ')
    True
  """
  devices = jax.devices()
  kinds = sorted({d.device_kind for d in devices})
  return (f'backend: {jax.default_backend()}, {len(devices)} '
          f'{"device" if len(devices) == 1 else "devices"} '
          f'({", ".join(kinds)}), {jax.process_count()} '
          f'{"process" if jax.process_count() == 1 else "processes"}')


_announced: list[bool] = []


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)` with a quiet start (`quiet_jax_logs`).

  absl's INFO lines (orbax logs every checkpoint it saves at INFO) are shown
  only when ``--verbosity`` is given; warnings and errors always are.
  """
  quiet_jax_logs()

  def quiet_main(argv: list[str]) -> None:
    if not flags.FLAGS['verbosity'].present:
      absl_logging.set_verbosity(absl_logging.WARNING)
    main(argv)
  app.run(quiet_main)


def fail(message: str, status: int = 2) -> NoReturn:
  """Prints `<script>: error: <message>` on stderr and exits."""
  print(f'{prog()}: error: {message}', file=sys.stderr, flush=True)
  sys.exit(status)


def config_or_exit(build: Callable[[], T]) -> T:
  """`build()`, or one line on stderr and exit 2 if it raises ValueError.

  Call it in `main` on the function that reads the flags and validates the
  config, so that a bad value is answered before any work starts; errors
  raised later (during the run) keep their tracebacks.
  """
  try:
    config = build()
  except ValueError as e:
    fail(str(e))
  if not _announced:  # The first valid config: say once what runs it.
    _announced.append(True)
    print(backend_line(), flush=True)
  return config


def flag_message(message: str, names: Mapping[str, str]) -> str:
  """`message` with each `field=value` of `names` written as `--flag=value`.

  A config names its fields (`threshold=nan`); on a command line the user
  typed a flag (`--freeze_threshold=nan`). `names` maps a config field to its
  flag. A quoted value loses its quotes (`--freezeout_schedule=cubic`), a
  class name before the field goes (`OnlineConfig.check_every=0`), and a
  field followed by a quoted value (`criterion 'autofreeze'`) is written as
  the flag too. A key with its class (`'TrainConfig.steps'`) names the field
  of that class only, for fields of the same name in two configs; list it
  before the bare name.

  >>> flag_message('threshold=nan; accepted: a finite float > 0.',
  ...              {'threshold': 'freeze_threshold'})
  '--freeze_threshold=nan; accepted: a finite float > 0.'
  >>> flag_message('OnlineConfig.check_every=0; accepted: an int >= 1.',
  ...              {'check_every': 'check_every'})
  '--check_every=0; accepted: an int >= 1.'
  >>> flag_message('TrainConfig.steps=0; accepted: an int >= 1.',
  ...              {'TrainConfig.steps': 'retrain_steps', 'steps': 'steps'})
  '--retrain_steps=0; accepted: an int >= 1.'
  >>> flag_message("criterion 'freezeout' freezes whole layers; accepted: "
  ...              "granularity='layer'.", {'criterion': 'freeze',
  ...                                      'granularity': 'granularity'})
  '--freeze=freezeout freezes whole layers; accepted: --granularity=layer.'
  """
  for field, flag in names.items():
    owner = '' if '.' in field else r'(?:[A-Z]\w*\.)?'
    pattern = (rf"(?<![\w.'-]){owner}{re.escape(field)}(?:=| (?='))"
               r"('([^']*)'|[^\s;,)]+)")
    message = re.sub(pattern, functools.partial(_as_flag, flag), message)
  return message


def _as_flag(flag: str, match: re.Match[str]) -> str:
  value = match.group(2) if match.group(2) is not None else match.group(1)
  return f'--{flag}={value}'



@contextlib.contextmanager
def as_flags(names: Mapping[str, str]) -> Iterator[None]:
  """Re-raises a `ValueError` with `flag_message(str(error), names)`.

  Wrap the making of a config from flags in it, so that the config's own
  checks (one home for each) answer in the flags' names:

  >>> with as_flags({'max_frozen': 'max_frozen'}):
  ...   raise ValueError('max_frozen=1.5; accepted: a fraction in (0, 1].')
  Traceback (most recent call last):
  ...
  ValueError: --max_frozen=1.5; accepted: a fraction in (0, 1].
  """
  try:
    yield
  except ValueError as e:
    raise ValueError(flag_message(str(e), names)) from None


def or_default(value: T | None, default: T) -> T:
  """`value`, or `default` when the flag was left at None (auto).

  Not `value or default`: a typed `--steps=0` must reach the config's check,
  not turn into the default.

  >>> or_default(0, 4000), or_default(None, 4000)
  (0, 4000)
  """
  return default if value is None else value


def check_no_arguments(argv: Sequence[str]) -> None:
  """Exits with one line when positional arguments were given."""
  if len(argv) > 1:
    fail(f'unexpected arguments {list(argv[1:])}; every setting is a --flag '
         '(--helpshort lists them).')


def parse_count(text: str, name: str = 'k') -> int | float:
  """A count (an integer: `500`) or a fraction of N (`0.1`, `1.0`, `10%`).

  An integer literal is a count of coordinates; anything with a decimal
  point or an exponent is a fraction of N, so `1.0` means all of them and
  `1` means one. `%` divides by 100. The range is checked later, against N.
  """
  text = text.strip()
  try:
    if text.endswith('%'):
      return float(text[:-1]) / 100.0
    if _INT.match(text):
      return int(text)
    return float(text)
  except ValueError:
    raise ValueError(f'--{name}={text!r} is not a number; accepted: a count '
                     f'(an integer such as 500) or a fraction of N (0.1, '
                     f'1.0 = all, 10%).') from None


def counts(values: Sequence[str], name: str) -> tuple[int | float, ...]:
  """`parse_count` over a comma-separated flag; at least one value."""
  if not values:
    raise ValueError(f'--{name} is empty; give at least one count or fraction.')
  return tuple(parse_count(v, name) for v in values)


def ints(values: Sequence[str], name: str) -> tuple[int, ...]:
  """Integers from a comma-separated flag."""
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f'--{name}={",".join(values)}; accepted: integers.'
                     ) from None


def floats(values: Sequence[str], name: str) -> tuple[float, ...]:
  """Numbers from a comma-separated flag."""
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise ValueError(f'--{name}={",".join(values)}; accepted: numbers.'
                     ) from None


def named_floats(values: Sequence[str], name: str,
                 accepted: Sequence[str]) -> dict[str, float]:
  """`name=number` pairs from a comma-separated flag, names from `accepted`.

  >>> named_floats(['psgld=3', 'apf=0.4'], 'thresholds', ('apf', 'psgld'))
  {'psgld': 3.0, 'apf': 0.4}
  """
  out = {}
  for v in values:
    key, sep, number = v.partition('=')
    try:
      if not sep or key not in accepted:
        raise ValueError
      out[key] = float(number)
    except ValueError:
      raise ValueError(f'--{name} contains {v!r}; accepted: NAME=NUMBER '
                       f'entries, NAME one of {", ".join(accepted)}.'
                       ) from None
  return out


_TRUE, _FALSE = ('1', 'true', 'yes', 'on'), ('0', 'false', 'no', 'off')


def bools(values: Sequence[str], name: str) -> tuple[bool, ...]:
  """Booleans (1/0, true/false, yes/no, on/off) from a comma-separated flag."""
  out = []
  for v in values:
    if v.strip().lower() in _TRUE:
      out.append(True)
    elif v.strip().lower() in _FALSE:
      out.append(False)
    else:
      raise ValueError(f'--{name} contains {v!r}; accepted: 1 or 0 (also '
                       'true/false, yes/no, on/off) per entry.')
  return tuple(out)


class RunDir(NamedTuple):
  """Where a script's run lives: its ``--workdir`` and checkpoint settings.

  ``checkpoint_every``: save every this many steps (0: no checkpoints);
  ``keep``: checkpoints kept per phase. Checkpoints go under
  ``checkpoint_dir``.
  """

  workdir: str
  checkpoint_every: int
  keep: int

  @property
  def checkpoint_dir(self) -> str:
    """``<workdir>/checkpoints``."""
    return os.path.join(self.workdir, 'checkpoints')


def define_run_dir(default_workdir: str | None,
                   help_workdir: str = 'Where the results (and checkpoints) go.',
                   flag_values: flags.FlagValues = flags.FLAGS,
                   checkpoints: bool = True) -> Callable[[], RunDir]:
  """Defines the run-directory flags; returns their reader.

  The flags: ``--workdir`` (and its deprecated name ``--output_dir``),
  ``--checkpoint_every`` and ``--keep_checkpoints``.
  Every script names its output directory ``--workdir`` (the flax examples'
  name); ``--output_dir`` is still accepted, with a deprecation line on
  stderr; giving both with different values is an error (`fail`). Call the
  reader in ``main``. `flag_values`: where they are declared (a test passes
  its own). `checkpoints=False`: a script that does not checkpoint yet; its
  reader refuses ``--checkpoint_every`` > 0 with one line.
  """
  workdir = flags.DEFINE_string('workdir', default_workdir, help_workdir,
                                flag_values=flag_values)
  output_dir = flags.DEFINE_string(
      'output_dir', None, 'Deprecated: the old name of --workdir.',
      flag_values=flag_values)
  every = flags.DEFINE_integer(
      'checkpoint_every', 0, 'Save a checkpoint every this many steps under '
      '<workdir>/checkpoints, and resume from it when the same command runs '
      'again; 0: no checkpoints.', lower_bound=0, flag_values=flag_values)
  keep = flags.DEFINE_integer('keep_checkpoints', 3,
                              'Checkpoints kept per phase.', lower_bound=1,
                              flag_values=flag_values)

  def read() -> RunDir:
    path = resolve_workdir(workdir.value, output_dir.value,
                           workdir.present > 0)
    if path is None:
      fail('--workdir is not set; accepted: a directory path.')
    if every.value and not checkpoints:
      fail(f'--checkpoint_every={every.value}: {prog()} does not save '
           'checkpoints yet; accepted: 0.')
    return RunDir(path, every.value, keep.value)
  return read


def resolve_workdir(workdir: str | None, output_dir: str | None,
                    workdir_given: bool) -> str | None:
  """``--workdir``, or the deprecated ``--output_dir`` (with a note).

  Example:
    >>> resolve_workdir('results', None, False)
    'results'
    >>> resolve_workdir('results', 'out', False)
    'out'
  """
  if output_dir is None:
    return workdir
  print(f'{prog()}: --output_dir is deprecated; use --workdir={output_dir} '
        '(the same meaning).', file=sys.stderr, flush=True)
  if workdir_given and workdir != output_dir:
    fail(f'--workdir={workdir} and --output_dir={output_dir} differ; accepted: '
         '--workdir alone (--output_dir is its deprecated name).')
  return output_dir
