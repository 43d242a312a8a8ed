"""The selector API: the context, `Selector`, the registry, counts and masks."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paramsel_jax.select import stats as stats_lib
from paramsel_jax.select.stats import TrajectoryStats

PyTree = Any


class SelectionContext(NamedTuple):
  """What a selector may read when it scores coordinates.

  When α is chosen (after η0), `stats` and `eta0_stats` are the same and
  `alpha` is all True; when β is chosen (after η1), `stats` covers the last
  `window` steps of η1, `eta0_stats` those of η0, and `alpha` is the α in use.
  """

  params: PyTree  # the current weights w.
  stats: TrajectoryStats  # statistics over the last `window` steps of the phase.
  opt_state: optax.OptState  # the optimizer state (preconditioners, moments).
  key: jax.Array | None  # PRNG key for random selectors (None: only inputs are checked).
  eta0_stats: TrajectoryStats | None = None  # None: same as `stats`.
  alpha: PyTree | None = None  # None: every coordinate trained.

  def eta0(self) -> TrajectoryStats:
    """The statistics of η0's window (`stats` when `eta0_stats` is None)."""
    return self.stats if self.eta0_stats is None else self.eta0_stats

  def trained(self) -> PyTree:
    """Bool mask of the coordinates trained in the current phase."""
    if self.alpha is None:
      return jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), self.params)
    return self.alpha


ScoreFn = Callable[[SelectionContext], PyTree]


@dataclasses.dataclass(frozen=True)
class Selector:
  """A selection strategy: scores for α (keep optimizing) and β (keep at all)."""

  alpha_scores: ScoreFn
  beta_scores: ScoreFn
  description: str = ''
  # The `stats.STAT_GROUPS` the score functions read; only these are
  # collected in the protocol's windows (the others stay zero).
  stats: frozenset[str] = stats_lib.ALL_GROUPS
  # `(ctx, which) -> None`, or a message naming an input the α or β scores
  # need that `ctx` lacks (see `check_inputs`); None: both need the
  # statistics whenever `stats` names any.
  missing: Callable[[SelectionContext, str], str | None] | None = None

  def __post_init__(self):
    object.__setattr__(self, 'stats', stats_lib.check_groups(self.stats))


SELECTORS: dict[str, Selector] = {}


def register_selector(name: str):
  """Decorator: registers the `Selector` returned by a zero-argument factory."""

  def decorator(factory: Callable[[], Selector]) -> Callable[[], Selector]:
    SELECTORS[name] = factory()
    return factory

  return decorator


def get_selector(name: str) -> Selector:
  """The registered selector called `name`; ValueError naming the accepted ones.

  Example:
    >>> get_selector('topgrad').description.split(':')[0]
    'topgrad'
  """
  if name not in SELECTORS:
    raise ValueError(
        f'Unknown selector {name!r}; accepted: {", ".join(sorted(SELECTORS))}.')
  return SELECTORS[name]


def _accepted(name: str, n: int | None) -> str:
  count = (f'an integer count in [1, {n}] (N = {n} parameters)' if n else
           'an integer count >= 1')
  return f'accepted: {count} or a fraction 0 < {name} <= 1 of N (1.0 = all)'


def check_count(value: float | int, name: str = 'k') -> None:
  """The checks of `resolve_count` that do not need N (ValueError naming value).

  Example:
    >>> check_count(500.0)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: k=500.0 is out of range (for a count of 500, give the integer 500); accepted: an
    integer count >= 1 or a fraction 0 < k <= 1 of N (1.0 = all).
  """
  accepted = _accepted(name, None)
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f'{name}={value!r} is not a number; {accepted}.')
  if isinstance(value, numbers.Integral):
    if value < 1:
      raise ValueError(f'{name}={value!r} is out of range; {accepted}.')
    return
  if not (math.isfinite(value) and 0 < value <= 1):
    hint = (f' (for a count of {int(value)}, give the integer {int(value)})'
            if math.isfinite(value) and value > 1 and value == int(value)
            else '')
    raise ValueError(f'{name}={value!r} is out of range{hint}; {accepted}.')


def resolve_count(value: float | int, n: int, name: str = 'k') -> int:
  """A count in [1, n] from a count (an int) or a fraction (a float) of `n`.

  The rule is the same in the API and on the command line: an integer is a
  count of coordinates; a float is a fraction of `n` in (0, 1], rounded to
  the nearest count. So `1` is one coordinate and `1.0` all of them; `500.0`
  is refused (a fraction above 1), as is anything that gives no coordinate at
  all (`0`, or a fraction that rounds to 0).

  Example:
    >>> resolve_count(0.1, 266610), resolve_count(500, 266610)
    (26661, 500)
    >>> resolve_count(1, 10), resolve_count(1.0, 10)
    (1, 10)
  """
  accepted = _accepted(name, n)
  try:
    check_count(value, name)
  except ValueError as e:  # the same message, with N in it.
    raise ValueError(str(e).replace(_accepted(name, None), accepted)) from None
  if isinstance(value, numbers.Integral):
    if value > n:
      raise ValueError(f'{name}={value!r} is out of range; {accepted}.')
    return int(value)
  count = int(round(float(value) * n))
  if count < 1:
    raise ValueError(f'{name}={value!r} of N = {n} rounds to 0 coordinates; '
                     f'{accepted}.')
  return count


def top_k_mask(scores: PyTree, k: int | float, name: str = 'k') -> PyTree:
  """A bool mask with exactly `k` True entries at the largest scores, globally.

  `k` is a count (an int in [1, N]) or a fraction of all N scalars (a float
  in (0, 1], see `resolve_count`); it is static. 0, or a fraction that rounds
  to no coordinate, is refused (ValueError naming `name`=`k`), never an
  all-False mask. Ties go to the lower flat index (leaves in
  `jax.tree.leaves` order, then row-major); NaN scores rank last.

  Example:
    >>> import jax.numpy as jnp
    >>> m = top_k_mask({'a': jnp.array([3., 1.]), 'b': jnp.array([2., 2., 0.])}, 2)
    >>> m['a'].tolist(), m['b'].tolist()
    ([True, False], [True, False, False])
    >>> top_k_mask(jnp.arange(10.0), 0.2).tolist()[-3:]
    [False, True, True]
    >>> top_k_mask(jnp.arange(10.0), 0)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: k=0 is out of range; accepted: an integer count in [1, 10]
    (N = 10 parameters) or a fraction 0 < k <= 1 of N (1.0 = all).
  """
  leaves, treedef = jax.tree.flatten(scores)
  if not leaves:
    raise ValueError('top_k_mask: scores has no leaves; accepted: a pytree of '
                     'arrays with the params\' shapes.')
  sizes = [math.prod(jnp.shape(x)) for x in leaves]
  count = resolve_count(k, sum(sizes), name)
  flat = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])
  flat = jnp.where(jnp.isnan(flat), -jnp.inf, flat)
  # lax.top_k returns equal values lower index first; 6x faster than a full
  # stable argsort over N (130 ms -> 22 ms for LeNet-300, benchmark.py).
  _, top = jax.lax.top_k(flat, count)
  chosen = jnp.zeros(flat.shape, bool).at[top].set(True)
  parts = jnp.split(chosen, list(_cumsum(sizes))[:-1])
  return jax.tree.unflatten(
      treedef, [p.reshape(jnp.shape(x)) for p, x in zip(parts, leaves)])


def _cumsum(xs):
  total = 0
  for x in xs:
    total += x
    yield total


def _no_statistics(ctx: SelectionContext, which: str = 'alpha') -> str | None:
  del which
  count = np.asarray(ctx.stats.count)
  if np.any(count == 0):
    return ('no trajectory statistics were collected (stats.count == 0): feed '
            'the steps of the window to update_stats before selecting')
  return None


def missing_alpha_statistics(ctx: SelectionContext, which: str) -> str | None:
  """A `Selector.missing` for α scores that read the statistics, β scores not.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from paramsel_jax.select.stats import init_stats
    >>> p = {'w': jnp.ones(3)}
    >>> ctx = SelectionContext(p, init_stats(p), (), jax.random.key(0))
    >>> missing_alpha_statistics(ctx, 'beta') is None
    True
    >>> missing_alpha_statistics(ctx, 'alpha')[:42]
    'no trajectory statistics were collected (s'
  """
  return _no_statistics(ctx) if which == 'alpha' else None


def check_inputs(selector: Selector, which: str, ctx: SelectionContext,
                 name: str = '') -> None:
  """Raises ValueError when `ctx` lacks an input the `which` scores read.

  A selector scored on missing inputs (statistics never collected, an
  optimizer without the second moment it reads) would return an arbitrary
  mask, the first k coordinates in tree order; this refuses instead. Needs
  concrete values (call it outside `jit`); `select` calls it when it can.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from paramsel_jax.select.stats import init_stats
    >>> p = {'w': jnp.ones(3)}
    >>> ctx = SelectionContext(p, init_stats(p), (), jax.random.key(0))
    >>> check_inputs(get_selector('topgrad'), 'beta', ctx)  # β = top |w|
    >>> check_inputs(get_selector('topgrad'), 'alpha', ctx,
    ...              'topgrad')  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: selector 'topgrad' cannot score: no trajectory statistics were collected
    (stats.count == 0): feed the steps of the window to update_stats before selecting.
  """
  if selector.missing is not None:
    message = selector.missing(ctx, which)
  elif selector.stats:
    message = _no_statistics(ctx)
  else:
    message = None
  if message:
    raise ValueError(f'selector {name or selector.description.split(":")[0]!r}'
                     f' cannot score: {message}.')


def _is_concrete(tree: PyTree) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))



def scores(selector: Selector, which: str, ctx: SelectionContext,
           within: PyTree | None = None) -> PyTree:
  """The α (`which='alpha'`) or β (`which='beta'`) scores; larger: chosen.

  `within`: a mask; coordinates outside it score -inf. The inputs are
  checked first (`check_inputs`) when they are concrete.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from paramsel_jax.select.stats import init_stats
    >>> p = {'w': jnp.array([0.5, -3.0])}
    >>> ctx = SelectionContext(p, init_stats(p), (), jax.random.key(0))
    >>> scores(get_selector('magnitude'), 'beta', ctx)['w'].tolist()
    [0.5, 3.0]
  """
  if which not in ('alpha', 'beta'):
    raise ValueError(f"which={which!r}; accepted: 'alpha', 'beta'.")
  if _is_concrete((ctx.stats.count, ctx.opt_state)):
    check_inputs(selector, which, ctx)
  out = (selector.alpha_scores if which == 'alpha' else
         selector.beta_scores)(ctx)
  if within is not None:  # only coordinates inside `within` may be chosen.
    out = jax.tree.map(lambda s, m: jnp.where(m, s, -jnp.inf), out, within)
  return out


def select(selector: Selector, which: str, ctx: SelectionContext,
           k: int | float, within: PyTree | None = None) -> PyTree:
  """The α (`which='alpha'`) or β (`which='beta'`) mask with exactly k ones.

  `k` (named `l` in messages for β) is a count or a fraction of N
  (`resolve_count`); 0, or more than `within` holds (when `within` is
  concrete), is refused: the mask would not have k ones chosen within it.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from paramsel_jax.select.stats import init_stats
    >>> p = {'w': jnp.array([0.5, -3.0, 1.0])}
    >>> ctx = SelectionContext(p, init_stats(p), (), jax.random.key(0))
    >>> select(get_selector('topgrad'), 'beta', ctx, 1)['w'].tolist()
    [False, True, False]
    >>> within = {'w': jnp.array([True, False, True])}
    >>> select(get_selector('topgrad'), 'beta', ctx, 1, within)['w'].tolist()
    [False, False, True]
    >>> select(get_selector('topgrad'), 'beta', ctx, 0)
    Traceback (most recent call last):
    ...
    ValueError: l=0 is out of range; accepted: an integer count in [1, 3] \
(N = 3 parameters) or a fraction 0 < l <= 1 of N (1.0 = all).
  """
  name = 'k' if which == 'alpha' else 'l'
  out = scores(selector, which, ctx, within)
  if within is not None and _is_concrete(within):
    size = sum(int(np.sum(np.asarray(m))) for m in jax.tree.leaves(within))
    count = resolve_count(k, sum(math.prod(jnp.shape(x))
                                 for x in jax.tree.leaves(out)), name)
    if count > size:
      raise ValueError(f'{name}={k!r} ({count} coordinates) is more than '
                       f'`within` holds ({size}); accepted: at most {size}.')
  return top_k_mask(out, k, name)
