r"""How the default learning rates were chosen: a grid on the validation split.

  python experiments/learning_rates.py
  python experiments/learning_rates.py --optimizer=sgd,momentum --steps=4000

For each optimizer and learning rate: LeNet-300-100 on MNIST's training split
(50,000 examples), batch 128, `--steps` steps (2000: the main job's η0 + η1),
`--num_seeds` seeds; the accuracy on the validation split (the last 10,000
training examples) is printed and written to --output as JSON. The test split
is never read. `paramsel_jax.optim.optimizers.DEFAULT_LEARNING_RATES` holds the
winners of the run recorded in BUILD_NOTES.md.
"""

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.lab import cli
from paramsel_jax import data
from paramsel_jax import io
from paramsel_jax import models
from paramsel_jax.optim import optimizers
from paramsel_jax.lab import progress
from paramsel_jax.train import steps

GRID = {'sgd': (0.01, 0.03, 0.1, 0.3, 1.0), 'momentum': (0.003, 0.01, 0.03, 0.1, 0.3),
        'rmsprop': (1e-4, 3e-4, 1e-3, 3e-3), 'adam': (3e-4, 1e-3, 3e-3),
        'sgld': (0.01, 0.03, 0.1, 0.3, 1.0), 'psgld': (1e-4, 3e-4, 1e-3, 3e-3)}

_OPTIMIZER = flags.DEFINE_list('optimizer', list(GRID), 'Optimizers to scan.')
_STEPS = flags.DEFINE_integer('steps', 2000, 'Training steps per run.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', 2, 'Seeds per learning rate.')
_OUTPUT = flags.DEFINE_string('output', 'results/learning_rates.json', 'JSON.')


def valid_accuracy(tx, dataset, num_steps: int, seed: int) -> float:
  """Validation accuracy of LeNet-300-100 after `num_steps` steps of `tx`."""
  model = models.create_model('lenet300')
  apply_fn = lambda p, x: model.apply({'params': p}, x)
  x, y = jnp.asarray(dataset.train.images), jnp.asarray(dataset.train.labels)

  @jax.jit
  def run(key):
    params = models.init_params(model, jax.random.fold_in(key, 0), (28, 28, 1))
    def body(carry, t):
      p, s = carry
      batch_key = jax.random.fold_in(jax.random.fold_in(key, 1), t)
      xb, yb = steps.sample_batch(batch_key, x, y, 128)
      p, s, _, _ = steps.train_step(apply_fn, tx, p, s, xb, yb)
      return (p, s), None
    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)),
                                  jnp.arange(num_steps))
    return steps.evaluate(apply_fn, params, jnp.asarray(dataset.valid.images),
                          jnp.asarray(dataset.valid.labels))[1]

  return float(run(jax.random.key(seed)))


def main(argv):
  """Scans the grid and prints one line per (optimizer, learning rate)."""
  cli.check_no_arguments(argv)
  names = cli.config_or_exit(lambda: [
      n if n in GRID else optimizers.OptimizerConfig(n).name
      for n in _OPTIMIZER.value])
  dataset = data.load('mnist')
  out = {}
  runs = sum(len(GRID[n]) for n in names) * _NUM_SEEDS.value
  done = progress.Progress(runs * _STEPS.value, lambda s: print(s, flush=True),
                           prefix='[learning_rates] ')
  for name in names:
    for lr in GRID[name]:
      tx = optimizers.create_optimizer(
          optimizers.OptimizerConfig(name, learning_rate=lr),
          num_data=len(dataset.train.labels))
      accs = []
      for s in range(_NUM_SEEDS.value):  # one jitted run per seed.
        accs.append(valid_accuracy(tx, dataset, _STEPS.value, s))
        done.update(_STEPS.value, f'{name} lr {lr:g} seed {s}')
      out[f'{name} {lr:g}'] = accs
      print(f'{name:9s} lr {lr:<7g} valid acc {np.mean(accs):.4f}  {accs}',
            flush=True)
  io.write_json_atomic(out, _OUTPUT.value)


if __name__ == '__main__':
  cli.run(main)
