"""The whole structure-search experiment: search, derive, retrain, compare.

``experiments/structure_search.py`` builds an :class:`ExperimentConfig` from
flags and calls :func:`run_experiment`, which

1. validates everything (space, search, training, noise levels, data shapes)
   before any work;
2. runs the bilevel search (:func:`search.run_search`) for every seed, with
   ``vmap`` over seeds or in turn;
3. derives each seed's argmax architecture, writes it as JSON, retrains it
   from scratch and evaluates it (clean, input noise, weight noise);
4. runs the baselines under the same training: random search of the same
   space at the same budget (keep the best on validation), a fixed hand-made
   network of similar size, and optionally a reference model (LeNet-300-100);
5. prints a results table and writes ``results.json`` (atomically) and
   ``accuracy_vs_params.png`` into ``workdir``.

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
  >>> config = ExperimentConfig(
  ...     dataset='synthetic', mlp_widths=(8, 16), mlp_depth=2, seeds=(0,),
  ...     search=search_lib.SearchConfig(warmup_steps=10, search_steps=20,
  ...                                    chunk_steps=10, batch_size=32),
  ...     retrain=training.TrainConfig(steps=20, batch_size=32,
  ...                                  chunk_steps=20),
  ...     input_sigmas=(0.1,), weight_sigmas=(0.1,), noise_repeats=1)
  >>> results = run_experiment(config, ds, tempfile.mkdtemp(), progress=None)
  >>> sorted(results['methods'])
  ['fixed', 'random', 'searched']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import datetime
import math
import os
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax import io
from paramsel_jax import models
from paramsel_jax.structure import derive as derive_lib
from paramsel_jax.structure import relax
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
class ExperimentConfig:
  """Everything :func:`run_experiment` needs besides the data.

  Attributes:
    dataset: the data set's name (recorded; the data are passed in).
    space: ``'mlp'`` or ``'conv'``.
    mlp_widths: MLP: candidate widths of every hidden layer.
    mlp_depth: MLP: hidden layers (all but the first optional).
    activations: candidate activations of every layer.
    conv_widths: conv: candidate channels of each conv layer.
    conv_pools: conv: a 2x2 max-pool after each conv layer.
    conv_optional: conv: whether each conv layer may be skipped.
    kernel_sizes: conv: candidate kernel sizes.
    dense_widths: conv: candidate widths of the dense layer.
    search: the search settings.
    retrain: how derived nets and all baselines are trained.
    seeds: one search (and one run of each baseline) per seed.
    vmap_seeds: search all seeds at once under ``vmap``.
    random_samples: structures tried by random search; ``None`` matches the
      search's budget (see the module docstring); 0 skips random search.
    fixed: train the fixed hand-made network of similar size.
    reference_model: a :func:`paramsel_jax.models.create_model` name trained
      the same way for reference (e.g. ``'lenet300'``), or ``None``.
    input_sigmas: input-noise levels of the stability report.
    weight_sigmas: relative weight-noise levels of the stability report.
    noise_repeats: noise draws per level.
    eval_batch_size: evaluation batch size.
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

  def build_space(self, input_shape: Sequence[int],
                  num_classes: int) -> space_lib.SearchSpace:
    """The validated search space for data of this shape."""
    if self.space == 'mlp':
      return space_lib.mlp_space(input_shape, num_classes,
                                 widths=self.mlp_widths,
                                 depth=self.mlp_depth,
                                 activations=self.activations)
    if self.space == 'conv':
      return space_lib.conv_space(input_shape, num_classes,
                                  conv_widths=self.conv_widths,
                                  kernel_sizes=self.kernel_sizes,
                                  pools=self.conv_pools,
                                  optional=self.conv_optional,
                                  dense_widths=self.dense_widths,
                                  activations=self.activations)
    raise ValueError(f'Unknown space {self.space!r}; accepted: '
                     f'{", ".join(SPACES)}.')

  def validate(self, input_shape: Sequence[int] = (28, 28, 1),
               num_classes: int = 10) -> space_lib.SearchSpace:
    """Raises ValueError on any bad setting; returns the search space."""
    space = self.build_space(input_shape, num_classes)
    self.search.validate()
    self.retrain.validate(prefix='retrain.')
    if not self.seeds:
      raise ValueError('seeds is empty; accepted: one or more ints.')
    if len(set(self.seeds)) != len(self.seeds) or any(
        int(s) != s or s < 0 for s in self.seeds):
      raise ValueError(f'seeds={self.seeds!r}; accepted: distinct ints '
                       '>= 0.')
    if self.random_samples is not None and (
        int(self.random_samples) != self.random_samples
        or self.random_samples < 0):
      raise ValueError(f'random_samples={self.random_samples!r}; accepted: '
                       'None (match the search budget) or an int >= 0.')
    if self.reference_model is not None and (
        self.reference_model not in models.MODELS):
      raise ValueError(f'Unknown reference_model {self.reference_model!r}; '
                       f'accepted: None or one of '
                       f'{", ".join(sorted(models.MODELS))}.')
    for s in (*self.input_sigmas, *self.weight_sigmas):
      if not (isinstance(s, (int, float)) and s >= 0 and math.isfinite(s)):
        raise ValueError(f'noise sigma {s!r}; accepted: finite floats >= 0.')
    for field in ('noise_repeats', 'eval_batch_size'):
      v = getattr(self, field)
      if int(v) != v or v < 1:
        raise ValueError(f'{field}={v!r}; accepted: an int >= 1.')
    return space

  def num_random(self) -> int:
    """Structures random search trains (the budget rule when ``None``)."""
    if self.random_samples is not None:
      return self.random_samples
    s = self.search
    budget = s.warmup_steps + 2 * s.search_steps + self.retrain.steps
    return max(1, round(budget / self.retrain.steps))


# --------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------


def fixed_architecture(space: space_lib.SearchSpace,
                       target_params: float) -> derive_lib.Architecture:
  """A hand-made network of about ``target_params`` parameters.

  MLP spaces: two equal ReLU hidden layers (``h, h``). Conv spaces: a
  LeNet-like ``conv c k5 + pool, conv 2c k5 + pool, dense 4c`` (ReLU), with
  the pools where the space has them. The width is the one whose parameter
  count is closest to the target.

  Example:

    >>> space = space_lib.mlp_space((28, 28, 1), 10)
    >>> fixed_architecture(space, 266_610).describe()
    'dense254-relu > dense254-relu > fc10'
  """
  def make(c: int) -> derive_lib.Architecture:
    if all(l.kind == 'dense' for l in space.layers):
      layers = (derive_lib.LayerChoice('dense', c, 'relu'),) * 2
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
  """A structure drawn uniformly: each choice's candidate independently."""
  return {name: int(jax.random.randint(jax.random.fold_in(key, i), (), 0,
                                       len(cands)))
          for i, (name, cands) in enumerate(space.choices())}


class _Data:
  """The splits as device arrays."""

  def __init__(self, dataset: Any):
    self.train = (jnp.asarray(dataset.train.images),
                  jnp.asarray(dataset.train.labels))
    self.valid = (jnp.asarray(dataset.valid.images),
                  jnp.asarray(dataset.valid.labels))
    self.test = (jnp.asarray(dataset.test.images),
                 jnp.asarray(dataset.test.labels))


def _fit(model: Any, key: jax.Array, data: _Data,
         config: ExperimentConfig, *, progress: Progress, name: str
         ) -> dict[str, Any]:
  """Trains ``model`` from scratch; valid accuracy and the stability figures."""
  start = time.perf_counter()
  input_shape = tuple(data.train[0].shape[1:])
  params = models.init_params(model, jax.random.fold_in(key, 0), input_shape)
  num_params = models.count_params(params)
  params = training.train(model.apply, params, *data.train,
                          jax.random.fold_in(key, 1), config.retrain,
                          progress=progress, name=name)
  apply_fn = lambda p, x: model.apply({'params': p}, x)
  report = stability.robustness(
      apply_fn, params, *data.test, jax.random.fold_in(key, 2),
      input_sigmas=config.input_sigmas, weight_sigmas=config.weight_sigmas,
      repeats=config.noise_repeats, batch_size=config.eval_batch_size,
      valid=data.valid)
  return {'num_params': num_params, **report,
          'seconds': time.perf_counter() - start}


def _summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  out = stability.summarize(runs)
  out['num_params'] = stability.mean_std([r['num_params'] for r in runs])
  out['valid_accuracy'] = stability.mean_std(
      [r['valid_accuracy'] for r in runs])
  out['seconds'] = float(sum(r.get('seconds', 0.0) for r in runs))
  return out


# --------------------------------------------------------------------------
# The experiment.
# --------------------------------------------------------------------------


def run_experiment(config: ExperimentConfig, dataset: Any, workdir: str, *,
                   progress: Progress = print_flush) -> dict[str, Any]:
  """Runs search, derivation, retraining, baselines and the report.

  Args:
    config: the experiment settings.
    dataset: a :class:`paramsel_jax.data.Dataset` (uint8 splits).
    workdir: where ``results.json``, ``accuracy_vs_params.png`` and the
      per-seed ``architecture_seed<s>.json`` go (created if missing).
    progress: called with progress lines (``None``: silent).

  Returns:
    The results dict that is written to ``results.json``.
  """
  input_shape = tuple(int(d) for d in dataset.train.images.shape[1:])
  space = config.validate(input_shape, dataset.num_classes)
  say = progress or (lambda _: None)
  for split in ('train', 'valid', 'test'):
    if len(getattr(dataset, split).labels) < 1:
      raise ValueError(f'dataset split {split!r} is empty; accepted: '
                       'non-empty train, valid and test splits.')
  os.makedirs(workdir, exist_ok=True)
  started = datetime.datetime.now(datetime.timezone.utc)
  wall = time.perf_counter()
  data = _Data(dataset)
  seeds = tuple(int(s) for s in config.seeds)
  say(f'structure search on {config.dataset}: {config.space} space, '
      f'{len(space.choices())} choices, {space.num_structures()} structures, '
      f'seeds {list(seeds)}, vmap_seeds={config.vmap_seeds}')

  # 1. Search.
  result = search_lib.run_search(space, config.search, data.train, data.valid,
                                 seeds=seeds, vmap_seeds=config.vmap_seeds,
                                 progress=progress)
  say(f'search done in {result.seconds:.1f}s')

  # 2. Derive and retrain.
  searched, archs, all_indices = [], [], []
  for i, seed in enumerate(seeds):
    logits = result.seed_logits(i)
    arch, indices = derive_lib.derive_architecture(space, logits)
    archs.append(arch)
    all_indices.append(indices)
    io.write_json_atomic(
        {'seed': seed, 'indices': indices,
         'probabilities': {k: np.asarray(v).tolist() for k, v in
                           relax.probabilities(logits).items()},
         **arch.to_dict()},
        os.path.join(workdir, f'architecture_seed{seed}.json'))
    say(f'seed {seed}: derived {arch.describe()} ({arch.num_params()} '
        'params); retraining')
    run = _fit(derive_lib.DiscreteNet(arch, config.search.conv_impl),
               jax.random.fold_in(jax.random.key(seed), 2), data, config,
               progress=progress, name=f'searched seed {seed}')
    run.update(seed=seed, architecture=arch.to_dict(), indices=indices)
    searched.append(run)
    say(f'seed {seed}: searched net test accuracy {run["accuracy"]:.4f}')
  methods: dict[str, Any] = {'searched': {
      'runs': searched, 'summary': _summary(searched),
      'agreement': stability.seed_agreement(all_indices),
      'search_seconds': result.seconds}}

  # 3. Random search at the same budget.
  n_random = config.num_random()
  if n_random:
    rand_runs, rand_small = [], []
    for i, seed in enumerate(seeds):
      key = jax.random.fold_in(jax.random.key(seed), 3)
      samples = []
      for j in range(n_random):
        kj = jax.random.fold_in(key, j)
        arch = derive_lib.from_indices(
            space, random_indices(space, jax.random.fold_in(kj, 0)))
        say(f'seed {seed}: random sample {j + 1}/{n_random}: '
            f'{arch.describe()} ({arch.num_params()} params)')
        run = _fit(derive_lib.DiscreteNet(arch, config.search.conv_impl),
                   jax.random.fold_in(kj, 1), data, config, progress=progress,
                   name=f'random seed {seed} #{j + 1}')
        run.update(seed=seed, architecture=arch.to_dict())
        samples.append(run)
      best = max(samples, key=lambda r: r['valid_accuracy'])
      rand_runs.append({**best, 'samples': samples})
      small = [r for r in samples
               if r['num_params'] <= searched[i]['num_params']]
      if small:
        rand_small.append(max(small, key=lambda r: r['valid_accuracy']))
    methods['random'] = {
        'runs': rand_runs, 'summary': _summary(rand_runs),
        'samples_per_seed': n_random,
        'seconds': float(sum(r['seconds'] for b in rand_runs
                             for r in b['samples']))}
    methods['random']['summary']['seconds'] = methods['random']['seconds']
    if rand_small:
      methods['random_small'] = {'runs': rand_small,
                                 'summary': _summary(rand_small),
                                 'seeds_with_a_sample': len(rand_small)}

  # 4. A fixed hand-made network of similar size.
  if config.fixed:
    target = float(np.median([r['num_params'] for r in searched]))
    arch = fixed_architecture(space, target)
    say(f'fixed network: {arch.describe()} ({arch.num_params()} params)')
    runs = []
    for seed in seeds:
      run = _fit(derive_lib.DiscreteNet(arch, config.search.conv_impl),
                 jax.random.fold_in(jax.random.key(seed), 4), data, config,
                 progress=progress, name=f'fixed seed {seed}')
      run.update(seed=seed, architecture=arch.to_dict())
      runs.append(run)
    methods['fixed'] = {'runs': runs, 'summary': _summary(runs)}

  # 5. A reference model.
  if config.reference_model:
    model = models.create_model(config.reference_model,
                                num_classes=dataset.num_classes)
    say(f'reference model: {config.reference_model}')
    runs = []
    for seed in seeds:
      run = _fit(model, jax.random.fold_in(jax.random.key(seed), 5), data,
                 config, progress=progress,
                 name=f'{config.reference_model} seed {seed}')
      run.update(seed=seed)
      runs.append(run)
    methods['reference'] = {'name': config.reference_model, 'runs': runs,
                            'summary': _summary(runs)}

  total = time.perf_counter() - wall
  table = format_table(methods, config)
  say(table)
  results = {
      'dataset': config.dataset,
      'date': started.isoformat(timespec='seconds'),
      'seconds': total,
      'backend': jax.default_backend(),
      'config': dataclasses.asdict(config),
      'space': space.to_dict(),
      'random_samples_per_seed': n_random,
      'search': {'seconds': result.seconds, 'vmap_seeds': config.vmap_seeds,
                 'history': result.history},
      'methods': methods,
      'table': table,
  }
  io.write_json_atomic(results, os.path.join(workdir, 'results.json'))
  plot_path = os.path.join(workdir, 'accuracy_vs_params.png')
  plot_accuracy_vs_params(methods, plot_path, title=config.dataset)
  say(f'wrote {os.path.join(workdir, "results.json")} and {plot_path} '
      f'({total:.1f}s in all)')
  return results


_LABELS = {
    'searched': 'searched (argmax, retrained)',
    'random': 'random search (best valid)',
    'random_small': 'random, <= searched size',
    'fixed': 'fixed hand-made',
    'reference': 'reference',
}


def format_table(methods: Mapping[str, Any], config: ExperimentConfig) -> str:
  """The results table: one row per method, mean ± std over seeds."""
  def pm(ms, scale=100.0, digits=2):
    return f'{ms[0] * scale:.{digits}f} ± {ms[1] * scale:.{digits}f}'

  ins = [str(float(s)) for s in config.input_sigmas]
  ws = [str(float(s)) for s in config.weight_sigmas]
  header = (['method', 'params', 'test acc %', 'valid acc %']
            + [f'in σ={s}' for s in ins] + [f'w σ={s}' for s in ws]
            + ['seconds'])
  rows = []
  for name, m in methods.items():
    s = m['summary']
    label = _LABELS.get(name, name)
    if name == 'reference':
      label = f'reference {m["name"]}'
    seconds = s['seconds'] + m.get('search_seconds', 0.0)
    # random_small is a subset of random search's runs: no time of its own.
    seconds = '-' if name == 'random_small' else f'{seconds:.0f}'
    rows.append([label, f'{s["num_params"][0]:,.0f}',
                 pm(s['accuracy']), pm(s['valid_accuracy'])]
                + [pm(s['input_noise'][k], digits=1) for k in ins]
                + [pm(s['weight_noise'][k], digits=1) for k in ws]
                + [seconds])
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  line = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
  out = [line(header), line(['-' * w for w in widths])]
  out += [line(r) for r in rows]
  agree = methods['searched']['agreement']
  out.append(f'seeds: {len(config.seeds)}; searched structures agree on '
             f'{agree["all_agree"]:.0%} of choices (pairwise '
             f'{agree["pairwise"]:.0%}); random search trains '
             f'{config.num_random()} structures per seed; params: mean over '
             'seeds; seconds: all seeds, the search included for searched.')
  if 'random_small' in methods:
    out.append(f'random, <= searched size: the best-valid random sample no '
               f'larger than that seed\'s searched net '
               f'({methods["random_small"]["seeds_with_a_sample"]} of '
               f'{len(config.seeds)} seeds had one).')
  return '\n'.join(out)


def plot_accuracy_vs_params(methods: Mapping[str, Any], path: str, *,
                            title: str = '') -> None:
  """Test accuracy vs parameter count of every trained network, as a PNG."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(6.5, 4.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  if 'random' in methods:
    samples = [r for b in methods['random']['runs'] for r in b['samples']]
    ax.scatter([r['num_params'] for r in samples],
               [100 * r['accuracy'] for r in samples], s=14, c='0.7',
               label='random samples')
    best = methods['random']['runs']
    ax.scatter([r['num_params'] for r in best],
               [100 * r['accuracy'] for r in best], s=40, marker='s',
               c='tab:gray', label='random search (best valid)')
  styles = {'searched': ('o', 'tab:red'), 'fixed': ('^', 'tab:blue'),
            'reference': ('D', 'tab:green')}
  for name, (marker, color) in styles.items():
    if name in methods:
      runs = methods[name]['runs']
      label = _LABELS[name] if name != 'reference' else methods[name]['name']
      ax.scatter([r['num_params'] for r in runs],
                 [100 * r['accuracy'] for r in runs], s=50, marker=marker,
                 c=color, label=label)
  ax.set_xscale('log')
  ax.set_xlabel('parameters')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title(f'structure search: {title}')
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.png')
  os.close(fd)
  try:
    fig.savefig(tmp, dpi=120, format='png')
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
