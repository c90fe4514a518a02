"""The content of the data-flow report, as plain tables (`data_flow_tables`).

The report explains a configuration for a reader who meets the model for the first time:
input → patches → mask units → stages (token grids, widths, attention windows, receptive
fields) → fusion → decoder → the time-strided prediction target, plus parameter counts and an
ASCII diagram of the hierarchy.

Every derived number comes from `keras_hbehavemae.models.geometry.compute_geometry` (the single
source of derived sizes); parameter counts are also read from the weights of a built Keras
model and cross-checked against the geometry. A disagreement is reported loudly, because it
would be a bug in the model or in the geometry.

Example:

>>> from keras_hbehavemae.models.config import published_configuration
>>> tables = data_flow_tables(published_configuration("shot7m2"), build_model=False)
>>> [stage["tokens_full"] for stage in tables["stages"]]
[4800, 600, 50]
>>> tables["masking"]["num_kept_units"], tables["decoder"]["pred_stride"]
(15, 288)
>>> tables["decoder"]["prediction_covers"]
'4 time-strided frames (every 2nd frame: 8j, 8j+2, 8j+4, 8j+6) × 1 individual × 72 features = 288'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from keras_hbehavemae.models import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig, decoding
from keras_hbehavemae.models.geometry import Geometry, compute_geometry
from keras_hbehavemae.report.diagram import diagram
from keras_hbehavemae.report.formatting import extent, ordinal, plain, plural, strided_frames

FORMATS = ("markdown", "json")


def _prediction_covers(geometry: Geometry) -> str:
    """What one predicted vector reconstructs, in input units (a time-strided target)."""
    frames, rows, features = geometry.label_patch
    patch_t = geometry.config.patch_kernel[0]
    span = geometry.levels[-1].frames_per_token
    listed = strided_frames(frames, span, patch_t)
    if patch_t == 1:
        how = f"{plural(frames, 'consecutive frame')}: {listed}"
    else:
        how = (f"{plural(frames, 'time-strided frame')} "
               f"(every {ordinal(patch_t)} frame: {listed})")
    return (f"{how} × {plural(rows, 'individual')} × {plural(features, 'feature')} "
            f"= {geometry.pred_stride}")


def _weights_count(layer) -> int:
    return int(sum(math.prod(weight.shape) for weight in layer.weights))


# ----------------------------------------------------------------------------- the model


def _coerce_config(config) -> HBehaveMAEConfig:
    if isinstance(config, HBehaveMAEConfig):
        return config
    if isinstance(config, Mapping):
        return HBehaveMAEConfig.from_dict(config)  # raises the config's ValueError
    raise TypeError(f"config: expected an HBehaveMAEConfig or a mapping, got {type(config)}")


def _build(config: HBehaveMAEConfig):
    """Builds backbone and pretrainer for `config` (weights are random; only shapes matter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non_hierarchical overrides were warned about already
        backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
        return HBehaveMAE(backbone, **config.pretrainer_kwargs())


def _model_counts(model, geometry: Geometry) -> dict[str, Any]:
    """Parameter counts and a few shapes read from the weights of a built model."""
    backbone = getattr(model, "backbone", model)
    counts: dict[str, Any] = {
        "blocks": [_weights_count(block) for block in backbone.blocks],
        "projections": [_weights_count(projection) for projection in backbone.projections],
        "projection_kernels": [tuple(projection.kernel.shape)
                               for projection in backbone.projections],
        "patch_embed": _weights_count(backbone.patch_embedding),
        "position_embedding": _weights_count(backbone.position_embedding),
        "encoder": int(backbone.count_params()),
        "level_outputs": [tuple(output.shape[1:]) for output in backbone.outputs],
    }
    counts["stages"] = [
        sum(counts["blocks"][block.index] for block in geometry.blocks
            if block.stage == level.stage) + counts["projections"][level.stage]
        for level in geometry.levels
    ]
    if model is not backbone:
        counts["fusion_heads"] = [_weights_count(head) for head in model.fusion_heads]
        counts["fusion_trainable"] = [bool(head.trainable) for head in model.fusion_heads]
        counts["encoder_norm"] = _weights_count(model.encoder_norm)
        counts["decoder"] = _weights_count(model.decoder)
        counts["decoder_pred_kernel"] = tuple(model.decoder.decoder_pred.kernel.shape)
        counts["total"] = int(model.count_params())
    return counts


# ----------------------------------------------------------------------------- the tables


def data_flow_tables(config: HBehaveMAEConfig | Mapping[str, Any] | None = None, *,
                     build_model: bool = True, model=None, title: str | None = None) -> dict:
    """The structured content of the data-flow report.

    Args:
        config: an `HBehaveMAEConfig`, or a mapping of its fields (validated: a bad
            configuration raises its `ValueError`). May be omitted when `model` is given.
        build_model: build the Keras backbone and pretrainer and read the parameter counts
            from their weights (cross-checked against the geometry). With False the counts
            come from the geometry only.
        model: an already built `HBehaveMAE` or `HBehaveMAEBackbone` to read counts from
            instead of building one.
        title: a heading for the report.

    Returns:
        A dict of plain Python values (JSON-serialisable): `input`, `masking`, `stages`,
        `transitions`, `blocks`, `fusion`, `decoder`, `parameters`, `mismatches` (empty
        unless the built model disagrees with the geometry) and `diagram`.
    """
    if config is None:
        if model is None:
            raise ValueError("config: give a configuration or a built model")
        backbone = getattr(model, "backbone", model)
        config = getattr(model, "config_object", backbone.config_object)
    config = _coerce_config(config)
    config.validate_for_training()  # the report follows a masked training pass: 1 <= K < U
    geometry = compute_geometry(config)
    if model is None and build_model:
        model = _build(config)
    built = _model_counts(model, geometry) if model is not None else None
    mismatches: list[str] = []

    def check(what: str, from_model, from_geometry) -> None:
        if from_model is not None and from_model != from_geometry:
            mismatches.append(f"{what}: built model {from_model!r} != geometry {from_geometry!r}")

    levels, blocks = geometry.levels, geometry.blocks
    input_size, patch_kernel = config.input_size, config.patch_kernel
    counts = geometry.parameter_counts

    # === Input → patches ===
    input_section = {
        "input_shape": ["B", *input_size],
        "input_size": input_size,
        "patch_kernel": patch_kernel,
        "token_grid": geometry.token_grid,
        "num_tokens": geometry.num_tokens,
        "embed_dim": levels[0].dim,
        "token_extent": levels[0].token_extent,
        "token_covers": extent(levels[0].token_extent, input_size),
        "patch_embed_parameters": counts["patch_embed"],
        "position_embedding_parameters": counts["position_embedding"],
        "sep_pos_embed": config.sep_pos_embed,
    }
    if built is not None:
        check("patch_embed parameters", built["patch_embed"], counts["patch_embed"])
        check("position_embedding parameters", built["position_embedding"],
              counts["position_embedding"])

    # === Masking ===
    masking = {
        "mask_unit": geometry.mask_unit,
        "mask_unit_tokens": geometry.mask_unit_tokens,
        "mask_unit_input": levels[-1].token_extent,
        "mask_unit_covers": extent(levels[-1].token_extent, input_size),
        "mask_grid": geometry.mask_grid,
        "num_mask_units": geometry.num_mask_units,
        "mask_ratio": config.mask_ratio,
        "num_kept_units": geometry.num_kept_units,
        "num_masked_units": geometry.num_masked_units,
        "effective_mask_ratio": geometry.effective_mask_ratio,
        "masked_pass_tokens": blocks[0].tokens_in_masked,
    }

    # === Stages (levels) ===
    stages = []
    for level in levels:
        stage_blocks = [block for block in blocks if block.stage == level.stage]
        end = blocks[level.stage_end_block]
        attention = []
        for block in stage_blocks:
            kind = "mask-unit" if block.use_mask_unit_attention else "global"
            attention.append(f"{block.index}: {kind}" + (" (lag)" if block.opens_stage else ""))
        model_parameters = built["stages"][level.stage] if built is not None else None
        check(f"stage {level.stage} parameters (blocks + projection)", model_parameters,
              level.parameters)
        check(f"stage {level.stage} tokens (full pass)", end.tokens_out_full, level.num_tokens)
        if built is not None:
            check(f"projections_{level.stage} kernel", built["projection_kernels"][level.stage],
                  (level.dim, level.out_dim))
            check(f"level {level.stage} output shape", built["level_outputs"][level.stage],
                  (*level.grid, level.out_dim))
        stages.append({
            "stage": level.stage,
            "blocks": [block.index for block in stage_blocks],
            "tokens_full": end.tokens_out_full,
            "tokens_masked": end.tokens_out_masked,
            "grid": level.grid,
            "window": level.window,
            "window_size": level.window_size,
            "dim": level.dim,
            "num_heads": level.num_heads,
            "head_dim": stage_blocks[0].head_dim,
            "out_dim": level.out_dim,
            "frames_per_token": level.frames_per_token,
            "token_extent": level.token_extent,
            "token_covers": extent(level.token_extent, input_size),
            "receptive_field": level.receptive_field,
            "receptive_field_covers": extent(level.receptive_field, input_size),
            "attention": attention,
            "output_full": ["B", *level.grid, level.out_dim],
            "output_masked": ["B", geometry.num_kept_units, *level.window, level.out_dim],
            "parameters": level.parameters,
            "parameters_model": model_parameters,
        })

    transitions = []
    for block in blocks:
        if block.query_stride > 1:
            transitions.append({
                "into_stage": block.stage,
                "block": block.index,
                "q_stride": block.query_stride_3d,
                "flat": block.query_stride,
                "attention": "mask-unit" if block.use_mask_unit_attention else "global",
            })
        elif block.opens_stage:
            transitions.append({
                "into_stage": block.stage, "block": block.index, "q_stride": (1, 1, 1),
                "flat": 1,
                "attention": "mask-unit" if block.use_mask_unit_attention else "global",
            })

    # === Blocks ===
    block_rows = []
    for block in blocks:
        model_parameters = built["blocks"][block.index] if built is not None else None
        check(f"block {block.index} parameters", model_parameters, block.parameters)
        block_rows.append({
            "index": block.index,
            "stage": block.stage,
            "input_dim": block.input_dim,
            "dim": block.dim,
            "num_heads": block.num_heads,
            "head_dim": block.head_dim,
            "q_stride": block.query_stride,
            "q_stride_3d": block.query_stride_3d,
            "attention": "mask-unit" if block.use_mask_unit_attention else "global",
            "lagged": block.opens_stage,
            "window_size": block.window_size,
            "masked_tokens_in": block.tokens_in_masked,
            "masked_windows": block.windows_masked,
            "masked_queries_per_window": block.queries_per_window_masked,
            "masked_keys_per_window": block.keys_per_window_masked,
            "full_tokens_in": block.tokens_in_full,
            "full_windows": block.windows_full,
            "has_projection": block.has_projection,
            "parameters": block.parameters,
            "parameters_model": model_parameters,
        })

    # === Fusion ===
    last = levels[-1]
    strategy = decoding.strategy(config.decoding_strategy)
    heads_model = built.get("fusion_heads") if built is not None else None
    fusion_levels = []
    for level in levels:
        masked = ["B", geometry.num_kept_units, *level.window, level.out_dim]
        if level.stage in geometry.fused_levels:
            position = geometry.fused_levels.index(level.stage)
            fusion_levels.append({
                "level": level.stage, "input": masked, "role": "fusion head",
                "window": level.window,
                "parameters_model": heads_model[position] if heads_model else None,
                "trainable": (built["fusion_trainable"][position] if heads_model
                              else strategy.trains_fusion_heads),
            })
        if level.stage == last.stage:
            fusion_levels.append({"level": level.stage, "input": masked, "role": "added as is",
                                  "window": level.window, "parameters_model": None,
                                  "trainable": None})
        elif level.stage not in geometry.fused_levels:
            fusion_levels.append({"level": level.stage, "input": masked,
                                  "role": "not used by the decoder", "window": level.window,
                                  "parameters_model": None, "trainable": None})
    last_twice = last.stage in geometry.fused_levels  # the non-hierarchical variant
    fusion = {
        "decoding_strategy": config.decoding_strategy,
        "fused_levels": list(geometry.fused_levels),
        "last_level": last.stage,
        "last_level_twice": last_twice,
        "levels": fusion_levels,
        "output": ["B", geometry.num_kept_units, last.out_dim],
        "heads_used": strategy.uses_fusion_heads,
        "parameters": counts["fusion_heads"],
        "parameters_model": sum(heads_model) if heads_model is not None else None,
    }
    if heads_model is not None:
        check("fusion head parameters", fusion["parameters_model"], counts["fusion_heads"])
        if any(built["fusion_trainable"]) and not strategy.trains_fusion_heads:
            mismatches.append(f"decoding_strategy={strategy.name!r} but a fusion head is "
                              "trainable")

    # === Decoder ===
    pred_kernel = built.get("decoder_pred_kernel") if built is not None else None
    if pred_kernel is not None:
        check("decoder_pred kernel", pred_kernel,
              (config.decoder_embed_dim, geometry.pred_stride))
    frames, rows, features = geometry.label_patch
    span = levels[-1].frames_per_token
    if frames * patch_kernel[0] != span:
        mismatches.append(f"label patch {geometry.label_patch} with patch-t stride "
                          f"{patch_kernel[0]} does not span the {span} frames of a final token")
    decoder = {
        "latent": ["B", geometry.num_kept_units, last.out_dim],
        "num_tokens": geometry.num_mask_units,
        "grid": geometry.mask_grid,
        "num_kept_units": geometry.num_kept_units,
        "num_mask_tokens": geometry.num_masked_units,
        "embed_dim": config.decoder_embed_dim,
        "num_heads": config.decoder_num_heads,
        "depth": config.decoder_depth,
        "pred_stride": geometry.pred_stride,
        "label_patch": geometry.label_patch,
        "patch_t_stride": patch_kernel[0],
        "frames_per_prediction": span,
        "prediction_covers": _prediction_covers(geometry),
        "pred_shape": ["B", geometry.num_mask_units, geometry.pred_stride],
        "norm_loss": config.norm_loss,
        "decoder_pred_kernel": pred_kernel,
    }

    # === Parameters ===
    parts = ("patch_embed", "position_embedding", "blocks", "projections", "encoder",
             "encoder_norm", "fusion_heads", "decoder", "total")
    model_totals = {}
    if built is not None:
        model_totals = {
            "patch_embed": built["patch_embed"],
            "position_embedding": built["position_embedding"],
            "blocks": sum(built["blocks"]),
            "projections": sum(built["projections"]),
            "encoder": built["encoder"],
            "encoder_norm": built.get("encoder_norm"),
            "fusion_heads": fusion["parameters_model"],
            "decoder": built.get("decoder"),
            "total": built.get("total"),
        }
        for part in ("blocks", "projections", "encoder", "encoder_norm", "decoder", "total"):
            check(f"{part} parameters", model_totals[part], counts[part])
    parameters = {
        "source": "built Keras model" if built is not None else "geometry (model not built)",
        "backend": _backend() if built is not None else None,
        "rows": [{"part": part, "geometry": counts[part], "model": model_totals.get(part)}
                 for part in parts],
    }

    tables = {
        "title": title,
        "configuration": config.to_dict(),
        "non_hierarchical": config.non_hierarchical,
        "model_built": built is not None,
        "mismatches": mismatches,
        "input": input_section,
        "masking": masking,
        "stages": stages,
        "transitions": transitions,
        "blocks": block_rows,
        "fusion": fusion,
        "decoder": decoder,
        "parameters": parameters,
    }
    tables["diagram"] = diagram(tables)
    return plain(tables)


def _backend() -> str:
    import keras

    return keras.config.backend()


