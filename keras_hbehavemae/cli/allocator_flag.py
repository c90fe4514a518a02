"""`--reuse_freed_memory`, shared by the commands that train or embed.

The commands own their process, so by default they keep its freed memory for reuse
(`keras_hbehavemae.allocator`: TensorFlow's best-fit CPU allocator, glibc settings under
JAX and torch). On Shot7M2 at batch 32 on 2 cores this took a training step from 3.4–3.6 s
to 2.2–2.8 s on every backend, at the cost of memory the process keeps until it ends.
"""

from __future__ import annotations

import sys

from absl import flags

FLAG = "reuse_freed_memory"


def define_allocator_flag(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    flags.DEFINE_boolean(
        FLAG, True, "Keep the memory the process frees for reuse instead of returning it "
        "to the OS: TensorFlow's best-fit CPU allocator; glibc settings under JAX and torch "
        "(Linux; elsewhere nothing changes). Saves a page fault per 4 KiB of every large "
        "buffer of every step (Shot7M2 training on 2 cores: 0.8–1.3 s a step); the process "
        "keeps its memory until it ends (JAX: peak 1.5× higher). false: the defaults.",
        flag_values=flag_values)


def apply_allocator_flag(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
    """Applies `--reuse_freed_memory` for the current Keras backend; True where freed memory
    is now kept for reuse.

    A `--reuse_freed_memory` given on the command line that cannot be honoured here is said
    on standard error; the default is dropped quietly (its help says where it applies).
    """
    import keras

    from keras_hbehavemae.allocator import reuse_freed_memory

    if not flag_values[FLAG].value:
        return False
    applied = reuse_freed_memory(keras.config.backend())
    if not applied and flag_values[FLAG].present:
        print(f"note: --reuse_freed_memory has no effect here ({keras.config.backend()}: it "
              "needs glibc under JAX and torch, and TF_CPU_ALLOCATOR_USE_BFC not set to "
              "false under TensorFlow)", file=sys.stderr)
    return applied
