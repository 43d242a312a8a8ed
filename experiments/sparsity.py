r"""Sparse training and pruning on MNIST: jaxpruner's algorithms side by side.

  uv run experiments/sparsity.py --algorithm=rigl --sparsity=0.95
  uv run experiments/sparsity.py --algorithm=magnitude,rigl,set \
      --sparsity=0.9,0.95,0.98 --model=lenet300 --seeds=3
  uv run experiments/sparsity.py --model=lenet5 --algorithm=magnitude \
      --schedule=one_shot --steps=10000

Trains LeNet-300-100 or LeNet-5-Caffe on MNIST's 50,000 training examples
(the last 10,000 of the original training set are the validation split)
with `paramsel_jax.sparsity.sparse` around Adam (L2 --weight_decay), for
every algorithm and sparsity given and --seeds seeds, and writes the table
of the pruned models (test and validation error, mean ± std over seeds;
kept fraction of all params and of the pruned kernels; steps; wall seconds)
as markdown and JSON into --workdir, rewritten after each (algorithm,
sparsity). See `paramsel_jax.lab.sparsity_experiment` for the algorithms.
"""

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax.lab import sparsity_experiment as lib

_D = lib.SparsityConfig()
ALGORITHM = flags.DEFINE_list(
    'algorithm', list(_D.algorithms),
    f'Comma list of algorithms: {", ".join(lib.ALGORITHMS)}.')
SPARSITY = flags.DEFINE_list(
    'sparsity', [f'{s:g}' for s in _D.sparsities],
    'Comma list of target sparsities of the kernels, each in (0, 1).')
DISTRIBUTION = flags.DEFINE_string(
    'distribution', _D.distribution,
    f'{", ".join(lib.DISTRIBUTIONS)} (default: ERK for set/rigl/static, '
    'uniform otherwise; global_magnitude is always global).')
SCHEDULE = flags.DEFINE_string(
    'schedule', _D.schedule,
    'For magnitude, global_magnitude, random, saliency: polynomial (gradual, '
    'Zhu & Gupta) or one_shot (prune at --end, then fine-tune).')
MODEL = flags.DEFINE_string('model', _D.model, ', '.join(lib.MODELS))
DATA = flags.DEFINE_string('data', _D.data, ', '.join(lib.DATA))
SEEDS = flags.DEFINE_integer('seeds', _D.seeds, 'Seeds 0 .. seeds - 1.')
STEPS = flags.DEFINE_integer('steps', _D.steps, 'Training steps per seed.')
BATCH_SIZE = flags.DEFINE_integer('batch_size', _D.batch_size,
                                  'Examples per step.')
LEARNING_RATE = flags.DEFINE_float('learning_rate', _D.learning_rate,
                                   "Adam's learning rate (constant).")
WEIGHT_DECAY = flags.DEFINE_float('weight_decay', _D.weight_decay,
                                  'L2 coefficient added to the gradient.')
DROP_FRACTION = flags.DEFINE_float(
    'drop_fraction', _D.drop_fraction,
    "SET / RigL's first drop fraction, cosine-decayed to 0 at --end.")
UPDATE_EVERY = flags.DEFINE_integer('update_every', _D.update_every,
                                    'Steps between mask updates (STE: every step).')
BEGIN = flags.DEFINE_float('begin', _D.begin,
                           'Fraction of --steps where gradual pruning begins.')
END = flags.DEFINE_float(
    'end', _D.end, 'Fraction of --steps where pruning ends (SET / RigL: '
    'where the mask updates stop).')
EVAL_EVERY = flags.DEFINE_integer(
    'eval_every', _D.eval_every,
    'Steps between progress lines (validation error); 0: none.')
RUN_DIR = cli.define_run_dir('results/sparsity', checkpoints=False)


def main(argv):
  """Validates the flags, then trains and writes the table."""
  cli.check_no_arguments(argv)
  run_dir = RUN_DIR()

  def build():
    return lib.validate(lib.SparsityConfig(
        algorithms=tuple(a.strip() for a in ALGORITHM.value),
        sparsities=cli.floats(SPARSITY.value, 'sparsity'),
        model=MODEL.value, data=DATA.value, seeds=SEEDS.value,
        steps=STEPS.value, batch_size=BATCH_SIZE.value,
        learning_rate=LEARNING_RATE.value, weight_decay=WEIGHT_DECAY.value,
        schedule=SCHEDULE.value, distribution=DISTRIBUTION.value,
        drop_fraction=DROP_FRACTION.value, update_every=UPDATE_EVERY.value,
        begin=BEGIN.value, end=END.value, eval_every=EVAL_EVERY.value))

  config = cli.config_or_exit(build)
  lib.run(config, run_dir.workdir, log=lambda s: print(s, flush=True))


if __name__ == '__main__':
  cli.run(main)
