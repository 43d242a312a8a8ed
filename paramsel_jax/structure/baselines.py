"""The baselines a searched structure is judged against, trained the same way.

* :func:`random_search`: structures drawn uniformly from the same space (each
  choice's candidate independently), each trained from scratch; per seed the
  best on the validation split is kept (``'random'``), and the best no larger
  than that seed's searched network (``'random_small'``);
* :func:`fixed_baseline`: a hand-made network of about the searched
  networks' median size (:func:`fixed_architecture`);
* :func:`reference_baseline`: a :func:`paramsel_jax.models.create_model`
  model (e.g. LeNet-300-100).

Every network is trained and evaluated by the same ``fit(model, key, name)``
that the pipeline gives (:func:`paramsel_jax.structure.pipeline.fit_network`
with the pipeline's settings), so the accuracies compare. Seed ``s`` of a
method uses ``fold_in(jax.random.key(s), stream)`` with the method's stream
(:data:`STREAMS`).

Example:
  >>> fit = lambda model, key, name: {'name': name}  # A stand-in.
  >>> fit_seeds(fit, None, (0, 1), 'fixed', 'fixed')
  [{'name': 'fixed seed 0', 'seed': 0}, {'name': 'fixed seed 1', 'seed': 1}]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from paramsel_jax import models
from paramsel_jax.structure import derive as derive_lib
from paramsel_jax.structure import results
from paramsel_jax.structure import space as space_lib

Fit = Callable[[Any, jax.Array, str], dict[str, Any]]  # (model, key, name).
Say = Callable[[str], None]
Runs = Sequence[Mapping[str, Any]]
STREAMS = {'searched': 2, 'random': 3, 'fixed': 4, 'reference': 5,
           'random_noise': 6}


def silent(line: str) -> None:
  """A progress callback that prints nothing."""
  del line


def fixed_architecture(space: space_lib.SearchSpace,
                       target_params: float) -> derive_lib.Architecture:
  """A hand-made network of about ``target_params`` parameters.

  MLP spaces: two equal ReLU hidden layers (``h, h``). Conv spaces: a
  LeNet-like ``conv c k5 + pool, conv 2c k5 + pool, dense 4c`` (ReLU), with
  the pools where the space has them. The width is the one whose parameter
  count is closest to the target.

  Example:
    >>> from paramsel_jax.structure import presets
    >>> space = presets.mlp_space((28, 28, 1), 10)
    >>> fixed_architecture(space, 266_610).describe()
    'dense254-relu > dense254-relu > fc10'
  """
  def make(c: int) -> derive_lib.Architecture:
    if all(l.kind == 'dense' for l in space.layers):
      layers: tuple[derive_lib.LayerChoice, ...] = (
          (derive_lib.LayerChoice('dense', c, 'relu'),) * 2)
    else:
      pools = [l.pool for l in space.layers if l.kind == 'conv'][:2]
      pools += [True] * (2 - len(pools))
      layers = (derive_lib.LayerChoice('conv', c, 'relu', 5, pool=pools[0]),
                derive_lib.LayerChoice('conv', 2 * c, 'relu', 5,
                                       pool=pools[1]),
                derive_lib.LayerChoice('dense', 4 * c, 'relu'))
    return derive_lib.Architecture(space.input_shape, space.num_classes,
                                   layers)
  best = min(range(1, 2049),
             key=lambda c: abs(make(c).num_params() - target_params))
  return make(best)


def random_indices(space: space_lib.SearchSpace, key: jax.Array
                   ) -> dict[str, int]:
  """A structure drawn uniformly: each choice's candidate independently.

  Example:
    >>> from paramsel_jax.structure import presets
    >>> space = presets.mlp_space((8, 8, 1), 3, widths=(4, 8), depth=1,
    ...                             activations=('relu',))
    >>> list(random_indices(space, jax.random.key(0)))
    ['dense0/width']
  """
  return {name: int(jax.random.randint(jax.random.fold_in(key, i), (), 0,
                                       len(cands)))
          for i, (name, cands) in enumerate(space.choices())}


def fit_seeds(fit: Fit, model: Any, seeds: Sequence[int], method: str,
              label: str, **extra: Any) -> list[dict[str, Any]]:
  """One ``fit`` of ``model`` per seed, with ``method``'s key stream.

  Each run dict gets ``seed`` and the ``extra`` items.
  """
  runs = []
  for seed in seeds:
    key = jax.random.fold_in(jax.random.key(seed), STREAMS[method])
    run = fit(model, key, f'{label} seed {seed}')
    run.update(seed=seed, **extra)
    runs.append(run)
  return runs


def _best_valid(runs: Runs) -> dict[str, Any]:
  return dict(max(runs, key=lambda r: r['valid_accuracy']))


def _random_samples(space: space_lib.SearchSpace, seed: int, num_samples: int,
                    fit: Fit, conv_impl: str, say: Say) -> list[dict[str, Any]]:
  """The ``num_samples`` random structures of one seed, each trained."""
  key = jax.random.fold_in(jax.random.key(seed), STREAMS['random'])
  samples = []
  for j in range(num_samples):
    kj = jax.random.fold_in(key, j)
    arch = derive_lib.from_indices(
        space, random_indices(space, jax.random.fold_in(kj, 0)))
    say(f'seed {seed}: random sample {j + 1}/{num_samples}: '
        f'{arch.describe()} ({arch.num_params()} params)')
    run = fit(derive_lib.DiscreteNet(arch, conv_impl),
              jax.random.fold_in(kj, 1), f'random seed {seed} #{j + 1}')
    run.update(seed=seed, architecture=arch.to_dict())
    samples.append(run)
  return samples


def random_search(space: space_lib.SearchSpace, searched_runs: Runs,
                  num_samples: int, fit: Fit, *, conv_impl: str = 'auto',
                  say: Say = silent) -> dict[str, Any]:
  """Random search of ``space``: ``num_samples`` structures per seed.

  Args:
    space: the search space.
    searched_runs: the searched method's runs, one per seed: their ``seed``
      and ``num_params`` give the seeds and the size bound of
      ``'random_small'``.
    num_samples: structures trained per seed (``>= 1``).
    fit: trains and evaluates a model (see the module docstring).
    conv_impl: the convolution implementation of the sampled nets.
    say: called with progress lines.

  Returns:
    ``{'random': method}``, and ``'random_small'`` when some seed drew a
    network no larger than its searched one. ``random``'s runs hold each
    seed's best-valid sample and all its ``samples``.
  """
  best_runs, small_runs = [], []
  for searched in searched_runs:
    samples = _random_samples(space, searched['seed'], num_samples, fit,
                              conv_impl, say)
    best_runs.append({**_best_valid(samples), 'samples': samples})
    small = [r for r in samples if r['num_params'] <= searched['num_params']]
    if small:
      small_runs.append(_best_valid(small))
  seconds = float(sum(r['seconds'] for b in best_runs for r in b['samples']))
  out = {'random': {
      'runs': best_runs,
      'summary': {**results.summarize_runs(best_runs), 'seconds': seconds},
      'samples_per_seed': num_samples, 'seconds': seconds}}
  if small_runs:
    out['random_small'] = {'runs': small_runs,
                           'summary': results.summarize_runs(small_runs),
                           'seeds_with_a_sample': len(small_runs)}
  return out


def fixed_baseline(space: space_lib.SearchSpace, searched_runs: Runs,
                   fit: Fit, *, conv_impl: str = 'auto',
                   say: Say = silent) -> dict[str, Any]:
  """The fixed hand-made network of the searched nets' median size, per seed.

  Args:
    space: the search space (its kind and pools shape the network).
    searched_runs: the searched method's runs (``seed``, ``num_params``).
    fit: trains and evaluates a model.
    conv_impl: the convolution implementation.
    say: called with progress lines.

  Returns:
    The method: ``{'runs', 'summary'}``.
  """
  target = float(np.median([r['num_params'] for r in searched_runs]))
  arch = fixed_architecture(space, target)
  say(f'fixed network: {arch.describe()} ({arch.num_params()} params)')
  runs = fit_seeds(fit, derive_lib.DiscreteNet(arch, conv_impl),
                   [r['seed'] for r in searched_runs], 'fixed', 'fixed',
                   architecture=arch.to_dict())
  return {'runs': runs, 'summary': results.summarize_runs(runs)}


def reference_baseline(name: str, num_classes: int, seeds: Sequence[int],
                       fit: Fit, *, say: Say = silent) -> dict[str, Any]:
  """A registered model (:data:`paramsel_jax.models.MODELS`), per seed.

  Returns:
    The method: ``{'name', 'runs', 'summary'}``.
  """
  model = models.create_model(name, num_classes=num_classes)
  say(f'reference model: {name}')
  runs = fit_seeds(fit, model, seeds, 'reference', name)
  return {'name': name, 'runs': runs, 'summary': results.summarize_runs(runs)}
