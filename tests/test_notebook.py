"""experiments/colab.ipynb executes, on CPU with small sizes (so it cannot rot)."""

import os
import re

import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'experiments', 'colab.ipynb')


def test_the_notebook_runs_the_library_in_its_kernel():
  # On a TPU runtime only one process can hold libtpu: a `python
  # experiments/...` subprocess started after the kernel imported jax falls
  # back to the CPU, silently (jax issue #10192). Only git and pip may run
  # as subprocesses.
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = '\n'.join(c.source for c in nb.cells if c.cell_type == 'code')
  assert not re.search(r'^\s*[!%]', code, re.M)  # no shell or magic lines.
  assert 'os.system' not in code and 'Popen' not in code
  calls = re.findall(r'subprocess\.\w+\((.*)', code)
  assert calls and all("'git'" in c or "'pip'" in c for c in calls), calls
  assert 'experiment.run_experiment(' in code and 'sweep.run_sweep(' in code


@pytest.mark.slow
def test_the_colab_notebook_runs_and_shows_the_tables_and_plots(tmp_path,
                                                                monkeypatch):
  monkeypatch.setenv('PARAMSEL_NOTEBOOK_SMALL', '1')
  monkeypatch.setenv('PARAMSEL_NOTEBOOK_OUT', str(tmp_path / 'out'))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      nb, timeout=600, kernel_name='python3',
      resources={'metadata': {'path': os.path.join(ROOT, 'experiments')}})
  client.execute()  # raises CellExecutionError on any failing cell
  outputs = [o for cell in nb.cells if cell.cell_type == 'code'
             for o in cell.get('outputs', [])]
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'backend: cpu' in text
  # Each run says the backend it used (the main job: from its results).
  assert 'the main job ran on backend: cpu (cpu)' in text
  assert 'the sweep ran on backend: cpu' in text
  assert 'topgrad' in text and 'β⊙w' in text  # the main job's table
  assert 'magnitude' in text and 'random' in text  # the sweep's tables
  assert any('image/png' in o.get('data', {}) for o in outputs)
  assert (tmp_path / 'out' / 'sweep' / 'tables.txt').exists()
