"""Stability of a trained network: input noise, weight noise, and seeds.

The seed paper asks for a *stable* model, not only an accurate one. We report
three things for every trained network:

* accuracy under Gaussian input noise: ``x + sigma * N(0, 1)`` on images
  scaled to ``[0, 1]`` (no clipping);
* accuracy under Gaussian weight noise: every params leaf ``w`` becomes
  ``w + sigma * rms(w) * N(0, 1)``, averaged over ``repeats`` draws;
* over search seeds: the fraction of structure choices on which the seeds
  agree (:func:`seed_agreement`); the mean and sample std of each figure is
  :func:`paramsel_jax.report.summarize`'s (see
  :func:`paramsel_jax.structure.results.summarize_runs`).

Example:
  >>> seed_agreement([{'a': 0, 'b': 1}, {'a': 0, 'b': 2}, {'a': 0, 'b': 1}])
  {'all_agree': 0.5, 'pairwise': 0.6666666666666666}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import itertools
from typing import Any

from jax.typing import ArrayLike

import jax
import jax.numpy as jnp
import numpy as np

from paramsel_jax.train import steps as steps_lib
from paramsel_jax.protocol import checks

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]


def add_weight_noise(key: jax.Array, params: PyTree, sigma: float) -> PyTree:
  """``w + sigma * rms(w) * N(0, 1)`` for every leaf, keys folded by leaf.

  Example:
    >>> p = {'w': jnp.ones(3)}
    >>> add_weight_noise(jax.random.key(0), p, 0.0)['w'].tolist()
    [1.0, 1.0, 1.0]
  """
  leaves, treedef = jax.tree.flatten(params)
  noisy = []
  for i, w in enumerate(leaves):
    rms = jnp.sqrt(jnp.mean(jnp.square(w)))
    eps = jax.random.normal(jax.random.fold_in(key, i), w.shape, w.dtype)
    noisy.append(w + sigma * rms * eps)
  return jax.tree.unflatten(treedef, noisy)


def noisy_accuracy(apply_fn: ApplyFn, params: PyTree, images: jax.Array,
                   labels: jax.Array, key: jax.Array, sigma: ArrayLike,
                   batch_size: int = 1000, *, with_loss: bool = False
                   ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Accuracy on ``images`` scaled to ``[0, 1]`` plus ``sigma * N(0, 1)``.

  Batches are drawn in order (the last one padded, with weight 0); batch
  ``b`` gets the noise of ``fold_in(key, b)``. Pure and traceable. With
  ``with_loss``, returns ``(mean cross-entropy, accuracy)``.

  Example:
    >>> apply_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> x = (jnp.eye(4, dtype=jnp.uint8) * 255).reshape(4, 2, 2, 1)
    >>> float(noisy_accuracy(apply_fn, jnp.eye(4), x, jnp.arange(4),
    ...                      jax.random.key(0), 0.0, batch_size=3))
    1.0
  """
  loss, accuracy = steps_lib.evaluate(apply_fn, params, images, labels,
                                      batch_size, noise_key=key,
                                      noise_std=sigma)
  return (loss, accuracy) if with_loss else accuracy


def robustness(apply_fn: ApplyFn, params: PyTree, images: jax.Array,
               labels: jax.Array, key: jax.Array, *,
               input_sigmas: Sequence[float] = (0.1, 0.2, 0.3),
               weight_sigmas: Sequence[float] = (0.1, 0.2, 0.3),
               repeats: int = 2, batch_size: int = 1000,
               valid: tuple[jax.Array, jax.Array] | None = None
               ) -> dict[str, Any]:
  """Clean, input-noise and weight-noise accuracy of one network.

  Everything is computed by one jitted function (one compilation per
  network), the clean pass and every noise level and draw under one
  ``lax.map``. The clean figures use the same batched evaluation as the noisy
  ones (noise scale 0 adds exact zeros).

  Args:
    apply_fn: ``apply_fn(params, float_images) -> logits``.
    params: the network's params.
    images: uint8 test images ``(n, H, W, C)``.
    labels: int labels ``(n,)``.
    key: PRNG key of the noise.
    input_sigmas: input noise levels (images in ``[0, 1]``).
    weight_sigmas: weight noise levels, relative to each leaf's RMS.
    repeats: noise draws per level (accuracies averaged).
    batch_size: evaluation batch size.
    valid: optional ``(images, labels)`` of a validation split, whose clean
      accuracy is added as ``'valid_accuracy'``.

  Returns:
    ``{'accuracy': float, 'loss': float, 'input_noise': {sigma: acc},
    'weight_noise': {sigma: acc}}`` with string keys ``'0.1'`` etc.

  Example:
    >>> apply_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> x = (jnp.eye(4, dtype=jnp.uint8) * 255).reshape(4, 2, 2, 1)
    >>> r = robustness(apply_fn, jnp.eye(4), x, jnp.arange(4),
    ...                jax.random.key(0), input_sigmas=(0.0,),
    ...                weight_sigmas=(0.0,), repeats=1)
    >>> r['accuracy'], r['input_noise']['0.0'], r['weight_noise']['0.0']
    (1.0, 1.0, 1.0)
  """
  checks.integer('repeats', repeats, at_least=1)
  checks.reals('input_sigmas', tuple(input_sigmas), at_least=0)
  checks.reals('weight_sigmas', tuple(weight_sigmas), at_least=0)
  compute = _noisy_evaluations(apply_fn, input_sigmas, weight_sigmas, repeats,
                               batch_size)
  loss, acc, in_acc, w_acc, valid_acc = jax.device_get(compute(
      params, jnp.asarray(images), jnp.asarray(labels), key,
      None if valid is None else tuple(jnp.asarray(a) for a in valid)))
  out = {'accuracy': float(acc), 'loss': float(loss),
         'input_noise': _per_level(input_sigmas, in_acc, repeats),
         'weight_noise': _per_level(weight_sigmas, w_acc, repeats)}
  if valid is not None:
    out['valid_accuracy'] = float(valid_acc)
  return out


def _noisy_evaluations(apply_fn: ApplyFn, input_sigmas: Sequence[float],
                       weight_sigmas: Sequence[float], repeats: int,
                       batch_size: int) -> Callable[..., tuple]:
  """`robustness`'s jitted evaluation (a new one per call: one compilation).

  One evaluation per (input sigma, weight sigma, draw), the clean one first,
  all under one lax.map: a single copy of the network in the program. The
  function returns the clean loss and accuracy, the input-noise and the
  weight-noise accuracies (per draw) and the clean validation accuracy.
  """
  n_in, n_w = len(input_sigmas) * repeats, len(weight_sigmas) * repeats
  sig_in = np.concatenate([[0.0], np.repeat(input_sigmas, repeats),
                           np.zeros(n_w)]).astype(np.float32)
  sig_w = np.concatenate([[0.0], np.zeros(n_in),
                          np.repeat(weight_sigmas, repeats)]).astype(np.float32)

  @jax.jit
  def compute(params, images, labels, key, valid):
    def one(args):
      i, s_in, s_w = args
      k = jax.random.fold_in(key, i)
      noisy = add_weight_noise(jax.random.fold_in(k, 1), params, s_w)
      return noisy_accuracy(apply_fn, noisy, images, labels,
                            jax.random.fold_in(k, 0), s_in, batch_size,
                            with_loss=True)

    losses, accs = jax.lax.map(
        one, (jnp.arange(len(sig_in)), jnp.asarray(sig_in), jnp.asarray(sig_w)))
    valid_acc = (steps_lib.evaluate(apply_fn, params, *valid, batch_size)[1]
                 if valid is not None else jnp.zeros(()))
    return losses[0], accs[0], accs[1:1 + n_in], accs[1 + n_in:], valid_acc

  return compute


def _per_level(sigmas: Sequence[float], accuracies: Any, repeats: int
               ) -> dict[str, float]:
  """The accuracies averaged over each level's draws, keyed ``'0.1'`` etc."""
  means = np.asarray(accuracies).reshape(len(sigmas), repeats).mean(1)
  return {str(float(s)): float(a) for s, a in zip(sigmas, means)}


def seed_agreement(indices: Sequence[Mapping[str, int]]) -> dict[str, float]:
  """How often seeds pick the same candidate, over all choices.

  Args:
    indices: per seed, choice name -> chosen candidate index.

  Returns:
    ``all_agree``: the fraction of choices on which every seed agrees;
    ``pairwise``: the fraction of (choice, seed pair) with equal picks (1.0
    for a single seed).
  """
  if not indices:
    raise ValueError('indices is empty; accepted: one dict per seed.')
  names = sorted(indices[0])
  if not names:
    return {'all_agree': 1.0, 'pairwise': 1.0}
  all_agree = np.mean([len({d[n] for d in indices}) == 1 for n in names])
  pairs = list(itertools.combinations(range(len(indices)), 2))
  pairwise = (np.mean([indices[a][n] == indices[b][n]
                       for n in names for a, b in pairs]) if pairs else 1.0)
  return {'all_agree': float(all_agree), 'pairwise': float(pairwise)}
