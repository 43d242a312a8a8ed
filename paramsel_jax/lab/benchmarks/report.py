# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The benchmark's text: tables of cases, ratios and targets, and notes.

Every table goes through the project's one formatter,
`paramsel_jax.report.format_table`. `cases_table`, `ratios_table` and
`targets_table` serve any benchmark built on `timing.Case`; the rest words
this benchmark's header, FLOP counts and protocol overhead.

  >>> c = Case('a', 'a variant', lambda: None, steps=10, first_s=1.5,
  ...          seconds=[0.5, 1.0])
  >>> print(cases_table([c]))  # doctest: +NORMALIZE_WHITESPACE
  variant    steps/s  min-max  examples/s  GFLOP/s  steps/call  compile s
  ---------  -------  -------  ----------  -------  ----------  ---------
  a variant  15.0     10-20    -           -        10          0.75
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import statistics
from typing import Any

from paramsel_jax import report as report_lib
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.lab.benchmarks.protocol_cases import ProtocolInfo
from paramsel_jax.lab.benchmarks.config import BenchmarkConfig
from paramsel_jax.train.timing import Case

CASES_NOTE = ('  (matmul rows: "steps" are matmuls; seeds rows: seed-steps; '
              'compile s = first call minus a median call: tracing and '
              'compilation for JAX, warm-up for PyTorch; GFLOP/s: the exact '
              'matmul FLOPs below.)')


def case_row(c: Case) -> tuple[str, ...]:
  """A case's median rate, spread, examples/s, GFLOP/s, steps, compile s."""
  ex = (f'{statistics.median(c.examples / s for s in c.seconds):,.0f}'
        if c.examples else '-')
  gflops = (f'{statistics.median(c.flop_rates) / 1e9:.1f}' if c.flops
            else '-')
  return (c.label, f'{c.median_rate:.1f}',
          f'{min(c.rates):.0f}-{max(c.rates):.0f}', ex, gflops, f'{c.steps}',
          f'{c.compile_s:.2f}')


def cases_table(cases: Sequence[Case]) -> str:
  """One row per case (`case_row`), in order."""
  return report_lib.format_table(
      ('variant', 'steps/s', 'min-max', 'examples/s', 'GFLOP/s', 'steps/call',
       'compile s'), [case_row(c) for c in cases])


def ratios_table(ratios: Mapping[str, float]) -> str:
  """The ratios, three decimals.

  Example:
    >>> print(ratios_table({'a / b': 2.0}))
    ratio (median of per-round ratios)  value
    ----------------------------------  -----
    a / b                               2.000
  """
  return report_lib.format_table(
      ('ratio (median of per-round ratios)', 'value'),
      [(k, f'{v:.3f}') for k, v in ratios.items()])


def targets_table(targets: Sequence[Mapping[str, Any]]) -> str:
  """Each target measured / met or MISSED / margin ('' when there are none).

  Example:
    >>> print(targets_table([{'target': 'x >= 2', 'value': 2.5, 'met': True,
    ...                       'margin': 0.5, 'unit': 'x'}]))
    target  measured  status  margin
    ------  --------  ------  -------------
    x >= 2  2.50x     met     margin +0.50x
  """
  rows = []
  for t in targets:
    if t['met'] is None:
      rows.append((t['target'], '-', 'not measured', 'see the note below'))
      continue
    unit = t['unit']
    rows.append((t['target'], f'{t["value"]:.2f}{unit}',
                 'met' if t['met'] else 'MISSED',
                 f'margin {t["margin"]:+.2f}{unit}'))
  if not rows:
    return ''
  return report_lib.format_table(('target', 'measured', 'status', 'margin'),
                                 rows)


def _torch_part(env: Mapping[str, Any]) -> str | None:
  mach = env['machine']
  if not env['versions']['torch']:
    return None
  return (f'torch {env["versions"]["torch"]} on {mach["torch_device"]} '
          f'({mach["torch_threads"]} threads, OMP_WAIT_POLICY '
          f'{mach["omp_wait_policy"]})')


def start_line(env: Mapping[str, Any], why_no_torch: str) -> str:
  """The first line of a run: date, machine, load, JAX and PyTorch."""
  mach = env['machine']
  return (f'{env["date"]}  {mach["cpu"]}, {mach["usable_cores"]} usable '
          f'cores, load average {mach["load_average_start"]:.1f}; jax '
          f'{env["versions"]["jax"]} on {mach["jax_backend"]} '
          f'({mach["device"]}); ' + (_torch_part(env) or why_no_torch))


def header(config: BenchmarkConfig, env: Mapping[str, Any]) -> str:
  """The tables' title line: date, machine, load, versions, settings."""
  mach = env['machine']
  return (f'Benchmark {env["date"]}: {mach["cpu"]} ({mach["usable_cores"]} '
          f'usable cores, load average {mach["load_average_start"]:.1f} at '
          f'the start, {mach["load_average_end"]:.1f} at the end), jax '
          f'{env["versions"]["jax"]} on {mach["jax_backend"]} '
          f'({mach["device"]}), {_torch_part(env) or "no torch"}; Adam, '
          f'batch {config.batch_size}, {config.repeats} interleaved rounds, '
          'medians.')


def flops_lines(flops: Mapping[str, Mapping[str, Any]],
                batch_size: int) -> list[str]:
  """Each model's exact matmul FLOPs per step (`flops.matmul_flops`)."""
  lines = []
  for m, f in flops.items():
    layers = ', '.join(f'{k} {v:,}' for k, v in f['layers'].items())
    lines.append(
        f'{m}: exact matmul FLOPs per step at batch {batch_size}: forward '
        f'{f["forward"] / 1e6:.1f} M + backward {f["backward"] / 1e6:.1f} M = '
        f'{f["step"] / 1e6:.1f} MFLOP ({f["step"] / batch_size / 1e6:.3f} '
        f'MFLOP per example; multiply-adds per example: {layers})')
  return lines


def init_loss_lines(init_loss: Mapping[str, Mapping[str, float]]
                    ) -> list[str]:
  """The first batch's loss in JAX and PyTorch at the shared weights."""
  return [f'{m}: loss of the first batch at the shared initial weights: jax '
          f'{losses["jax"]:.5f}, torch {losses["torch"]:.5f}'
          for m, losses in init_loss.items()]


def explain_protocol_overhead(config: BenchmarkConfig,
                              ratios: Mapping[str, float],
                              info: ProtocolInfo) -> list[str]:
  """What the protocol adds to its training steps, in words and numbers."""
  total = config.eta0 + config.eta1
  n_train = config.train_eval_size or config.num_train
  n_eval = n_train + config.num_test
  pct = lambda key: ratios[f'protocol overhead: {key} %']
  groups = sorted(selectors_lib.get_selector(config.selector).stats)
  lines = [
      f"Protocol overhead ({ratios['protocol overhead %']:.1f}% in all), as % "
      f'of the time of the same {total} bare steps:',
      f"  {pct('stats'):6.1f}%  statistics: in the last {config.window} steps "
      f'of each phase ({2 * config.window} of {total} steps) every step also '
      f'updates what {config.selector} reads ({", ".join(groups) or "nothing"})',
      f"  {pct('select'):6.1f}%  selection: α and β, each a top-k over "
      f'all N = {info.n:,} scores (k = {info.k:,}, l = {info.l:,})',
      f"  {pct('evaluate'):6.1f}%  evaluation: 2 passes (w and β⊙w after η1), "
      f'each over {n_train:,} train + {config.num_test:,} test examples, '
      f'{2 * n_eval:,} forward passes in all (training: '
      f'{total * config.batch_size:,} examples, forward + backward)',
      f"  {pct('other'):6.1f}%  the rest: init, the start of η1, pruning, "
      'mask counts, the frozen-weights check, host transfers',
      '  without the evaluations: '
      f"{ratios['protocol overhead without the evaluations %']:.1f}%",
  ]
  for which in ('all', 'topgrad'):
    key = f'protocol: stats overhead predicted from {which} stats %'
    if key in ratios:
      lines.append(f'  statistics share predicted from the diagnose part '
                   f'({which} stats): {ratios[key]:.1f}%')
  if info.cold_s is not None:
    lines.append(f'  protocol.run_protocol itself, cold (compiles its own '
                 f'Runner): {info.cold_s:.1f} s; the warm copy timed here '
                 f'gives the same metrics: {info.matches}')
  return lines


def format_report(config: BenchmarkConfig, cases: Sequence[Case],
                  ratios: Mapping[str, float],
                  targets: Sequence[Mapping[str, Any]], notes: Sequence[str],
                  info: Mapping[str, Any], env: Mapping[str, Any]) -> str:
  """Everything a run prints at its end: header, tables, protocol, notes."""
  lines = [header(config, env), '', cases_table(cases), CASES_NOTE, '']
  lines += flops_lines(info['flops'], config.batch_size)
  lines += init_loss_lines(info['init_loss'])
  lines += ['', ratios_table(ratios)]
  if 'protocol' in config.parts:
    lines += [''] + explain_protocol_overhead(config, ratios,
                                              info['protocol'])
  lines.append('')
  table = targets_table(targets)
  if table:
    lines.append(table)
  lines += [f'Note: {note}' for note in notes]
  return '\n'.join(lines)
