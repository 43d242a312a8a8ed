# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The pruning algorithms, as `Pruner` settings for `sparse`.

A `Pruner` says how masks are scored (a selector of the registry, read as
β: which weights to keep), to which sparsity and where (schedule,
distribution, filter, structure), and how they evolve: pruned for good
(magnitude, random, saliency and their global variants), re-chosen on dense
weights every step (STE), fixed from the start (static sparse), or with a
fraction dropped and regrown (SET: at random; RigL: where the gradient is
largest).

  >>> p = rigl(0.95, every=100, end=7500)
  >>> p.init, p.regrow, p.distribution, p.schedule.last_step()
  ('random', 'gradient', 'erk', 7400)
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Callable

from paramsel_jax.select import selectors
from paramsel_jax.sparsity import distributions as dist_lib
from paramsel_jax.sparsity import schedules as sched_lib
from paramsel_jax.sparsity import structures as struct_lib

ScoreFn = Callable[[selectors.SelectionContext], object]
INITS = (None, 'random')
REGROWS = (None, 'random', 'gradient')


@dataclasses.dataclass(frozen=True)
class Pruner:
  """How `sparse` chooses and evolves its masks.

  Attributes:
    score: a selector name (`paramsel_jax.SELECTORS`: its β scores, larger
      kept: 'magnitude' |w|, 'random', 'saliency' |w ⊙ g|, ...) or a
      function `SelectionContext -> scores`.
    sparsity: the target fraction pruned, in [0, 1) (an N:M structure sets
      it to 1 - N/M).
    schedule: when masks are re-chosen (`schedules`).
    distribution: 'uniform', 'erk', 'global', `{glob: sparsity}` or a
      callable (`distributions`).
    structure: unstructured, N:M, block or channel (`structures`).
    leaf_filter: `(name, leaf) -> bool`, the leaves pruned (default: ndim > 1,
      except leaves named `bias` or `scale`).
    erk_power_scale: ERK's exponent (1: ERK; 0: uniform).
    ste: straight-through: the dense weights train, the forward pass uses
      the masked ones (`ste_params`), and the masks are re-chosen among all
      weights at each update.
    init: None (dense start) or 'random' (a random mask at the target from
      `init`: sparse from the start).
    regrow: None, 'random' (SET) or 'gradient' (RigL): at each update a
      fraction of the kept weights is dropped by magnitude and as many
      regrown, at zero and with their optimizer state reset.
    drop_fraction: the fraction dropped at the first update; it decays to 0
      at the schedule's end by a cosine.
  """

  score: str | ScoreFn = 'magnitude'
  sparsity: float = 0.9
  schedule: sched_lib.Schedule = dataclasses.field(
      default_factory=sched_lib.one_shot)
  distribution: dist_lib.Distribution = 'uniform'
  structure: struct_lib.Structure = dataclasses.field(
      default_factory=struct_lib.unstructured)
  leaf_filter: dist_lib.LeafFilter | None = None
  erk_power_scale: float = 1.0
  ste: bool = False
  init: str | None = None
  regrow: str | None = None
  drop_fraction: float = 0.3

  def __post_init__(self):
    if isinstance(self.score, str):
      selectors.get_selector(self.score)  # ValueError naming the accepted.
    elif not callable(self.score):
      raise ValueError(f'score={self.score!r}; accepted: a selector name '
                       f'({", ".join(sorted(selectors.SELECTORS))}) or a '
                       'function SelectionContext -> scores.')
    fixed = self.structure.fixed_sparsity
    if fixed is not None:
      object.__setattr__(self, 'sparsity', fixed)
    sched_lib.check_sparsity(self.sparsity)
    dist_lib._check_distribution(self.distribution)
    if not isinstance(self.schedule, sched_lib.Schedule):
      raise ValueError(f'schedule={self.schedule!r}; accepted: one_shot, '
                       'periodic, polynomial or no_update.')
    if self.init not in INITS:
      raise ValueError(f'init={self.init!r}; accepted: {INITS}.')
    if self.regrow not in REGROWS:
      raise ValueError(f'regrow={self.regrow!r}; accepted: {REGROWS}.')
    if not (isinstance(self.drop_fraction, numbers.Real)
            and 0 <= self.drop_fraction <= 1):
      raise ValueError(f'drop_fraction={self.drop_fraction!r}; accepted: a '
                       'number in [0, 1].')
    if self.distribution == 'global' and self.structure.name != 'unstructured':
      raise ValueError(f'a global distribution with {self.structure.name} '
                       'structure: one threshold over leaves needs single '
                       "weights; accepted: structure=unstructured(), or "
                       "distribution='uniform' / 'erk'.")
    if self.regrow is not None:
      if self.structure.name != 'unstructured' or self.ste:
        raise ValueError(
            f'regrow={self.regrow!r} (SET/RigL) takes unstructured, non-STE '
            f'masks; got structure={self.structure.name}, ste={self.ste}.')
      if self.distribution == 'global':
        raise ValueError("regrow (SET/RigL) keeps each leaf's count; "
                         "accepted: distribution='uniform', 'erk' or a map.")
      if self.init is None:
        raise ValueError("regrow (SET/RigL) starts sparse: accepted: "
                         "init='random'.")
      if self.schedule.end is None or not isinstance(
          self.schedule, sched_lib.Periodic):
        raise ValueError('regrow (SET/RigL) needs periodic(every, begin, '
                         'end): the drop fraction decays to 0 at end.')
    if self.init is None and not self.schedule.updates:
      raise ValueError(
          f'schedule=no_update() with init=None never prunes: the masks stay '
          f"init's, all kept (sparsity 0, not {self.sparsity}); accepted: "
          "init='random' (static_sparse), or a schedule that prunes "
          '(one_shot, periodic, polynomial).')
    if self.init is not None and self.schedule.updates and (
        self.regrow is None and not self.ste):
      raise ValueError(f'init={self.init!r} with a schedule that prunes '
                       'further: the random mask is already at the target; '
                       'accepted: schedule=no_update() (static sparse), or '
                       'regrow= (SET/RigL).')


def _pruner(score, sparsity, schedule, **kwargs) -> Pruner:
  return Pruner(score=score, sparsity=sparsity,
                schedule=schedule or sched_lib.one_shot(), **kwargs)


def magnitude(sparsity: float, schedule: sched_lib.Schedule | None = None,
              **kwargs) -> Pruner:
  """Prune the smallest |w| (`distribution='global'`: over all leaves at once).

  With `polynomial(...)` this is Zhu & Gupta's gradual magnitude pruning.

  Example:
    >>> magnitude(0.9, distribution='global').distribution
    'global'
  """
  return _pruner('magnitude', sparsity, schedule, **kwargs)


def random(sparsity: float, schedule: sched_lib.Schedule | None = None,
           **kwargs) -> Pruner:
  """Prune uniformly at random (a baseline)."""
  return _pruner('random', sparsity, schedule, **kwargs)


def saliency(sparsity: float, schedule: sched_lib.Schedule | None = None,
             **kwargs) -> Pruner:
  """Prune the smallest |w ⊙ g| (first-order Taylor; g: the update's gradient)."""
  return _pruner('saliency', sparsity, schedule, **kwargs)


def ste(score: str, sparsity: float,
        schedule: sched_lib.Schedule | None = None, **kwargs) -> Pruner:
  """Straight-through pruning: masks re-chosen on the dense weights.

  The forward pass reads `ste_params(params, state)`; every weight trains.
  Default schedule: re-chosen every step. A coarse schedule is unstable at
  high sparsity: between updates the pruned weights drift on their
  straight-through gradients, then many swap in at once (LeNet-300 at 95%,
  re-chosen every 100 steps: 9-60% error by seed; every step: 3%).
  """
  return _pruner(score, sparsity, schedule or sched_lib.periodic(1),
                 ste=True, **kwargs)


def static_sparse(sparsity: float, distribution: dist_lib.Distribution = 'erk',
                  **kwargs) -> Pruner:
  """A random mask at the target from `init`, never changed."""
  return _pruner('random', sparsity, sched_lib.no_update(), init='random',
                 distribution=distribution, **kwargs)


def set_sparse(sparsity: float, every: int, end: int, begin: int = 0,
               drop_fraction: float = 0.3,
               distribution: dist_lib.Distribution = 'erk',
               **kwargs) -> Pruner:
  """SET (Mocanu et al. 2018): drop the smallest |w|, regrow at random."""
  return _pruner('magnitude', sparsity,
                 sched_lib.periodic(every, begin, end), init='random',
                 regrow='random', drop_fraction=drop_fraction,
                 distribution=distribution, **kwargs)


def rigl(sparsity: float, every: int, end: int, begin: int = 0,
         drop_fraction: float = 0.3,
         distribution: dist_lib.Distribution = 'erk', **kwargs) -> Pruner:
  """RigL (Evci et al. 2020): drop the smallest |w|, regrow the largest |g|."""
  return _pruner('magnitude', sparsity,
                 sched_lib.periodic(every, begin, end), init='random',
                 regrow='gradient', drop_fraction=drop_fraction,
                 distribution=distribution, **kwargs)
