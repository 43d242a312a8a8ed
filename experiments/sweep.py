r"""A resumable grid: selector × k/N × l/N × optimizer × model, several seeds.

  python experiments/sweep.py --model=lenet300 --workdir=results/sweep/lenet300
  python experiments/sweep.py --model=lenet5 --workdir=results/sweep/lenet5
  python experiments/sweep.py --mode=retrain --model=lenet300 \
      --workdir=results/sweep/anchors_lenet300
  # The anchors in the README: gradual pruning, L2, long retraining.
  python experiments/sweep.py --mode=retrain --model=lenet300 \
      --selector=magnitude --weight_decay=1e-4 --prune_rounds=16 --eta1=32000

The flags are experiments/mnist.py's (same names), with lists where a grid
needs them: --model, --optimizer (name[:learning_rate]), --selector, --k and
--l (fractions of N). Every finished cell is saved atomically under
--workdir; run the same command again after a kill and only the missing
cells are computed. The outputs (tables.txt, tables.md, results.json,
cells.csv, summary.csv, PNG plots) are rewritten at the end from the stored
cells. Flags left at 'auto' take the measured defaults of
`paramsel_jax.lab.sweep.default_budget` (a reduced selector set and fewer steps
when a conv net is in the grid; longer training and l/N ∈ {8, 5, 2}% in
--mode=retrain); the chosen values are printed.

Several processes may run one sweep at once in one --output_dir, each a
shard of its η1 groups (paramsel_jax.lab.sweep.shards):

  for i in 0 1 2 3; do
    python experiments/sweep.py --model=lenet300 --num_shards=4 \
        --shard_index=$i --output_dir=results/sweep/lenet300 &
  done; wait

Without --shard_index/--num_shards, a SLURM job-array task is its shard
(`sbatch --array=0-3 ...`: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
SLURM_ARRAY_TASK_COUNT), and a process of a multi-process jax.distributed
run is shard jax.process_index() of jax.process_count(); otherwise one
process runs everything. Each group is claimed before it is computed, so
none is computed twice; the shard that stores the last cell writes the
tables (the same bytes as one process's), the others print how many cells
remain and who computes them. `--collect_only` writes the tables of a
finished sweep (or says what is missing, exit status 1) without computing.
"""

import os

from absl import flags
import jax

from paramsel_jax.lab import cli
from paramsel_jax.lab import flags as experiment_flags
from paramsel_jax.lab import sweep

FLAGS = experiment_flags.define(
    selector=['auto'], k=['0.01', '0.05', '0.1', '0.25'], l=['auto'],
    eta0=None, eta1=None, window=None, num_seeds=None, train_eval_size=None,
    workdir='results/sweep')
SHARD_INDEX = flags.DEFINE_integer(
    'shard_index', None, 'This process\'s shard, 0 .. --num_shards - 1 '
    '(default: the SLURM array task, the jax process, or 0).', lower_bound=0)
NUM_SHARDS = flags.DEFINE_integer(
    'num_shards', None, 'How many processes share the sweep\'s work (give '
    'with --shard_index).', lower_bound=1)
COLLECT_ONLY = flags.DEFINE_bool(
    'collect_only', False, 'Compute nothing: write the tables of the stored '
    'cells if the grid is complete, else list what remains (exit status 1).')


def config_from_flags() -> tuple[sweep.SweepConfig, list[str]]:
  """The sweep, and notes on the 'auto' values chosen."""
  f = FLAGS
  models = tuple(f.value('model'))
  budget = sweep.default_budget(models, f.value('mode'))
  notes = [f'{key}={budget[key]}' for key in
           ('eta0', 'eta1', 'window', 'num_seeds', 'train_eval_size')
           if f.value(key) is None]
  names = experiment_flags.selector_names(f, auto=budget['selectors'])
  if f.value('selector') == ['auto']:
    notes.append(f'selector={",".join(names)}')
  ls = f.value('l')
  if ls == ['auto']:
    ls = [str(l) for l in budget['ls']]
    notes.append(f'l={",".join(ls)}')
  proto = experiment_flags.protocol_config(f, l=ls, **budget)
  num_seeds = f.value('num_seeds') or budget['num_seeds']
  config = sweep.SweepConfig(
      dataset=f.value('dataset'), models=models,
      optimizers=experiment_flags.optimizer_configs(f), selectors=names,
      ks=() if proto.mode == 'retrain' else proto.ks, ls=proto.ls,
      seeds=experiment_flags.seed_range(f, num_seeds),
      protocol=proto, data_dir=f.value('data_dir'))
  return config, notes


def online_config_from_flags() -> sweep.OnlineSweepConfig:
  """`--freeze=a,b`: dense training and each criterion, per model and optimizer.

  Each run is --eta0 + --eta1 steps (default 500 + 1500).
  """
  f = FLAGS
  names = [n for n in f.value('freeze').split(',') if n]
  steps = (f.value('eta0') or 500) + (f.value('eta1') or 1500)
  templates = [experiment_flags.online_config(f, name=n, steps=steps)
               for n in names if n != 'none']
  if not templates:
    raise ValueError(f'--freeze={f.value("freeze")}; accepted: one or more '
                     'criteria, comma-separated (dense runs anyway).')
  config = sweep.OnlineSweepConfig(
      dataset=f.value('dataset'), models=tuple(f.value('model')),
      optimizers=experiment_flags.optimizer_configs(f),
      criteria=tuple(['none'] + [n for n in names if n != 'none']),
      seeds=experiment_flags.seed_range(f, f.value('num_seeds') or 3),
      online=templates[0], data_dir=f.value('data_dir'))
  with cli.as_flags(experiment_flags.ONLINE_FLAGS):
    sweep.validate_online_sweep(config)
  return config


def shard_from_flags() -> tuple[int, int]:
  """--shard_index/--num_shards, else a SLURM array task, else jax's process.

  (Under jax.distributed, call it after `jax.distributed.initialize`.)
  """
  return sweep.shards.resolve(SHARD_INDEX.value, NUM_SHARDS.value, os.environ,
                              (jax.process_index(), jax.process_count()))


def main(argv):
  """Runs (or resumes) the sweep of the flags into --workdir."""
  cli.check_no_arguments(argv)
  run_dir = FLAGS.run_dir()
  shard = cli.config_or_exit(shard_from_flags)
  collect_only = COLLECT_ONLY.value
  checkpointing = {'checkpoint_every': run_dir.checkpoint_every,
                   'keep_checkpoints': run_dir.keep}
  if FLAGS.value('freeze') != 'none':
    settings = cli.config_or_exit(online_config_from_flags)
    online = sweep.run_online_sweep(settings, run_dir.workdir, shard=shard,
                                    collect_only=collect_only, **checkpointing)
    if collect_only and len(online['runs']) < (
        len(settings.models) * len(settings.optimizers)
        * len(settings.criteria)):
      cli.fail('--collect_only: the sweep is not complete (see above).', 1)
    return

  def build():
    config, notes = config_from_flags()
    sweep.validate_sweep(config)
    return config, notes

  config, notes = cli.config_or_exit(build)
  if notes:
    print(f'[sweep] defaults for {",".join(config.models)} / {config.protocol.mode}'
          f' (sweep.default_budget): {"; ".join(notes)}', flush=True)
  results = sweep.run_sweep(config, run_dir.workdir, shard=shard,
                            collect_only=collect_only, **checkpointing)
  if collect_only and not sweep.is_complete(results):
    cli.fail('--collect_only: the sweep is not complete (see above).', 1)


if __name__ == '__main__':
  cli.run(main)
