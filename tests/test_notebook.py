"""experiments/colab.ipynb executes, on CPU with small sizes (so it cannot rot)."""

import os

import nbclient
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'experiments', 'colab.ipynb')


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
  assert 'topgrad' in text and 'β⊙w' in text  # the main job's table
  assert any('image/png' in o.get('data', {}) for o in outputs)
  assert (tmp_path / 'out' / 'sweep' / 'tables.txt').exists()
