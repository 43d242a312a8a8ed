"""The whole structure-search pipeline: search, derive, retrain, compare.

``experiments/structure_search.py`` builds a :class:`PipelineConfig`
(:mod:`config`) from flags and calls :func:`run_pipeline`, which

1. checks the config against the data (the space against the input shape,
   non-empty splits) before any work; every field of the config was already
   checked when it was made;
2. runs the bilevel search (:func:`search.run_search`) for every seed, with
   ``vmap`` over seeds or in turn, then derives each seed's argmax
   architecture, writes it as JSON, retrains it from scratch and evaluates it
   (clean, input noise, weight noise), and measures the search's failure
   modes (:mod:`diagnostics`): :func:`search_and_retrain`;
3. runs the baselines under the same training (:mod:`fitting`): random
   search of the same space (:func:`run_random`), a fixed hand-made network
   of similar size, and optionally a reference model (LeNet-300-100,
   LeNet-5);
4. optionally runs the paper-000 protocol on every derived net
   (:mod:`selection`);
5. prints the results table (:mod:`results`), the records it is held against
   (:mod:`records`) and writes ``results.json`` and ``accuracy_vs_cost.png``
   (both atomically) into ``workdir``.

Given a :class:`~paramsel_jax.train.checkpoints.Checkpointer` (whose identity
is :func:`checkpoint_identity`), every training loop is resumable: the
search of each group of seeds (phase ``'search/seeds 0,1,2'``) and every
network's training (``'train/<its name>'``: ``'train/searched seed 0'``,
``'train/random seed 0 #1'``, ``'train/fixed seed 0'``, ...) save every
``checkpointer.every`` steps and at their end. A rerun of a killed pipeline
restores the finished ones at their end (their training is skipped; the
evaluations, which are cheap and deterministic, run again) and resumes the
interrupted one from its last save; the results are bit-identical to an
uninterrupted run's, timings aside (a resumed loop's seconds add what its
earlier runs had recorded at their last save, so random search's wall-clock
budgets stay about the same). The protocol of ``select`` is not resumable
here.

Random search gets, per seed, the searched method's wall-clock for that seed
(its share of the search plus its retraining; not the stability evaluation,
which random search's structures do not get either) times each of
``config.random_budgets`` (:mod:`random_budget`: successive halving, or
plain with ``random_eta=1``); with ``random_samples`` set it trains that many
structures per seed instead (:func:`baselines.random_search`).

Example (a tiny run on synthetic data; see ``tests/test_structure_search.py``):

  >>> import tempfile
  >>> from paramsel_jax import data
  >>> from paramsel_jax.structure import search as search_lib
  >>> from paramsel_jax.structure import training
  >>> ds = data.synthetic(num_train=256, num_test=64, valid_size=64)
  >>> config = PipelineConfig(
  ...     dataset='synthetic', mlp_widths=(8, 16), mlp_depth=2, seeds=(0,),
  ...     search=search_lib.SearchConfig(warmup_steps=10, search_steps=20,
  ...                                    chunk_steps=10, batch_size=32),
  ...     retrain=training.TrainConfig(steps=20, batch_size=32,
  ...                                  chunk_steps=20),
  ...     random_samples=1, input_sigmas=(0.1,), weight_sigmas=(0.1,),
  ...     noise_repeats=1)
  >>> results = run_pipeline(config, ds, tempfile.mkdtemp(), progress=None)
  >>> sorted(results['methods'])
  ['fixed', 'random', 'searched']
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import datetime
import os
import time
from typing import Any

import jax
import numpy as np

from paramsel_jax import io
from paramsel_jax.train import checkpoints as checkpoints_lib
from paramsel_jax.structure import baselines
from paramsel_jax.structure import derive as derive_lib
from paramsel_jax.structure import diagnostics
from paramsel_jax.structure import fitting
from paramsel_jax.structure import random_budget
from paramsel_jax.structure import relax
from paramsel_jax.structure import results as results_lib
from paramsel_jax.structure import search as search_lib
from paramsel_jax.structure import selection as selection_lib
from paramsel_jax.structure import space as space_lib
from paramsel_jax.structure import stability
from paramsel_jax.structure.config import PipelineConfig
from paramsel_jax.structure.config import SPACES
from paramsel_jax.structure.fitting import device_splits
from paramsel_jax.structure.fitting import fit_network
from paramsel_jax.structure.fitting import Splits

__all__ = ['PipelineConfig', 'SPACES', 'Splits', 'device_splits',
           'fit_network', 'print_flush', 'check_data', 'checkpoint_identity',
           'make_fit', 'search_and_retrain', 'run_random', 'run_baselines',
           'run_pipeline']

Progress = Callable[[str], None] | None
Checkpointer = checkpoints_lib.Checkpointer | None


def print_flush(line: str) -> None:
  """``print`` that flushes, so progress shows when stdout is a file."""
  print(line, flush=True)


def check_data(config: PipelineConfig, dataset: Any) -> space_lib.SearchSpace:
  """The search space for ``dataset``; ValueError if the data cannot serve."""
  input_shape = tuple(int(d) for d in dataset.train.images.shape[1:])
  space = config.validate(input_shape, dataset.num_classes)
  for split in ('train', 'valid', 'test'):
    if len(getattr(dataset, split).labels) < 1:
      raise ValueError(f'dataset split {split!r} is empty; accepted: '
                       'non-empty train, valid and test splits.')
  return space


def checkpoint_identity(config: PipelineConfig, **data: Any
                        ) -> dict[str, Any]:
  """What a pipeline's checkpoints belong to: the config and the data's settings.

  ``data``: the settings that make the data set besides its name (e.g.
  ``valid_size``, a synthetic set's shape and sizes), so that a run on other
  data never resumes from these checkpoints.

  Example:
    >>> a = checkpoint_identity(PipelineConfig(), valid_size=None)
    >>> a['config']['dataset'], a['data']
    ('mnist', {'valid_size': None})
  """
  return {'config': dataclasses.asdict(config), 'data': data}


def _phase(checkpointer: Checkpointer, used: set[str], label: str
           ) -> checkpoints_lib.PhaseCheckpoints | None:
  """``checkpointer``'s phase ``label``; each label serves one loop only."""
  if checkpointer is None:
    return None
  if label in used:
    raise RuntimeError(f'two trainings of one pipeline are both named '
                       f'{label!r}; each needs its own checkpoints.')
  used.add(label)
  return checkpointer.phase(label)


def make_fit(splits: Splits, config: PipelineConfig, progress: Progress = None,
             checkpointer: Checkpointer = None) -> baselines.Fit:
  """The pipeline's ``fit(model, key, name)`` (:func:`fit_network`).

  With ``checkpointer``, each training is the phase ``'train/<name>'``
  (names are unique within a pipeline: a repeated one is an error).
  """
  train = None if checkpointer is None else checkpointer.scope('train')
  used: set[str] = set()

  def fit(model: Any, key: jax.Array, name: str) -> dict[str, Any]:
    return fit_network(model, key, name, splits=splits, config=config,
                       progress=progress,
                       checkpoints=_phase(train, used, name))
  return fit


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
                       progress: Progress = None,
                       checkpointer: Checkpointer = None
                       ) -> tuple[dict[str, Any], search_lib.SearchResult]:
  """The searched method: search, derive (JSON per seed), retrain, diagnose.

  ``checkpointer``: the search resumes from its phases (scope ``'search'``);
  the retraining's are ``fit``'s (:func:`make_fit`).

  Returns:
    ``(method, search result)``: the method holds ``runs`` (one per seed,
    each with ``method_seconds``: its share of the search plus its
    retraining, the time random search is measured against; the stability
    evaluation, which random search's structures do not get, is left out),
    ``summary``, the seeds' structure ``agreement``,
    ``diagnostics`` (:func:`diagnostics.diagnose`) and ``search_seconds``.
  """
  say = progress or baselines.silent
  result = search_lib.run_search(space, config.search, splits.train,
                                 splits.valid, seeds=config.seeds,
                                 vmap_seeds=config.vmap_seeds,
                                 progress=progress,
                                 checkpointer=None if checkpointer is None
                                 else checkpointer.scope('search'))
  say(f'search done in {result.seconds:.1f}s')
  runs, all_indices = [], []
  for i, seed in enumerate(config.seeds):
    logits = result.seed_logits(i)
    arch, indices = derive_lib.derive_architecture(space, logits)
    all_indices.append(indices)
    _write_architecture(workdir, seed, arch, indices, logits)
    say(f'seed {seed}: derived {arch.describe()} ({arch.num_params():,} '
        f'params, {arch.num_flops():,} FLOPs); retraining')
    key = jax.random.fold_in(jax.random.key(seed),
                             baselines.STREAMS['searched'])
    run = fit(derive_lib.DiscreteNet(arch, config.search.conv_impl), key,
              f'searched seed {seed}')
    run.update(seed=seed, architecture=arch.to_dict(), indices=indices,
               method_seconds=result.seconds / len(config.seeds)
               + run['train_seconds'])
    runs.append(run)
    say(f'seed {seed}: searched net accuracy {run["accuracy"]:.4f}')
  diag = diagnostics.diagnose(
      space, config.search.conv_impl, result, all_indices,
      [r['valid_accuracy'] for r in runs], splits.valid,
      config.eval_batch_size)
  for line in diagnostics.summary_lines(diag):
    say(line)
  method = {'runs': runs, 'summary': results_lib.summarize_runs(runs),
            'agreement': stability.seed_agreement(all_indices),
            'diagnostics': diag, 'search_seconds': result.seconds}
  return method, result


class _ResumedClock:
  """The wall clock, plus the time earlier runs spent on restored trainings."""

  def __init__(self):
    self.earlier = 0.0

  def __call__(self) -> float:
    return time.perf_counter() + self.earlier


def _budget_runs(space: space_lib.SearchSpace, config: PipelineConfig,
                 searched_run: dict[str, Any], splits: Splits,
                 say: Callable[[str], None],
                 checkpointer: Checkpointer = None,
                 used: set[str] | None = None) -> dict[float, dict[str, Any]]:
  """One seed's wall-clock random search: budget multiple -> its run.

  With ``checkpointer``, each trial's training is the phase ``'random seed
  <s>: <structure>, <steps> steps, key <its key>'`` (the key makes it
  unique); the clock counts a resumed training at the time its earlier runs
  recorded, so the brackets fit the budgets as in an uninterrupted run.
  """
  conv_impl = config.search.conv_impl
  plan = random_budget.bracket_plan(config.retrain.steps, config.random_eta,
                                    config.random_rungs)
  seed, base = searched_run['seed'], searched_run['method_seconds']
  clock = _ResumedClock()
  used = set() if used is None else used

  def train_fn(arch, key, steps):
    key_hex = ''.join(f'{int(x):08x}' for x in
                      np.ravel(jax.random.key_data(key)))
    name = f'random seed {seed}: {arch.describe()}, {steps} steps'
    start = time.perf_counter()
    params, run = fitting.train_network(
        derive_lib.DiscreteNet(arch, conv_impl), key, arch.describe(),
        splits=splits, config=config, steps=steps,
        checkpoints=_phase(checkpointer, used, f'{name}, key {key_hex}'))
    clock.earlier += max(run['seconds'] - (time.perf_counter() - start), 0.0)
    return params, run

  out = random_budget.budgeted_random_search(
      space, seed, base, config.random_budgets, train_fn, plan, say,
      config.random_limits(), clock=clock)
  brackets = out['brackets']
  noise_key = jax.random.fold_in(jax.random.key(seed),
                                 baselines.STREAMS['random_noise'])
  runs = {}
  for m, chosen in out['chosen'].items():
    counted = [b for i, b in enumerate(brackets)
               if i == 0 or b['end_seconds'] <= m * base]
    final = brackets[chosen]['final']
    arch = derive_lib.Architecture.from_dict(final['architecture'])
    report = fitting.evaluate_network(
        derive_lib.DiscreteNet(arch, conv_impl),
        brackets[chosen]['final_params'], noise_key, splits=splits,
        config=config)
    runs[m] = {**final, **report, 'seed': seed, 'budget_seconds': m * base,
               'seconds': counted[-1]['end_seconds'],
               'brackets': len(counted),
               'structures': sum(b['structures'] for b in counted),
               'trials': [t for b in counted for t in b['trials']]}
    say(f'seed {seed}: random search at {m:g}x ({m * base:.0f}s): '
        f'{runs[m]["structures"]} structures in {len(counted)} brackets, '
        f'best valid {arch.describe()}, accuracy {report["accuracy"]:.4f}')
  return runs


def run_random(space: space_lib.SearchSpace, config: PipelineConfig,
               searched_runs: baselines.Runs, fit: baselines.Fit,
               splits: Splits, say: Callable[[str], None],
               checkpointer: Checkpointer = None) -> dict[str, Any]:
  """Random search as the config asks: method name -> method.

  ``checkpointer``: the wall-clock mode's trainings resume from its phases
  (scope ``'train'``); the count mode's are ``fit``'s.
  """
  mode = config.random_mode()
  if mode == 'count':
    return baselines.random_search(
        space, searched_runs, config.num_random(), fit,
        conv_impl=config.search.conv_impl, say=say)
  if mode == 'none':
    return {}
  train = None if checkpointer is None else checkpointer.scope('train')
  used: set[str] = set()
  per_seed = [_budget_runs(space, config, dict(r), splits, say, train, used)
              for r in searched_runs]
  methods = {}
  for m in config.random_budgets:
    runs = [seed_runs[m] for seed_runs in per_seed]
    methods[results_lib.random_name(m)] = {
        'runs': runs, 'budget': m, 'eta': config.random_eta,
        'rungs': config.random_rungs, 'limits': config.random_limits(),
        'summary': {**results_lib.summarize_runs(runs),
                    'seconds': float(sum(r['seconds'] for r in runs))}}
  return methods


def run_baselines(space: space_lib.SearchSpace, config: PipelineConfig,
                  searched_runs: baselines.Runs, fit: baselines.Fit,
                  splits: Splits, num_classes: int,
                  say: Callable[[str], None],
                  checkpointer: Checkpointer = None) -> dict[str, Any]:
  """The baselines ``config`` asks for: method name -> method."""
  conv_impl = config.search.conv_impl
  methods = run_random(space, config, searched_runs, fit, splits, say,
                       checkpointer)
  if config.fixed:
    methods['fixed'] = baselines.fixed_baseline(
        space, searched_runs, fit, conv_impl=conv_impl, say=say)
  if config.reference_model:
    methods['reference'] = baselines.reference_baseline(
        config.reference_model, num_classes, config.seeds, fit, say=say)
  return methods


def run_pipeline(config: PipelineConfig, dataset: Any, workdir: str, *,
                 progress: Progress = print_flush,
                 checkpointer: Checkpointer = None) -> dict[str, Any]:
  """Runs search, derivation, retraining, baselines and the report.

  Args:
    config: the pipeline settings.
    dataset: a :class:`paramsel_jax.data.Dataset` (uint8 splits).
    workdir: where ``results.json``, ``accuracy_vs_cost.png`` and the
      per-seed ``architecture_seed<s>.json`` go (created if missing).
    progress: called with progress lines (``None``: silent).
    checkpointer: makes every training loop resumable (see the module
      docstring); its identity should be :func:`checkpoint_identity`'s.

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
  fit = make_fit(splits, config, progress, checkpointer)
  say(f'structure search on {config.dataset}: {config.space} space, '
      f'{len(space.choices())} choices, {space.num_structures()} structures, '
      f'seeds {list(config.seeds)}, vmap_seeds={config.vmap_seeds}, '
      f'accuracies on {"test" if config.evaluate_test else "valid"}')
  searched, result = search_and_retrain(space, config, splits, fit, workdir,
                                        progress=progress,
                                        checkpointer=checkpointer)
  methods = {'searched': searched,
             **run_baselines(space, config, searched['runs'], fit, splits,
                             dataset.num_classes, say, checkpointer)}
  selection = None
  if config.select is not None:
    selection = selection_lib.run_selection(
        searched['runs'], config.select, splits.train,
        fitting.eval_split(splits, config), conv_impl=config.search.conv_impl,
        say=say)
  total = time.perf_counter() - wall
  table = results_lib.report_text(methods, config.space, config.evaluate_test,
                                  selection)
  say(table)
  results = {
      'dataset': config.dataset,
      'date': started.isoformat(timespec='seconds'),
      'seconds': total,
      'backend': jax.default_backend(),
      'config': dataclasses.asdict(config),
      'space': space.to_dict(),
      'evaluated_on': 'test' if config.evaluate_test else 'valid',
      'random_mode': config.random_mode(),
      'search': {'seconds': result.seconds, 'vmap_seeds': config.vmap_seeds,
                 'history': result.history},
      'methods': methods,
      'selection': selection,
      'table': table,
  }
  results_path = os.path.join(workdir, 'results.json')
  plot_path = os.path.join(workdir, 'accuracy_vs_cost.png')
  io.write_json_atomic(results, results_path)
  results_lib.plot_accuracy_vs_cost(
      methods, plot_path, title=f'{config.dataset}, {config.space} space '
      f'({results["evaluated_on"]} accuracy)')
  say(f'wrote {results_path} and {plot_path} ({total:.1f}s in all)')
  return results
