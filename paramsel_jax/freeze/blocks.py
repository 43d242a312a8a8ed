"""A model's blocks (e.g. transformer blocks), at layer granularity.

The block criteria (`criteria`: `lisa`, `badam`, `psgld_prefix`) train or
freeze whole blocks. A block is a set of layers (modules, as
`granularity.groups(params, 'layer').module_names` names them); the layers
in no block (embeddings, a final norm, the head) are "outside".

By default a layer's block is its module path up to and including the first
component that names a repeated module:

* a component that is an integer (an NNX list: `blocks/0/attn/query` is in
  block `blocks/0`), anywhere in the path, or
* a component ending in `_<int>` that is not the path's last one (a linen
  container: `Block_0/Dense_1` is in block `Block_0`). A top-level linen
  layer such as `Dense_0` or `Embed_0` is a layer, not a block (linen numbers
  every module), so it is outside.

`blocks=` (globs, as `by_name.mask_by_name` reads them: one per
'/'-separated component, matching the start of a module's path) names the
blocks instead: each pattern is one block, the union of the layers it names.
A pattern naming no layer, or two patterns naming the same layer, is a
`ValueError` that lists the model's layers.

Blocks are in forward order: by their first layer in `layer_order` (group
indices, first layer first) when given; else, by default, by the integer of
their name (`blocks/2` before `blocks/10`), and with `blocks=` as the
patterns are given.

  >>> names = ('blocks/0/attn', 'blocks/0/mlp', 'blocks/1/mlp', 'head',
  ...          'token_embed')
  >>> b = find_blocks(names)
  >>> b.names, b.members, b.outside
  (('blocks/0', 'blocks/1'), ((0, 1), (2,)), (3, 4))
  >>> find_blocks(('Block_0/Dense_0', 'Block_1/Dense_0', 'Dense_0')).names
  ('Block_0', 'Block_1')
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from paramsel_jax.freeze import by_name

__all__ = ['Blocks', 'block_of', 'find_blocks']
_NUMBERED = re.compile(r'.*_(\d+)')


@dataclasses.dataclass(frozen=True)
class Blocks:
  """A model's blocks, in forward order, as layer-group indices.

  Attributes:
    names: each block's name (its path prefix, or its pattern).
    members: each block's layer groups.
    outside: the layer groups in no block.
    num_groups: the number of layer groups.
  """

  names: tuple[str, ...]
  members: tuple[tuple[int, ...], ...]
  outside: tuple[int, ...]
  num_groups: int

  def masks(self) -> np.ndarray:
    """Bool `(num_blocks, num_groups)`: the layer groups of each block.

    Example:
      >>> find_blocks(('b/0/w', 'b/1/w', 'head')).masks().astype(int).tolist()
      [[1, 0, 0], [0, 1, 0]]
    """
    out = np.zeros((len(self.members), self.num_groups), bool)
    for b, members in enumerate(self.members):
      out[b, list(members)] = True
    return out

  def outside_mask(self) -> np.ndarray:
    """Bool `(num_groups,)`: the layer groups in no block."""
    out = np.zeros(self.num_groups, bool)
    out[list(self.outside)] = True
    return out

  def describe(self, limit: int = 8) -> str:
    """'4 blocks: blocks/0, blocks/1, ...' (for error messages)."""
    shown = ', '.join(self.names[:limit])
    more = ', ...' if len(self.names) > limit else ''
    return f'{len(self.names)} blocks: {shown}{more}' if self.names else (
        'no blocks')


def block_of(name: str) -> str | None:
  """The default block of layer `name` (None: outside every block).

  Example:
    >>> block_of('blocks/3/attn/query'), block_of('Block_2/Dense_1')
    ('blocks/3', 'Block_2')
    >>> block_of('Dense_0'), block_of('head'), block_of('layers/0')
    (None, None, 'layers/0')
  """
  parts = name.split('/')
  for i, part in enumerate(parts):
    if part.isdigit() or (_NUMBERED.fullmatch(part) and i < len(parts) - 1):
      return '/'.join(parts[:i + 1])
  return None


def _number(block: str) -> tuple:
  """A natural sort key: `blocks/2` before `blocks/10`."""
  return tuple(int(p) if p.isdigit() else p
               for p in re.split(r'(\d+)', block))


def _layers(names: Sequence[str], limit: int = 16) -> str:
  shown = list(names[:limit])
  return f'{shown}' + (f' (and {len(names) - limit} more)'
                       if len(names) > limit else '')


def _by_pattern(names: Sequence[str], patterns: Sequence[str]
                ) -> tuple[list[str], list[list[int]]]:
  """Each pattern's layers; ValueError for an empty or overlapping one."""
  if isinstance(patterns, str) or not all(isinstance(p, str) and p
                                          for p in patterns):
    raise ValueError(f'blocks={patterns!r}; accepted: a sequence of glob '
                     "patterns, one per block, e.g. ['blocks/0', 'blocks/1'], "
                     f'over the layers {_layers(names)}.')
  members: list[list[int]] = []
  owner: dict[int, int] = {}
  for pattern in patterns:
    hit = [i for i, n in enumerate(names) if by_name.path_matches(pattern, n)]
    if not hit:
      raise ValueError(f'blocks: pattern {pattern!r} names no layer; accepted: '
                       'globs matching the start of a layer\'s path, e.g. '
                       f"'blocks/0'; the model's layers: {_layers(names)}.")
    twice = [i for i in hit if i in owner]
    if twice:
      raise ValueError(f'blocks: pattern {pattern!r} names '
                       f'{[names[i] for i in twice]}, already in block '
                       f'{patterns[owner[twice[0]]]!r}; accepted: blocks that '
                       "do not overlap; the model's layers: "
                       f'{_layers(names)}.')
    for i in hit:
      owner[i] = len(members)
    members.append(hit)
  return list(patterns), members


def find_blocks(names: Sequence[str], patterns: Sequence[str] | None = None,
                layer_order: Sequence[int] | None = None) -> Blocks:
  """The blocks of the layers `names` (see the module docstring).

  Args:
    names: the layer groups' module names (`Groups.module_names`).
    patterns: one glob per block (None: the default rule).
    layer_order: the layer groups in forward order (group indices).

  Returns:
    The blocks in forward order, and the layers outside them.

  Example:
    >>> find_blocks(('a/x', 'a/y', 'b', 'c'), patterns=('b', 'a')).members
    ((2,), (0, 1))
    >>> find_blocks(('a/x', 'b'), patterns=('a', 'z'))
    Traceback (most recent call last):
    ...
    ValueError: blocks: pattern 'z' names no layer; accepted: globs matching \
the start of a layer's path, e.g. 'blocks/0'; the model's layers: ['a/x', 'b'].
  """
  names = list(names)
  if patterns is not None:
    block_names, members = _by_pattern(names, patterns)
  else:
    found: dict[str, list[int]] = {}
    for i, name in enumerate(names):
      block = block_of(name)
      if block is not None:
        found.setdefault(block, []).append(i)
    block_names = sorted(found, key=_number)
    members = [found[b] for b in block_names]
  if layer_order is not None:
    position = {int(g): p for p, g in enumerate(layer_order)}
    first = [min(position[i] for i in m) for m in members]
    ranked = sorted(range(len(members)), key=lambda b: first[b])
    block_names = [block_names[b] for b in ranked]
    members = [members[b] for b in ranked]
  inside = {i for m in members for i in m}
  return Blocks(tuple(block_names), tuple(tuple(sorted(m)) for m in members),
                tuple(i for i in range(len(names)) if i not in inside),
                len(names))
