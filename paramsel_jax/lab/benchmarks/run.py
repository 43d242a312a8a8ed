# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""One benchmark run: a `BenchmarkConfig` in, tables and a results JSON out.

`run_benchmark` sets up every case of the chosen parts (`cases`,
`protocol_cases`, `torch_ref`), calls each once untimed, times them in
interleaved rounds (`timing.run_rounds`), prints the tables (`report`) and
writes the results, with the date, the machine and the versions, to
`<output_dir>/benchmark_<backend>_<time>.json` (atomically).
`experiments/benchmark.py` says what each part measures.

  >>> steps_for('lenet5', BenchmarkConfig()), steps_for('lenet300', BenchmarkConfig())
  (20, 200)
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import os
from typing import Any

import jax
import optax

from paramsel_jax import data as data_lib
from paramsel_jax.lab import experiment
from paramsel_jax import io as io_lib
from paramsel_jax.optim import masking
from paramsel_jax import models as models_lib
from paramsel_jax.lab import progress as progress_lib
from paramsel_jax.protocol import protocol
from paramsel_jax.select import selectors as selectors_lib
from paramsel_jax.select import stats as stats_lib
from paramsel_jax.lab.benchmarks import cases as cases_lib
from paramsel_jax.lab.benchmarks.config import BenchmarkConfig
from paramsel_jax.lab.benchmarks import environment as env_lib
from paramsel_jax.models import flops as flops_lib
from paramsel_jax.lab.benchmarks import protocol_cases
from paramsel_jax.lab.benchmarks import protocol_stages as stages
from paramsel_jax.lab.benchmarks import report
from paramsel_jax.lab.benchmarks import summary
from paramsel_jax.train import timing
from paramsel_jax.lab.benchmarks import torch_ref
from paramsel_jax.train.timing import Case


def steps_for(model: str, config: BenchmarkConfig, seeds: bool = False) -> int:
  """Training steps per measurement: conv nets are timed on fewer."""
  conv = model in experiment.CONV_MODELS
  if seeds:
    return config.seed_conv_steps if conv else config.seed_mlp_steps
  return config.conv_steps if conv else config.mlp_steps


@dataclasses.dataclass
class _Setup:
  """What every model's cases share while they are set up."""

  config: BenchmarkConfig
  dataset: data_lib.Dataset
  tasks: dict[str, protocol.ImageTask]
  adam: optax.GradientTransformation
  torch: Any
  runners: dict[str, protocol.Runner]  # model -> a Runner to reuse.
  info: dict[str, Any]


def _runner_case(m: str, s: _Setup, name: str, label: str, num_steps: int,
                 seeds: tuple[int, ...], seed_axis: str = 'vmap',
                 reuse: bool = False) -> Case:
  """`cases.runner_case`; `reuse`: on the protocol part's Runner, if any."""
  runner = s.runners.get(m) if reuse else None
  if runner is None:
    runner = stages.make_runner(s.tasks[m], s.adam,
                                s.config.protocol_config(seed_axis))
  return cases_lib.runner_case(f'{m}/{name}', f'{m} {label}', runner,
                               s.config.batch_size, num_steps, seeds)


def _loop_cases(m: str, parts: set[str], params: Any, s: _Setup) -> list[Case]:
  """The bare loops: adam, masked(adam), with the statistics."""
  c, task, n = s.config, s.tasks[m], steps_for(m, s.config)
  out = []
  if parts & {'throughput', 'peak', 'masked', 'diagnose'}:
    out.append(cases_lib.scan_case(f'{m}/jax/scan_adam', f'{m} bare loop, adam',
                                   task, s.adam, c.batch_size, n, c.seed))
  if 'masked' in parts:
    mask = cases_lib.random_mask(jax.random.key(c.seed + 7), params, 0.1)
    out.append(cases_lib.scan_case(
        f'{m}/jax/scan_masked', f'{m} bare loop, masked(adam), α=10%', task,
        masking.masked(s.adam, mask), c.batch_size, n, c.seed))
  if 'diagnose' in parts:
    for which in ('all', 'topgrad'):
      groups = (stats_lib.ALL_GROUPS if which == 'all'
                else selectors_lib.get_selector(which).stats)
      out.append(cases_lib.scan_case(
          f'{m}/jax/stats_{which}', f'{m} bare loop + {which} stats every '
          'step', task, s.adam, c.batch_size, n, c.seed, stat_groups=groups))
  return out


def _step_loop_and_torch_cases(m: str, params: Any, s: _Setup) -> list[Case]:
  """The jitted step in a Python loop, and PyTorch on the same batches."""
  c, task, n = s.config, s.tasks[m], steps_for(m, s.config)
  batches = cases_lib.fixed_batches(s.dataset, c.batch_size, min(n, 64))
  out = [cases_lib.step_loop_case(f'{m}/jax/step_loop',
                                  f'{m} jitted step, Python loop', task,
                                  s.adam, n, batches, c.seed)]
  if s.torch is None:
    return out
  label = torch_ref.torch_label(s.torch)
  losses = s.info['init_loss'].setdefault(m, {})
  for kind in ('default', 'fused'):
    case, losses['torch'] = torch_ref.torch_case(
        s.torch, f'{m}/torch/{kind}', f'{m} {label}, Adam {kind}', m, params,
        c.learning_rate, n, batches, fused=kind == 'fused')
    out.append(case)
  losses['jax'] = cases_lib.first_batch_loss(task, params, batches)
  return out


def _seed_cases(m: str, s: _Setup) -> list[Case]:
  """The protocol's loop over several seeds, vmapped and in turn."""
  c = s.config
  seeds = tuple(range(c.seed, c.seed + c.num_seeds))
  out = []
  for axis in ('vmap', 'map'):
    case = _runner_case(m, s, f'seeds/{axis}',
                        f'{c.num_seeds} seeds, {axis}, Runner chunk',
                        steps_for(m, c, seeds=True), seeds, seed_axis=axis)
    case.group = f'{m}/seeds'
    out.append(case)
  return out


def _model_cases(m: str, parts: set[str], s: _Setup) -> list[Case]:
  """One model's cases, one group (seeds: their own), FLOPs set."""
  c = s.config
  params = s.tasks[m].init_fn(jax.random.key(c.seed))
  flops = flops_lib.matmul_flops(models_lib.create_model(m), params,
                                 cases_lib.INPUT_SHAPE, c.batch_size)
  s.info['flops'][m] = flops
  group = []
  if 'throughput' in parts or ('peak' in parts and m == 'lenet300'):
    group.append(_runner_case(m, s, 'jax/runner', 'paramsel_jax Runner chunk',
                              steps_for(m, c), (c.seed,), reuse=True))
  group += _loop_cases(m, parts, params, s)
  if 'throughput' in parts:
    group += _step_loop_and_torch_cases(m, params, s)
  if 'seeds' in parts:
    group += _seed_cases(m, s)
  for case in group:
    case.flops = flops['step'] * case.steps
    case.group = case.group or m
  if 'peak' in c.parts and m == 'lenet300':
    # Right after the Runner chunk whose fraction of it is reported.
    group.insert(1, dataclasses.replace(
        cases_lib.matmul_case(c.matmul_size, c.matmul_reps, c.seed), group=m))
  return group


def build_cases(config: BenchmarkConfig, torch: Any,
                log: Callable[[str], None]
                ) -> tuple[list[Case], dict[str, Any]]:
  """Sets up every case of the chosen parts (most compile on first use).

  Returns:
    The cases in table order, and `{'flops': {model: matmul_flops},
    'init_loss': {model: {'jax', 'torch'}}, 'protocol': ProtocolInfo}`
    (the last only with the protocol part).
  """
  dataset = cases_lib.synthetic_dataset(config.num_train, config.num_test,
                                        config.seed)
  models = list(config.models)
  if 'peak' in config.parts and 'lenet300' not in models:
    models.insert(0, 'lenet300')  # The peak fraction is LeNet-300-100's.
  needed = set(models)
  if 'protocol' in config.parts:
    needed.add(config.protocol_model)
  s = _Setup(config=config, dataset=dataset,
             tasks={m: cases_lib.synthetic_task(m, dataset) for m in sorted(needed)},
             adam=optax.adam(config.learning_rate), torch=torch, runners={},
             info={'flops': {}, 'init_loss': {}})
  protocol_group = []
  if 'protocol' in config.parts:
    m = config.protocol_model
    full, raw, p = protocol_cases.protocol_cases(
        s.tasks[m], s.adam, config.protocol_config(evaluate_after_eta0=False),
        config.selector, config.seed)
    full.group = raw.group = 'protocol'
    protocol_group = [full, raw]
    s.info['protocol'] = p
    s.runners[m] = p.runner
  cases = []
  for m in models:
    parts = set(config.parts) if m in config.models else {'peak'}
    cases += _model_cases(m, parts, s)
  cases += protocol_group
  log(f'{len(cases)} variants set up')
  return cases, s.info


def stamped_results_path(output_dir: str, env: dict[str, Any]) -> str:
  """`<output_dir>/benchmark_<backend>_<UTC time>.json`: a new file per run."""
  return os.path.join(output_dir, f'benchmark_{env["machine"]["jax_backend"]}_'
                      f'{env_lib.file_stamp(env["date"])}.json')


def results_record(config: BenchmarkConfig, cases: list[Case],
                   info: dict[str, Any], summarized: tuple,
                   env: dict[str, Any]) -> dict[str, Any]:
  """Everything a run measured, ready for JSON."""
  ratios, targets, notes = summarized
  results = {
      'environment': env,
      'config': dataclasses.asdict(config),
      'cases': {c.name: c.record() for c in cases},
      'flops_per_step': info['flops'],
      'init_loss': info['init_loss'],
      'ratios': ratios,
      'targets': targets,
      'notes': notes,
  }
  p = info.get('protocol')
  if p is not None and p.cold_s is not None:
    results['protocol_cold_s'] = p.cold_s
    results['protocol_warm_matches_cold'] = p.matches
  return results


def run_benchmark(config: BenchmarkConfig, output_dir: str | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
  """Sets up, compiles and times every case, prints tables, writes JSON.

  Args:
    config: what to run (checked when it was created).
    output_dir: where the JSON goes; None writes nothing.
    log: where the progress and the tables go.

  Returns:
    The results (as written).
  """
  torch = torch_ref.load_torch(config.use_torch, config.omp_wait_policy,
                               config.torch_threads)
  env = env_lib.timing_environment()
  torch_ref.describe(env, torch)
  log(report.start_line(env, torch.why_not))
  cases, info = build_cases(config, torch.module, log)
  timing.warm_up(cases, lambda c: log(
      f'  first call {c.first_s:7.2f} s  {c.label}'))

  p = info.get('protocol')
  if p is not None and config.cold_protocol:
    protocol_cases.check_cold(p.task, optax.adam(config.learning_rate),
                              config.protocol_config(), config.selector,
                              config.seed, p)
    log(f'  protocol.run_protocol itself, cold (compiles a new Runner): '
        f'{p.cold_s:.2f} s; the warm copy gives the same metrics: '
        f'{p.matches}')

  rounds = progress_lib.Progress(config.repeats, log, unit='round',
                                 prefix='  timed rounds: ')
  timing.run_rounds(cases, config.repeats, config.seed,
                    lambda r, s: rounds.update(1, f'this one {s:.1f} s'))
  rounds.close()
  env['machine']['load_average_end'] = env_lib.load_average()

  summarized = summary.assess(config, {c.name: c for c in cases}, env,
                                 torch.why_not)
  log('')
  log(report.format_report(config, cases, *summarized, info, env))
  results = results_record(config, cases, info, summarized, env)
  if output_dir is not None:
    path = stamped_results_path(output_dir, env)
    io_lib.write_json_atomic(results, path)
    log(f'results written to {path}')
  return results
