"""Selectors: which coordinates keep training (α) and which are kept at all (β).

A selector is a pair of pure score functions: `alpha_scores` and `beta_scores`
map a `SelectionContext` to a pytree of scores of the params' shapes; larger
means "select". `top_k_mask` turns scores into a mask with exactly k ones,
chosen globally over all N scalars, ties broken by the lower flat index (leaves
in `jax.tree.leaves` order, then row-major). Adding a selector is a few lines:

  >>> import jax, jax.numpy as jnp
  >>> @register_selector('abs_grad_mean')
  ... def _abs_grad_mean():
  ...   score = lambda ctx: jax.tree.map(jnp.abs, ctx.stats.grad_mean)
  ...   return Selector(alpha_scores=score, beta_scores=score)
  >>> 'abs_grad_mean' in SELECTORS
  True
  >>> del SELECTORS['abs_grad_mean']
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from paramsel_jax.stats import TrajectoryStats

PyTree = Any


class SelectionContext(NamedTuple):
  """What a selector may read when it scores coordinates."""

  params: PyTree  # the current weights w.
  stats: TrajectoryStats  # statistics over the last `window` steps of the phase.
  opt_state: optax.OptState  # the optimizer state (preconditioners, moments).
  key: jax.Array  # PRNG key for random selectors.


ScoreFn = Callable[[SelectionContext], PyTree]


@dataclasses.dataclass(frozen=True)
class Selector:
  """A selection strategy: scores for α (keep optimizing) and β (keep at all)."""

  alpha_scores: ScoreFn
  beta_scores: ScoreFn
  description: str = ''


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


def num_params(params: PyTree) -> int:
  """N, the number of scalars in a pytree."""
  return sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(params))


def resolve_count(value: float | int, n: int, name: str = 'k') -> int:
  """A count in [0, n] from a count or a fraction `0 < x < 1` of `n`.

  Fractions round to the nearest integer. Raises ValueError otherwise.

  Example:
    >>> resolve_count(0.1, 266610), resolve_count(500, 266610)
    (26661, 500)
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f'{name}={value!r} is not a number; give a count in '
                     f'[0, {n}] or a fraction 0 < {name} < 1.')
  if 0 < value < 1:
    return int(round(value * n))
  if not (math.isfinite(value) and value == int(value) and 0 <= value <= n):
    raise ValueError(
        f'{name}={value!r} is out of range: give an integer count in [0, {n}] '
        f'(N = {n} parameters) or a fraction 0 < {name} < 1.')
  return int(value)


def top_k_mask(scores: PyTree, k: int) -> PyTree:
  """A bool mask with exactly `k` True entries at the largest scores, globally.

  Ties go to the lower flat index; NaN scores rank last. `k` is static.

  Example:
    >>> import jax.numpy as jnp
    >>> m = top_k_mask({'a': jnp.array([3., 1.]), 'b': jnp.array([2., 2., 0.])}, 2)
    >>> m['a'].tolist(), m['b'].tolist()
    ([True, False], [True, False, False])
  """
  leaves, treedef = jax.tree.flatten(scores)
  flat = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])
  flat = jnp.where(jnp.isnan(flat), -jnp.inf, flat)
  order = jnp.argsort(flat, descending=True, stable=True)
  chosen = jnp.zeros(flat.shape, bool).at[order[:k]].set(True)
  sizes = [math.prod(jnp.shape(x)) for x in leaves]
  parts = jnp.split(chosen, list(_cumsum(sizes))[:-1])
  return treedef.unflatten(
      [p.reshape(jnp.shape(x)) for p, x in zip(parts, leaves)])


def _cumsum(xs):
  total = 0
  for x in xs:
    total += x
    yield total


def _uniform_scores(key: jax.Array, like: PyTree) -> PyTree:
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten(
      [jax.random.uniform(k, jnp.shape(x)) for k, x in zip(keys, leaves)])


@register_selector('random')
def _random() -> Selector:
  score = lambda ctx: _uniform_scores(ctx.key, ctx.params)
  return Selector(
      alpha_scores=score, beta_scores=score,
      description='random: α and β uniform among all k- (l-) subsets')


def _abs(tree: PyTree) -> PyTree:
  return jax.tree.map(jnp.abs, tree)


@register_selector('topgrad')
def _topgrad() -> Selector:
  return Selector(
      alpha_scores=lambda ctx: ctx.stats.grad_abs_sum,
      beta_scores=lambda ctx: _abs(ctx.params),
      description=('topgrad: α = top-k of Σ|∇L| over the last `window` steps '
                   'of η0; β = top-l of |w| after η0 + η1 steps'))


def select(selector: Selector, which: str, ctx: SelectionContext, k: int) -> PyTree:
  """The α (`which='alpha'`) or β (`which='beta'`) mask with exactly k ones.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from paramsel_jax.stats import init_stats
    >>> p = {'w': jnp.array([0.5, -3.0, 1.0])}
    >>> ctx = SelectionContext(p, init_stats(p), (), jax.random.key(0))
    >>> select(get_selector('topgrad'), 'beta', ctx, 1)['w'].tolist()
    [False, True, False]
  """
  if which == 'alpha':
    scores = selector.alpha_scores(ctx)
  elif which == 'beta':
    scores = selector.beta_scores(ctx)
  else:
    raise ValueError(f"which={which!r}; accepted: 'alpha', 'beta'.")
  return top_k_mask(scores, k)
