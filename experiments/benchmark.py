# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""How fast paramsel_jax trains, side by side with PyTorch (a measurement).

  .venv/bin/python experiments/benchmark.py
  .venv/bin/python experiments/benchmark.py --parts=throughput,peak --repeats=9
  .venv/bin/python experiments/benchmark.py --nouse_torch   # JAX only

Every variant below is set up and compiled first; then ``--repeats`` rounds
each run every variant once (the machine is shared and noisy): the variants
that are compared with each other back to back, forwards in even rounds and
backwards in odd ones, the groups in a shuffled order. A table gives each
variant's median rate and spread; each ratio is the median over rounds of
the two variants' rates *in the same round*. All numbers go, with the date,
the machine and the versions, to
``<workdir>/benchmark_<backend>_<time>.json`` (written atomically).

Parts (``--parts``):

* ``throughput``: Adam at batch ``--batch_size`` on synthetic MNIST-shaped
  uint8 data on the device, for LeNet-300-100 and LeNet-5 (``--models``):
  the protocol's own training loop (``Runner.run_chunk``: one jitted
  ``fori_loop`` of steps, batches sampled on the device; here one seed, which
  the Runner runs as the plain program); a bare scanned loop of
  ``steps.train_step`` (the same on-device
  sampling, state donated; the loop of the ``masked`` part); the library's
  jitted step (``steps.make_train_step``) called in a Python loop on
  pre-made batches; and the same model (same initial weights, copied), batch
  and optimizer in PyTorch, eager, ``torch.optim.Adam`` default and
  ``fused=True``.
* ``peak``: a ``--matmul_size``-cubed float32 matmul in JAX, GFLOP/s; the
  fraction of it that a training step reaches, from the exact matmul FLOPs
  counted from the layer shapes.
* ``masked``: ``masked(adam)`` (with a 10% α) vs ``adam`` in the same scanned
  loop.
* ``protocol``: the whole protocol (η0, α, η1, β, the evaluations of w and
  β⊙w; one selector, one seed, as ``run_protocol`` runs them: seeds mapped,
  only the selector's statistics, no dense evaluation after η0) with one warm
  ``Runner``, vs the same number of bare training steps in the same chunks of
  the same loop; the overhead is split into its parts.
* ``seeds``: ``--num_seeds`` seeds vmapped vs in turn (``lax.map``), in the
  protocol's loop.
* ``diagnose`` (not run by default): the bare loop updating the selectors'
  statistics at every step, all of ``TrajectoryStats`` (what a run comparing
  every selector collects in its windows) vs only topgrad's Σ|g|: what the
  statistics cost per step.

PyTorch is optional (``pip install -e '.[bench]'``); without it the PyTorch
columns are skipped and the script says so. PyTorch runs on CUDA when it has
a GPU, otherwise on the CPU with one thread per usable core; the table says
which. On a busy CPU (load average >= cores) ``--omp_wait_policy=auto`` sets
``OMP_WAIT_POLICY=PASSIVE`` for PyTorch's OpenMP threads, whose default
spin-waiting collapses there (50x slower measured); the header says which
policy ran.
"""

from __future__ import annotations

from collections.abc import Sequence
import functools

from absl import flags

from paramsel_jax.lab import cli
from paramsel_jax.lab.benchmarks import config as config_lib
from paramsel_jax.lab.benchmarks import run

_D = config_lib.BenchmarkConfig()  # The defaults of the flags.

_PARTS = flags.DEFINE_list(
    'parts', list(_D.parts),
    f'Any of {", ".join(config_lib.PARTS)}. diagnose (not by default): the '
    'cost per step of the selectors\' statistics, all of them vs only '
    'topgrad\'s, in the bare loop.')
_MODELS = flags.DEFINE_list(
    'models', list(_D.models),
    'Models for throughput, masked and seeds (lenet300, lenet5).')
_REPEATS = flags.DEFINE_integer('repeats', _D.repeats,
                                'Interleaved timed rounds.')
_MLP_STEPS = flags.DEFINE_integer(
    'mlp_steps', _D.mlp_steps, 'Training steps per measurement (one jitted '
    'chunk), MLPs.')
_CONV_STEPS = flags.DEFINE_integer(
    'conv_steps', _D.conv_steps, 'Training steps per measurement, conv nets.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', _D.batch_size,
                                   'Minibatch size.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', _D.learning_rate,
                                    'Adam step size.')
_NUM_TRAIN = flags.DEFINE_integer(
    'num_train', _D.num_train, 'Synthetic training examples (MNIST: 50000).')
_NUM_TEST = flags.DEFINE_integer(
    'num_test', _D.num_test, 'Synthetic test examples (MNIST: 10000).')
_MATMUL_SIZE = flags.DEFINE_integer('matmul_size', _D.matmul_size,
                                    'n of the n³ matmul.')
_MATMUL_REPS = flags.DEFINE_integer('matmul_reps', _D.matmul_reps,
                                    'Matmuls per measurement.')
_PROTOCOL_MODEL = flags.DEFINE_string('protocol_model', _D.protocol_model,
                                      'Model of the protocol part.')
_SELECTOR = flags.DEFINE_string('selector', _D.selector,
                                'Selector of the protocol part.')
_ETA0 = flags.DEFINE_integer('eta0', _D.eta0, 'Protocol: steps of T.')
_ETA1 = flags.DEFINE_integer('eta1', _D.eta1, 'Protocol: steps of T|α.')
_WINDOW = flags.DEFINE_integer('window', _D.window,
                               'Protocol: statistics window.')
_CHUNK_SIZE = flags.DEFINE_integer('chunk_size', _D.chunk_size,
                                   'Protocol: steps per jitted call.')
_K = flags.DEFINE_float('k', _D.k, 'Protocol: fraction (or count) in α.')
_L = flags.DEFINE_float('l', _D.l, 'Protocol: fraction (or count) in β.')
_TRAIN_EVAL_SIZE = flags.DEFINE_integer(
    'train_eval_size', _D.train_eval_size, 'Protocol: train metrics on the '
    'first this many training examples (0: all of them, as the paper reports '
    'L(β⊙w, D)).')
_COLD_PROTOCOL = flags.DEFINE_bool(
    'cold_protocol', _D.cold_protocol, 'Also run protocol.run_protocol itself '
    'once (it compiles its own Runner) and check the warm copy gives its '
    'metrics.')
_NUM_SEEDS = flags.DEFINE_integer('num_seeds', _D.num_seeds,
                                  'Seeds of the seeds part.')
_SEED_MLP_STEPS = flags.DEFINE_integer(
    'seed_mlp_steps', _D.seed_mlp_steps,
    'Seeds part: steps per seed per measurement, MLPs.')
_SEED_CONV_STEPS = flags.DEFINE_integer(
    'seed_conv_steps', _D.seed_conv_steps,
    'Seeds part: steps per seed per measurement, conv nets.')
_USE_TORCH = flags.DEFINE_bool('use_torch', _D.use_torch,
                               'Compare with PyTorch when it is installed.')
_TORCH_THREADS = flags.DEFINE_integer(
    'torch_threads', _D.torch_threads,
    'PyTorch CPU threads; 0: one per usable core.')
_OMP_WAIT_POLICY = flags.DEFINE_enum(
    'omp_wait_policy', _D.omp_wait_policy, config_lib.OMP_WAIT_POLICIES,
    "OMP_WAIT_POLICY of PyTorch's OpenMP threads. auto: PASSIVE when the load "
    'average is at least the number of cores (spinning threads collapse '
    'there), else the OpenMP default; unset: the OpenMP default.')
_SEED = flags.DEFINE_integer('seed', _D.seed,
                             'Seed of the data, inits and order.')
RUN_DIR = cli.define_run_dir('results/benchmark', checkpoints=False)


def config_from_flags() -> config_lib.BenchmarkConfig:
  """The flags as a config; ValueError names the first bad one."""
  return config_lib.BenchmarkConfig(
      parts=tuple(_PARTS.value), models=tuple(_MODELS.value),
      repeats=_REPEATS.value, mlp_steps=_MLP_STEPS.value,
      conv_steps=_CONV_STEPS.value, batch_size=_BATCH_SIZE.value,
      learning_rate=_LEARNING_RATE.value, num_train=_NUM_TRAIN.value,
      num_test=_NUM_TEST.value, matmul_size=_MATMUL_SIZE.value,
      matmul_reps=_MATMUL_REPS.value, protocol_model=_PROTOCOL_MODEL.value,
      selector=_SELECTOR.value, eta0=_ETA0.value, eta1=_ETA1.value,
      window=_WINDOW.value, chunk_size=_CHUNK_SIZE.value, k=_K.value,
      l=_L.value, train_eval_size=_TRAIN_EVAL_SIZE.value,
      cold_protocol=_COLD_PROTOCOL.value, num_seeds=_NUM_SEEDS.value,
      seed_mlp_steps=_SEED_MLP_STEPS.value,
      seed_conv_steps=_SEED_CONV_STEPS.value, use_torch=_USE_TORCH.value,
      torch_threads=_TORCH_THREADS.value,
      omp_wait_policy=_OMP_WAIT_POLICY.value, seed=_SEED.value)


def main(argv: Sequence[str]) -> None:
  """Flags → config (one error line and exit 2 on a bad value) → run."""
  cli.check_no_arguments(argv)
  run_dir = RUN_DIR()
  config = cli.config_or_exit(config_from_flags)
  run.run_benchmark(config, run_dir.workdir,
                    log=functools.partial(print, flush=True))


if __name__ == '__main__':
  cli.run(main)
