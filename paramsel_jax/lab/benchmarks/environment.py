# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Where a benchmark ran: the date, the machine, its load and the versions.

A rate means little without the machine, its load and the versions that
produced it (PyTorch's rate moved ~2x between builds, PERF_NOTES.md), so
every results file records them.

  >>> env = timing_environment()
  >>> sorted(env), env['versions']['torch'] is None
  (['date', 'machine', 'versions'], True)
"""

from __future__ import annotations

import os
import platform
from typing import Any

import jax

from paramsel_jax.lab import experiment

_VERSIONS = ('python', 'jax', 'jaxlib', 'flax', 'optax', 'numpy')


def usable_cores() -> int:
  """The cores this process may run on (its affinity), at least 1.

  Example:
    >>> usable_cores() >= 1
    True
  """
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def load_average() -> float:
  """The 1-minute load average (NaN where the OS has none)."""
  return os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')


def cpu_name() -> str:
  """The CPU's model name (from /proc/cpuinfo where there is one)."""
  cpu = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  except OSError:
    pass
  return cpu


def timing_environment() -> dict[str, Any]:
  """Date, machine (with the load average now) and versions.

  The date and versions are `experiment.environment`'s (one place says
  which versions are recorded); the machine part adds what a rate depends
  on: cores, load, CPU and device.

  Returns:
    `{'date', 'machine', 'versions'}`; `versions['torch']` is None (see
    `torch_ref.describe` to add PyTorch's).
  """
  run = experiment.environment()
  device = jax.devices()[0]
  return {
      'date': run['date'],
      'machine': {'cores': os.cpu_count(), 'usable_cores': usable_cores(),
                  'load_average_start': load_average(),
                  'cpu': cpu_name(), 'platform': platform.platform(),
                  'jax_backend': run['backend'],
                  'device': getattr(device, 'device_kind', str(device)),
                  'device_count': jax.device_count()},
      'versions': {**{k: run[k] for k in _VERSIONS}, 'torch': None},
  }


def file_stamp(date: str) -> str:
  """An ISO date as a file-name part.

  Example:
    >>> file_stamp('2026-11-28T10:20:30+00:00')
    '20261128T102030Z'
  """
  return date.replace(':', '').replace('-', '').replace('+0000', 'Z')
