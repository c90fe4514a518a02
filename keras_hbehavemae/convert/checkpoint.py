"""Published PyTorch checkpoints ↔ Keras weights (docs/model.md, "Checkpoint key mapping").

The mapping is table-driven: `parameter_table(model)` lists, for every PyTorch state-dict
key, the Keras variable it fills and the layout transform (Linear → transpose; Conv3d →
flattened Dense kernel; everything else copied). Loading is strict and shape-checked.

Example:

>>> from keras_hbehavemae.convert.checkpoint import parameter_table
>>> from keras_hbehavemae import HBehaveMAEBackbone
>>> backbone = HBehaveMAEBackbone(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)
>>> len(parameter_table(backbone))
62
"""

from __future__ import annotations

import dataclasses
import os
import warnings
import zipfile
from collections.abc import Collection, Mapping

import numpy as np

from keras_hbehavemae.convert.published import config_from_checkpoint_args
from keras_hbehavemae.files.npy import npz_names, read_npz
from keras_hbehavemae.models.config import HBehaveMAEConfig

# Keys a backbone conversion skips (they belong to the pretrainer or to the unused
# classification head of the published inference encoder).
_PRETRAINER_ONLY_PREFIXES = (
    "decoder", "multi_scale_fusion_heads.", "encoder_norm.", "mask_token", "norm.", "head.",
)


@dataclasses.dataclass(frozen=True)
class ParameterEntry:
    """One PyTorch tensor and the Keras variable it maps to."""

    variable: object  # keras.Variable
    layout: str  # "copy", "linear" (transpose) or "conv" (Conv3d kernel as a Dense kernel)


def torch_to_keras_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """A PyTorch-layout tensor in the Keras layout."""
    if layout == "linear":  # [out, in] -> [in, out]
        return array.T
    if layout == "conv":  # [O, I, kT, kH, kW] -> [kT, kH, kW, I, O] -> [kT·kH·kW·I, O]
        return array.transpose(2, 3, 4, 1, 0).reshape(-1, array.shape[0])
    return array


def keras_to_torch_layout(array: np.ndarray, layout: str, torch_shape=None) -> np.ndarray:
    """The inverse of `torch_to_keras_layout` (`torch_shape` is needed for "conv")."""
    if layout == "linear":
        return array.T
    if layout == "conv":
        out, channels, *kernel = torch_shape
        return array.reshape(*kernel, channels, out).transpose(4, 3, 0, 1, 2)
    return array


def _dense(table, prefix, layer, layout="linear"):
    table[f"{prefix}.weight"] = ParameterEntry(layer.kernel, layout)
    table[f"{prefix}.bias"] = ParameterEntry(layer.bias, "copy")


def _norm(table, prefix, layer):
    table[f"{prefix}.weight"] = ParameterEntry(layer.gamma, "copy")
    table[f"{prefix}.bias"] = ParameterEntry(layer.beta, "copy")


def _block(table, prefix, block):
    _norm(table, f"{prefix}.norm1", block.norm1)
    _dense(table, f"{prefix}.attn.qkv", block.attn.qkv)
    _dense(table, f"{prefix}.attn.proj", block.attn.proj)
    _norm(table, f"{prefix}.norm2", block.norm2)
    _dense(table, f"{prefix}.mlp.fc1", block.mlp_fc1)
    _dense(table, f"{prefix}.mlp.fc2", block.mlp_fc2)
    if block.proj is not None:
        _dense(table, f"{prefix}.proj", block.proj)


def parameter_table(model) -> dict[str, ParameterEntry]:
    """PyTorch state-dict key → `ParameterEntry`, in checkpoint order, for a backbone or
    a pretrainer (which adds the fusion heads, encoder_norm and decoder)."""
    backbone = getattr(model, "backbone", model)
    table: dict[str, ParameterEntry] = {}
    position = backbone.position_embedding
    if position.separable:
        table["pos_embed_spatial"] = ParameterEntry(position.spatial, "copy")
        table["pos_embed_temporal"] = ParameterEntry(position.temporal, "copy")
    else:
        table["pos_embed"] = ParameterEntry(position.table, "copy")
    pretrainer = model is not backbone
    if pretrainer:
        table["mask_token"] = ParameterEntry(model.decoder.mask_token, "copy")
        table["decoder_pos_embed"] = ParameterEntry(model.decoder.decoder_pos_embed, "copy")
    _dense(table, "patch_embed.proj", backbone.patch_embedding.projection, "conv")
    for index, block in enumerate(backbone.blocks):
        _block(table, f"blocks.{index}", block)
    for index, projection in enumerate(backbone.projections):
        _dense(table, f"projections.{index}", projection)
    if pretrainer:
        _norm(table, "encoder_norm", model.encoder_norm)
        for level, head in zip(model.geometry.fused_levels, model.fusion_heads, strict=True):
            _dense(table, f"multi_scale_fusion_heads.{level}", head.dense, "conv")
        decoder = model.decoder
        _dense(table, "decoder_embed", decoder.decoder_embed)
        for index, block in enumerate(decoder.decoder_blocks):
            _block(table, f"decoder_blocks.{index}", block)
        _norm(table, "decoder_norm", decoder.decoder_norm)
        _dense(table, "decoder_pred", decoder.decoder_pred)
    return table


def _expected_torch_shape(entry: ParameterEntry, torch_array_shape) -> tuple:
    """The Keras-layout shape a torch tensor of `torch_array_shape` converts to."""
    if entry.layout == "linear" and len(torch_array_shape) == 2:
        return tuple(torch_array_shape[::-1])
    if entry.layout == "conv" and len(torch_array_shape) == 5:
        out, channels, *kernel = torch_array_shape
        return (int(np.prod(kernel)) * channels, out)
    return tuple(torch_array_shape)


def load_torch_state_dict(model, state_dict: Mapping[str, np.ndarray], *,
                          allow_non_finite: bool = False) -> dict[str, list]:
    """Loads a PyTorch-layout state dict into a backbone or pretrainer.

    A pretrainer load is strict: missing keys, unexpected keys and shape mismatches are
    all listed in one ValueError. A backbone load ignores (and reports) the keys that
    belong to the pretrainer or the unused classification head. Tensors holding NaN or
    inf (a checkpoint of a diverged run) are refused, naming them, unless
    `allow_non_finite`, which loads them with a warning.

    Returns:
        `{"loaded": [...keys], "ignored": [...keys]}`.
    """
    table = parameter_table(model)
    pretrainer = getattr(model, "backbone", model) is not model
    ignored = [key for key in state_dict if key not in table and not pretrainer
               and key.startswith(_PRETRAINER_ONLY_PREFIXES)]
    unexpected = [key for key in state_dict if key not in table and key not in ignored]
    missing = [key for key in table if key not in state_dict]
    mismatched = []
    for key, entry in table.items():
        if key not in state_dict:
            continue
        source_shape = tuple(np.shape(state_dict[key]))
        converted = _expected_torch_shape(entry, source_shape)
        if converted != tuple(entry.variable.shape):
            mismatched.append(f"{key}: checkpoint {source_shape} vs model "
                              f"{tuple(entry.variable.shape)} (Keras layout)")
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {mismatched}")
        raise ValueError(
            "checkpoint does not match the model configuration; " + "; ".join(parts)
            + ". Check that the configuration (input_size, stages, q_strides, widths, "
            "decoder) is the one the checkpoint was trained with.")
    arrays = {key: np.asarray(state_dict[key]) for key in table}
    for key, array in arrays.items():
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{key}: dtype {array.dtype} is not a floating-point tensor")
    _check_finite(arrays, allow_non_finite)
    for key, entry in table.items():
        array = arrays[key]
        entry.variable.assign(torch_to_keras_layout(array.astype("float32"), entry.layout))
    return {"loaded": list(table), "ignored": ignored}


def _check_finite(arrays: Mapping[str, np.ndarray], allow_non_finite: bool) -> None:
    """Refuses (or, with `allow_non_finite`, warns about) tensors holding NaN or inf."""
    bad = {key: int(np.count_nonzero(~np.isfinite(array))) for key, array in arrays.items()
           if not np.isfinite(array).all()}
    if not bad:
        return
    shown = ", ".join(f"{key} ({count} of {arrays[key].size})"
                      for key, count in list(bad.items())[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    message = (f"the checkpoint holds non-finite weights (NaN or inf) in {len(bad)} of "
               f"{len(arrays)} tensors: {shown}{more}; it comes from a diverged run")
    if not allow_non_finite:
        raise ValueError(message + ". Convert another checkpoint, or pass "
                         "allow_non_finite=True (--allow_non_finite_weights) to convert it "
                         "as it is")
    warnings.warn(message + "; converted as it is (allow_non_finite=True): its outputs will "
                  "not be finite", stacklevel=3)


def export_torch_state_dict(model) -> dict[str, np.ndarray]:
    """The model's weights as a PyTorch-layout state dict of numpy arrays."""
    import keras

    result = {}
    for key, entry in parameter_table(model).items():
        value = keras.ops.convert_to_numpy(entry.variable)
        if entry.layout == "conv":
            torch_shape = _conv_torch_shape(model, key, value)
            result[key] = keras_to_torch_layout(value, "conv", torch_shape)
        else:
            result[key] = keras_to_torch_layout(value, entry.layout)
    return result


def _conv_torch_shape(model, key: str, kernel: np.ndarray) -> tuple:
    backbone = getattr(model, "backbone", model)
    out = kernel.shape[1]
    if key.startswith("patch_embed"):
        return (out, 1, *backbone.config_object.patch_kernel)
    level = int(key.split(".")[1])
    window = model.geometry.levels[level].window
    return (out, model.geometry.out_embed_dims[level], *window)


# ---------------------------------------------------------------------- files


def read_state_dict_file(path: str | os.PathLike):
    """Reads a checkpoint file → `(state_dict, args or None, metadata)`.

    Supports published `.pth` checkpoints (`{model|model_state, optimizer, epoch, scaler,
    args}`), plain PyTorch state-dict files (both read without torch and without executing
    pickle code, through the restricted unpickler) and `.npz` files of numeric arrays with
    PyTorch key names (optionally under `param/`).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if zipfile.is_zipfile(path) and _is_npz(path):
        keys = npz_names(path)
        if any(key.startswith("param/") for key in keys):
            arrays = read_npz(path, [key for key in keys if key.startswith("param/")])
            state = {key[len("param/"):]: array for key, array in arrays.items()}
        else:
            state = read_npz(path)
        return state, None, {"format": "npz"}
    from keras_hbehavemae.convert.torch_pickle import (
        extract_args,
        extract_state_dict,
        load_torch_file,
    )

    content = load_torch_file(path)
    state = extract_state_dict(content)
    args = extract_args(content)
    metadata = {"format": "torch"}
    if isinstance(content, Mapping) and "epoch" in content:
        metadata["epoch"] = content["epoch"]
    return state, args, metadata


def _is_npz(path: str) -> bool:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return bool(names) and all(name.endswith(".npy") for name in names)


def from_torch_checkpoint(path, config: HBehaveMAEConfig | None = None,
                          extra_training_args: Collection[str] = ()):
    """`(config, state_dict)` from a checkpoint file, the state dict in PyTorch layout.

    The configuration comes from the checkpoint's `args` when present; otherwise pass
    `config`. When both are present they must agree. Every key of `args` must be a model
    parameter or a published training setting (`published.PUBLISHED_TRAINING_ARGS`, or one
    of `extra_training_args`); any other raises, naming the closest valid name.
    """
    state, args, _ = read_state_dict_file(path)
    if args is not None:
        from_args = config_from_checkpoint_args(args, os.fspath(path), extra_training_args)
        if config is not None and config != from_args:
            raise ValueError(
                f"{path}: the given config differs from the checkpoint's args:\n"
                f"given: {config.to_dict()}\ncheckpoint: {from_args.to_dict()}")
        config = from_args
    if config is None:
        raise ValueError(
            f"{path}: the checkpoint holds no training args to build the configuration "
            "from; pass config=HBehaveMAEConfig(...) (or a preset's config)")
    return config, state


def build_from_torch_checkpoint(path, config: HBehaveMAEConfig | None = None,
                                backbone_only: bool = False, seed: int | None = None, *,
                                allow_non_finite: bool = False,
                                extra_training_args: Collection[str] = ()):
    """Builds a pretrainer (or backbone) from a checkpoint and loads its weights strictly.

    A checkpoint with NaN or infinite weights is refused unless `allow_non_finite` (see
    `load_torch_state_dict`); `extra_training_args` as in `from_torch_checkpoint`.
    """
    from keras_hbehavemae.models.backbone import HBehaveMAEBackbone
    from keras_hbehavemae.models.pretrainer import HBehaveMAE

    config, state = from_torch_checkpoint(path, config, extra_training_args)
    backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
    model = backbone if backbone_only else HBehaveMAE(
        backbone, seed=seed, **config.pretrainer_kwargs())
    try:
        load_torch_state_dict(model, state, allow_non_finite=allow_non_finite)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None
    return model
