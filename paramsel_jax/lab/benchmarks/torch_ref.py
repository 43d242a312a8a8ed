# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The optional PyTorch reference: the same models, batches and Adam, eager.

PyTorch is optional (`pip install -e '.[bench]'`): `load_torch` imports it
only when asked and says why there is none otherwise, so nothing here needs
it at import. It runs on CUDA when it has a GPU, otherwise on the CPU with
one thread per usable core (or as many as asked).

Its CPU ops run on OpenMP threads that spin while they wait; on a busy CPU
(load average >= cores) that collapses (50x slower measured), so the 'auto'
wait policy sets `OMP_WAIT_POLICY=PASSIVE` there; it must be set before
torch is imported.

  >>> load_torch(use_torch=False).why_not
  'PyTorch not used (--nouse_torch)'
"""

from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple

import numpy as np

from paramsel_jax.lab.benchmarks import environment as env_lib
from paramsel_jax.train.timing import Case

PyTree = Any
TORCH_MODELS = ('lenet300', 'lenet5')  # The models with a PyTorch twin.
OMP_WAIT_POLICIES = ('auto', 'passive', 'active', 'unset')
NOT_INSTALLED = ("PyTorch is not installed: the PyTorch columns are skipped "
                 "(install it with: pip install -e '.[bench]')")


def set_omp_wait_policy(policy: str) -> str:
  """Sets OMP_WAIT_POLICY for PyTorch's OpenMP threads; says what it did.

  PyTorch's CPU ops run on OpenMP threads that, by default, spin while they
  wait. On an oversubscribed machine (more runnable threads than cores) the
  spinning threads steal the cores the working ones need: on a 2-core
  machine at a load average of ~12, LeNet-300-100 with fused Adam ran 5
  steps/s with the default policy, 240 with PASSIVE, 40-70 with one thread.
  'auto' sets PASSIVE only when the 1-minute load average is at least the
  number of usable cores. It must run before torch is imported.

  Args:
    policy: one of `OMP_WAIT_POLICIES`.

  Returns:
    The policy in effect, in words.
  """
  current = os.environ.get('OMP_WAIT_POLICY')
  if 'torch' in sys.modules:
    return f'{current or "unset"} (torch already imported; not changed)'
  if policy == 'auto':
    if current is not None:
      return f'{current} (from the environment)'
    load, cores = env_lib.load_average(), env_lib.usable_cores()
    if not load >= cores:
      return f'unset, OpenMP default (load average {load:.1f})'
    os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'
    return (f'PASSIVE (auto: load average {load:.1f} >= {cores} '
            'cores; spinning OpenMP threads would starve each other)')
  if policy == 'unset':
    os.environ.pop('OMP_WAIT_POLICY', None)
    return 'unset, OpenMP default'
  os.environ['OMP_WAIT_POLICY'] = policy.upper()
  return policy.upper()


class Torch(NamedTuple):
  """PyTorch as loaded: the module or None, why not, the OpenMP policy."""

  module: Any
  why_not: str
  omp_policy: str | None


def load_torch(use_torch: bool = True, omp_wait_policy: str = 'auto',
               threads: int = 0) -> Torch:
  """Imports PyTorch (if asked and installed) after setting its thread policy.

  Args:
    use_torch: False: do not import it.
    omp_wait_policy: one of `OMP_WAIT_POLICIES` (see `set_omp_wait_policy`).
    threads: CPU threads; 0: one per usable core.
  """
  if not use_torch:
    return Torch(None, 'PyTorch not used (--nouse_torch)', None)
  policy = set_omp_wait_policy(omp_wait_policy)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return Torch(None, NOT_INSTALLED, None)
  torch.set_num_threads(threads or env_lib.usable_cores())
  return Torch(torch, '', policy)


def torch_device(torch: Any) -> str:
  """'cuda' when PyTorch has a GPU, else 'cpu'."""
  return 'cuda' if torch.cuda.is_available() else 'cpu'


def torch_label(torch: Any) -> str:
  """Where PyTorch runs, for a table: 'PyTorch cuda' or its CPU threads."""
  dev = torch_device(torch)
  return (f'PyTorch {dev}' if dev == 'cuda' else
          f'PyTorch cpu, {torch.get_num_threads()} threads')


def describe(env: dict[str, Any], torch: Torch) -> None:
  """Adds PyTorch's version, device, threads and OpenMP policy to `env`."""
  machine = env['machine']
  if torch.module is not None:
    env['versions']['torch'] = torch.module.__version__
    machine['torch_device'] = torch_device(torch.module)
    machine['torch_threads'] = torch.module.get_num_threads()
  machine['omp_wait_policy'] = torch.omp_policy


def _tensor(torch: Any, a: Any) -> Any:
  return torch.from_numpy(np.array(a, np.float32))


def _lenet300(torch: Any, params: PyTree) -> tuple[Any, list, list, list]:
  nn = torch.nn
  dense = [params[f'Dense_{i}'] for i in range(3)]
  net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(),
                      nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
  kernels = [np.asarray(d['kernel']) for d in dense]
  return net, [net[1], net[3], net[5]], kernels, dense


def _lenet5(torch: Any, params: PyTree) -> tuple[Any, list, list, list]:
  nn = torch.nn
  t = lambda a: _tensor(torch, a)
  net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2),
                      nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
  for conv, key in ((net[0], 'Conv2D_0'), (net[2], 'Conv2D_1')):
    with torch.no_grad():
      kernel = np.asarray(params[key]['kernel'])  # HWIO → OIHW.
      conv.weight.copy_(t(kernel.transpose(3, 2, 0, 1)))
      conv.bias.copy_(t(params[key]['bias']))
  dense = [params['Dense_0'], params['Dense_1']]
  k0 = np.asarray(dense[0]['kernel'])  # rows: (h, w, c), 4 x 4 x 50.
  k0 = k0.reshape(4, 4, 50, -1).transpose(2, 0, 1, 3).reshape(800, -1)
  return net, [net[5], net[7]], [k0, np.asarray(dense[1]['kernel'])], dense


def torch_model(torch: Any, name: str, params: PyTree) -> Any:
  """The PyTorch twin of a flax model, with the flax initial weights copied.

  NCHW layouts: conv kernels HWIO → OIHW, dense kernels (in, out) → (out,
  in), and LeNet-5's first dense kernel has its rows permuted from the
  NHWC flattening order to the NCHW one.
  """
  builders = {'lenet300': _lenet300, 'lenet5': _lenet5}
  if name not in builders:
    raise ValueError(f'No PyTorch twin of {name!r}; accepted: '
                     f'{", ".join(TORCH_MODELS)}.')
  net, linears, kernels, dense = builders[name](torch, params)
  with torch.no_grad():
    for linear, kernel, d in zip(linears, kernels, dense):
      linear.weight.copy_(_tensor(torch, kernel.T))
      linear.bias.copy_(_tensor(torch, d['bias']))
  return net


def torch_case(torch: Any, name: str, label: str, model_name: str,
               params: PyTree, learning_rate: float, num_steps: int,
               batches: tuple[np.ndarray, np.ndarray],
               fused: bool) -> tuple[Case, float]:
  """Eager PyTorch training: Adam (default or fused), pre-made batches.

  Step `i` of a call takes batch `i % len(batches)` (uint8 NHWC images and
  labels, as `cases.fixed_batches` makes them).

  Returns:
    The case and the loss of the first batch at the initial weights (to
    check that the twin computes what the flax model computes).
  """
  device = torch_device(torch)
  net = torch_model(torch, model_name, params).to(device)
  opt = torch.optim.Adam(net.parameters(), lr=learning_rate, fused=fused)
  xs = torch.from_numpy(np.ascontiguousarray(
      batches[0].transpose(0, 1, 4, 2, 3))).to(device)  # NHWC → NCHW
  ys = torch.from_numpy(batches[1].astype(np.int64)).to(device)
  device_batches = [(xs[i], ys[i]) for i in range(xs.shape[0])]
  loss_fn = torch.nn.functional.cross_entropy
  with torch.no_grad():
    x, y = device_batches[0]
    first_loss = float(loss_fn(net(x.float() / 255.0), y))

  def run():
    for i in range(num_steps):
      x, y = device_batches[i % len(device_batches)]
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(net(x.float() / 255.0), y)
      loss.backward()
      opt.step()
    loss.item()  # waits (CUDA).

  batch_size = batches[0].shape[1]
  return (Case(name, label, run, num_steps, num_steps * batch_size),
          first_loss)
