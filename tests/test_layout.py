# Copyright 2026 The paramsel_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The house's layering: the library never imports `lab/`, and no module cycles.

Read from the source with `ast` (nothing is imported), so a violation is named
by file and line.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / 'paramsel_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT.parent).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts.pop()
  return '.'.join(parts)


def _imports(path: pathlib.Path, modules: set[str]) -> list[tuple[str, int]]:
  """The paramsel_jax modules a file imports, with the line of each import."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module.split('.')[0] == 'paramsel_jax'):
      for alias in node.names:
        full = f'{node.module}.{alias.name}'
        found.append((full if full in modules else node.module, node.lineno))
    elif isinstance(node, ast.Import):
      found += [(a.name, node.lineno) for a in node.names
                if a.name.split('.')[0] == 'paramsel_jax']
  return found


@pytest.fixture(scope='module')
def graph():
  files = {_module_name(p): p for p in ROOT.rglob('*.py')}
  return {name: _imports(path, set(files)) for name, path in files.items()}, files


def test_library_never_imports_lab(graph):
  edges, files = graph
  bad = [f'{files[m].relative_to(ROOT.parent)}:{line} imports {target}'
         for m, targets in edges.items() if not m.startswith('paramsel_jax.lab')
         for target, line in targets if target.startswith('paramsel_jax.lab')]
  assert not bad, 'the library must not import the experiment machinery:\n' + (
      '\n'.join(bad))


def _find_cycles(succ: dict[str, set[str]]) -> list[list[str]]:
  """Cycles of a directed graph found by depth-first search, each as a path."""
  state, cycles = {}, []

  def visit(node, path):
    state[node] = 'open'
    for nxt in sorted(succ[node]):
      if state.get(nxt) == 'open':
        cycles.append(path[path.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = 'done'

  for node in sorted(succ):
    if node not in state:
      visit(node, [node])
  return cycles


def test_find_cycles_finds_one_and_only_one():
  assert _find_cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [
      ['a', 'b', 'c', 'a']]
  assert _find_cycles({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) == []


def test_no_import_cycles(graph):
  edges, _ = graph
  # A package's __init__ re-exporting its own modules is not a cycle.
  succ = {m: {t for t, _ in targets if t in edges and t != m
              and not m.startswith(t + '.')}
          for m, targets in edges.items()}
  cycles = _find_cycles(succ)
  assert not cycles, 'import cycles:\n' + '\n'.join(' -> '.join(c) for c in cycles)
