"""The compiled path the models take by default: the fastest one measured, per backend.

`jit_compile="auto"` (the default of `HBehaveMAE.compile`, `HBehaveMAEBackbone.compile`,
`hbehavemae pretrain` and `hbehavemae embed`) resolves through `resolve_jit_compile`:

| backend | "auto" means | measured (docs/results.md) |
| --- | --- | --- |
| TensorFlow, CPU | XLA for a model of at least `XLA_MIN_WINDOW_GFLOP` per window (Shot7M2, MABe22), TensorFlow's own kernels below | Shot7M2: XLA trained 1.4–1.9× and extracted about 2× faster. The small default synthetic model: XLA was 2–5× slower per step and compiled for minutes. |
| TensorFlow, GPU | XLA (Keras' own choice) | |
| TensorFlow under a `tf.distribute` strategy | no XLA (Keras' own choice) | |
| JAX | XLA | JAX always compiles (Keras' "auto"). |
| torch | eager | `torch.compile` hit dynamo's recompile limit on this model and gained nothing. |

True and False are passed through: `--jit_compile false` (or `compile(jit_compile=False)`)
still turns XLA off, and True turns it on for any size. Under TensorFlow, random masks drawn
inside an XLA-compiled step differ from those TensorFlow's own kernels draw from the same
seed (the model's numbers for a given mask agree to rounding; see `training.run`).

The size is `window_gflop(geometry)`: twice the products of every encoder block's tokens
and weights, a measure of the matrix work per window (not the FLOP count of
`benchmarks/flop_count.py`, which it exceeds by about 50 %).

Example:

>>> resolve_jit_compile(False)
False
>>> resolve_jit_compile("auto", backend="jax"), resolve_jit_compile("auto", backend="torch")
(True, False)
"""  # noqa: E501

from __future__ import annotations

import keras

from keras_hbehavemae.errors import invalid

#: The values `jit_compile` accepts.
JIT_COMPILE_VALUES = ("auto", True, False)

#: TensorFlow on a CPU: XLA from this `window_gflop` on (synthetic default 0.06: slower
#: with XLA; Shot7M2 9.6 and MABe22 5.8: faster).
XLA_MIN_WINDOW_GFLOP = 1.0


def window_gflop(geometry) -> float:
    """2 · Σ over encoder blocks of (input tokens × weights), in GFLOP: the matrix work
    of one full window, roughly.

    Example:
        >>> from keras_hbehavemae.models.config import HBehaveMAEConfig
        >>> from keras_hbehavemae.models.geometry import compute_geometry
        >>> round(window_gflop(compute_geometry(HBehaveMAEConfig.from_preset(
        ...     "hbehavemae_shot7m2"))), 2)
        9.62
    """
    return 2 * sum(block.tokens_in_full * block.parameters for block in geometry.blocks) / 1e9


def _tensorflow_prefers_xla(geometry) -> bool:
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return False  # Keras turns XLA off under tf.distribute as well
    if tf.config.list_physical_devices("GPU"):
        return True
    return geometry is not None and window_gflop(geometry) >= XLA_MIN_WINDOW_GFLOP


def resolve_jit_compile(value="auto", geometry=None, backend: str | None = None) -> bool:
    """`jit_compile` with "auto" replaced by the fastest measured path (module docstring).

    Args:
        value: "auto", True or False.
        geometry: the model's `Geometry` (its size decides for TensorFlow on a CPU; without
            it, TensorFlow on a CPU runs without XLA, as Keras does).
        backend: the Keras backend (default: the current one).

    Raises:
        ValueError: `value` is not "auto", True or False.
    """
    if isinstance(value, bool):
        return value
    if value != "auto":
        raise invalid("jit_compile", value, "must be 'auto', True or False")
    backend = backend or keras.config.backend()
    if backend == "tensorflow":
        return _tensorflow_prefers_xla(geometry)
    return backend == "jax"


def parse_jit_compile_flag(text: str):
    """A `--jit_compile` flag value ("auto", "true", "false") → the `compile` argument."""
    values = {"auto": "auto", "true": True, "false": False}
    if text not in values:
        raise invalid("jit_compile", text, "must be auto, true or false")
    return values[text]
