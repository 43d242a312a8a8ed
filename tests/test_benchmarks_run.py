# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tests of the config, the summary and the report, on made-up timings.

The whole run is tested, tiny, by tests/test_benchmark.py; here nothing is
compiled.
"""

import pytest

from paramsel_jax.lab.benchmarks import protocol_cases
from paramsel_jax.lab.benchmarks import report
from paramsel_jax.lab.benchmarks import config as config_lib
from paramsel_jax.lab.benchmarks import run
from paramsel_jax.lab.benchmarks import summary
from paramsel_jax.train import timing
from paramsel_jax.lab.benchmarks import torch_ref


@pytest.mark.parametrize('overrides, message', [
    ({'parts': ('peak', 'speed')}, "Unknown part 'speed'"),
    ({'models': ('cifar_cnn',)}, "Unknown model 'cifar_cnn'"),
    ({'protocol_model': 'nope'}, "Unknown protocol_model 'nope'"),
    ({'selector': 'nope'}, "Unknown selector 'nope'"),
    ({'repeats': 0}, 'repeats=0; accepted: >= 1.'),
    ({'matmul_size': -1}, 'matmul_size=-1'),
    ({'omp_wait_policy': 'spin'}, "omp_wait_policy='spin'"),
    ({'torch_threads': -1}, 'torch_threads=-1'),
    ({'window': 600}, 'window=600'),
    ({'batch_size': 300, 'num_train': 256}, 'batch_size=300'),
])
def test_a_bad_setting_is_named_on_creation(overrides, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(')):
    config_lib.BenchmarkConfig(**overrides)


def test_protocol_settings_are_checked_only_with_the_protocol_part():
  config = config_lib.BenchmarkConfig(parts=['peak'], models=['lenet300'],
                                      window=10**6)
  assert config.parts == ('peak',) and config.models == ('lenet300',)


def test_steps_for_conv_nets_and_seeds():
  config = config_lib.BenchmarkConfig(mlp_steps=7, conv_steps=3,
                                      seed_mlp_steps=5, seed_conv_steps=2)
  assert [run.steps_for('lenet300', config), run.steps_for('lenet5', config),
          run.steps_for('lenet300', config, seeds=True),
          run.steps_for('lenet5', config, seeds=True)] == [7, 3, 5, 2]


def _case(name, seconds, steps=10, flops=0.0, parts=()):
  return timing.Case(name, name, lambda: None, steps=steps, examples=steps,
                     flops=flops, seconds=list(seconds), parts=list(parts),
                     first_s=1.0)


def _fake_run():
  """Cases as a tiny run of every part would name them, with timings."""
  m = 'lenet300'
  cases = [
      _case(f'{m}/jax/runner', [1.0, 1.0], flops=1e9),
      _case('matmul', [1.0, 2.0], steps=2, flops=4e9),
      _case(f'{m}/jax/scan_adam', [1.25, 1.25], flops=1e9),
      _case(f'{m}/jax/scan_masked', [1.5, 1.5]),
      _case(f'{m}/jax/stats_all', [2.5, 2.5]),
      _case(f'{m}/jax/stats_topgrad', [1.25, 1.25]),
      _case(f'{m}/jax/step_loop', [2.0, 2.0]),
      _case(f'{m}/seeds/vmap', [1.0, 1.0]),
      _case(f'{m}/seeds/map', [2.0, 2.0]),
      _case('protocol/full', [1.5, 1.5], parts=[
          {'train': 1.1, 'evaluate': 0.2, 'select': 0.1, 'other': 0.1}] * 2),
      _case('protocol/raw', [1.0, 1.0]),
  ]
  env = {'date': '2026-11-28T10:00:00+00:00',
         'machine': {'cpu': 'cpu', 'usable_cores': 2, 'jax_backend': 'cpu',
                     'device': 'cpu', 'load_average_start': 0.5,
                     'load_average_end': 3.0, 'omp_wait_policy': None},
         'versions': {'jax': '0', 'torch': None}}
  info = {'flops': {m: {'forward': 68_083_200, 'backward': 76_147_200,
                        'step': 144_230_400, 'layers': {'Dense_0': 235_200}}},
          'init_loss': {},
          'protocol': protocol_cases.ProtocolInfo(task=None, runner=None,
                                                  n=1000, k=100, l=200)}
  return cases, env, info


def test_summary_pairs_the_rounds_and_judges_the_targets():
  cases, env, _ = _fake_run()
  config = config_lib.BenchmarkConfig(
      parts=config_lib.PARTS, models=('lenet300',), num_seeds=2, eta0=10,
      eta1=10, window=5)
  ratios, targets, notes = summary.assess(
      config, {c.name: c for c in cases}, env, torch_ref.NOT_INSTALLED)
  assert ratios['lenet300: Runner / scan_adam'] == pytest.approx(1.25)
  assert ratios['lenet300: masked overhead %'] == pytest.approx(20.0)
  assert ratios['lenet300: 2 seeds vmap / map'] == pytest.approx(2.0)
  assert ratios['lenet300: all stats, extra cost per step %'] == (
      pytest.approx(100.0))
  assert ratios['protocol overhead %'] == pytest.approx(50.0)
  assert ratios['protocol overhead: stats %'] == pytest.approx(10.0)
  assert ratios['protocol overhead: evaluate %'] == pytest.approx(20.0)
  assert ratios['protocol: stats overhead predicted from all stats %'] == (
      pytest.approx(50.0))
  # Runner 1 GFLOP/s; matmul 4 then 2 GFLOP/s: median of 25% and 50%.
  assert ratios['lenet300: Runner GFLOP/s / matmul peak %'] == (
      pytest.approx(37.5))
  status = {t['target']: t['met'] for t in targets}
  assert status == {
      'LeNet-300-100 Runner >= 2.0x PyTorch fused Adam': None,
      'LeNet-300-100 Runner >= 60% of the matmul peak': False,
      'lenet300: masked(adam) overhead <= 3%': False,
      'protocol overhead <= 10%': False}
  assert notes[0] == torch_ref.NOT_INSTALLED
  assert 'load average reached 3.0' in notes[1]


def test_report_has_every_table_and_the_protocol_breakdown():
  cases, env, info = _fake_run()
  config = config_lib.BenchmarkConfig(
      parts=config_lib.PARTS, models=('lenet300',), num_seeds=2, eta0=10,
      eta1=10, window=5)
  summarized = summary.assess(config, {c.name: c for c in cases}, env,
                              torch_ref.NOT_INSTALLED)
  text = report.format_report(config, cases, *summarized, info, env)
  for expected in ('variant', 'steps/s', 'no torch',
                   'forward 68.1 M + backward 76.1 M = 144.2 MFLOP',
                   'ratio (median of per-round ratios)',
                   'Protocol overhead (50.0% in all)',
                   'k = 100, l = 200', 'not measured', 'MISSED',
                   'Note: PyTorch is not installed'):
    assert expected in text, expected
  record = run.results_record(config, cases, info, summarized, env)
  assert 'protocol_cold_s' not in record
  assert run.stamped_results_path('out', env) == 'out/benchmark_cpu_20261128T100000Z.json'


def test_omp_wait_policy(monkeypatch):
  if 'torch' in __import__('sys').modules:
    pytest.skip('torch is imported: the policy can no longer change')
  monkeypatch.setenv('OMP_WAIT_POLICY', 'ACTIVE')
  assert torch_ref.set_omp_wait_policy('auto') == 'ACTIVE (from the environment)'
  assert torch_ref.set_omp_wait_policy('passive') == 'PASSIVE'
  assert torch_ref.set_omp_wait_policy('unset') == 'unset, OpenMP default'
  assert 'OMP_WAIT_POLICY' not in __import__('os').environ
