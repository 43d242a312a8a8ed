"""The whole structure-search pipeline: search, derive, retrain, compare.

``experiments/structure_search.py`` builds a :class:`PipelineConfig` from
flags and calls :func:`run_pipeline`, which

1. checks the config against the data (the space against the input shape,
   non-empty splits) before any work; every field of the config was already
   checked when it was made;
2. runs the bilevel search (:func:`search.run_search`) for every seed, with
   ``vmap`` over seeds or in turn, then derives each seed's argmax
   architecture, writes it as JSON, retrains it from scratch and evaluates it
   (clean, input noise, weight noise): :func:`search_and_retrain`;
3. runs the baselines (:mod:`baselines`) under the same training: random
   search of the same space at the same budget (keep the best on
   validation), a fixed hand-made network of similar size, and optionally a
   reference model (LeNet-300-100);
4. prints the results table (:mod:`results`) and writes ``results.json``
   and ``accuracy_vs_params.png`` (both atomically) into ``workdir``.

This is Part B of SPEC.md; the paper-000 protocol (which parameters to train)
is :func:`paramsel_jax.experiment.run_experiment`, a different thing.

Random search gets the searched method's budget in training steps: the
search costs ``warmup_steps + 2 * search_steps`` supernet steps (a structure
step and a weight step per search step) plus ``retrain.steps`` to retrain the
derived net, so random search trains ``round(that / retrain.steps)``
structures (at least 1), each for ``retrain.steps``. A supernet step costs
more than a step of a sampled network, so this favours random search in
FLOPs; wall times are reported for both.

Example (a tiny run on synthetic data; see ``tests/test_structure_search.py``):

  >>> import tempfile
  >>> from paramsel_jax import data
  >>> ds = data.synthetic(num_train=256, num_test=64, valid_size=64)
  >>> config = PipelineConfig(
  ...     dataset='synthetic', mlp_widths=(8, 16), mlp_depth=2, seeds=(0,),
  ...     search=search_lib.SearchConfig(warmup_steps=10, search_steps=20,
  ...                                    chunk_steps=10, batch_size=32),
  ...     retrain=training.TrainConfig(steps=20, batch_size=32,
  ...                                  chunk_steps=20),
  ...     input_sigmas=(0.1,), weight_sigmas=(0.1,), noise_repeats=1)
  >>> results = run_pipeline(config, ds, tempfile.mkdtemp(), progress=None)
  >>> sorted(results['methods'])
  ['fixed', 'random', 'searched']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import datetime
import functools
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax import io
from paramsel_jax import models
from paramsel_jax.structure import baselines
from paramsel_jax import checks
from paramsel_jax.structure import derive as derive_lib
from paramsel_jax.structure import relax
from paramsel_jax.structure import results as results_lib
from paramsel_jax.structure import search as search_lib
from paramsel_jax.structure import space as space_lib
from paramsel_jax.structure import stability
from paramsel_jax.structure import training

Progress = Callable[[str], None] | None
SPACES = ('mlp', 'conv')


def print_flush(line: str) -> None:
  """``print`` that flushes, so progress shows when stdout is a file."""
  print(line, flush=True)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything :func:`run_pipeline` needs besides the data.

  Every field is checked when the config is made (one ``ValueError`` naming
  the field, its value and what is accepted); what depends on the data's
  shape is checked by :meth:`validate`:

    >>> PipelineConfig(seeds=(0, -1))
    Traceback (most recent call last):
    ...
    ValueError: PipelineConfig.seeds=(0, -1); accepted: one or more distinct \
ints in [0, 2**32).

  Attributes:
    dataset: the data set's name (recorded; the data are passed in).
    space: ``'mlp'`` or ``'conv'``.
    mlp_widths: MLP: candidate widths of every hidden layer.
    mlp_depth: MLP: hidden layers (all but the first optional), ``>= 1``.
    activations: candidate activations of every layer.
    conv_widths: conv: candidate channels of each conv layer.
    conv_pools: conv: a 2x2 max-pool after each conv layer (bools).
    conv_optional: conv: whether each conv layer may be skipped (bools).
    kernel_sizes: conv: candidate kernel sizes.
    dense_widths: conv: candidate widths of the dense layer.
    search: the search settings.
    retrain: how derived nets and all baselines are trained.
    seeds: one search (and one run of each baseline) per seed: distinct ints
      in ``[0, 2**32)``.
    vmap_seeds: search all seeds at once under ``vmap``.
    random_samples: structures tried by random search; ``None`` matches the
      search's budget (see the module docstring); 0 skips random search.
    fixed: train the fixed hand-made network of similar size.
    reference_model: a :func:`paramsel_jax.models.create_model` name trained
      the same way for reference (e.g. ``'lenet300'``), or ``None``.
    input_sigmas: input-noise levels of the stability report (``>= 0``).
    weight_sigmas: relative weight-noise levels of the stability report.
    noise_repeats: noise draws per level, ``>= 1``.
    eval_batch_size: evaluation batch size, ``>= 1``.
  """

  dataset: str = 'mnist'
  space: str = 'mlp'
  mlp_widths: tuple[int, ...] = (32, 64, 128, 256, 512)
  mlp_depth: int = 3
  activations: tuple[str, ...] = space_lib.ALL_ACTIVATIONS
  conv_widths: tuple[tuple[int, ...], ...] = ((8, 16, 32), (16, 32, 64),
                                              (16, 32, 64))
  conv_pools: tuple[bool, ...] = (True, True, False)
  conv_optional: tuple[bool, ...] = (False, False, True)
  kernel_sizes: tuple[int, ...] = (3, 5)
  dense_widths: tuple[int, ...] = (32, 64, 128)
  search: search_lib.SearchConfig = search_lib.SearchConfig()
  retrain: training.TrainConfig = training.TrainConfig()
  seeds: tuple[int, ...] = (0, 1, 2)
  vmap_seeds: bool = True
  random_samples: int | None = None
  fixed: bool = True
  reference_model: str | None = None
  input_sigmas: tuple[float, ...] = (0.1, 0.2, 0.3)
  weight_sigmas: tuple[float, ...] = (0.1, 0.2, 0.3)
  noise_repeats: int = 2
  eval_batch_size: int = 1000

  def __post_init__(self):
    checks.fields(self, ('dataset',), checks.instance, cls=str)
    checks.fields(self, ('space',), checks.one_of, accepted=SPACES)
    checks.fields(self, ('mlp_widths', 'kernel_sizes', 'dense_widths'),
                  checks.integers)
    checks.fields(self, ('mlp_depth',), checks.integer, at_least=1)
    checks.fields(self, ('activations',), checks.strings)
    checks.fields(self, ('conv_widths',), checks.integer_lists)
    checks.fields(self, ('conv_pools', 'conv_optional'), checks.booleans)
    checks.fields(self, ('search',), checks.instance,
                  cls=search_lib.SearchConfig)
    checks.fields(self, ('retrain',), checks.instance,
                  cls=training.TrainConfig)
    checks.fields(self, ('seeds',), checks.seeds)
    checks.fields(self, ('vmap_seeds', 'fixed'), checks.boolean)
    checks.fields(self, ('random_samples',), checks.integer, at_least=0,
                  optional=True)
    checks.fields(self, ('reference_model',), checks.one_of,
                  accepted=tuple(models.MODELS), optional=True)
    checks.fields(self, ('input_sigmas', 'weight_sigmas'), checks.reals,
                  at_least=0)
    checks.fields(self, ('noise_repeats', 'eval_batch_size'), checks.integer,
                  at_least=1)

  def build_space(self, input_shape: Sequence[int],
                  num_classes: int) -> space_lib.SearchSpace:
    """The validated search space for data of this shape."""
    if self.space == 'conv':
      return space_lib.conv_space(input_shape, num_classes,
                                  conv_widths=self.conv_widths,
                                  kernel_sizes=self.kernel_sizes,
                                  pools=self.conv_pools,
                                  optional=self.conv_optional,
                                  dense_widths=self.dense_widths,
                                  activations=self.activations)
    return space_lib.mlp_space(input_shape, num_classes,
                               widths=self.mlp_widths, depth=self.mlp_depth,
                               activations=self.activations)

  def validate(self, input_shape: Sequence[int],
               num_classes: int) -> space_lib.SearchSpace:
    """The search space for data of this shape; ValueError if it cannot be.

    Needs only the shape, so callers check before loading any data (see
    :func:`paramsel_jax.data.info`).

    Example:
      >>> PipelineConfig(space='conv').validate((2, 2, 1), 10)
      Traceback (most recent call last):
      ...
      ValueError: layer 1 (conv): pool on a 1x1 map; accepted: maps of at \
least 2x2.
    """
    return self.build_space(input_shape, num_classes)

  def num_random(self) -> int:
    """Structures random search trains (the budget rule when ``None``)."""
    if self.random_samples is not None:
      return self.random_samples
    s = self.search
    budget = s.warmup_steps + 2 * s.search_steps + self.retrain.steps
    return max(1, round(budget / self.retrain.steps))


class Splits(NamedTuple):
  """The splits as ``(uint8 images, int labels)`` device arrays."""

  train: tuple[jax.Array, jax.Array]
  valid: tuple[jax.Array, jax.Array]
  test: tuple[jax.Array, jax.Array]


def device_splits(dataset: Any) -> Splits:
  """The train, valid and test splits of a ``Dataset`` on the device."""
  put = lambda split: (jnp.asarray(split.images), jnp.asarray(split.labels))
  return Splits(put(dataset.train), put(dataset.valid), put(dataset.test))


def check_data(config: PipelineConfig, dataset: Any) -> space_lib.SearchSpace:
  """The search space for ``dataset``; ValueError if the data cannot serve."""
  input_shape = tuple(int(d) for d in dataset.train.images.shape[1:])
  space = config.validate(input_shape, dataset.num_classes)
  for split in ('train', 'valid', 'test'):
    if len(getattr(dataset, split).labels) < 1:
      raise ValueError(f'dataset split {split!r} is empty; accepted: '
                       'non-empty train, valid and test splits.')
  return space


def fit_network(model: Any, key: jax.Array, name: str, *, splits: Splits,
                config: PipelineConfig, progress: Progress = None
                ) -> dict[str, Any]:
  """Trains ``model`` from scratch, then its accuracy, clean and noisy.

  Args:
    model: a flax model of ``splits``' images.
    key: PRNG key: ``fold_in(key, 0)`` initialises, ``1`` draws the batches,
      ``2`` the noise.
    name: a label for the progress lines.
    splits: the data.
    config: ``retrain`` and the noise settings are used.
    progress: called with training progress lines, if given.

  Returns:
    ``num_params``, the figures of :func:`stability.robustness` (with
    ``valid_accuracy``) and ``seconds``.
  """
  start = time.perf_counter()
  input_shape = tuple(splits.train[0].shape[1:])
  params = models.init_params(model, jax.random.fold_in(key, 0), input_shape)
  num_params = models.count_params(params)
  params = training.train(model.apply, params, *splits.train,
                          jax.random.fold_in(key, 1), config.retrain,
                          progress=progress, name=name)
  apply_fn = lambda p, x: model.apply({'params': p}, x)
  report = stability.robustness(
      apply_fn, params, *splits.test, jax.random.fold_in(key, 2),
      input_sigmas=config.input_sigmas, weight_sigmas=config.weight_sigmas,
      repeats=config.noise_repeats, batch_size=config.eval_batch_size,
      valid=splits.valid)
  return {'num_params': num_params, **report,
          'seconds': time.perf_counter() - start}


def _write_architecture(workdir: str, seed: int, arch: derive_lib.Architecture,
                        indices: dict[str, int], logits: Any) -> None:
  probs = {k: np.asarray(v).tolist()
           for k, v in relax.probabilities(logits).items()}
  io.write_json_atomic(
      {'seed': seed, 'indices': indices, 'probabilities': probs,
       **arch.to_dict()},
      os.path.join(workdir, f'architecture_seed{seed}.json'))


def search_and_retrain(space: space_lib.SearchSpace, config: PipelineConfig,
                       splits: Splits, fit: baselines.Fit, workdir: str, *,
                       progress: Progress = None
                       ) -> tuple[dict[str, Any], search_lib.SearchResult]:
  """The searched method: search, derive (JSON per seed), retrain.

  Returns:
    ``(method, search result)``: the method holds ``runs`` (one per seed),
    ``summary``, the seeds' structure ``agreement`` and ``search_seconds``.
  """
  say = progress or baselines.silent
  result = search_lib.run_search(space, config.search, splits.train,
                                 splits.valid, seeds=config.seeds,
                                 vmap_seeds=config.vmap_seeds,
                                 progress=progress)
  say(f'search done in {result.seconds:.1f}s')
  runs, all_indices = [], []
  for i, seed in enumerate(config.seeds):
    logits = result.seed_logits(i)
    arch, indices = derive_lib.derive_architecture(space, logits)
    all_indices.append(indices)
    _write_architecture(workdir, seed, arch, indices, logits)
    say(f'seed {seed}: derived {arch.describe()} ({arch.num_params()} '
        'params); retraining')
    key = jax.random.fold_in(jax.random.key(seed),
                             baselines.STREAMS['searched'])
    run = fit(derive_lib.DiscreteNet(arch, config.search.conv_impl), key,
              f'searched seed {seed}')
    run.update(seed=seed, architecture=arch.to_dict(), indices=indices)
    runs.append(run)
    say(f'seed {seed}: searched net test accuracy {run["accuracy"]:.4f}')
  method = {'runs': runs, 'summary': results_lib.summarize_runs(runs),
            'agreement': stability.seed_agreement(all_indices),
            'search_seconds': result.seconds}
  return method, result


def run_baselines(space: space_lib.SearchSpace, config: PipelineConfig,
                  searched_runs: baselines.Runs, fit: baselines.Fit,
                  num_classes: int, say: Callable[[str], None]
                  ) -> dict[str, Any]:
  """The baselines ``config`` asks for: method name -> method."""
  conv_impl = config.search.conv_impl
  methods: dict[str, Any] = {}
  if config.num_random():
    methods.update(baselines.random_search(
        space, searched_runs, config.num_random(), fit, conv_impl=conv_impl,
        say=say))
  if config.fixed:
    methods['fixed'] = baselines.fixed_baseline(
        space, searched_runs, fit, conv_impl=conv_impl, say=say)
  if config.reference_model:
    methods['reference'] = baselines.reference_baseline(
        config.reference_model, num_classes, config.seeds, fit, say=say)
  return methods


def run_pipeline(config: PipelineConfig, dataset: Any, workdir: str, *,
                 progress: Progress = print_flush) -> dict[str, Any]:
  """Runs search, derivation, retraining, baselines and the report.

  Args:
    config: the pipeline settings.
    dataset: a :class:`paramsel_jax.data.Dataset` (uint8 splits).
    workdir: where ``results.json``, ``accuracy_vs_params.png`` and the
      per-seed ``architecture_seed<s>.json`` go (created if missing).
    progress: called with progress lines (``None``: silent).

  Returns:
    The results dict that is written to ``results.json``.

  Raises:
    ValueError: if the data do not fit the config, before any work.
  """
  space = check_data(config, dataset)
  say = progress or baselines.silent
  os.makedirs(workdir, exist_ok=True)
  started = datetime.datetime.now(datetime.timezone.utc)
  wall = time.perf_counter()
  splits = device_splits(dataset)
  fit = functools.partial(fit_network, splits=splits, config=config,
                          progress=progress)
  say(f'structure search on {config.dataset}: {config.space} space, '
      f'{len(space.choices())} choices, {space.num_structures()} structures, '
      f'seeds {list(config.seeds)}, vmap_seeds={config.vmap_seeds}')
  searched, result = search_and_retrain(space, config, splits, fit, workdir,
                                        progress=progress)
  methods = {'searched': searched,
             **run_baselines(space, config, searched['runs'], fit,
                             dataset.num_classes, say)}
  total = time.perf_counter() - wall
  table = results_lib.results_table(methods)
  say(table)
  results = {
      'dataset': config.dataset,
      'date': started.isoformat(timespec='seconds'),
      'seconds': total,
      'backend': jax.default_backend(),
      'config': dataclasses.asdict(config),
      'space': space.to_dict(),
      'random_samples_per_seed': config.num_random(),
      'search': {'seconds': result.seconds, 'vmap_seeds': config.vmap_seeds,
                 'history': result.history},
      'methods': methods,
      'table': table,
  }
  results_path = os.path.join(workdir, 'results.json')
  plot_path = os.path.join(workdir, 'accuracy_vs_params.png')
  io.write_json_atomic(results, results_path)
  results_lib.plot_accuracy_vs_params(methods, plot_path, title=config.dataset)
  say(f'wrote {results_path} and {plot_path} ({total:.1f}s in all)')
  return results
