"""Model sizes for your own data: `sized_parameters("small" | "base", input_size)`.

A size fixes the widths, depths, decoder and mask ratio, and derives the geometry from the
input `(T, H, W)` (window, individuals, features per individual), so nobody restates the
twenty architecture flags:

- patch `(3, 1, W)`: three frames of one individual's whole pose per token;
- query pooling `5,1,1` (five tokens in time) and then `1,H,1` (all individuals into one
  token; with one individual, `2,1,1`, two more in time), as in the published MABe22 and
  hBABEL models; the window T must therefore be a multiple of 15 (or of 30 for H = 1);
- `small`: the built-in synthetic run's model (stages 1, 2, 1; widths 32 → 128; outputs 32,
  48, 64; decoder 64), which trains on a 2-core CPU in minutes; default window 300;
- `base`: the published MABe22 model (stages 3, 4, 5; widths 128 → 512; outputs 128, 192,
  256; decoder 128; mask ratio 0.875); default window 900.

Example:

>>> values = sized_parameters("small", (300, 3, 24))
>>> values["patch_kernel"], values["q_strides"]
((3, 1, 24), '5,1,1;1,3,1')
>>> sized_parameters("small", (300, 1, 10))["q_strides"]
'5,1,1;2,1,1'
"""

from __future__ import annotations

import math
from typing import Any

from keras_hbehavemae.errors import invalid

SIZES = {
    "small": dict(stages=(1, 2, 1), init_embed_dim=32, init_num_heads=2,
                  out_embed_dims=(32, 48, 64), decoder_embed_dim=64, decoder_depth=1,
                  decoder_num_heads=1, decoding_strategy="multi", norm_loss=True,
                  mask_ratio=0.75),
    "base": dict(stages=(3, 4, 5), init_embed_dim=128, init_num_heads=2,
                 out_embed_dims=(128, 192, 256), decoder_embed_dim=128, decoder_depth=1,
                 decoder_num_heads=1, decoding_strategy="multi", norm_loss=True,
                 mask_ratio=0.875),
}
#: The default window (frames) of each size.
DEFAULT_WINDOW = {"small": 300, "base": 900}
PATCH_FRAMES = 3
TIME_POOLING = 5


def sized_q_strides(num_individuals: int) -> str:
    """The query-pooling strides for H individuals (see the module docstring)."""
    second = f"1,{num_individuals},1" if num_individuals > 1 else "2,1,1"
    return f"{TIME_POOLING},1,1;{second}"


def window_multiple(num_individuals: int) -> int:
    """T must be a multiple of this: patch frames × all time pooling."""
    return PATCH_FRAMES * TIME_POOLING * (1 if num_individuals > 1 else 2)


def nearest_multiples(value: int, multiple: int) -> list[int]:
    """The multiples of `multiple` nearest to `value` (below and above; one if it divides).

    Example:
        >>> nearest_multiples(310, 15), nearest_multiples(300, 15), nearest_multiples(4, 15)
        ([300, 315], [300], [15])
    """
    below, above = (value // multiple) * multiple, -(-value // multiple) * multiple
    return sorted({candidate for candidate in (below, above) if candidate > 0})


def sized_parameters(size: str, input_size) -> dict[str, Any]:
    """The configuration fields of `size` for the input `(T, H, W)` (see the module docstring).

    Raises:
        ValueError: an unknown size, or a window T that the pooling does not divide (the
            message suggests the nearest valid windows).
    """
    if size not in SIZES:
        raise invalid("size", size, f"must be one of {tuple(SIZES)}")
    frames, individuals, features = (int(value) for value in input_size)
    if min(frames, individuals, features) < 1:
        raise invalid("input_size", tuple(input_size), "every entry must be positive")
    multiple = window_multiple(individuals)
    if frames % multiple:
        raise invalid("num_frames", frames,
                      f"--size {size} with {individuals} individual"
                      f"{'s' if individuals != 1 else ''} needs a window that is a multiple "
                      f"of {multiple} (patch {PATCH_FRAMES} frames x query pooling "
                      f"{multiple // PATCH_FRAMES}); nearest valid: "
                      + " or ".join(str(v) for v in nearest_multiples(frames, multiple)))
    units = frames // multiple  # mask units: the individuals pool into one token
    kept_fraction = 1 - SIZES[size]["mask_ratio"]
    if int(units * kept_fraction) < 1:
        shortest = multiple * math.ceil(1 / kept_fraction - 1e-9)
        raise invalid("num_frames", frames,
                      f"--size {size} masks {SIZES[size]['mask_ratio']} of the window's "
                      f"{units} mask units ({multiple} frames each), which leaves none to "
                      f"encode; use a window of at least {shortest} frames")
    stages = SIZES[size]["stages"]
    return {
        "input_size": (frames, individuals, features),
        "patch_kernel": (PATCH_FRAMES, 1, features),
        "q_strides": sized_q_strides(individuals),
        "mask_unit_attn": (True,) + (False,) * (len(stages) - 1),
        **SIZES[size],
    }


def size_summary(size: str, input_size) -> str:
    """One line describing the sized model (from the geometry), for the command's output.

    Example:
        >>> size_summary("small", (300, 3, 24))
        '--size small for input (300, 3, 24): patch (3, 1, 24), q_strides 5,1,1;1,3,1, stages (1, 2, 1), widths 32-128, 308,528 encoder parameters'
    """  # noqa: E501
    from keras_hbehavemae.models.config import HBehaveMAEConfig
    from keras_hbehavemae.models.geometry import compute_geometry

    values = sized_parameters(size, input_size)
    geometry = compute_geometry(HBehaveMAEConfig(**values))
    widest = values["init_embed_dim"] * 2 ** (len(values["stages"]) - 1)
    return (f"--size {size} for input {values['input_size']}: patch {values['patch_kernel']}, "
            f"q_strides {values['q_strides']}, stages {values['stages']}, widths "
            f"{values['init_embed_dim']}-{widest}, "
            f"{geometry.parameter_counts['encoder']:,} encoder parameters")
