"""Optimizer state on the device during an active phase, per `inactive_state`.

A char-GPT (NNX, `protocol.char_lm`) on synthetic tokens, trained at layer
granularity with one block active (BAdam-like) and with the embeddings, the
head and one block active (LISA-like). For each `inactive_state` it prints
the optimizer state held on the device inside the phase and its share of
dense Adam's, and, as a check, the device bytes the phase holds beyond those
held before it (`memory.device_bytes`, from `jax.live_arrays()`).

  uv run experiments/active_memory.py --layers=4 --embed_dim=64
"""

from absl import flags
import jax

from paramsel_jax.lab import cli
from paramsel_jax.lab import lm_data
from paramsel_jax.lab.benchmarks import active_memory
from paramsel_jax.models import gpt
from paramsel_jax.protocol import char_lm
from paramsel_jax.train import memory

_LAYERS = flags.DEFINE_integer('layers', 4, 'Blocks of the GPT (L).')
_EMBED_DIM = flags.DEFINE_integer('embed_dim', 64, 'Model width.')
_VOCAB_SIZE = flags.DEFINE_integer('vocab_size', 65, 'Token ids.')
_BLOCK = flags.DEFINE_integer('block', 1, 'The block that trains.')


def main(argv):
  """Prints one line per active set and mode."""
  cli.check_no_arguments(argv)
  layers, vocab = _LAYERS.value, _VOCAB_SIZE.value
  data = lm_data.synthetic_data('pretrain', vocab_size=vocab)
  config = gpt.GPTConfig(vocab_size=vocab, context=32, num_layers=layers,
                         embed_dim=_EMBED_DIM.value, num_heads=4)
  task = char_lm.char_lm_task(config, data.task.train,
                              {'val': data.task.val}, batch_size=8,
                              eval_windows_per_split=8)
  print(f'backend {jax.default_backend()}; host memory kind: '
        f'{memory.host_memory_kind()}; GPT {layers} blocks, '
        f'd={_EMBED_DIM.value}, vocab {vocab}')
  for name, trains in active_memory.active_sets(_BLOCK.value).items():
    for mode, m in active_memory.measure(task, trains).items():
      share = m['adam_on_device'] / m['dense_adam']
      vs_plain = ((m['adam_on_device'] + m['mask_on_device'])
                  / m['dense_adam'])
      print(f'{name:44s} {mode:6s}: Adam state on device '
            f'{m["adam_on_device"] / 1024:7.1f} KiB = {100 * share:5.1f}% of '
            f'dense Adam ({m["dense_adam"] / 1024:.1f} KiB); + masked\'s mask '
            f'{m["mask_on_device"] / 1024:.1f} KiB = {100 * vs_plain:5.1f}% '
            f'of plain optax.adam\'s; the phase holds '
            f'+{m["phase_extra_live"] / 1024:.1f} KiB live; peak {m["peak"]}')
  print(f'1/L = {100 / layers:.1f}%')


if __name__ == '__main__':
  cli.run(main)
