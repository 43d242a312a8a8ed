"""The known failure modes of relaxed structure search, measured.

DARTS-style searches are reported to fail in three ways, and
:func:`diagnose` measures each for a finished search:

* **collapse** to parameter-free operations: the search skips layers or
  picks the identity activation (Zela et al. 2020; Chu et al. 2020).
  :func:`collapse` counts skipped optional layers and identity activations
  of kept layers, per seed.
* **disagreement across seeds**: :func:`effective_agreement` counts, like
  :func:`stability.seed_agreement`, the choices on which every seed agrees,
  but only among the seeds where the choice has an effect (the activation,
  width or kernel of a layer that a seed skips does not matter); the
  choices on which seeds differ are listed.
* the **relaxation gap**: the supernet's accuracy under its final
  distribution (the soft mixture of the probabilities), under the argmax
  structure with its shared weights (the derived network without
  retraining), and the derived network's after retraining, all on the
  validation split (:func:`supernet_accuracies`).

Example:
  >>> from paramsel_jax.structure import presets
  >>> space = presets.mlp_space((4, 4, 1), 3, widths=(2, 4), depth=2,
  ...                           activations=('relu', 'identity'))
  >>> seeds = [{'dense0/activation': 0, 'dense0/width': 1,
  ...           'dense1/activation': 0, 'dense1/width': 0,
  ...           'dense1/present': 1},
  ...          {'dense0/activation': 0, 'dense0/width': 1,
  ...           'dense1/activation': 1, 'dense1/width': 1,
  ...           'dense1/present': 1}]
  >>> effective_agreement(space, seeds)['all_agree']  # dense1 is skipped
  1.0
  >>> collapse(space, seeds[0])
  {'skipped': 1, 'optional': 1, 'identity': 0, 'kept': 1}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.train import steps as steps_lib
from paramsel_jax.structure import relax
from paramsel_jax.structure import supernet as supernet_lib
from paramsel_jax.structure.space import PRESENT_CANDIDATES
from paramsel_jax.structure.space import SearchSpace

Indices = Mapping[str, int]
# Choices that matter whether or not their layer is kept (a pool stays).
ALWAYS_EFFECTIVE = ('present', 'pool')


def _kept(space: SearchSpace, indices: Indices, layer: str) -> bool:
  i = space.layer_names().index(layer)
  if not space.layers[i].optional:
    return True
  return PRESENT_CANDIDATES[int(indices[f'{layer}/present'])]


def collapse(space: SearchSpace, indices: Indices) -> dict[str, int]:
  """Skipped optional layers and identity activations of one structure.

  Returns:
    ``skipped`` of ``optional`` layers; ``identity`` activations among the
    ``kept`` layers that have an activation choice.
  """
  out = {'skipped': 0, 'optional': 0, 'identity': 0, 'kept': 0}
  choices = dict(space.choices())
  for name, layer in zip(space.layer_names(), space.layers):
    kept = _kept(space, indices, name)
    if layer.optional:
      out['optional'] += 1
      out['skipped'] += not kept
    act = f'{name}/activation'
    if kept and act in choices:
      out['kept'] += 1
      out['identity'] += choices[act][int(indices[act])] == 'identity'
  return out


def effective_agreement(space: SearchSpace,
                        indices: Sequence[Indices]) -> dict[str, Any]:
  """Seed agreement over the choices that have an effect.

  A layer's activation, width and kernel count only among the seeds that
  keep the layer; a choice that fewer than two seeds use is left out.

  Returns:
    ``all_agree`` and ``pairwise`` (as :func:`stability.seed_agreement`),
    ``counted`` choices, and ``disagree``: the choices where seeds differ.
  """
  agree, pairs, disagree = [], [], []
  for name, _ in space.choices():
    layer, kind = name.split('/')
    users = [d for d in indices
             if kind in ALWAYS_EFFECTIVE or _kept(space, d, layer)]
    if len(users) < 2:
      continue
    picks = [int(d[name]) for d in users]
    agree.append(len(set(picks)) == 1)
    pairs += [a == b for a, b in itertools.combinations(picks, 2)]
    if not agree[-1]:
      disagree.append(name)
  return {'all_agree': float(np.mean(agree)) if agree else 1.0,
          'pairwise': float(np.mean(pairs)) if pairs else 1.0,
          'counted': len(agree), 'disagree': disagree}


def supernet_accuracies(space: SearchSpace, conv_impl: str, params: Any,
                        logits: Mapping[str, jax.Array],
                        valid: tuple[jax.Array, jax.Array],
                        batch_size: int = 1000) -> dict[str, float]:
  """Validation accuracy of one seed's supernet: soft mixture and argmax.

  Args:
    space: the search space.
    conv_impl: the supernet's convolution implementation.
    params: the seed's supernet weights.
    logits: the seed's structure logits.
    valid: ``(uint8 images, labels)``.
    batch_size: evaluation batch size.

  Returns:
    ``expected`` (the supernet under the probabilities, the relaxation the
    structure step trains, without Gumbel noise) and ``argmax`` (under the
    argmax one-hot structure: the derived net with the supernet's weights).
  """
  net = supernet_lib.Supernet(space, conv_impl)
  # flax types `apply` as returning (output, state) too, for `mutable`.
  evaluate = jax.jit(lambda p, s: steps_lib.evaluate(
      lambda q, x: net.apply({'params': q}, x, s),  # type: ignore[arg-type, return-value]
      p, valid[0], valid[1], batch_size)[1])
  argmax = space.one_hot(relax.argmax_structure(logits))
  return {'expected': float(evaluate(params, relax.probabilities(logits))),
          'argmax': float(evaluate(params, argmax))}


def discreteness(logits: Mapping[str, jax.Array]) -> float:
  """The mean over choices of the argmax candidate's probability.

  Example:
    >>> round(discreteness({'a': jnp.zeros(4), 'b': jnp.array([9., -9.])}), 2)
    0.62
  """
  probs = relax.probabilities(logits)
  return float(np.mean([float(jnp.max(p)) for p in probs.values()]))


def diagnose(space: SearchSpace, conv_impl: str, result: Any,
             indices: Sequence[Indices],
             derived_valid: Sequence[float],
             valid: tuple[jax.Array, jax.Array],
             batch_size: int = 1000) -> dict[str, Any]:
  """All three failure modes of a finished search.

  Args:
    space: the search space.
    conv_impl: the supernet's convolution implementation.
    result: the :class:`~paramsel_jax.structure.search.SearchResult`.
    indices: each seed's derived structure.
    derived_valid: each seed's retrained derived net's validation accuracy.
    valid: the validation split.
    batch_size: evaluation batch size.

  Returns:
    ``seeds`` (per seed: ``collapse``, ``discreteness``, ``supernet``
    accuracies, ``derived_valid``, ``gap_argmax``: derived minus supernet
    argmax, ``gap_expected``: derived minus soft supernet) and
    ``agreement`` (:func:`effective_agreement`).
  """
  seeds = []
  for i, seed in enumerate(result.seeds):
    logits = result.seed_logits(i)
    params = jax.tree.map(lambda a, i=i: a[i], result.params)
    acc = supernet_accuracies(space, conv_impl, params, logits, valid,
                              batch_size)
    seeds.append({
        'seed': seed, 'collapse': collapse(space, indices[i]),
        'discreteness': discreteness(logits), 'supernet': acc,
        'derived_valid': float(derived_valid[i]),
        'gap_argmax': float(derived_valid[i]) - acc['argmax'],
        'gap_expected': float(derived_valid[i]) - acc['expected']})
  return {'seeds': seeds, 'agreement': effective_agreement(space, indices)}


def summary_lines(diagnostics: Mapping[str, Any]) -> list[str]:
  """Short lines of :func:`diagnose`'s figures, for the report."""
  seeds = diagnostics['seeds']
  total = lambda key: sum(s['collapse'][key] for s in seeds)
  mean = lambda f: float(np.mean([f(s) for s in seeds]))
  agree = diagnostics['agreement']
  return [
      f'collapse: {total("skipped")} of {total("optional")} optional layers '
      f'skipped, {total("identity")} of {total("kept")} kept layers with '
      'identity activation (all seeds)',
      f'effective agreement: {agree["all_agree"]:.0%} of '
      f'{agree["counted"]} choices that matter (pairwise '
      f'{agree["pairwise"]:.0%}); differ on: '
      f'{", ".join(agree["disagree"]) or "none"}',
      f'relaxation gap (valid, mean over seeds): supernet soft '
      f'{100 * mean(lambda s: s["supernet"]["expected"]):.2f}%, supernet '
      f'argmax {100 * mean(lambda s: s["supernet"]["argmax"]):.2f}%, derived '
      f'retrained {100 * mean(lambda s: s["derived_valid"]):.2f}%; mean '
      f'argmax probability {mean(lambda s: s["discreteness"]):.2f}',
  ]
