"""Every ```python block of the README runs as written."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
  BLOCKS = re.findall(r'```python\n(.*?)```', f.read(), flags=re.S)


def test_the_readme_has_examples():
  assert len(BLOCKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_example_runs(index):
  exec(compile(BLOCKS[index], f'README block {index}', 'exec'), {})  # pylint: disable=exec-used
