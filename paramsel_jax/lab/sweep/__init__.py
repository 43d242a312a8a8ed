"""Sweeps: selector × k/N × l/N × optimizer × model, several seeds per cell.

A sweep is a frozen `SweepConfig` (`grid`). It expands into runs, one per
(model, optimizer), each one call of `protocol.run_protocol` (one shared η0
phase, one η1 phase per (selector, k) group — per (selector, l) in 'retrain'
mode — every l read off it), and into cells, one per (model, optimizer,
selector, k, l), each holding per-seed metrics of w and of β⊙w.

Resumable: every finished cell is written atomically to its own JSON file in
a `CellStore` (`store`), named by a hash of everything that determines its
numbers (data, model, optimizer and its hyperparameters, selector, k, l, mode,
η0, η1, window, batch size, seeds, ...). A restarted sweep runs only the
groups that still miss a cell (`running`). The aggregated outputs (`outputs`:
tables, CSV, JSON; `plots`: PNGs) hold no times or dates, so a
killed-and-resumed sweep writes the same bytes as an uninterrupted one.

Shardable: `run_sweep(..., shard=(i, n))` runs shard i's block of η1 groups
(`shards`), so n processes (a job array, `jax.distributed` processes) can
share one workdir at once: each group is claimed before it is computed
(`CellStore.claim`, an ``O_EXCL`` file), each run's η0 is computed by one
of them, and the process that stores the last cell writes the outputs —
the one-process sweep's, byte for byte.

  >>> config = SweepConfig(dataset='synthetic', models=('mlp',),
  ...                      selectors=('random', 'topgrad'), ks=(0.1, 0.5),
  ...                      ls=(0.05,), seeds=(0, 1))
  >>> len(expand_grid(config)), len(expand_groups(config))
  (4, 4)

A model of the grid may also be the user's own general `Task`:
`run_sweep(config, output_dir, tasks={'my_mlp': make_task})` (`user_tasks`:
no data set is loaded for it, its cells carry its own metrics, and the
store names them by the task's identity, `user_tasks.task_identity`).

References:
  Han, Pool, Tran, Dally (2015), Learning both weights and connections for
    efficient neural networks. Frankle, Carbin (2019), The lottery ticket
    hypothesis.
"""

from paramsel_jax.lab.sweep.grid import Cell
from paramsel_jax.lab.sweep.grid import cell_identity
from paramsel_jax.lab.sweep.grid import cell_key
from paramsel_jax.lab.sweep.grid import check_model_names
from paramsel_jax.lab.sweep.grid import CONV_SELECTORS
from paramsel_jax.lab.sweep.grid import default_budget
from paramsel_jax.lab.sweep.grid import expand_grid
from paramsel_jax.lab.sweep.grid import expand_groups
from paramsel_jax.lab.sweep.grid import experiment_config_of_run
from paramsel_jax.lab.sweep.grid import RETRAIN_SELECTORS
from paramsel_jax.lab.sweep.grid import run_identity
from paramsel_jax.lab.sweep.grid import run_key
from paramsel_jax.lab.sweep.grid import STORE_VERSION
from paramsel_jax.lab.sweep.grid import SweepConfig
from paramsel_jax.lab.sweep.grid import validate_sweep
from paramsel_jax.lab.sweep.grid import with_task_ids
from paramsel_jax.lab.sweep.metrics import loss_metric
from paramsel_jax.lab.sweep.metrics import metric_names
from paramsel_jax.lab.sweep.outputs import ANCHORS
from paramsel_jax.lab.sweep.outputs import cells_csv
from paramsel_jax.lab.sweep.outputs import format_anchor_table
from paramsel_jax.lab.sweep.outputs import format_markdown
from paramsel_jax.lab.sweep.outputs import format_tables
from paramsel_jax.lab.sweep.outputs import is_complete
from paramsel_jax.lab.sweep.outputs import METRICS
from paramsel_jax.lab.sweep.outputs import PARTS
from paramsel_jax.lab.sweep.outputs import summary_csv
from paramsel_jax.lab.sweep.outputs import sweep_results
from paramsel_jax.lab.sweep.outputs import TARGETS
from paramsel_jax.lab.sweep.outputs import write_outputs
from paramsel_jax.lab.sweep.online_sweep import OnlineSweepConfig
from paramsel_jax.lab.sweep.online_sweep import run_online_sweep
from paramsel_jax.lab.sweep.online_sweep import validate_online_sweep
from paramsel_jax.lab.sweep.plots import plot_sweep
from paramsel_jax.lab.sweep.running import describe_devices
from paramsel_jax.lab.sweep.running import run_sweep
from paramsel_jax.lab.sweep import shards
from paramsel_jax.lab.sweep.store import CellStore
from paramsel_jax.lab.sweep.user_tasks import task_identity
from paramsel_jax.lab.sweep.user_tasks import UserTask
