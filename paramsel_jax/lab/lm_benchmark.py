"""Every freezing criterion on the char-GPT, side by side: `experiments/lm_benchmark.py`.

Dense training and each criterion (an *arm*) run on the same seeds, data and
optimizer (:func:`paramsel_jax.lab.lm_experiment.run_online_arms`), in one
process, for each scenario (``finetune``: a pre-trained model on unseen
plays; ``pretrain``: from scratch). An arm is a criterion of
:mod:`paramsel_jax.freeze.criteria` with its settings (`ARMS`): LISA, BAdam,
the paper's psgld test (plain and prefix-aware), AutoFreeze, FreezeOut and
the fixed η0 protocol.

The settings of each arm (its threshold, K, γ, budget) are chosen on the
validation plays (`tune`): each candidate of `GRID` runs with the tuning
seeds, which are not the reported seeds, and the one that reaches the tuning
dense run's final validation loss soonest is kept (ties, or none reaching it:
the lowest final validation loss). The reported runs then use the seeds of
the config; the test plays are evaluated once per run, at the end.

Given a :class:`~paramsel_jax.train.checkpoints.Checkpointer` (identity:
:func:`paramsel_jax.lab.lm_experiment.checkpoint_identity` of the
benchmark's config), every run resumes from its own scope when the
benchmark is repeated: ``'<scenario>/pretrain'``, ``'<scenario>/tune/seeds
100/arm lisa#0'``, ``'<scenario>/arms/seeds 0,1,2/arm lisa'``.

Reported per arm (:func:`summarize_arms`): the time to the dense run's final
validation loss and its speedup over dense (per seed, 95% t-intervals), the
validation loss at equal wall-clock (at the end of the shortest run),
steps/s, FLOPs per step, optimizer bytes and peak memory (where the backend
reports it).

  >>> sorted(ARMS)[:3]
  ['autofreeze', 'badam', 'badam_reset']
  >>> arm_overrides('lisa', {'lisa': {'gamma': 1}})
  {'gamma': 1, 'max_frozen': None}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from paramsel_jax import io as io_lib
from paramsel_jax import report
from paramsel_jax.lab import lm_data
from paramsel_jax.lab import lm_experiment
from paramsel_jax.lab import lm_report
from paramsel_jax.lab.lm_data import LMData
from paramsel_jax.lab.lm_experiment import LMConfig
from paramsel_jax.protocol import checks
from paramsel_jax.protocol import online

PyTree = Any
Overrides = dict[str, Any]

# name -> (criterion, its `OnlineConfig` settings). Every arm trains at layer
# granularity (the cheap step then skips whole modules). LISA's γ, BAdam's
# order and psgld_prefix's threshold are those `tune` chose on the
# validation passages (BUILD_NOTES, issue 21).
ARMS: dict[str, tuple[str, Overrides]] = {
    'dense': ('none', {}),
    'lisa': ('lisa', {'gamma': 2, 'max_frozen': None}),
    'badam': ('badam', {'max_frozen': None, 'block_order': 'random'}),
    'badam_reset': ('badam', {'max_frozen': None, 'block_order': 'random',
                              'inactive_state': 'reset'}),
    'psgld_prefix': ('psgld_prefix', {'threshold': 5.0, 'max_frozen': 0.75}),
    'psgld': ('psgld', {'threshold': 3.0, 'max_frozen': 0.5}),
    'fixed': ('fixed', {'max_frozen': 0.5}),
    'autofreeze': ('autofreeze', {'max_frozen': 0.75}),
    'freezeout': ('freezeout', {'max_frozen': None}),
}

# The candidates `tune` tries per arm (each a set of overrides): the new
# criteria's knobs. psgld's threshold (3) and fixed's budget (half the
# layers) were chosen on the validation play in issue 20; AutoFreeze and
# FreezeOut keep their papers' settings.
GRID: dict[str, list[Overrides]] = {
    'lisa': [{'gamma': 1}, {'gamma': 2}],
    'badam': [{'block_order': 'descending'}, {'block_order': 'random'}],
    'badam_reset': [{'block_order': 'descending'}, {'block_order': 'random'}],
    'psgld_prefix': [{'threshold': 3.0}, {'threshold': 5.0}],
}


# The benchmark's defaults of the LM flags it shares with `experiments/lm.py`:
# 600 fine-tuning steps, checked (K for LISA and BAdam) every 50, held out
# as passages of the fine-tuning plays (on lm.py's held-out plays dense
# fine-tuning never lowers the validation loss, so a time to reach it
# measures nothing). The learning rate stays nanoGPT's 1e-3: on the
# validation passages (seed 0, 600 steps) it ends at 1.781 against 1.802
# for 3e-4 (BUILD_NOTES, issue 21).
LM_DEFAULTS = {'steps': 600, 'check_every': 50, 'freeze_at': 100,
               'time_repeats': 2, 'heldout': 'passages'}


def parse_settings(items: Sequence[str]) -> dict[str, Overrides]:
  """`arm.field=value` items as overrides per arm (numbers parsed).

  >>> parse_settings(['lisa.gamma=2', 'badam.order=random', 'psgld.max_frozen=none'])
  {'lisa': {'gamma': 2}, 'badam': {'order': 'random'}, 'psgld': {'max_frozen': None}}
  """
  out: dict[str, Overrides] = {}
  for item in items:
    key, eq, text = item.partition('=')
    arm, dot, field = key.partition('.')
    if not (eq and dot and arm and field):
      raise ValueError(f'set={item!r}; accepted: arm.field=value (e.g. '
                       'lisa.gamma=2).')
    out.setdefault(arm, {})[field] = _value(text)
  return out


def _value(text: str) -> Any:
  """`text` as an int, a float, None ('none') or itself."""
  if text.lower() == 'none':
    return None
  for parse in (int, float):
    try:
      return parse(text)
    except ValueError:
      pass
  return text


@dataclasses.dataclass(frozen=True)
class LMBenchmarkConfig:
  """What `run_lm_benchmark` runs; checked by `validate_benchmark`.

  Attributes:
    lm: the model, data, optimizer and run settings (an `LMConfig`; its
      `scenario`, `freeze` and `mode` are ignored: the arms say what runs).
    scenarios: 'finetune' and/or 'pretrain'.
    arms: names of `ARMS`, 'dense' first.
    tune: choose each arm's settings from `GRID` on the validation plays.
    tune_seeds: the seeds of the tuning runs (not the reported ones).
    overrides: per arm, settings that replace `ARMS`' (and skip its tuning).
  """

  lm: LMConfig = LMConfig()
  scenarios: tuple[str, ...] = ('finetune',)
  arms: tuple[str, ...] = tuple(ARMS)
  tune: bool = False
  tune_seeds: tuple[int, ...] = (100,)
  overrides: Mapping[str, Overrides] = dataclasses.field(default_factory=dict)


def arm_overrides(arm: str, chosen: Mapping[str, Overrides]) -> Overrides:
  """`ARMS`' settings of `arm`, updated by `chosen[arm]` (tuned or given)."""
  return {**ARMS[arm][1], **chosen.get(arm, {})}


def arm_settings(config: LMConfig, arm: str, overrides: Overrides,
                 steps: int | None = None) -> online.OnlineConfig:
  """The `OnlineConfig` of `arm` with `overrides` (checked when made)."""
  base = lm_experiment.online_settings(config, ARMS[arm][0], steps)
  return dataclasses.replace(base, granularity='layer', **overrides)


def validate_benchmark(config: LMBenchmarkConfig, vocab_size: int) -> None:
  """Every check that needs no data: ValueError naming the bad value."""
  if not config.arms or config.arms[0] != 'dense':
    raise ValueError(f'arms={",".join(config.arms)}; accepted: dense first '
                     '(the reference), then any of '
                     f'{", ".join(a for a in ARMS if a != "dense")}.')
  for arm in config.arms:
    checks.one_of('arms', arm, tuple(ARMS))
  fields = {f.name for f in dataclasses.fields(online.OnlineConfig)}
  for arm, overrides in config.overrides.items():
    checks.one_of('set', arm, config.arms)
    for field in set(overrides) - fields:
      raise ValueError(f'set={arm}.{field}=...; accepted fields (of '
                       f'OnlineConfig): {", ".join(sorted(fields))}.')
  for scenario in config.scenarios:
    checks.one_of('scenarios', scenario, lm_data.SCENARIOS)
  if not config.scenarios:
    raise ValueError('scenarios is empty; accepted: finetune and/or pretrain.')
  lm_experiment.validate(dataclasses.replace(config.lm, freeze='none'),
                         vocab_size)
  model, shapes = lm_experiment.model_shapes(config.lm, vocab_size)
  for arm in config.arms:
    for overrides in _candidates(config, arm):
      lm_experiment.check_policy(arm_settings(
          config.lm, arm, arm_overrides(arm, {arm: overrides})), shapes, model)


def _candidates(config: LMBenchmarkConfig, arm: str) -> list[Overrides]:
  """The settings `tune` tries for `arm` (one: the given or default ones)."""
  if arm in config.overrides or not config.tune or arm not in GRID:
    return [dict(config.overrides.get(arm, {}))]
  return GRID[arm]


# ---------------------------------------------------------------------------
# Tuning on the validation plays.


def _score(summary: dict[str, Any]) -> tuple[float, float]:
  """Lower is better: mean time to dense final val (inf: never), then loss."""
  times = [np.inf if t is None else t
           for t in summary['time_to_dense_final_s']]
  return float(np.mean(times)), float(np.mean(summary['final_val_loss']))


def tune(config: LMBenchmarkConfig, model: Any, splits: Any,
         init_params: PyTree | None, log: Callable[[str], None] = print,
         checkpointer: lm_experiment.Checkpointer = None
         ) -> tuple[dict[str, Overrides], dict[str, Any]]:
  """Each arm's settings chosen on the validation plays (see the module doc).

  Only the arms with more than one candidate run. Returns the chosen
  overrides per tuned arm and every candidate's score. `checkpointer`: the
  tuning runs resume from its scopes (`run_online_arms`).
  """
  lm = dataclasses.replace(config.lm, seeds=config.tune_seeds,
                           time_steps=False)
  tuned = [a for a in config.arms[1:] if len(_candidates(config, a)) > 1]
  arms = {'dense': arm_settings(lm, 'dense', {})}
  for arm in tuned:
    for i, overrides in enumerate(_candidates(config, arm)):
      arms[f'{arm}#{i}'] = arm_settings(lm, arm, arm_overrides(
          arm, {arm: overrides}))
  log(f'tuning {len(arms) - 1} candidate settings on the validation plays, '
      f'seeds {list(config.tune_seeds)}')
  out = lm_experiment.run_online_arms(lm, model, splits, init_params, arms,
                                      log, checkpointer=checkpointer)
  chosen, scores = {}, {}
  for arm in tuned:
    tried = {name: _score(out['summaries'][name]) for name in out['summaries']
             if name.split('#')[0] == arm}
    best = min(tried, key=lambda n: tried[n])
    chosen[arm] = _candidates(config, arm)[int(best.split('#')[1])]
    scores[arm] = [{'overrides': _candidates(config, arm)[int(n.split('#')[1])],
                    'time_to_dense_final_s': s[0], 'final_val_loss': s[1]}
                   for n, s in tried.items()]
    log(f'tuned {arm}: {chosen[arm]} (of {len(tried)})')
  return chosen, scores


# ---------------------------------------------------------------------------
# Summaries.


def loss_at(summary: dict[str, Any], run: dict[str, Any], seconds: float
            ) -> list[float]:
  """Per seed, the val loss of the last check at or before `seconds`.

  >>> run = {'checks': [{'metrics': {'val_loss': [2.0]}, 'frozen_share': [0]},
  ...                   {'metrics': {'val_loss': [1.5]}, 'frozen_share': [0]}]}
  >>> loss_at({'wall_s': [1.0, 2.0]}, run, 1.5)
  [2.0]
  """
  losses = lm_report.val_losses(run)
  wall = np.asarray(summary['wall_s'])
  i = max(int(np.searchsorted(wall, seconds, side='right')) - 1, 0)
  return losses[i].tolist()


def summarize_arms(runs: Mapping[str, dict[str, Any]],
              summaries: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
  """Per arm: speedup per seed, and val loss at the shortest run's end."""
  equal = min(s['wall_s'][-1] for s in summaries.values())
  dense = next(iter(summaries.values()))
  return {'equal_wall_s': equal, 'arms': {
      name: {'speedup': report.speedups(dense['time_to_dense_final_s'],
                                        s['time_to_dense_final_s']),
             'val_loss_at_equal_wall': loss_at(s, runs[name], equal)}
      for name, s in summaries.items()}}


def _ci(values: Sequence[float | None], digits: int, none: str = 'never'
        ) -> str:
  s = report.summarize([np.nan if v is None else v for v in values])
  return report.plus_minus(s, 1.0, digits, spread='ci95', none=none)


def benchmark_table(summaries: Mapping[str, dict[str, Any]],
                    extra: dict[str, Any]) -> str:
  """One row per arm: time and speedup to dense's final val, losses, costs."""
  header = ('arm', 's to dense final val', '× dense (95% CI)',
            f'val loss at {extra["equal_wall_s"]:.0f} s', 'final val loss',
            'test loss', 'frozen % (end)', 'mean steps/s', 'FLOPs/step (end)',
            'optimizer bytes', 'peak memory')
  rows = []
  for name, s in summaries.items():
    e = extra['arms'][name]
    rows.append((
        name, _ci(s['time_to_dense_final_s'], 1), _ci(e['speedup'], 2),
        _ci(e['val_loss_at_equal_wall'], 3), _ci(s['final_val_loss'], 3),
        _ci(s['test_loss'], 3, 'diverged'),
        f'{100 * np.mean(s["frozen_share"]):.1f}',
        f'{s["mean_steps_per_s"]:.2f}', lm_report.num(s['flops_per_step']),
        lm_report.num(s['opt_state_bytes'], '{:,}'),
        lm_report.num(s['peak_memory_bytes'], '{:,}')))
  return report.format_table(header, rows)


# ---------------------------------------------------------------------------
# The benchmark.


def run_scenario(config: LMBenchmarkConfig, scenario: str, data: LMData,
                 output_dir: str | None, log: Callable[[str], None] = print,
                 checkpointer: lm_experiment.Checkpointer = None
                 ) -> dict[str, Any]:
  """One scenario: tune (maybe), run every arm, write JSON, table and plot.

  `checkpointer`: every run resumes from its scope (module docstring).
  """
  lm = dataclasses.replace(config.lm, scenario=scenario)
  here = lm_experiment.scope(checkpointer, scenario)
  model = lm_experiment.gpt_config(lm, data.vocab_size)
  init_params, pretrained = None, None
  if scenario == 'finetune':
    if data.pretrain is None:
      raise ValueError("scenario 'finetune' needs data with pre-training "
                       'splits (LMData.pretrain).')
    init_params, pretrained = lm_experiment.pretrained_params(
        lm, model, data.pretrain, log, lm_experiment.scope(here, 'pretrain'))
  chosen, tuning = dict(config.overrides), None
  if config.tune:
    tuned, tuning = tune(dataclasses.replace(config, lm=lm), model, data.task,
                         init_params, log, lm_experiment.scope(here, 'tune'))
    chosen = {**tuned, **chosen}
  arms = {arm: arm_settings(lm, arm, arm_overrides(arm, chosen))
          for arm in config.arms}
  out = lm_experiment.run_online_arms(
      lm, model, data.task, init_params, arms, log,
      checkpointer=lm_experiment.scope(here, 'arms'))
  extra = summarize_arms(out['runs'], out['summaries'])
  table = (benchmark_table(out['summaries'], extra) + '\n\n'
           + lm_report.programs_table(out['runs'], out['side_by_side']))
  log(f'\n{scenario}: {len(lm.seeds)} seeds, {lm.steps} steps, clock '
      f'{out["clock"]}\n' + table)
  result = {
      'config': dataclasses.asdict(lm), 'scenario': scenario,
      'arms': {a: {'criterion': ARMS[a][0], 'settings': dataclasses.asdict(s)}
               for a, s in arms.items()},
      'tuning': tuning, 'pretrained': pretrained,
      'runs': {k: lm_experiment.plain_run(v) for k, v in out['runs'].items()},
      'summaries': out['summaries'], 'benchmark': extra,
      'side_by_side': out['side_by_side'], 'clock': out['clock'],
      'data': data.about}
  if output_dir is not None:
    base = f'{output_dir}/lm_benchmark_{scenario}'
    io_lib.write_json_atomic(result, base + '.json')
    io_lib.write_text_atomic(table + '\n', base + '.txt')
    lm_report.plot_val_loss(out['runs'], out['summaries'], base + '.png',
                            f'char-GPT, {scenario}: every criterion, '
                            f'{len(lm.seeds)} seed(s)')
    log(f'wrote {base}.json, .txt, .png')
  return result | {'table': table}


def run_lm_benchmark(config: LMBenchmarkConfig, output_dir: str | None,
                     data: Mapping[str, LMData] | None = None,
                     log: Callable[[str], None] = print,
                     checkpointer: lm_experiment.Checkpointer = None
                     ) -> dict[str, Any]:
  """Every scenario of `config`; `data` per scenario (default: Shakespeare).

  Checked before any work (`validate_benchmark`). `checkpointer` (identity:
  `lm_experiment.checkpoint_identity(config)`): every run resumes from its
  scope (module docstring).
  """
  vocab = lm_data.vocab_size_of(config.lm.data)
  validate_benchmark(config, vocab)
  results = {}
  for scenario in config.scenarios:
    d = (lm_data.load_data(config.lm.data, scenario, log,
                                config.lm.heldout) if data is None
         else data[scenario])
    results[scenario] = run_scenario(config, scenario, d, output_dir, log,
                                     checkpointer)
  return results
