"""Structure search: a network of optimal complexity by relaxed choices.

The discrete structure of a network (per layer: activation, width, presence,
kernel size) is relaxed with Gumbel-softmax, searched by gradient descent on a
validation split together with the weights (DARTS, first order) under a
size/discreteness regularizer, then made discrete, retrained and checked for
stability. See ``experiments/structure_search.py`` and SPEC.md Part B.

Modules: :mod:`space` (what may be chosen), :mod:`relax` (Gumbel-softmax,
temperature schedules), :mod:`supernet` (the relaxed network),
:mod:`regularizer` (expected size and entropy), :mod:`search` (the bilevel
loop), :mod:`derive` (argmax -> plain model, JSON), :mod:`training` (plain
training), :mod:`fitting` (training and evaluating any network the same
way), :mod:`stability` (noise and seed robustness), :mod:`diagnostics` (the
failure modes of relaxed search), :mod:`baselines` (random search by count,
fixed net, reference model), :mod:`random_budget` (random search at a
wall-clock budget, successive halving), :mod:`records` (params, FLOPs and
the structured-pruning records), :mod:`selection` (the paper-000 protocol
on a derived net), :mod:`results` (summaries over seeds, the tables, the
plot), :mod:`presets` (the MLP and LeNet-5-like conv spaces), :mod:`config`
(:class:`PipelineConfig`) and :mod:`pipeline` (the driver
:func:`run_pipeline`).
"""

from paramsel_jax.structure.baselines import fixed_architecture
from paramsel_jax.structure.baselines import fixed_baseline
from paramsel_jax.structure.baselines import random_indices
from paramsel_jax.structure.baselines import random_search
from paramsel_jax.structure.baselines import reference_baseline
from paramsel_jax.structure.derive import Architecture
from paramsel_jax.structure.derive import derive_architecture
from paramsel_jax.structure.derive import DiscreteNet
from paramsel_jax.structure.derive import from_indices
from paramsel_jax.structure.derive import inherit_params
from paramsel_jax.structure.derive import LayerChoice
from paramsel_jax.structure.config import PipelineConfig
from paramsel_jax.structure.diagnostics import diagnose
from paramsel_jax.structure.diagnostics import effective_agreement
from paramsel_jax.structure.fitting import fit_network
from paramsel_jax.structure.fitting import train_network
from paramsel_jax.structure.pipeline import run_pipeline
from paramsel_jax.structure.pipeline import search_and_retrain
from paramsel_jax.structure.presets import conv_space
from paramsel_jax.structure.presets import mlp_space
from paramsel_jax.structure.regularizer import expected_flops
from paramsel_jax.structure.regularizer import expected_params
from paramsel_jax.structure.regularizer import max_structure
from paramsel_jax.structure.regularizer import structure_regularizer
from paramsel_jax.structure.regularizer import RegularizerConfig
from paramsel_jax.structure.relax import argmax_structure
from paramsel_jax.structure.relax import entropy
from paramsel_jax.structure.relax import gumbel_softmax
from paramsel_jax.structure.relax import init_logits
from paramsel_jax.structure.relax import probabilities
from paramsel_jax.structure.relax import sample_structure
from paramsel_jax.structure.relax import SCHEDULES
from paramsel_jax.structure.relax import temperature_schedule
from paramsel_jax.structure.random_budget import bracket_plan
from paramsel_jax.structure.random_budget import budgeted_random_search
from paramsel_jax.structure.records import network_flops
from paramsel_jax.structure.records import RECORDS
from paramsel_jax.structure.results import plot_accuracy_vs_cost
from paramsel_jax.structure.results import results_table
from paramsel_jax.structure.results import summarize_runs
from paramsel_jax.structure.search import compiled_chunk_fn
from paramsel_jax.structure.selection import run_selection
from paramsel_jax.structure.selection import SelectionConfig
from paramsel_jax.structure.search import init_state
from paramsel_jax.structure.search import init_states
from paramsel_jax.structure.search import make_chunk_fn
from paramsel_jax.structure.search import run_search
from paramsel_jax.structure.search import SearchConfig
from paramsel_jax.structure.search import SearchResult
from paramsel_jax.structure.search import SearchState
from paramsel_jax.structure.space import ACTIVATIONS
from paramsel_jax.structure.space import LayerSpace
from paramsel_jax.structure.space import POOLS
from paramsel_jax.structure.space import SearchSpace
from paramsel_jax.structure.stability import add_weight_noise
from paramsel_jax.structure.stability import noisy_accuracy
from paramsel_jax.structure.stability import robustness
from paramsel_jax.structure.stability import seed_agreement
from paramsel_jax.structure.supernet import Supernet
from paramsel_jax.structure.supernet import init_supernet
from paramsel_jax.structure.training import train
from paramsel_jax.structure.training import TrainConfig
