"""A character-level language model with selective training: `experiments/lm.py`.

The NNX char-GPT of :mod:`paramsel_jax.models.gpt` on Shakespeare's plays
(:mod:`paramsel_jax.data.shakespeare`, split by whole plays), trained as
nanoGPT's ``shakespeare_char`` CPU setting trains it (AdamW, β2 0.99, weight
decay 0.1 on the matrices, gradient clipping at 1.0, linear warmup then
cosine decay to lr/10; :func:`nanogpt_optimizer`), in two scenarios:

* ``pretrain``: from scratch on the train plays of
  :func:`~paramsel_jax.data.shakespeare.split_plays`;
* ``finetune``: a model pre-trained once on the pre-training plays of
  :func:`~paramsel_jax.data.shakespeare.split_for_finetuning` (saved with
  orbax under ``workdir``, reused when present) is fine-tuned on unseen
  plays.

In ``online`` mode each scenario runs dense training (criterion ``'none'``)
and the ``freeze`` criterion side by side (same seeds, one process), each
an :func:`~paramsel_jax.protocol.online.run_online` run evaluated on the
validation plays at every check; the test plays are evaluated once, at the
end. ``freeze_modules`` replaces the ``fixed`` criterion's choice by named
modules (:func:`paramsel_jax.freeze.mask_by_name` patterns) frozen at
``freeze_at``. In ``protocol`` mode it is the paper's protocol
(:func:`~paramsel_jax.protocol.protocol.run_protocol`: η0 dense, α by a
selector, η1 on the active set, β). :mod:`paramsel_jax.lab.lm_report` makes
the tables, the figure, and the side-by-side timing of the step programs.

The data are an argument (:class:`LMData`), so a test passes synthetic
tokens (:func:`paramsel_jax.lab.lm_data.synthetic_data`) and reads nothing.

Given a :class:`~paramsel_jax.train.checkpoints.Checkpointer` (its identity:
the config, :func:`checkpoint_identity`), every training resumes from its
last checkpoint when the run is repeated: each is a scope of its own
(``'pretrain'``; ``'online/seeds 0,1,2/arm dense'``, one per arm and seed
set; ``'protocol'``), handed to :func:`~paramsel_jax.protocol.online.
run_online` or :func:`~paramsel_jax.protocol.protocol.run_protocol`.

  >>> config = LMConfig(steps=40, check_every=20, freeze_at=20, seeds=(0,),
  ...                   num_layers=1, embed_dim=16, num_heads=2, context=16)
  >>> validate(config, vocab_size=lm_data.vocab_size_of('synthetic'))
  >>> validate(dataclasses.replace(config, freeze='sgd'), 16)
  Traceback (most recent call last):
  ...
  ValueError: freeze='sgd'; accepted: none, apf, autofreeze, badam, fixed, \
freezeout, lisa, psgld, psgld_prefix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import io as io_lib
from paramsel_jax.freeze import by_name
from paramsel_jax.freeze import criteria as criteria_lib
from paramsel_jax.lab import experiment
from paramsel_jax.lab import lm_data
from paramsel_jax.lab.lm_data import LMData
from paramsel_jax.lab.lm_data import TokenSplits
from paramsel_jax.lab import lm_report
from paramsel_jax.models import gpt
from paramsel_jax.protocol import char_lm
from paramsel_jax.protocol import checks
from paramsel_jax.protocol import config as protocol_config
from paramsel_jax.protocol import online
from paramsel_jax.protocol import protocol
from paramsel_jax.select import granularity as granularity_lib
from paramsel_jax.train import checkpoints

PyTree = Any
Checkpointer = checkpoints.Checkpointer | None
SCENARIOS = lm_data.SCENARIOS
MODES = ('online', 'protocol')
DATA = lm_data.DATA


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """Every setting of an LM run; fields are named as `experiments/lm.py`'s flags.

  The defaults are nanoGPT's ``shakespeare_char`` CPU run (``--batch_size=12
  --block_size=64 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
  --lr_decay_iters=2000 --dropout=0.0``; ``warmup_iters=100``, ``min_lr`` =
  lr/10, ``beta2=0.99``, ``weight_decay=0.1``, ``grad_clip=1.0``).
  """

  scenario: str = 'pretrain'
  mode: str = 'online'
  freeze: str = 'fixed'
  freeze_modules: tuple[str, ...] = ()
  granularity: str = 'layer'
  max_frozen: float | None = 0.5
  freeze_threshold: float | None = None
  steps: int = 2000
  freeze_at: int = 500
  check_every: int = 250
  batch_size: int = 12
  learning_rate: float = 1e-3
  pretrain_learning_rate: float = 1e-3
  warmup_steps: int = 100
  weight_decay: float = 0.1
  beta2: float = 0.99
  grad_clip: float = 1.0
  seeds: tuple[int, ...] = (0, 1, 2)
  num_layers: int = 4
  num_heads: int = 4
  embed_dim: int = 128
  context: int = 64
  eval_windows: int = 512
  eval_batch_size: int = 64
  pretrain_steps: int = 2000
  workdir: str = 'results/lm/workdir'
  selector: str = 'topgrad'
  k: float = 0.5
  l: float = 1.0
  eta0: int = 500
  eta1: int = 1500
  time_steps: bool = True
  time_repeats: int = 3
  data: str = 'shakespeare'
  heldout: str = 'plays'


# The flag of each field that a check names (`cli.as_flags`): the config's
# own, and those of the library configs made from it.
FLAG_NAMES = {**{f.name: f.name for f in dataclasses.fields(LMConfig)},
              'threshold': 'freeze_threshold', 'criterion': 'freeze'}
def gpt_config(config: LMConfig, vocab_size: int) -> gpt.GPTConfig:
  """The model of `config` over `vocab_size` ids (ValueError if it is bad)."""
  return gpt.GPTConfig(vocab_size=vocab_size, context=config.context,
                       num_layers=config.num_layers,
                       num_heads=config.num_heads, embed_dim=config.embed_dim)


def lr_schedule(learning_rate: float, warmup_steps: int,
                decay_steps: int) -> optax.Schedule:
  """The learning rate of nanoGPT's ``get_lr``: warmup, cosine to lr/10.

  Step ``t < warmup``: ``lr (t + 1) / (warmup + 1)``; then cosine from lr to
  ``lr / 10`` at ``decay_steps``, and ``lr / 10`` after.

  >>> f = lr_schedule(1e-3, 100, 2000)
  >>> [round(float(f(t)) * 1e4, 3) for t in (0, 99, 100, 2000, 5000)]
  [0.099, 9.901, 10.0, 1.0, 1.0]
  """
  lr, low = learning_rate, learning_rate / 10

  def schedule(count: jax.Array) -> jax.Array:
    t = jnp.asarray(count, jnp.float32)
    warm = lr * (t + 1) / (warmup_steps + 1)
    ratio = jnp.clip((t - warmup_steps) / max(decay_steps - warmup_steps, 1),
                     0.0, 1.0)
    cosine = low + 0.5 * (1.0 + jnp.cos(math.pi * ratio)) * (lr - low)
    return jnp.where(t < warmup_steps, warm, cosine)
  return schedule


def nanogpt_optimizer(config: LMConfig, steps: int,
                   learning_rate: float | None = None
                   ) -> optax.GradientTransformation:
  """nanoGPT's: clip the global norm, AdamW (β 0.9, 0.99), decay the matrices.

  Weight decay applies to the params of 2 or more dimensions (kernels and
  embeddings), not to LayerNorm scales or biases, as nanoGPT's
  ``configure_optimizers``; the schedule spans ``steps`` and peaks at
  ``learning_rate`` (default ``config.learning_rate``).
  """
  decay = lambda params: jax.tree.map(lambda x: jnp.ndim(x) >= 2, params)
  return optax.chain(
      optax.clip_by_global_norm(config.grad_clip),
      optax.adamw(lr_schedule(learning_rate or config.learning_rate,
                              config.warmup_steps, steps),
                  b1=0.9, b2=config.beta2, weight_decay=config.weight_decay,
                  mask=decay))


# ---------------------------------------------------------------------------
# Freezing named modules.


def named_groups(shapes: PyTree, granularity: str,
                 patterns: tuple[str, ...]) -> np.ndarray:
  """Per group of `granularity`, whether `patterns` name (freeze) all of it.

  ValueError for a pattern that names nothing (`mask_by_name`'s message) or
  one that names part of a group.

  >>> shapes = {'a': {'w': jnp.zeros((2, 3))}, 'b': {'w': jnp.zeros(2)}}
  >>> named_groups(shapes, 'layer', ('a',)).tolist()
  [True, False]
  >>> named_groups(shapes, 'unit', ('b',)).tolist()
  [False, False, False, True, True]
  """
  with jax.ensure_compile_time_eval():
    alpha = by_name.mask_by_name(shapes, freeze=list(patterns))
  g = granularity_lib.groups(shapes, granularity)
  count = np.zeros(g.num_groups, np.int64)
  for trains, ids in zip(jax.tree.leaves(alpha), jax.tree.leaves(g.ids)):
    np.add.at(count, np.ravel(ids), ~np.ravel(np.asarray(trains)))
  partial = (count > 0) & (count < g.sizes)
  if partial.any():
    names = sorted({g.module_names[m] for m in g.modules[partial]})
    raise ValueError(f'freeze_modules={",".join(patterns)} names part of the '
                     f'{granularity} groups of {names}; accepted: patterns '
                     'naming whole modules (e.g. blocks/0).')
  return count == g.sizes


def freeze_by_name(patterns: tuple[str, ...]) -> str:
  """Registers the criterion freezing `patterns`' modules at `freeze_at`.

  Its name is returned (`names:<patterns>`), for `OnlineConfig.criterion`.
  It collects no statistics and ignores `max_frozen`: at the check of step
  `freeze_at` every group the patterns name freezes, nothing else ever does.
  """
  name = 'names:' + ','.join(patterns)

  def decide(policy: Any, state: Any, step: jax.Array):
    del state
    frozen = jnp.asarray(named_groups(policy.params, policy.granularity,
                                      patterns))
    return frozen & (step == policy.freeze_at), jnp.zeros(frozen.shape)
  criteria_lib.register_criterion(name, criteria_lib.Criterion(
      frozenset(), False, decide, own_budget=True))
  return name


def criterion_name(config: LMConfig) -> str:
  """The online criterion of the frozen run (registers `freeze_by_name`)."""
  if config.freeze_modules:
    return freeze_by_name(config.freeze_modules)
  return config.freeze


def run_label(config: LMConfig) -> str:
  """The frozen run's name in tables and plots.

  >>> run_label(LMConfig(freeze_modules=('blocks/0',)))
  'fixed: blocks/0 frozen at 500'
  >>> run_label(LMConfig())
  'fixed layer, 50% frozen at 500'
  """
  if config.freeze_modules:
    return (f'fixed: {",".join(config.freeze_modules)} frozen at '
            f'{config.freeze_at}')
  if config.freeze == 'fixed':
    return (f'fixed {config.granularity}, {config.max_frozen:.0%} frozen at '
            f'{config.freeze_at}')
  return f'{config.freeze} {config.granularity}'


# The LM's thresholds where a criterion's own default does not fit Adam on
# this model, chosen on the fine-tuning validation play (BUILD_NOTES, issue
# 20): psgld's statistic of pure noise is ~3.5 under Adam's momentum, so its
# default 1.0 froze nothing; 3 and 5 froze the same set.
LM_THRESHOLDS = {'psgld': 3.0}


def threshold(config: LMConfig, criterion: str) -> float | None:
  """`--freeze_threshold`, else the LM's own (LM_THRESHOLDS), else None.

  >>> threshold(LMConfig(freeze='psgld'), 'psgld'), threshold(LMConfig(), 'apf')
  (3.0, None)
  """
  if config.freeze_threshold is not None:
    return config.freeze_threshold
  return LM_THRESHOLDS.get(criterion)


def online_settings(config: LMConfig, criterion: str, steps: int | None = None
                    ) -> online.OnlineConfig:
  """The `OnlineConfig` of a run with `criterion` ('none': dense)."""
  return online.OnlineConfig(
      criterion=criterion, steps=steps or config.steps,
      check_every=config.check_every, threshold=threshold(config, criterion),
      max_frozen=config.max_frozen, granularity=config.granularity,
      batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
      freeze_at=config.freeze_at, seed_axis='vmap')


def protocol_settings(config: LMConfig) -> protocol_config.ProtocolConfig:
  """The `ProtocolConfig` of `--mode=protocol` (η1 on the active set)."""
  return protocol_config.ProtocolConfig(
      eta0=config.eta0, eta1=config.eta1, k=config.k, l=config.l,
      window=min(config.check_every, config.eta0, config.eta1),
      batch_size=config.batch_size, chunk_size=config.check_every,
      eval_batch_size=config.eval_batch_size, seed_axis='vmap',
      granularity=config.granularity, step='active')


# ---------------------------------------------------------------------------
# Checks before any work.


def _check_fields(config: LMConfig) -> None:
  checks.one_of('scenario', config.scenario, SCENARIOS)
  checks.one_of('mode', config.mode, MODES)
  checks.one_of('data', config.data, DATA)
  checks.one_of('heldout', config.heldout, lm_data.HELDOUT)
  # The criteria `freeze_by_name` registers (`names:...`) are not flags.
  named = tuple(sorted(c for c in criteria_lib.CRITERIA
                       if not c.startswith('names:')))
  checks.one_of('freeze', config.freeze, ('none',) + named)
  checks.fields(config, ('steps', 'check_every', 'batch_size', 'eval_windows',
                         'eval_batch_size', 'pretrain_steps', 'eta0', 'eta1',
                         'time_repeats'), checks.integer, at_least=1)
  checks.integer('warmup_steps', config.warmup_steps, at_least=0)
  checks.real('learning_rate', config.learning_rate, above=0)
  checks.real('pretrain_learning_rate', config.pretrain_learning_rate,
              above=0)
  checks.real('grad_clip', config.grad_clip, above=0)
  checks.real('weight_decay', config.weight_decay, at_least=0)
  checks.real('beta2', config.beta2, above=0, below=1)
  protocol_config.check_seeds(config.seeds)


def _check_freezing(config: LMConfig, shapes: PyTree,
                    model: gpt.GPTConfig) -> None:
  fixed = config.freeze == 'fixed' or config.freeze_modules
  if config.freeze_modules:
    if config.freeze != 'fixed' or config.mode != 'online':
      raise ValueError(f'freeze_modules={",".join(config.freeze_modules)} '
                       f'with freeze={config.freeze} mode={config.mode}; '
                       "accepted: freeze='fixed' mode='online' (the named "
                       "modules replace fixed's choice).")
    named_groups(shapes, config.granularity, config.freeze_modules)
  if config.mode == 'online' and fixed and (
      config.freeze_at % config.check_every
      or not 0 < config.freeze_at < config.steps):
    raise ValueError(f'freeze_at={config.freeze_at}; accepted: a multiple of '
                     f'check_every={config.check_every} in (0, '
                     f'steps={config.steps}).')
  if config.freeze == 'none' or config.mode != 'online':
    return
  check_policy(online_settings(config, criterion_name(config)), shapes, model)


def check_policy(settings: online.OnlineConfig, shapes: PyTree,
                 model: gpt.GPTConfig) -> None:
  """Builds the run's `FreezingPolicy` on `shapes`: its ValueError, if any."""
  if settings.criterion == 'none':
    return
  online.policy_for(settings, shapes, layer_order=char_lm.layer_order(model))


def model_shapes(config: LMConfig, vocab_size: int
                 ) -> tuple[gpt.GPTConfig, PyTree]:
  """The model of `config` and its params' shapes (nothing computed)."""
  model = gpt_config(config, vocab_size)
  return model, jax.eval_shape(lambda k: gpt.init(model, k)[1],
                               jax.random.key(0))


def validate(config: LMConfig, vocab_size: int) -> None:
  """Every check of `config` that needs no data: ValueError naming the field."""
  _check_fields(config)
  model, shapes = model_shapes(config, vocab_size)
  _check_freezing(config, shapes, model)
  if config.mode == 'protocol':
    protocol_config.check_selector_names([config.selector])
    settings = protocol_settings(config)
    protocol_config.validate_protocol_config(
        settings, sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)),
        None)


# ---------------------------------------------------------------------------
# Checkpoints.


def checkpoint_identity(config: Any) -> dict[str, Any]:
  """What a run's checkpoints belong to: its config, as a dict.

  >>> checkpoint_identity(LMConfig(seeds=(0,)))['seeds']
  [0]
  """
  return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def scope(checkpointer: Checkpointer, name: str) -> Checkpointer:
  """``checkpointer.scope(name)``, or None without a checkpointer.

  >>> scope(None, 'pretrain') is None
  True
  """
  return None if checkpointer is None else checkpointer.scope(name)


def checkpointing(checkpointer: Checkpointer) -> dict[str, Any]:
  """The ``checkpointer`` argument of run_online / run_protocol, if any.

  Empty without one, so that those run unchanged (and run before they took
  a checkpointer).

  >>> checkpointing(None)
  {}
  """
  return {} if checkpointer is None else {'checkpointer': checkpointer}


# ---------------------------------------------------------------------------
# The pre-trained model (scenario finetune).


def pretrain_identity(config: LMConfig, model: gpt.GPTConfig) -> dict[str, Any]:
  """Everything that determines the pre-trained params (the checkpoint's name)."""
  return {'model': dataclasses.asdict(model), 'data': config.data,
          'steps': config.pretrain_steps, 'batch_size': config.batch_size,
          'learning_rate': config.pretrain_learning_rate,
          'warmup': config.warmup_steps,
          'weight_decay': config.weight_decay, 'beta2': config.beta2,
          'grad_clip': config.grad_clip, 'seed': config.seeds[0]}


def pretrained_params(config: LMConfig, model: gpt.GPTConfig, splits: TokenSplits,
                      log: Callable[[str], None] = print,
                      checkpointer: Checkpointer = None
                      ) -> tuple[PyTree, dict[str, Any]]:
  """Dense pre-training on `splits` (seed `seeds[0]`), saved under `workdir`.

  Reused from `workdir` when a checkpoint of the same identity is there
  (`pretrain_identity`). Returns the params and what was done.
  `checkpointer` (a scope of the run's, e.g. ``'pretrain'``): the
  pre-training saves there every ``every`` steps and resumes mid-way.
  """
  path = os.path.join(config.workdir, 'pretrained-' + checkpoints.state_key(
      pretrain_identity(config, model))[len('eta0-'):])
  like = gpt.init(model, jax.random.key(0))[1]
  if checkpoints.exists(path):
    log(f'finetune: reusing the pre-trained model in {path} (not retrained)')
    return checkpoints.restore_state(path, like), {'path': path,
                                                   'reused': True}
  log(f'finetune: pre-training {config.pretrain_steps} dense steps on the '
      f'pre-training plays (seed {config.seeds[0]}); saved to {path}')
  task = char_lm.char_lm_task(
      model, splits.train, {'val': splits.val}, batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size,
      eval_windows_per_split=config.eval_windows)
  run = online.run_online(
      task, nanogpt_optimizer(config, config.pretrain_steps,
                           config.pretrain_learning_rate),
      online_settings(config, 'none', config.pretrain_steps),
      config.seeds[:1], log=log, **checkpointing(checkpointer))
  params = jax.tree.map(lambda x: x[0], run['final_params'])
  checkpoints.save_state(path, params)
  checks_ = run['checks']
  return params, {'path': path, 'reused': False,
                  'val_loss': checks_[-1]['metrics']['val_loss'][0],
                  'steps_per_s': [c['steps_per_s'] for c in checks_]}


# ---------------------------------------------------------------------------
# Running.


def lm_task(config: LMConfig, model: gpt.GPTConfig, splits: TokenSplits,
              eval_splits: tuple[str, ...], init_params: PyTree | None) -> Any:
  """The char-LM task on `splits`, evaluated on `eval_splits` (val, test)."""
  return char_lm.char_lm_task(
      model, splits.train, {s: getattr(splits, s) for s in eval_splits},
      batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
      eval_windows_per_split=config.eval_windows, init_params=init_params)


def final_test_losses(config: LMConfig, model: gpt.GPTConfig, splits: TokenSplits,
                params: PyTree) -> list[float]:
  """The test split's loss of seed-batched `params`, per seed (once, at the end)."""
  task = lm_task(config, model, splits, ('test',), None)
  return np.asarray(jax.jit(jax.vmap(task.eval_fn))(params)['test_loss']
                    ).tolist()


def plain_run(run: dict[str, Any]) -> dict[str, Any]:
  """A run without arrays or functions, for JSON."""
  return {k: v for k, v in run.items()
          if k not in ('final_params', 'alphas', 'cases')}


def run_online_arms(config: LMConfig, model: gpt.GPTConfig, splits: TokenSplits,
                    init_params: PyTree | None,
                    arms: dict[str, online.OnlineConfig],
                    log: Callable[[str], None] = print,
                    checkpointer: Checkpointer = None) -> dict[str, Any]:
  """Every arm (name → its `OnlineConfig`) on the same seeds, side by side.

  `checkpointer`: each arm's run resumes from the scope ``'seeds <seeds>/arm
  <name>'`` of it.

  The first arm is the reference (dense): the others' times are to its final
  validation loss, per seed. Each run's test loss is taken once, at the end;
  with `config.time_steps` every step program that ran is timed in
  interleaved rounds (`lm_report.time_side_by_side`) and the clocks use those
  rates.
  """
  task = lm_task(config, model, splits, ('val',), init_params)
  seeds = scope(checkpointer, 'seeds ' + ','.join(map(str, config.seeds)))
  runs = {}
  for name, settings in arms.items():
    log(f'--- {name}: {settings.steps} steps, seeds {list(config.seeds)}')
    run = online.run_online(task, nanogpt_optimizer(config, settings.steps),
                            settings, config.seeds, log=log,
                            keep_cases=config.time_steps,
                            **checkpointing(scope(seeds, f'arm {name}')))
    run['test_loss'] = final_test_losses(config, model, splits,
                                         run['final_params'])
    run['peak_memory_bytes'] = lm_report.peak_memory()
    runs[name] = run
  timed = (lm_report.time_side_by_side(runs, config.time_repeats, log)
           if config.time_steps else None)
  target = lm_report.val_losses(next(iter(runs.values())))[-1]
  summaries = {name: lm_report.summarize_run(
      run, target, lm_report.run_rates(timed, name))
               for name, run in runs.items()}
  return {'runs': runs, 'summaries': summaries, 'side_by_side': timed,
          'clock': 'side by side' if timed else 'as run'}


def run_online_pair(config: LMConfig, model: gpt.GPTConfig, splits: TokenSplits,
                    init_params: PyTree | None,
                    log: Callable[[str], None] = print,
                    checkpointer: Checkpointer = None) -> dict[str, Any]:
  """Dense and the frozen run (same seeds), test losses, side-by-side timing."""
  arms = {'dense': online_settings(config, 'none')}
  if config.freeze != 'none':
    arms[run_label(config)] = online_settings(config, criterion_name(config))
  return run_online_arms(config, model, splits, init_params, arms, log,
                         checkpointer)


def run_lm_experiment(config: LMConfig, output_dir: str | None,
                      data: LMData | None = None,
                      log: Callable[[str], None] = print,
                      checkpointer: Checkpointer = None) -> dict[str, Any]:
  """The whole experiment: prints, writes JSON, table and plot; returns them.

  `data`: the tokens (default: `lm_data.load_data`; a test passes
  `synthetic_data`). Checked before any work (`validate`). `checkpointer`
  (identity: `checkpoint_identity(config)`): every training resumes from
  its scope (module docstring).
  """
  data = (lm_data.load_data(config.data, config.scenario, log,
                                    config.heldout) if data is None
          else data)
  validate(config, data.vocab_size)
  model = gpt_config(config, data.vocab_size)
  init_params, pretrained = None, None
  if config.scenario == 'finetune':
    if data.pretrain is None:
      raise ValueError("scenario='finetune' needs data with pre-training "
                       'splits (LMData.pretrain).')
    init_params, pretrained = pretrained_params(
        config, model, data.pretrain, log, scope(checkpointer, 'pretrain'))
  out: dict[str, Any] = {
      'config': dataclasses.asdict(config), 'model': dataclasses.asdict(model),
      'data': {**data.about, 'chars': {s: len(getattr(data.task, s))
                                       for s in TokenSplits._fields}},
      'pretrained': pretrained, 'environment': experiment.environment()}
  before = ''
  if init_params is not None:
    start = lm_task(config, model, data.task, ('val', 'test'), init_params)
    out['before_finetuning'] = {
        k: float(v) for k, v in jax.jit(start.eval_fn)(init_params).items()}
    before = ('\n\nthe pre-trained model on the fine-tuning plays, before '
              'fine-tuning: ' + ', '.join(
                  f'{k} {v:.3f}' for k, v in out['before_finetuning'].items()))
    log(before.strip())
  if config.mode == 'protocol':
    task = lm_task(config, model, data.task, ('val', 'test'), init_params)
    results = protocol.run_protocol(
        task, nanogpt_optimizer(config, config.eta0 + config.eta1),
        protocol_settings(config), [config.selector], config.seeds, log=log,
        **checkpointing(scope(checkpointer, 'protocol')))
    results['peak_memory_bytes'] = lm_report.peak_memory()
    out['protocol'] = results
    table = lm_report.protocol_table(results)
  else:
    pair = run_online_pair(config, model, data.task, init_params, log,
                           scope(checkpointer, 'online'))
    out.update(runs={k: plain_run(v) for k, v in pair['runs'].items()},
               summaries=pair['summaries'],
               side_by_side=pair['side_by_side'], clock=pair['clock'])
    table = (lm_report.runs_table(pair['summaries']) + '\n\n'
             + lm_report.programs_table(pair['runs'], pair['side_by_side']))
  table += before
  log('\n' + table)
  if output_dir is not None:
    base = f'{output_dir}/lm_{config.scenario}_{config.mode}_{config.freeze}'
    io_lib.write_json_atomic(out, base + '.json')
    io_lib.write_text_atomic(table + '\n', base + '.txt')
    if config.mode == 'online':
      lm_report.plot_val_loss(
          pair['runs'], pair['summaries'], base + '.png',
          f'char-GPT, {config.scenario} ({config.data}): dense vs '
          f'{config.freeze}, {len(config.seeds)} seed(s)')
    log(f'wrote {base}.json, .txt' + (', .png' if config.mode == 'online'
                                       else ''))
  return out | {'table': table}
