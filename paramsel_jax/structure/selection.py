"""Search, then select: the paper-000 protocol on a derived network.

The structure search chooses *which network*; the protocol of seed paper 000
(:func:`paramsel_jax.protocol.protocol.run_protocol`) then chooses *which parameters*
of it to keep training (α, ``k`` of them) and to keep at all (β, ``l``), with
any registered selector, in ``'prune_at_end'`` or ``'retrain'`` mode. For
every seed's derived architecture, :func:`run_selection` builds a
:class:`paramsel_jax.protocol.ImageTask` (its init, its apply, the data) and runs
the protocol from a fresh initialisation, so one command goes from a searched
structure to a pruned one. Each stage is reported with its parameters, FLOPs
and accuracy: the derived net as the pipeline retrained it, after η0 (dense),
after η1 (``k`` trained), and ``β ⊙ w`` (``l`` weights kept).

FLOPs: β zeroes single weights (unstructured), so the pruned net runs the
same dense kernels and its FLOPs are the derived net's; the protocol's
results give the number of kept weights (``beta_count``), not their layers.

Example:
  >>> SelectionConfig(mode='retrain', k=0.5)
  Traceback (most recent call last):
  ...
  ValueError: k=0.5 with mode='retrain': in prune-then-retrain α = β (the l \
kept weights train), so k is not used; accepted: k=None (leave --k unset).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from typing import Any

from paramsel_jax.protocol import checks
from paramsel_jax.optim import optimizers
from paramsel_jax.protocol import protocol
from paramsel_jax.protocol import task as task_lib
from paramsel_jax import report
from paramsel_jax.structure import derive as derive_lib

Say = Callable[[str], None]
STAGES = ('derived', 'eta0', 'eta1', 'pruned')
STAGE_LABELS = {
    'derived': 'derived net, retrained (search)',
    'eta0': 'protocol: after η0 (dense)',
    'eta1': 'protocol: after η1 (k trained)',
    'pruned': 'protocol: β ⊙ w (l kept)',
}


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
  """The protocol run on each derived network (checked when made).

  Attributes:
    selector: a registered selector (:mod:`paramsel_jax.select.selectors`).
    mode: ``'prune_at_end'`` or ``'retrain'`` (the protocol's modes).
    k: coordinates trained in η1 (a count or a fraction); ``None``: the
      protocol's default (must be ``None`` in ``'retrain'``).
    l: weights kept at the end (a count or a fraction).
    eta0: steps of ``T`` on all parameters.
    eta1: steps of ``T|α`` (in ``'retrain'``: of the kept weights).
    window: the selectors' statistics cover the last ``window`` steps.
    prune_rounds: ``'retrain'`` only: gradual pruning in this many rounds.
    learning_rate: Adam's learning rate (constant, as in the protocol).
    batch_size: the protocol's minibatch size.
  """

  selector: str = 'magnitude'
  mode: str = 'prune_at_end'
  k: float | int | None = None
  l: float | int = 0.1
  eta0: int = 2000
  eta1: int = 4000
  window: int = 100
  prune_rounds: int = 1
  learning_rate: float = 1e-3
  batch_size: int = 128

  def __post_init__(self):
    protocol.check_selector_names((self.selector,))
    checks.fields(self, ('learning_rate',), checks.real, above=0)
    self.protocol_config()  # The protocol's own checks.

  def protocol_config(self) -> protocol.ProtocolConfig:
    """The :class:`paramsel_jax.protocol.protocol.ProtocolConfig` of these settings."""
    return protocol.ProtocolConfig(
        eta0=self.eta0, eta1=self.eta1, k=self.k, l=self.l,
        window=self.window, batch_size=self.batch_size, mode=self.mode,
        prune_rounds=self.prune_rounds, evaluate_after_eta0=True)


def _stages(run: Mapping[str, Any], arch: derive_lib.Architecture,
            results: Mapping[str, Any]) -> dict[str, Any]:
  cell = results['cells'][0]
  n, flops = results['num_params'], arch.num_flops()
  acc = lambda metrics: metrics['test_accuracy'][0]
  alpha = cell['alpha_count'][0]
  return {
      'derived': {'num_params': run['num_params'], 'trained': n,
                  'num_flops': flops, 'accuracy': run['accuracy']},
      'eta0': {'num_params': n, 'trained': n, 'num_flops': flops,
               'accuracy': acc(results['after_eta0'])},
      'eta1': {'num_params': n, 'trained': alpha, 'num_flops': flops,
               'accuracy': acc(cell['w'])},
      'pruned': {'num_params': cell['beta_count'][0], 'trained': alpha,
                 'num_flops': flops, 'accuracy': acc(cell['pruned'])},
  }


def run_selection(searched_runs: Sequence[Mapping[str, Any]],
                  config: SelectionConfig, train: tuple[Any, Any],
                  test: tuple[Any, Any], *, conv_impl: str = 'auto',
                  say: Say = print) -> dict[str, Any]:
  """The protocol on every seed's derived network.

  Args:
    searched_runs: the searched method's runs (``seed``, ``architecture``,
      ``num_params``, ``accuracy``).
    config: the protocol settings.
    train: ``(uint8 images, labels)`` the protocol trains on.
    test: the split its accuracies are on (the pipeline's evaluation split).
    conv_impl: the convolution implementation.
    say: called with progress lines.

  Returns:
    ``config``, ``runs`` (per seed: ``seed``, ``stages``, the protocol's
    ``protocol`` results) and ``summary``: stage -> summaries of
    ``accuracy``, ``num_params``, ``trained``, ``num_flops``.
  """
  tx = optimizers.create_optimizer(optimizers.OptimizerConfig(
      'adam', learning_rate=config.learning_rate))
  runs = []
  for run in searched_runs:
    arch = derive_lib.Architecture.from_dict(run['architecture'])
    say(f'seed {run["seed"]}: protocol ({config.selector}, {config.mode}) '
        f'on {arch.describe()}')
    results = protocol.run_protocol(
        task_lib.linen_task(derive_lib.DiscreteNet(arch, conv_impl),
                            arch.input_shape, train, test),
        tx, config.protocol_config(),
        [config.selector], seeds=(run['seed'],), log=say)
    runs.append({'seed': run['seed'], 'stages': _stages(run, arch, results),
                 'protocol': results})
  summary = {stage: {key: report.summarize(
      [r['stages'][stage][key] for r in runs])
      for key in ('accuracy', 'num_params', 'trained', 'num_flops')}
      for stage in STAGES}
  return {'config': dataclasses.asdict(config), 'runs': runs,
          'summary': summary}


def selection_table(selection: Mapping[str, Any]) -> str:
  """The stages as a table: params kept, trained, FLOPs, accuracy."""
  rows = []
  for stage in STAGES:
    s = selection['summary'][stage]
    rows.append([STAGE_LABELS[stage], f'{s["num_params"]["mean"]:,.0f}',
                 f'{s["trained"]["mean"]:,.0f}',
                 f'{s["num_flops"]["mean"]:,.0f}',
                 report.plus_minus(s['accuracy'], 100.0, 2)])
  c = selection['config']
  header = ['stage', 'params (nonzero)', 'trained', 'FLOPs', 'acc %']
  return '\n'.join([
      report.format_table(header, rows),
      f'selector {c["selector"]}, mode {c["mode"]}, k={c["k"]}, l={c["l"]}, '
      f'eta0={c["eta0"]}, eta1={c["eta1"]}; FLOPs of the pruned net are the '
      'dense kernels\' (β prunes single weights).'])
