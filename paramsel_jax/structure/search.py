"""The bilevel structure search: weights on train, structure on validation.

DARTS (Liu, Simonyan and Yang 2018) poses structure search as
``min_theta L_valid(w*(theta), theta) + R(theta)`` with
``w*(theta) = argmin_w L_train(w, theta)`` and solves it to first order by
alternating steps. Here every step ``t`` after a warm-up does:

1. structure step: draw a Gumbel-softmax structure ``s ~ GS(theta, tau_t)``,
   take the gradient in ``theta`` of ``CE(supernet(w, s), valid batch) +
   R(theta)`` (:mod:`regularizer`) and update ``theta`` with its own optax
   optimizer;
2. weight step: draw a fresh structure from the updated ``theta`` and update
   ``w`` on a training batch with the weights' optimizer.

The two parameter groups have separate optimizers and states, so a zero
gradient in one group never moves the other through a shared Adam moment.
During the warm-up (``warmup_steps``) only the weights move, under structures
sampled from the initial (uniform) distribution at ``tau0``, so that every
sub-network gets trained before the structure is judged. The temperature
follows :func:`relax.temperature_schedule` from ``tau0`` to ``tau_min`` over
the ``search_steps`` steps after the warm-up.

Steps run as ``lax.scan`` chunks inside ``jit``; the host prints progress
between chunks. :func:`run_search` can run several seeds at once with ``vmap``
(all seeds share the space, so their states stack). Given a
:class:`~paramsel_jax.train.checkpoints.Checkpointer`, it saves the whole
search (weights, logits, both optimizer states, the run keys, the step and
the metric history) every ``checkpointer.every`` steps and at the end, and a
rerun resumes from the last save: the results are bit-identical to an
uninterrupted search, which chunks the same way (a chunk stops early at a
save and the next one finishes it; the history's per-chunk means are taken
on the host over the chunk's steps, however it was split).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from paramsel_jax.structure import presets
  >>> space = presets.mlp_space((4, 4, 1), 3, widths=(4, 8), depth=2)
  >>> x = jax.random.randint(jax.random.key(0), (64, 4, 4, 1), 0, 255
  ...                        ).astype(jnp.uint8)
  >>> y = jax.random.randint(jax.random.key(1), (64,), 0, 3)
  >>> config = SearchConfig(warmup_steps=4, search_steps=8, chunk_steps=4,
  ...                       batch_size=8)
  >>> result = run_search(space, config, (x, y), (x, y), seeds=(0, 1))
  >>> result.logits['dense0/width'].shape  # (seeds, candidates)
  (2, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax import models
from paramsel_jax.train import steps as steps_lib
from paramsel_jax.protocol import checks
from paramsel_jax.structure import regularizer as reg_lib
from paramsel_jax.structure import relax
from paramsel_jax.structure import supernet as supernet_lib
from paramsel_jax.structure.space import SearchSpace
from paramsel_jax.train import checkpoints as checkpoints_lib

PyTree = Any
Progress = Callable[[str], None] | None
Split = tuple[jax.Array, jax.Array]  # uint8 images, int labels.


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Settings of the bilevel search.

  Every field is checked when the config is made; a bad one raises a
  ``ValueError`` that names it, its value and what is accepted:

    >>> SearchConfig(tau0=float('inf'))
    Traceback (most recent call last):
    ...
    ValueError: SearchConfig.tau0=inf; accepted: a finite float > 0.

  Attributes:
    warmup_steps: weight-only steps before structure steps start (an int
      ``>= 0``).
    search_steps: alternating (structure, weight) step pairs (an int
      ``>= 1``).
    batch_size: examples per batch (train and validation), an int ``>= 1``.
    weight_lr: Adam learning rate of the supernet weights, finite, ``> 0``.
    arch_lr: Adam learning rate of the structure logits, finite, ``> 0``.
    arch_b1: Adam ``b1`` of the structure logits, in ``[0, 1)`` (DARTS uses
      0.5).
    tau0: initial Gumbel-softmax temperature, finite, ``> 0``.
    tau_min: final temperature, ``0 < tau_min <= tau0``.
    schedule: one of :data:`relax.SCHEDULES` (``'exponential'``,
      ``'linear'``, ``'constant'``).
    hard: straight-through one-hot samples (GDAS) instead of soft ones.
    regularizer: weights of the structure regularizer.
    chunk_steps: steps per jitted scan chunk, an int ``>= 1``.
    conv_impl: convolution implementation of the supernet, one of
      :data:`paramsel_jax.models.CONV_IMPLS`.
  """

  warmup_steps: int = 500
  search_steps: int = 1500
  batch_size: int = 128
  weight_lr: float = 1e-3
  arch_lr: float = 3e-2
  arch_b1: float = 0.5
  tau0: float = 5.0
  tau_min: float = 0.1
  schedule: str = 'exponential'
  hard: bool = True
  regularizer: reg_lib.RegularizerConfig = reg_lib.RegularizerConfig(
      size_weight=0.05)
  chunk_steps: int = 500
  conv_impl: str = 'auto'

  def __post_init__(self):
    checks.fields(self, ('warmup_steps',), checks.integer, at_least=0)
    checks.fields(self, ('search_steps', 'batch_size', 'chunk_steps'),
                  checks.integer, at_least=1)
    checks.fields(self, ('weight_lr', 'arch_lr'), checks.real, above=0)
    checks.fields(self, ('arch_b1',), checks.real, at_least=0, below=1)
    relax.check_temperatures(self.schedule, self.tau0, self.tau_min,
                             self.search_steps, prefix='SearchConfig.',
                             steps_name='search_steps')
    checks.fields(self, ('hard',), checks.boolean)
    checks.fields(self, ('regularizer',), checks.instance,
                  cls=reg_lib.RegularizerConfig)
    checks.fields(self, ('conv_impl',), checks.one_of,
                  accepted=models.CONV_IMPLS)


class SearchState(NamedTuple):
  """Everything that changes during the search (one seed)."""

  params: PyTree  # supernet weights.
  logits: dict[str, jax.Array]  # structure logits, name -> (candidates,).
  weight_opt_state: optax.OptState
  arch_opt_state: optax.OptState
  step: jax.Array  # int32 scalar: steps done, warm-up included.


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """What :func:`run_search` returns; arrays have a leading seed axis.

  Attributes:
    seeds: the seeds, in order.
    logits: final structure logits, name -> ``(seeds, candidates)``.
    params: final supernet weights (leading seed axis).
    history: one dict of host floats per chunk: ``step``, ``tau``,
      ``train_loss``, ``valid_loss``, ``expected_params``, ``entropy``
      (each a list over seeds, the mean over the chunk's steps).
    seconds: wall time of the search loop (compilation included; a resumed
      search adds the time its earlier runs had recorded at their last
      save).
  """

  seeds: tuple[int, ...]
  logits: dict[str, jax.Array]
  params: PyTree
  history: list[dict[str, Any]]
  seconds: float

  def seed_logits(self, i: int) -> dict[str, jax.Array]:
    """The logits of the ``i``-th seed."""
    return {k: v[i] for k, v in self.logits.items()}


def _optimizers(config: SearchConfig):
  weight_tx = optax.adam(config.weight_lr)
  arch_tx = optax.adam(config.arch_lr, b1=config.arch_b1)
  return weight_tx, arch_tx


def init_state(space: SearchSpace, config: SearchConfig,
               key: jax.Array) -> SearchState:
  """The initial state of one seed: fresh weights, zero (uniform) logits.

  Pure and traceable; :func:`init_states` is the jitted, vmapped form.
  """
  weight_tx, arch_tx = _optimizers(config)
  net = supernet_lib.Supernet(space, config.conv_impl)
  x = jnp.zeros((1, *space.input_shape), jnp.float32)
  params = net.init(key, x, reg_lib.max_structure(space))['params']
  logits = relax.init_logits(space)
  return SearchState(params, logits, weight_tx.init(params),
                     arch_tx.init(logits), jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 1))
def init_states(space: SearchSpace, config: SearchConfig,
                seeds: jax.Array) -> tuple[SearchState, jax.Array]:
  """Initial states and run keys of several seeds (leading seed axis).

  Seed ``s`` (a uint32) initialises the weights from ``jax.random.key(s)``;
  its run key (batches, Gumbel noise) is ``fold_in(key(s), 1)``. Compiled
  once per space, config and number of seeds.
  """
  keys = jax.vmap(jax.random.key)(seeds)
  states = jax.vmap(lambda k: init_state(space, config, k))(keys)
  return states, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)


def _loss(net: supernet_lib.Supernet, params: PyTree, structure: PyTree,
          images: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean cross-entropy of the supernet under ``structure`` on a batch."""
  logits = net.apply({'params': params}, steps_lib.to_float(images),
                     structure)
  # flax types `apply` as returning (output, state) too, for `mutable`.
  return steps_lib.cross_entropy(logits, labels)  # type: ignore[arg-type]


def _arch_step(space: SearchSpace, config: SearchConfig,
               net: supernet_lib.Supernet,
               arch_tx: optax.GradientTransformation, state: SearchState,
               key: jax.Array, valid: Split, tau: jax.Array):
  """A structure step on a validation batch: new logits, opt state, metrics."""
  xv, yv = steps_lib.sample_batch(jax.random.fold_in(key, 0), *valid,
                                  config.batch_size)

  def arch_loss(logits):
    s = relax.sample_structure(jax.random.fold_in(key, 1), logits, tau,
                               hard=config.hard)
    ce = _loss(net, state.params, s, xv, yv)
    r, parts = reg_lib.structure_regularizer(space, logits,
                                             config.regularizer)
    return ce + r, (ce, parts)

  (_, (ce_v, parts)), g = jax.value_and_grad(arch_loss, has_aux=True)(
      state.logits)
  updates, arch_opt_state = arch_tx.update(g, state.arch_opt_state,
                                           state.logits)
  logits = optax.apply_updates(state.logits, updates)
  return logits, arch_opt_state, {'valid_loss': ce_v, **parts}


def _no_arch_step(space: SearchSpace, config: SearchConfig,
                  state: SearchState, key: jax.Array, valid: Split,
                  tau: jax.Array):
  """The warm-up's :func:`_arch_step`: the logits stay, no validation loss."""
  del key, valid, tau
  _, parts = reg_lib.structure_regularizer(space, state.logits,
                                           config.regularizer)
  return (state.logits, state.arch_opt_state,
          {'valid_loss': jnp.full((), jnp.nan), **parts})


def make_chunk_fn(space: SearchSpace, config: SearchConfig
                  ) -> Callable[..., tuple[SearchState, dict[str, jax.Array]]]:
  """``chunk(state, key, train, valid, warmup, length) -> (state, metrics)``.

  Pure and unjitted: :func:`run_search` jits (and optionally vmaps) it.
  ``length`` must be static; ``warmup`` is a traced bool scalar (not batched
  under ``vmap``): when True only the weights move, at ``tau0``, so warm-up
  and search share one compilation. ``metrics`` hold every step's values
  (leading axis ``length``).
  """
  net = supernet_lib.Supernet(space, config.conv_impl)
  weight_tx, arch_tx = _optimizers(config)
  schedule = relax.temperature_schedule(config.schedule, config.tau0,
                                        config.tau_min, config.search_steps)
  arch_step = functools.partial(_arch_step, space, config, net, arch_tx)
  no_arch_step = functools.partial(_no_arch_step, space, config)
  loss = functools.partial(_loss, net)

  def step_fn(state: SearchState, key: jax.Array, train: Split, valid: Split,
              warmup: jax.Array):
    key = jax.random.fold_in(key, state.step)
    tau = jnp.where(warmup, jnp.asarray(config.tau0, jnp.float32),
                    schedule(state.step - config.warmup_steps))
    logits, arch_opt_state, metrics = jax.lax.cond(
        warmup, no_arch_step, arch_step, state, key, valid, tau)
    xt, yt = steps_lib.sample_batch(jax.random.fold_in(key, 2), *train,
                                    config.batch_size)
    s = relax.sample_structure(jax.random.fold_in(key, 3), logits, tau,
                               hard=config.hard)
    ce_t, g = jax.value_and_grad(loss)(state.params, s, xt, yt)
    updates, weight_opt_state = weight_tx.update(g, state.weight_opt_state,
                                                 state.params)
    params = optax.apply_updates(state.params, updates)
    metrics.update(train_loss=ce_t, tau=tau)
    return SearchState(params, logits, weight_opt_state, arch_opt_state,
                       state.step + 1), metrics

  def chunk(state, key, train, valid, warmup, length):
    def body(state, _):
      return step_fn(state, key, train, valid, warmup)
    return jax.lax.scan(body, state, None, length=length)

  return chunk


@functools.lru_cache(maxsize=8)
def compiled_chunk_fn(space: SearchSpace, config: SearchConfig,
                      vmap_seeds: bool) -> Callable[..., Any]:
  """The jitted (and with ``vmap_seeds``, vmapped) :func:`make_chunk_fn`.

  Cached, so repeated searches of one space and config compile once.
  """
  chunk = make_chunk_fn(space, config)
  if vmap_seeds:
    chunk = jax.vmap(chunk, in_axes=(0, 0, None, None, None, None))
  return jax.jit(chunk, static_argnums=(5,), donate_argnums=(0,))


def run_search(space: SearchSpace, config: SearchConfig, train: Split,
               valid: Split, *, seeds: Sequence[int] = (0,),
               vmap_seeds: bool = True, progress: Progress = None,
               checkpointer: checkpoints_lib.Checkpointer | None = None
               ) -> SearchResult:
  """Runs the structure search for every seed.

  Args:
    space: a validated search space.
    config: the search settings.
    train: ``(uint8 images, labels)`` for the weight steps.
    valid: ``(uint8 images, labels)`` for the structure steps.
    seeds: one search per seed, distinct ints in ``[0, 2**32)``; seed ``s``
      uses ``jax.random.key(s)`` for the weights' init and
      ``fold_in(key(s), 1)`` for the batches and Gumbel noise.
    vmap_seeds: run the seeds together under ``vmap`` (one compiled loop);
      else in turn. Both give the same numbers up to float rounding.
    progress: called with a line after every chunk, if given.
    checkpointer: if given, each group of seeds searched together (all of
      them under ``vmap``, else each seed) is a phase (``'seeds 0,1'``),
      saved every ``checkpointer.every`` steps and at its end and resumed
      from its last save; the results do not change.

  Returns:
    A :class:`SearchResult`.

  Raises:
    ValueError: on a bad space or bad seeds, before any work.
  """
  space.validate()
  checks.seeds('seeds', tuple(seeds))
  seeds = tuple(int(s) for s in seeds)
  # Pairs stay pairs (mypy reads a tuple of a generator as of any length).
  train = tuple(jnp.asarray(a) for a in train)  # type: ignore[assignment]
  valid = tuple(jnp.asarray(a) for a in valid)  # type: ignore[assignment]
  chunk = compiled_chunk_fn(space, config, vmap_seeds)
  groups = [seeds] if vmap_seeds else [(s,) for s in seeds]
  finals, history, seconds = [], [], 0.0
  for group in groups:
    phase = (None if checkpointer is None else
             checkpointer.phase('seeds ' + ','.join(map(str, group))))
    state, rows, group_seconds = _search_group(
        space, config, chunk, group, vmap_seeds, train, valid, phase,
        progress, seconds)
    history += rows
    seconds += group_seconds
    finals.append(state if vmap_seeds else
                  jax.tree.map(lambda a: a[None], state))
  final = jax.tree.map(lambda *a: jnp.concatenate(a), *finals)
  return SearchResult(seeds, final.logits, final.params, history, seconds)


def _chunk_end(done: int, config: SearchConfig) -> int:
  """The end of the chunk that step ``done`` is in (warm-up, then search).

  >>> c = SearchConfig(warmup_steps=5, search_steps=10, chunk_steps=4)
  >>> [_chunk_end(d, c) for d in (0, 3, 4, 5, 8, 12, 13)]
  [4, 4, 5, 9, 9, 13, 15]
  """
  if done < config.warmup_steps:
    base, end = 0, config.warmup_steps
  else:
    base, end = config.warmup_steps, config.warmup_steps + config.search_steps
  return min(base + ((done - base) // config.chunk_steps + 1)
             * config.chunk_steps, end)


def _search_group(space: SearchSpace, config: SearchConfig,
                  chunk: Callable[..., Any], group: tuple[int, ...],
                  vmap_seeds: bool, train: Split, valid: Split,
                  phase: checkpoints_lib.PhaseCheckpoints | None,
                  progress: Progress, seconds_before: float
                  ) -> tuple[SearchState, list[dict[str, Any]], float]:
  """The search of one group of seeds: (final state, history rows, seconds).

  Resumed from ``phase``'s last checkpoint, if any; saved at ``phase``'s
  steps and at the end. A chunk cut short by a save leaves its per-step
  metrics (``pending``) in the checkpoint, so its history row is the same.
  """
  start = time.perf_counter()
  state, key = init_states(space, config, jnp.asarray(group, jnp.uint32))
  if not vmap_seeds:
    state, key = jax.tree.map(lambda a: a[0], (state, key))
  total = config.warmup_steps + config.search_steps
  done, rows, earlier = 0, [], 0.0
  pending: dict[str, np.ndarray] = {}
  restored = None if phase is None else phase.restore(
      {'state': state, 'key': key})
  if restored is not None:
    done, saved, meta = restored
    _check_key(saved['key'], key, phase)
    state, rows, earlier = saved['state'], meta['rows'], meta['seconds']
    pending = {k: np.asarray(v['values'], v['dtype'])
               for k, v in meta['pending'].items()}
  elapsed = lambda: earlier + time.perf_counter() - start
  while done < total:
    warmup = done < config.warmup_steps
    row_end = _chunk_end(done, config)
    stop = row_end if phase is None else min(row_end, phase.next_save(done))
    state, metrics = chunk(state, key, train, valid, jnp.asarray(warmup),
                           stop - done)
    done = stop
    for k, v in jax.device_get(metrics).items():
      pending[k] = (np.concatenate([pending[k], v], axis=-1) if k in pending
                    else np.asarray(v))
    if done == row_end:
      rows.append(_history_row(group, done, warmup, pending))
      pending = {}
      if progress is not None:
        progress(_progress_line(rows[-1], total, seconds_before + elapsed()))
    if phase is not None and (done == total or done % phase.every == 0):
      phase.save(done, {'state': state, 'key': key}, {
          'rows': rows, 'seconds': elapsed(),
          'pending': {k: {'dtype': str(v.dtype), 'values': v.tolist()}
                      for k, v in pending.items()}})
  return state, rows, elapsed()


def _history_row(group: tuple[int, ...], step: int, warmup: bool,
                 metrics: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """A chunk's history row: each metric's mean over the chunk's steps."""
  row: dict[str, Any] = {'seeds': list(group), 'step': step, 'warmup': warmup}
  for k, v in metrics.items():
    if not (warmup and k in ('valid_loss',)):
      row[k] = np.atleast_1d(np.mean(v, axis=-1)).tolist()
  return row


def _check_key(saved: jax.Array, key: jax.Array,
               phase: checkpoints_lib.PhaseCheckpoints | None) -> None:
  """A ValueError if a checkpoint holds another run's PRNG key."""
  if not np.array_equal(jax.random.key_data(saved), jax.random.key_data(key)):
    directory = getattr(phase, 'directory', '?')
    raise ValueError(f'the checkpoint in {directory} holds another run\'s PRNG '
                     'key; accepted: the checkpoints of this run only (delete '
                     'that directory, or use another workdir).')


def _progress_line(row: Mapping[str, Any], total: int, seconds: float) -> str:
  def fmt(key, spec):
    if key not in row:
      return '-'
    return '/'.join(format(v, spec) for v in row[key])
  phase = 'warm-up' if row['warmup'] else 'search'
  return (f'  seeds {row["seeds"]} {phase} step {row["step"]}/{total} '
          f'tau {fmt("tau", ".3f")} train {fmt("train_loss", ".3f")} '
          f'valid {fmt("valid_loss", ".3f")} E[params] '
          f'{fmt("expected_params", ".0f")} entropy {fmt("entropy", ".3f")} '
          f'({seconds:.1f}s)')
