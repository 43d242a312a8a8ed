# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The benchmark's numbers: paired ratios, targets met or missed, notes.

Every ratio pairs two cases measured in the same round (`timing.paired_ratio`,
`timing.paired_median`); the cases are looked up by name
(`'<model>/jax/runner'`, `'<model>/torch/fused'`, `'matmul'`,
`'protocol/full'`, ...), and a ratio whose cases did not run is left out.

  >>> target('x >= 2', 2.5, 2.0, True, 'x')['margin']
  0.5
  >>> target('y <= 3%', None, 3.0, False, '%', 'not run')['met'] is None
  True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paramsel_jax.lab.benchmarks.config import BenchmarkConfig
from paramsel_jax.train.timing import Case
from paramsel_jax.train.timing import paired_median
from paramsel_jax.train.timing import paired_ratio

Cases = Mapping[str, Case]


def target(name: str, value: float | None, threshold: float,
           higher_is_better: bool, unit: str, why: str = '') -> dict[str, Any]:
  """A target, met or missed, with its margin; `value=None`: not measured."""
  if value is None:
    return {'target': name, 'value': None, 'threshold': threshold,
            'met': None, 'margin': None, 'note': why}
  met = value >= threshold if higher_is_better else value <= threshold
  margin = value - threshold if higher_is_better else threshold - value
  return {'target': name, 'value': value, 'threshold': threshold,
          'met': met, 'margin': margin, 'unit': unit, 'note': why}


def overhead_percent(case: Case, base: Case) -> float:
  """How much slower `case` ran than `base`, in % (paired over rounds).

  Example:
    >>> a = Case('a', 'a', lambda: None, steps=1, seconds=[1.1, 2.2])
    >>> b = Case('b', 'b', lambda: None, steps=1, seconds=[1.0, 2.0])
    >>> round(overhead_percent(a, b), 6)
    10.0
  """
  return 100 * (1 / paired_ratio(case, base) - 1)


def model_ratios(m: str, by_name: Cases, num_seeds: int) -> dict[str, float]:
  """One model's ratios: vs PyTorch, vs the bare loops, masked, seeds, stats."""
  get = lambda suffix: by_name.get(f'{m}/{suffix}')
  ratios = {}
  runner, bare = get('jax/runner'), get('jax/scan_adam')
  fused = get('torch/fused')
  for kind in ('default', 'fused'):
    t = get(f'torch/{kind}')
    if runner and t:
      ratios[f'{m}: Runner / PyTorch Adam {kind}'] = paired_ratio(runner, t)
  if bare and fused:
    ratios[f'{m}: bare loop / PyTorch Adam fused'] = paired_ratio(bare, fused)
  for other in ('scan_adam', 'step_loop'):
    o = get(f'jax/{other}')
    if runner and o:
      ratios[f'{m}: Runner / {other}'] = paired_ratio(runner, o)
  masked = get('jax/scan_masked')
  if masked and bare:
    ratios[f'{m}: masked overhead %'] = overhead_percent(masked, bare)
  vmap, lmap = get('seeds/vmap'), get('seeds/map')
  if vmap and lmap:
    ratios[f'{m}: {num_seeds} seeds vmap / map'] = paired_ratio(vmap, lmap)
  for which in ('all', 'topgrad'):
    st = get(f'jax/stats_{which}')
    if st and bare:
      ratios[f'{m}: {which} stats, extra cost per step %'] = overhead_percent(
          st, bare)
  return ratios


def peak_ratios(by_name: Cases) -> dict[str, float]:
  """LeNet-300-100's GFLOP/s as % of the matmul's, paired over rounds."""
  mm = by_name['matmul']
  frac = lambda c: 100 * paired_median(c.flop_rates, mm.flop_rates)
  return {
      'lenet300: Runner GFLOP/s / matmul peak %':
          frac(by_name['lenet300/jax/runner']),
      'lenet300: bare loop GFLOP/s / matmul peak %':
          frac(by_name['lenet300/jax/scan_adam']),
  }


def protocol_ratios(by_name: Cases, ratios: Mapping[str, float], model: str,
                    window: int, total_steps: int) -> dict[str, float]:
  """The protocol's overhead over its bare steps, and each part's share.

  Each part is a % of the bare steps' time in the same round (medians); the
  statistics' share is also predicted from the diagnose part's per-step cost
  (in `ratios`), as the fraction of steps in the two windows.
  """
  full, raw = by_name['protocol/full'], by_name['protocol/raw']
  share = lambda fn: 100 * paired_median(
      full.parts, raw.seconds, lambda p, r: fn(p, r) / r)
  out = {'protocol overhead %':
             100 * (paired_median(full.seconds, raw.seconds) - 1),
         'protocol overhead: stats %': share(lambda p, r: p['train'] - r)}
  for key in ('select', 'evaluate', 'other'):
    out[f'protocol overhead: {key} %'] = share(lambda p, r, key=key: p[key])
  out['protocol overhead without the evaluations %'] = share(
      lambda p, r: p['train'] - r + p['select'] + p['other'])
  in_window = 2 * window / total_steps
  for which in ('all', 'topgrad'):
    key = f'{model}: {which} stats, extra cost per step %'
    if key in ratios:
      out[f'protocol: stats overhead predicted from {which} stats %'] = (
          ratios[key] * in_window)
  return out


def targets(parts: Sequence[str], models: Sequence[str],
            ratios: Mapping[str, float], why_no_torch: str
            ) -> list[dict[str, Any]]:
  """The targets of the parts that ran, in a fixed order."""
  out = []
  if 'throughput' in parts:
    for m, name, kind, threshold in (
        ('lenet300', 'LeNet-300-100 Runner >= 2.0x PyTorch fused Adam',
         'fused', 2.0),
        ('lenet5', 'LeNet-5 Runner >= 1.0x PyTorch default Adam', 'default',
         1.0)):
      if m in models:
        r = ratios.get(f'{m}: Runner / PyTorch Adam {kind}')
        out.append(target(name, r, threshold, True, 'x',
                          '' if r is not None else why_no_torch))
  if 'peak' in parts:
    out.append(target('LeNet-300-100 Runner >= 60% of the matmul peak',
                      ratios['lenet300: Runner GFLOP/s / matmul peak %'],
                      60.0, True, '%'))
  for m in models:
    if f'{m}: masked overhead %' in ratios:
      out.append(target(f'{m}: masked(adam) overhead <= 3%',
                        ratios[f'{m}: masked overhead %'], 3.0, False, '%'))
  if 'protocol' in parts:
    out.append(target('protocol overhead <= 10%',
                      ratios['protocol overhead %'], 10.0, False, '%'))
  return out


def device_notes(torch_device: str | None, jax_backend: str,
                 why_no_torch: str) -> list[str]:
  """Why there are no PyTorch numbers, or that they ran on another device.

  Example:
    >>> device_notes('cuda', 'cpu', '')[0].split(':')[0]
    'JAX ran on cpu, PyTorch on cuda'
  """
  if torch_device is None:
    return [why_no_torch]
  if (torch_device == 'cpu') != (jax_backend == 'cpu'):
    return [f'JAX ran on {jax_backend}, PyTorch on {torch_device}: the '
            'PyTorch ratios compare two different devices, not two '
            'frameworks.']
  return []


def load_notes(env: Mapping[str, Any]) -> list[str]:
  """A warning when the machine was busy with other work.

  Example:
    >>> load_notes({'machine': {'load_average_start': 0.5,
    ...                         'load_average_end': 1.0, 'usable_cores': 2}})
    []
  """
  mach = env['machine']
  load = max(mach['load_average_start'], mach['load_average_end'])
  if not load >= mach['usable_cores']:
    return []
  return [f'the load average reached {load:.1f} on {mach["usable_cores"]} '
          'cores: other processes shared the cores, every rate here is lower '
          'than on an idle machine and the spread is wide; compare only the '
          'ratios, which pair variants measured in the same round.']


def assess(config: BenchmarkConfig, by_name: Cases, env: Mapping[str, Any],
           why_no_torch: str
           ) -> tuple[dict[str, float], list[dict[str, Any]], list[str]]:
  """Judges a run's timings: paired ratios, targets (met / missed) and notes."""
  ratios = {}
  for m in config.models:
    ratios.update(model_ratios(m, by_name, config.num_seeds))
  if 'peak' in config.parts:
    ratios.update(peak_ratios(by_name))
  if 'protocol' in config.parts:
    ratios.update(protocol_ratios(by_name, ratios, config.protocol_model,
                                  config.window, config.eta0 + config.eta1))
  mach = env['machine']
  notes = device_notes(mach.get('torch_device'), mach['jax_backend'],
                       why_no_torch) + load_notes(env)
  return (ratios, targets(config.parts, config.models, ratios, why_no_torch),
          notes)
