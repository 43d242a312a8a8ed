# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Unpickling that builds numpy arrays and plain containers, nothing else.

Both pickled sources (MNIST's ``mnist.pkl.gz``, CIFAR-10's batches) hold only
arrays, lists, dicts and strings; refusing every other class keeps a damaged
or hostile file from running code.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, IO


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays, lists, dicts and strings, and nothing else."""

  _ALLOWED = {
      ('numpy.core.multiarray', '_reconstruct'),
      ('numpy._core.multiarray', '_reconstruct'),
      ('numpy.core.numeric', '_frombuffer'),
      ('numpy._core.numeric', '_frombuffer'),
      ('numpy', 'ndarray'),
      ('numpy', 'dtype'),
      ('_codecs', 'encode'),
  }

  def find_class(self, module: str, name: str) -> Any:
    """The allowed class or function; UnpicklingError for any other."""
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'refusing to unpickle {module}.{name}')
    if module.startswith('numpy.core.'):
      module = 'numpy._core.' + module.removeprefix('numpy.core.')
    try:
      return super().find_class(module, name)
    except ImportError:  # numpy < 2 has no numpy._core.
      return super().find_class(module.replace('numpy._core.', 'numpy.core.'),
                                name)


def unpickle(stream: IO[bytes] | io.BufferedIOBase, encoding: str) -> Any:
  """The object pickled in ``stream``, if it holds only numpy and builtins.

  Args:
    stream: a binary file object.
    encoding: how to decode Python 2 strings (``'latin1'``, ``'bytes'``).

  Returns:
    The unpickled object.

  Raises:
    pickle.UnpicklingError: the pickle names any other class or function.

  Example:
    >>> import io, pickle
    >>> import numpy as np
    >>> unpickle(io.BytesIO(pickle.dumps({'x': np.arange(2)})), 'bytes')
    {'x': array([0, 1])}
    >>> unpickle(io.BytesIO(pickle.dumps(print)), 'bytes')
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: refusing to unpickle builtins.print
  """
  return _NumpyOnlyUnpickler(stream, encoding=encoding).load()
