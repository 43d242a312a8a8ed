"""The flags the protocol's scripts share, declared once.

`experiments/mnist.py` (one run) and `experiments/sweep.py` (a grid) take the
same data, model, optimizer and protocol flags, under the same names; each
script calls `define(**defaults)` at import with its own defaults and reads the
flags only in `main`, through the functions below, which turn them into the
library's config objects. List flags (`--model`, `--optimizer`, `--selector`,
`--k`, `--l`) take comma-separated values; `mnist.py` runs exactly one model
and one optimizer.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, Callable

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax import data
from paramsel_jax.lab import experiment
from paramsel_jax.freeze import criteria as criteria_lib
from paramsel_jax.select import granularity
from paramsel_jax import models
from paramsel_jax.optim import optimizers
from paramsel_jax.protocol import protocol
from paramsel_jax.select import selectors
from paramsel_jax.train import checkpoints

AUTO = None  # a default of None reads "auto": the script chooses.


@dataclasses.dataclass(frozen=True)
class Flags:
  """The flag holders `define` made, by name (`holders['eta0'].value`)."""

  holders: dict[str, Any]
  # `--workdir` (`--output_dir`), `--checkpoint_every`, `--keep_checkpoints`
  # (`cli.define_run_dir`): call it in `main`.
  run_dir: Callable[[], cli.RunDir]

  def value(self, name: str) -> Any:
    """The value of `--name` (its default when not given)."""
    return self.holders[name].value

  def given(self, name: str) -> bool:
    """Whether `--name` was on the command line."""
    return self.holders[name].present > 0


def _define_data_and_model(d: Any, defaults: dict[str, Any]) -> dict[str, Any]:
  return {
      'dataset': d.string('dataset', defaults.get('dataset', 'mnist'),
                                     f'One of {", ".join(data.DATASETS)}.'),
      'data_dir': d.string(
          'data_dir', None, 'The data cache (default $PARAMSEL_DATA_DIR or '
          '~/.cache/paramsel_jax).'),
      'model': d.list('model', defaults.get('model', ['lenet300']),
                                 f'Comma-separated, of {", ".join(models.MODELS)}.'),
      'eval_split': d.enum(
          'eval_split', 'test', list(experiment.EVAL_SPLITS),
          "The held-out split of the 'test' metrics: test, or valid to choose "
          'settings without reading the test split.'),
  }


def _define_optimizer(d: Any) -> dict[str, Any]:
  lrs = ', '.join(f'{k} {v:g}' for k, v in
                  optimizers.DEFAULT_LEARNING_RATES.items())
  return {
      'optimizer': d.list(
          'optimizer', ['adam'], 'Comma-separated name[:learning_rate], names '
          f'of {", ".join(optimizers.OPTIMIZERS)}.'),
      'learning_rate': d.float(
          'learning_rate', None, 'γ of every optimizer without its own '
          f'(default per optimizer: {lrs}).'),
      'momentum': d.float('momentum', 0.9, 'For --optimizer=momentum.'),
      'b1': d.float('b1', 0.9, "Adam's b1."),
      'b2': d.float('b2', 0.999, "Adam's b2."),
      'decay': d.float('decay', 0.99,
                                  'RMSprop/pSGLD squared-gradient decay.'),
      'eps': d.float(
          'eps', None, "The preconditioner's λ (default: 1e-8 for Adam and "
          'RMSprop, 1e-5 for pSGLD).'),
      'temperature': d.float('temperature', 1.0,
                                        'Langevin temperature (sgld, psgld).'),
      'weight_decay': d.float(
          'weight_decay', 0.0, 'L2 term wd·w added to the gradient (for '
          'sgld/psgld: a Gaussian prior of variance 1/(n·wd)).'),
      'decay_steps': d.integer(
          'decay_steps', 0, 'Cosine learning-rate decay to 0 over this many '
          'steps (0: constant; not for sgld/psgld).'),
  }


def _auto(value: Any) -> str:
  return 'auto' if value is None else str(value)


def _define_protocol(d: Any, defaults: dict[str, Any]) -> dict[str, Any]:
  return {
      'selector': d.list(
          'selector', defaults['selector'],
          f'Comma-separated, of {", ".join(sorted(selectors.SELECTORS))}; '
          '"all" for every registered selector (they share the eta0 phase).'),
      'k': d.list(
          'k', defaults['k'], 'Coordinates that keep training: counts (integers) or '
          'fractions of N (0.1, 1.0 = all, 10%), comma-separated.'),
      'l': d.list('l', defaults['l'], 'Weights kept at the end: counts or '
                             'fractions, comma-separated.'),
      'eta0': d.integer('eta0', defaults['eta0'], 'Steps on all parameters '
                                   f'(default: {_auto(defaults["eta0"])}).'),
      'eta1': d.integer('eta1', defaults['eta1'], 'Steps on the k selected '
                                   f'ones (default: {_auto(defaults["eta1"])}).'),
      'window': d.integer('window', defaults['window'], "Steps the "
                                     "selectors' statistics cover (default: "
                                     f'{_auto(defaults["window"])}).'),
      'batch_size': d.integer('batch_size', 128, 'Minibatch size.'),
      'mode': d.enum(
          'mode', 'prune_at_end', list(protocol.MODES),
          'prune_at_end: the paper (α after eta0, β after eta1); retrain: β '
          'after eta0, the rest zeroed, only the kept weights train for eta1 '
          '(no --k then).'),
      'prune_rounds': d.integer(
          'prune_rounds', 1, '--mode=retrain: prune gradually in this many rounds.'),
      'chunk_size': d.integer(
          'chunk_size', 500, 'Steps per jitted call between progress lines '
          '(does not change results).'),
      'train_eval_size': d.integer(
          'train_eval_size', defaults['train_eval_size'], 'Train metrics on the first '
          'this many training examples (0: all; default: '
          f'{_auto(defaults["train_eval_size"])}).'),
      'num_seeds': d.integer('num_seeds', defaults['num_seeds'], 'Seeds, '
                                        'run as one program (default: '
                                        f'{_auto(defaults["num_seeds"])}).'),
      'seed': d.integer('seed', 0, 'First seed; seeds are seed .. '
                                   'seed+num_seeds-1.'),
      'shard_batch': d.bool(
          'shard_batch', False, 'With several devices, also shard each '
          'minibatch over the devices the seeds leave.'),
      'seed_axis': d.enum(
          'seed_axis', 'auto', list(protocol.SEED_AXES),
          'vmap: seeds in parallel; map: in turn; auto: map for conv nets on CPU.'),
      **_define_freezing(d),
  }


def _define_freezing(d: Any) -> dict[str, Any]:
  return {
      'granularity': d.enum(
          'granularity', 'element', list(granularity.GRANULARITIES),
          'Of α: element (scalars), unit (a neuron or channel with its fan-in '
          'and bias), layer (a module).'),
      'aggregate': d.enum(
          'aggregate', 'mean', list(granularity.AGGREGATIONS),
          "A group's score from its elements' (unit/layer granularity)."),
      'budget': d.enum(
          'budget', 'params', list(protocol.BUDGETS),
          'What k counts at unit/layer granularity: parameters, the '
          'fraction of the weight-gradient FLOPs (flops), or a cap on the '
          'fraction of the dense backward FLOPs, input gradients above the '
          'lowest trained layer included (backward).'),
      'step': d.enum(
          'step', 'auto', list(protocol.STEPS),
          'T|α: masked (dense, frozen updates zeroed), active (cost follows '
          'α; packed optimizer state at element granularity), auto (active at '
          'unit/layer granularity, masked at element).'),
      'cache_prefix': d.bool(
          'cache_prefix', False, 'With the active step: compute the inputs of '
          'the first module that trains once over the training set when '
          'everything before it is frozen.'),
      'cache_budget_mb': d.float(
          'cache_budget_mb', 2048.0, 'The most memory the prefix cache may '
          'take (all seeds); a bigger cache is refused.'),
      **_define_online(d),
  }


def _define_online(d: Any) -> dict[str, Any]:
  return {
      'freeze': d.string(
          'freeze', 'none', 'Online freezing instead of the fixed eta0, one of '
          f'{", ".join(sorted(criteria_lib.CRITERIA))} (sweep.py: a comma-separated '
          'list): α is decided every --check_every steps over eta0 + eta1 '
          'steps, next to a dense reference run.'),
      'check_every': d.integer('check_every', 200,
                                          'Steps between freezing checks.'),
      'freeze_threshold': d.float(
          'freeze_threshold', None, "The criterion's threshold (default: "
          'psgld 1.0 (drift z-score), apf 0.05).'),
      'max_frozen': d.float(
          'max_frozen', None, 'Freeze at most this share of the parameters '
          '(of the FLOPs with --budget=flops); default: no cap.'),
      'buckets': d.integer(
          'buckets', 4, 'Active-set sizes per module rounded up to this many '
          'steps (bounds the compilations).'),
      'max_compiles': d.integer('max_compiles', 8,
                                           'The most step programs a run compiles.'),
      'freezeout_schedule': d.enum(
          'freezeout_schedule', 'linear', list(criteria_lib.SCHEDULES),
          "FreezeOut's schedule of stop times."),
      'freezeout_t0': d.float('freezeout_t0', 0.5,
                                         "FreezeOut's first layer stop fraction."),
      'gamma': d.integer('gamma', 1, "lisa: the blocks that train per "
                         'interval (sampled at each check).'),
      'blocks': d.list('blocks', None, 'lisa, badam, psgld_prefix: the '
                       'blocks, one glob per block (default: blocks/0, '
                       'Block_1, ...).'),
      'block_order': d.enum('block_order', 'descending',
                            list(criteria_lib.BLOCK_ORDERS),
                            "badam: the blocks' order."),
      'block_seed': d.integer('block_seed', 0, 'lisa, badam: the seed of '
                              'the block sampling (shared by the seeds).'),
      'train_outside': d.bool('train_outside', None, 'lisa, badam: the '
                              'layers outside the blocks train (default: '
                              'lisa yes, badam no).'),
  }


def define(flag_values: flags.FlagValues = flags.FLAGS,
           **defaults: Any) -> Flags:
  """Declares the shared flags with a script's defaults (None: auto).

  Keys: selector, k, l (lists of strings), eta0, eta1, window, num_seeds,
  train_eval_size, workdir, and optionally dataset and model.
  `flag_values`: where they are declared (absl's global `FLAGS`; a test
  passes its own and parses a command line into it).
  """
  d = _definer(flag_values)
  holders = {**_define_data_and_model(d, defaults), **_define_optimizer(d),
             **_define_protocol(d, defaults)}
  return Flags(holders, cli.define_run_dir(defaults['workdir'],
                                           flag_values=flag_values))


def _definer(flag_values: flags.FlagValues) -> Any:
  """The `DEFINE_*` functions of absl, bound to `flag_values`."""
  bind = lambda define: functools.partial(define, flag_values=flag_values)
  return types.SimpleNamespace(
      string=bind(flags.DEFINE_string), list=bind(flags.DEFINE_list),
      integer=bind(flags.DEFINE_integer), float=bind(flags.DEFINE_float),
      enum=bind(flags.DEFINE_enum), bool=bind(flags.DEFINE_bool))


def optimizer_configs(f: Flags) -> tuple[optimizers.OptimizerConfig, ...]:
  """One `OptimizerConfig` per `--optimizer` entry (name[:learning_rate])."""
  out = []
  for spec in f.value('optimizer'):
    name, _, rate = spec.partition(':')
    lr = f.value('learning_rate')
    if rate:
      lr = cli.floats([rate], 'optimizer')[0]
    out.append(optimizers.OptimizerConfig(
        name=name, learning_rate=lr, momentum=f.value('momentum'),
        b1=f.value('b1'), b2=f.value('b2'), decay=f.value('decay'),
        eps=f.value('eps'), temperature=f.value('temperature'),
        weight_decay=f.value('weight_decay'),
        decay_steps=f.value('decay_steps')))
  if not out:
    raise ValueError('--optimizer is empty; accepted: one or more of '
                     f'{", ".join(optimizers.OPTIMIZERS)}.')
  return tuple(out)


def selector_names(f: Flags, auto: tuple[str, ...] = ()) -> tuple[str, ...]:
  """`--selector`: names, 'all', or 'auto' (then `auto`)."""
  names = tuple(s.strip() for s in f.value('selector') if s.strip())
  if names == ('all',):
    return tuple(sorted(selectors.SELECTORS))
  if names == ('auto',) and auto:
    return auto
  return names


def seed_range(f: Flags, num_seeds: int) -> tuple[int, ...]:
  """`--seed .. --seed + num_seeds - 1`, checked."""
  if num_seeds < 1:
    raise ValueError(f'--num_seeds={num_seeds}; accepted: an integer >= 1.')
  first = f.value('seed')
  if first < 0 or first + num_seeds - 1 > protocol.MAX_SEED:
    raise ValueError(f'--seed={first} with --num_seeds={num_seeds}; accepted: '
                     f'seeds in [0, {protocol.MAX_SEED}].')
  return tuple(range(first, first + num_seeds))


def protocol_config(f: Flags, **auto: Any) -> protocol.ProtocolConfig:
  """The `ProtocolConfig` of the flags; `auto` fills flags left at None.

  `--k` given together with `--mode=retrain` is refused (k is not used
  there); the k and l values are whatever `--k` / `--l` hold (a sweep sets
  its own grid).
  """
  value = lambda name: auto[name] if f.value(name) is None else f.value(name)
  retrain = f.value('mode') == 'retrain'
  if retrain and f.given('k'):
    raise ValueError(f'--k={",".join(f.value("k"))} with --mode=retrain: in '
                     'prune-then-retrain α = β (the l kept weights train), so '
                     '--k is not used; leave it out.')
  return protocol.ProtocolConfig(
      eta0=value('eta0'), eta1=value('eta1'), window=value('window'),
      k=None if retrain else cli.counts(f.value('k'), 'k'),
      l=cli.counts(auto['l'] if 'l' in auto else f.value('l'), 'l'),
      batch_size=f.value('batch_size'), chunk_size=f.value('chunk_size'),
      train_eval_size=value('train_eval_size') or None,
      seed_axis=f.value('seed_axis'), shard_batch=f.value('shard_batch'),
      mode=f.value('mode'), prune_rounds=f.value('prune_rounds'),
      granularity=f.value('granularity'), aggregate=f.value('aggregate'),
      budget=f.value('budget'), step=f.value('step'),
      cache_prefix=f.value('cache_prefix'),
      cache_budget_mb=f.value('cache_budget_mb'))


def experiment_config(f: Flags) -> experiment.ExperimentConfig:
  """The one-run `ExperimentConfig` of `experiments/mnist.py`'s flags."""
  (model,) = _single(f, 'model', 'sweep.py runs several models')
  opts = optimizer_configs(f)
  if len(opts) != 1:
    raise ValueError(f'--optimizer={",".join(f.value("optimizer"))}: this '
                     'script runs one optimizer; experiments/sweep.py runs '
                     'several.')
  return experiment.ExperimentConfig(
      dataset=f.value('dataset'), model=model, selectors=selector_names(f),
      seeds=seed_range(f, f.value('num_seeds')), optimizer=opts[0],
      protocol=protocol_config(f), data_dir=f.value('data_dir'),
      eval_split=f.value('eval_split'))


def _single(f: Flags, name: str, elsewhere: str) -> tuple[str]:
  values = tuple(v.strip() for v in f.value(name) if v.strip())
  if len(values) != 1:
    raise ValueError(f'--{name}={",".join(f.value(name))}: this script runs '
                     f'exactly one; experiments/{elsewhere}.')
  return values


# The flag of each `online.OnlineConfig` / `policy.FreezingPolicy` field:
# their checks name the field, the command line answers with the flag.
ONLINE_FLAGS = {
    'criterion': 'freeze', 'threshold': 'freeze_threshold',
    'max_frozen': 'max_frozen', 'check_every': 'check_every',
    'granularity': 'granularity', 'budget': 'budget', 'buckets': 'buckets',
    'max_compiles': 'max_compiles', 'cache_budget_mb': 'cache_budget_mb',
    'batch_size': 'batch_size', 't0': 'freezeout_t0',
    'schedule': 'freezeout_schedule', 'seed_axis': 'seed_axis',
    'gamma': 'gamma', 'blocks': 'blocks', 'block_order': 'block_order',
    'block_seed': 'block_seed', 'train_outside': 'train_outside',
}


def online_config(f: Flags, name: str | None = None,
                  steps: int | None = None) -> Any:
  """The `online.OnlineConfig` of `--freeze` and its flags (None: 'none').

  The run is eta0 + eta1 steps long; without --granularity, psgld and apf
  freeze whole units and autofreeze and freezeout whole layers. A bad value
  raises the config's own `ValueError`, written with the flags' names
  (`ONLINE_FLAGS`); `validate_online` adds the checks that need the model.
  """
  from paramsel_jax.protocol import online  # pylint: disable=g-import-not-at-top
  name = f.value('freeze') if name is None else name
  if name == 'none':
    return None
  if name == 'fixed':
    raise ValueError("--freeze=fixed: 'fixed' is the paper's fixed protocol "
                     'as a criterion, for experiments/online_benchmark.py; '
                     'here the fixed protocol is the default: leave --freeze '
                     'out.')
  try:
    criteria_lib.get_criterion(name)
  except ValueError as e:
    raise ValueError(f'--freeze={name}: {e}') from None
  with cli.as_flags(ONLINE_FLAGS):
    gran = f.value('granularity')
    if not f.given('granularity'):
      gran = 'layer' if criteria_lib.get_criterion(name).layers_only else 'unit'
    return online.OnlineConfig(
        criterion=name, steps=steps or f.value('eta0') + f.value('eta1'),
        check_every=f.value('check_every'),
        threshold=f.value('freeze_threshold'),
        max_frozen=f.value('max_frozen'), budget=f.value('budget'),
        granularity=gran, buckets=f.value('buckets'),
        max_compiles=f.value('max_compiles'),
        cache_prefix=f.value('cache_prefix'),
        cache_budget_mb=f.value('cache_budget_mb'),
        batch_size=f.value('batch_size'), seed_axis=f.value('seed_axis'),
        t0=f.value('freezeout_t0'), schedule=f.value('freezeout_schedule'),
        gamma=f.value('gamma'), block_order=f.value('block_order'),
        blocks=(None if f.value('blocks') is None
                else tuple(f.value('blocks'))),
        block_seed=f.value('block_seed'),
        train_outside=f.value('train_outside'))


def validate_online(config: experiment.ExperimentConfig, settings: Any) -> None:
  """`online_experiment.validate_settings`, answered in the flags' names.

  The criterion's own checks (`policy.FreezingPolicy`: `--max_frozen` in
  (0, 1], FreezeOut's `--freezeout_t0`, ...) need the model's shapes, not
  its data: call it before anything is loaded.
  """
  from paramsel_jax.lab import online_experiment  # pylint: disable=g-import-not-at-top
  if settings is not None:
    with cli.as_flags(ONLINE_FLAGS):
      online_experiment.validate_settings(config, settings)


# The flag of each identity setting whose name is not the flag's own.
IDENTITY_FLAGS = {**ONLINE_FLAGS, 'selectors': 'selector',
                  'seeds': 'seed/--num_seeds', 'name': 'optimizer',
                  'steps': 'eta0/--eta1', 'model': 'model'}


def checkpointer(run_dir: cli.RunDir, identity: dict[str, Any],
                 log: Callable[[str], None] = print
                 ) -> checkpoints.Checkpointer | None:
  """The run's `checkpoints.Checkpointer` (None: `--checkpoint_every=0`).

  `identity`: everything that determines the results (the resolved config).
  A workdir whose checkpoints are another run's is refused with one
  `ValueError` naming the flags that differ, before any work.
  """
  if not run_dir.checkpoint_every:
    return None
  try:
    return checkpoints.Checkpointer(run_dir.checkpoint_dir,
                                    run_dir.checkpoint_every, identity,
                                    keep=run_dir.keep, log=log)
  except checkpoints.IdentityMismatch as e:
    leaf = lambda d: d.split(':')[0].split('.')[-1]
    names = sorted({'--' + IDENTITY_FLAGS.get(leaf(d), leaf(d))
                    for d in e.differences})
    raise ValueError(
        f'{", ".join(names)} differ from the run checkpointed in '
        f'{run_dir.checkpoint_dir} ({"; ".join(e.differences)}); accepted: '
        "that run's flags (to resume it), or another --workdir for a new "
        'run.') from None
