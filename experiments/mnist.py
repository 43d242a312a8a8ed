r"""Which parameters to keep optimizing, and which to keep: the paper's protocol.

  python experiments/mnist.py --selector=topgrad --eta0=500
  python experiments/mnist.py --selector=all --num_seeds=5 --model=lenet5
  python experiments/mnist.py --optimizer=psgld --selector=psgld,topgrad
  python experiments/mnist.py --granularity=unit --k=0.1 --cache_prefix
  python experiments/mnist.py --freeze=psgld   # online freezing vs dense

η0 steps of the optimizer on all parameters, the selector picks the k
coordinates that keep training (α), η1 steps on those, the selector keeps l
weights (β), and the test/train loss and accuracy of w and of β⊙w are printed
(mean ± std over seeds) and written as JSON to --workdir. `--k` and `--l`
are counts (integers: 500) or fractions of N (0.1, 1.0 = all, 10%). A seed
whose loss becomes non-finite is reported and left out of the summaries; the
script exits with status 1 when every seed diverged. With --freeze, α is
decided online every --check_every steps instead (over eta0 + eta1 steps),
and the run is compared with dense training in time-to-accuracy.

With --checkpoint_every=N every phase saves its state every N steps under
<workdir>/checkpoints; after a kill, the same command resumes each phase from
its latest checkpoint, to the same numbers bit for bit. Other flags in the
same workdir are refused, naming the flags that differ.
"""

import dataclasses
import sys

from paramsel_jax.lab import cli
from paramsel_jax.lab import experiment
from paramsel_jax.lab import flags as experiment_flags
from paramsel_jax.lab import online_experiment
from paramsel_jax.train import distributed

FLAGS = experiment_flags.define(
    selector=['topgrad'], k=['0.1'], l=['0.2'], eta0=500, eta1=1500,
    window=100, num_seeds=3, train_eval_size=0, workdir='results')
DISTRIBUTED = distributed.define_flags()


def main(argv):
  """Runs the experiment of the flags; exits 1 when every seed diverged."""
  cli.check_no_arguments(argv)
  distributed.initialize_from(DISTRIBUTED)  # before anything uses a device.
  run_dir = FLAGS.run_dir()

  def build():
    config = experiment_flags.experiment_config(FLAGS)
    experiment.validate_config(config)
    settings = experiment_flags.online_config(FLAGS)
    experiment_flags.validate_online(config, settings)
    identity = {'config': dataclasses.asdict(experiment.resolved(config))}
    if settings is not None:
      identity['online'] = dataclasses.asdict(settings)
    return config, settings, experiment_flags.checkpointer(run_dir, identity)

  config, settings, checkpointer = cli.config_or_exit(build)
  if settings is not None:
    online_experiment.run_online_experiment(
        config, settings, run_dir.workdir, checkpointer=checkpointer)
    return
  results = experiment.run_experiment(config, run_dir.workdir,
                                      checkpointer=checkpointer)
  if results['all_diverged']:
    sys.exit(1)


if __name__ == '__main__':
  cli.run(main)
