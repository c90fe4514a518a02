"""A data-flow report: what hBehaveMAE does to one input window, stage by stage.

The report explains a configuration for a reader who meets the model for the first time:
input → patches → mask units → stages (token grids, widths, attention windows, receptive
fields) → fusion → decoder → the time-strided prediction target, plus parameter counts and an
ASCII diagram of the hierarchy.

Every derived number comes from `keras_hbehavemae.geometry.compute_geometry` (the single
source of derived sizes); parameter counts are also read from the weights of a built Keras
model and cross-checked against the geometry. A disagreement is reported loudly, because it
would be a bug in the model or in the geometry.

Example:

>>> from keras_hbehavemae.report import data_flow_tables, published_configuration
>>> tables = data_flow_tables(published_configuration("shot7m2"), build_model=False)
>>> [stage["tokens_full"] for stage in tables["stages"]]
[4800, 600, 50]
>>> tables["masking"]["num_kept_units"], tables["decoder"]["pred_stride"]
(15, 288)
>>> tables["decoder"]["prediction_covers"]
'4 time-strided frames (every 2nd frame: 8j, 8j+2, 8j+4, 8j+6) × 1 individual × 72 features = 288'
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

from keras_hbehavemae.config import HBehaveMAEConfig
from keras_hbehavemae.geometry import Geometry, compute_geometry

FORMATS = ("markdown", "json")

# The three published configurations (SPEC §7.1), in the published parameter names.
PUBLISHED_CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "shot7m2": {
        "input_size": (400, 1, 72),
        "patch_kernel": (2, 1, 3),
        "stages": (2, 3, 4),
        "q_strides": ((2, 1, 4), (2, 1, 6)),
        "mask_unit_attn": (True, False, False),
        "init_embed_dim": 96,
        "init_num_heads": 2,
        "out_embed_dims": (78, 128, 256),
        "dim_mul": 2.0,
        "head_mul": 2.0,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 128,
        "decoder_depth": 1,
        "decoder_num_heads": 1,
        "decoding_strategy": "single",
        "norm_loss": False,
        "mask_ratio": 0.70,
        "non_hierarchical": False,
    },
    "mabe22": {
        "input_size": (900, 3, 24),
        "patch_kernel": (3, 1, 24),
        "stages": (3, 4, 5),
        "q_strides": ((5, 1, 1), (1, 3, 1)),
        "mask_unit_attn": (True, False, False),
        "init_embed_dim": 128,
        "init_num_heads": 2,
        "out_embed_dims": (128, 192, 256),
        "dim_mul": 2.0,
        "head_mul": 2.0,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 128,
        "decoder_depth": 1,
        "decoder_num_heads": 1,
        "decoding_strategy": "multi",
        "norm_loss": True,
        "mask_ratio": 0.875,
        "non_hierarchical": False,
    },
    "hbabel": {
        "input_size": (450, 1, 75),
        "patch_kernel": (3, 1, 75),
        "stages": (2, 3, 4),
        "q_strides": ((5, 1, 1), (3, 1, 1)),
        "mask_unit_attn": (True, False, False),
        "init_embed_dim": 128,
        "init_num_heads": 2,
        "out_embed_dims": (64, 96, 128),
        "dim_mul": 2.0,
        "head_mul": 2.0,
        "mlp_ratio": 4.0,
        "decoder_embed_dim": 128,
        "decoder_depth": 1,
        "decoder_num_heads": 1,
        "decoding_strategy": "multi",
        "norm_loss": False,
        "mask_ratio": 0.75,
        "non_hierarchical": False,
    },
}

PUBLISHED_TITLES = {
    "shot7m2": "Shot7M2 (published hBehaveMAE)",
    "mabe22": "MABe22 mouse triplets (published hBehaveMAE)",
    "hbabel": "hBABEL (published hBehaveMAE)",
}


def published_configuration(name: str) -> HBehaveMAEConfig:
    """The `HBehaveMAEConfig` of a published configuration ("shot7m2", "mabe22", "hbabel")."""
    key = str(name).strip().lower()
    if key not in PUBLISHED_CONFIGURATIONS:
        raise ValueError(
            f"config: {name!r} is not a published configuration; choose one of "
            f"{sorted(PUBLISHED_CONFIGURATIONS)}")
    return HBehaveMAEConfig(**PUBLISHED_CONFIGURATIONS[key])


# ----------------------------------------------------------------------------- formatting


def _triple(values) -> str:
    return "(" + ", ".join(str(v) for v in values) + ")"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _plural(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _extent(extent, input_size, sep: str = " × ") -> str:
    """`(frames, rows, features)` in words, marking axes that span the whole input."""
    frames, rows, features = extent
    parts = [
        _plural(frames, "frame") + (" (whole window)" if frames == input_size[0] else ""),
        _plural(rows, "individual") + (" (all)" if rows == input_size[1] > 1 else ""),
        _plural(features, "feature") + (" (all)" if features == input_size[2] > 1 else ""),
    ]
    return sep.join(parts)


def _ordinal(number: int) -> str:
    if number == 2:
        return "2nd"
    if number == 3:
        return "3rd"
    return f"{number}th"


def _strided_frames(count: int, span: int, stride: int) -> str:
    """`8j, 8j+2, 8j+4, 8j+6`: the frames of one prediction, j = the unit's time index."""
    offsets = [i * stride for i in range(count)]
    terms = [f"{span}j" + (f"+{offset}" if offset else "") for offset in offsets]
    if len(terms) > 6:
        terms = terms[:3] + ["…"] + terms[-1:]
    return ", ".join(terms)


def _prediction_covers(geometry: Geometry) -> str:
    """What one predicted vector reconstructs, in input units (SPEC §3.12)."""
    frames, rows, features = geometry.label_patch
    patch_t = geometry.config.patch_kernel[0]
    span = geometry.levels[-1].frames_per_token
    listed = _strided_frames(frames, span, patch_t)
    if patch_t == 1:
        how = f"{_plural(frames, 'consecutive frame')}: {listed}"
    else:
        how = (f"{_plural(frames, 'time-strided frame')} "
               f"(every {_ordinal(patch_t)} frame: {listed})")
    return (f"{how} × {_plural(rows, 'individual')} × {_plural(features, 'feature')} "
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
    from keras_hbehavemae.backbone import HBehaveMAEBackbone
    from keras_hbehavemae.pretrainer import HBehaveMAE

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
        "token_covers": _extent(levels[0].token_extent, input_size),
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
        "mask_unit_covers": _extent(levels[-1].token_extent, input_size),
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
            "token_covers": _extent(level.token_extent, input_size),
            "receptive_field": level.receptive_field,
            "receptive_field_covers": _extent(level.receptive_field, input_size),
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
    single = config.decoding_strategy == "single"
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
                              else not single),
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
        "heads_used": not single,
        "parameters": counts["fusion_heads"],
        "parameters_model": sum(heads_model) if heads_model is not None else None,
    }
    if heads_model is not None:
        check("fusion head parameters", fusion["parameters_model"], counts["fusion_heads"])
        if single and any(built["fusion_trainable"]):
            mismatches.append("decoding_strategy='single' but a fusion head is trainable")

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
    tables["diagram"] = _diagram(tables)
    return _plain(tables)


def _backend() -> str:
    import keras

    return keras.config.backend()


def _plain(value):
    """Tuples → lists, recursively (JSON-compatible values)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# ----------------------------------------------------------------------------- the diagram


def _box(lines: list[str]) -> list[str]:
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return [rule, *[f"| {line.ljust(width)} |" for line in lines], rule]


def _timeline(tables: dict, indent: str) -> list[str]:
    """The mask units drawn over the time axis of the token grid (one '.' per token step)."""
    masking = tables["masking"]
    unit_t = masking["mask_unit"][0]
    units_t, units_h, units_w = masking["mask_grid"]
    per_slot = units_h * units_w  # units side by side in one time slot (row-major u)
    shown = list(range(units_t)) if units_t <= 5 else [0, 1, 2, None, units_t - 1]
    cell = "." * unit_t if unit_t <= 16 else f"<{unit_t}>".center(8, ".")

    def name(slot: int) -> str:
        first = slot * per_slot
        return f"u{first}" if per_slot == 1 else f"u{first}-{first + per_slot - 1}"

    bars, tick_marks, label_marks = "", [], []
    for slot in shown:
        if slot is None:
            bars += " ... "
            continue
        if not bars or bars.endswith(" "):
            bars += "|"
        tick_marks.append((len(bars) - 1, str(slot * unit_t)))
        label_marks.append((len(bars), name(slot)))
        bars += cell + "|"
    tick_marks.append((len(bars) - 1, str(units_t * unit_t)))

    def line(marks) -> str:
        # All marks when they fit with a space between them, else only the first and last.
        for candidate in (marks, [marks[0], marks[-1]]):
            text = ""
            for position, mark in candidate:
                if text and len(text) >= position:
                    break
                text = text.ljust(position) + mark
            else:
                return text
        return marks[0][1]

    lines = [f"{indent}t' {line(tick_marks)}", f"{indent}   {bars}",
             f"{indent}   {line(label_marks)}"]
    if per_slot > 1:
        lines.append(f"{indent}(each time slot holds G_h x G_w = {units_h} x {units_w} units "
                     "side by side, numbered row-major)")
    return lines


def _attention_runs(stage: dict) -> str:
    """`block 2 mask-unit (lag), blocks 3-4 global`: consecutive blocks of one type grouped."""
    runs: list[list] = []
    for item in stage["attention"]:
        index, kind = item.split(": ")
        if runs and runs[-1][1] == kind:
            runs[-1][0].append(int(index))
        else:
            runs.append([[int(index)], kind])
    parts = []
    for indices, kind in runs:
        name = f"block {indices[0]}" if len(indices) == 1 else f"blocks {indices[0]}-{indices[-1]}"
        parts.append(f"{name} {kind}")
    return ", ".join(parts)


def _shape(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _diagram(tables: dict) -> str:
    inp, masking, decoder, fusion = (tables["input"], tables["masking"], tables["decoder"],
                                     tables["fusion"])
    grid = inp["token_grid"]
    down = "  |"
    lines = [
        f"input x {_shape(inp['input_shape'])}   (T frames x H individuals x W features)",
        down + f"  patch embedding: kernel = stride = {_triple(inp['patch_kernel'])}, "
        f"width C0 = {inp['embed_dim']}, + position embedding",
        "  v",
        f"token grid (T', H', W') = {_triple(grid)}: N0 = {inp['num_tokens']} tokens; "
        f"1 token = {_extent(inp['token_extent'], inp['input_size'], ' x ')}",
        down + "  mask units over the token grid (time axis; one '.' = one token time step"
        f" of {grid[1]} x {grid[2]} tokens):",
        *_timeline(tables, down + "    "),
        down + f"    M = {_triple(masking['mask_unit'])} tokens = "
        f"{_triple(masking['mask_unit_input'])} input units; G = "
        f"{_triple(masking['mask_grid'])}, U = {masking['num_mask_units']} units",
        down + f"    training keeps K = {masking['num_kept_units']} random units (ascending "
        f"order), masks {masking['num_masked_units']} (effective ratio "
        f"{masking['effective_mask_ratio']:.3f}) -> {masking['masked_pass_tokens']} tokens",
        "  v",
    ]
    transitions = {entry["into_stage"]: entry for entry in tables["transitions"]}
    for stage in tables["stages"]:
        index = stage["stage"]
        if index in transitions:
            entry = transitions[index]
            if entry["flat"] > 1:
                text = (f"q-stride {_triple(entry['q_stride'])} = x{entry['flat']} fewer tokens,"
                        f" pooled in block {entry['block']} ({entry['attention']} attention,"
                        " lag)")
            else:
                text = (f"no pooling (block {entry['block']}, {entry['attention']} attention,"
                        " lag)")
            lines += [down + "  " + text, "  v"]
        first, final = stage["blocks"][0], stage["blocks"][-1]
        span = f"block {first}" if first == final else f"blocks {first}-{final}"
        lines += _box([
            f"stage {index} ({span}): width {stage['dim']}, {stage['num_heads']} heads",
            f"grid R{index} {_triple(stage['grid'])} = {stage['tokens_full']} tokens "
            f"(masked pass: {stage['tokens_masked']})",
            f"1 token = {_extent(stage['token_extent'], inp['input_size'], ' x ')}",
            f"window m{index} {_triple(stage['window'])}; " + _attention_runs(stage),
            f"projection {stage['dim']} -> {stage['out_dim']} = level L{index}",
        ])
        if index != tables["stages"][-1]["stage"]:
            lines.append("  |")
    kept = masking["num_kept_units"]
    heading = "fusion (decoding 'multi': summed left to right)"
    if not fusion["heads_used"]:
        heading = "fusion (decoding 'single': the fusion heads are unused and frozen)"
    lines += ["  |", "  v", heading]
    for entry in fusion["levels"]:
        level = entry["level"]
        source = f"  L{level} {_shape(entry['input'])}"
        if entry["role"] == "fusion head":
            used = "" if fusion["heads_used"] else "  (unused)"
            lines.append(f"{source} --Phi{level}, window {_triple(entry['window'])}--> "
                         f"[B, {kept}, {decoder['latent'][-1]}]{used}")
        elif entry["role"] == "added as is":
            lines.append(f"{source} --as is--> [B, {kept}, {decoder['latent'][-1]}]")
        else:
            lines.append(f"{source}   (not used by the decoder)")
    lines += [
        "  v",
        f"encoder_norm -> z {_shape(decoder['latent'])} -> decoder_embed -> "
        f"[B, {kept}, {decoder['embed_dim']}]",
        down + f"  + {decoder['num_mask_tokens']} mask tokens -> "
        f"[B, {decoder['num_tokens']}, {decoder['embed_dim']}] in mask-grid order, "
        "+ decoder_pos_embed",
        down + f"  {_plural(decoder['depth'], 'decoder block')}: width {decoder['embed_dim']}, "
        f"{_plural(decoder['num_heads'], 'head')}, global attention",
        down + f"  decoder_norm, decoder_pred {decoder['embed_dim']} -> {decoder['pred_stride']}",
        "  v",
        f"pred {_shape(decoder['pred_shape'])}: one row per mask unit =",
        "  " + decoder["prediction_covers"].replace("×", "x").replace("…", "..."),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- markdown


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _markdown(tables: dict) -> str:
    inp, masking, decoder, fusion = (tables["input"], tables["masking"], tables["decoder"],
                                     tables["fusion"])
    config = tables["configuration"]
    lines = [f"# hBehaveMAE data flow: {tables['title'] or 'configuration'}", ""]
    if tables["mismatches"]:
        lines += ["> **ERROR — the built model disagrees with the geometry. This is a bug "
                  "(in the model or in `keras_hbehavemae.geometry`):**", ">"]
        lines += [f"> - {item}" for item in tables["mismatches"]]
        lines.append("")
    source = tables["parameters"]["source"]
    if tables["model_built"]:
        source += f" ({tables['parameters']['backend']} backend), cross-checked against the "
        source += "geometry: " + ("**MISMATCH**" if tables["mismatches"] else "all counts agree")
    settings = ", ".join(f"{key}={_setting(value)}" for key, value in config.items())
    lines += [
        "Every number below comes from `keras_hbehavemae.geometry.compute_geometry`; "
        f"parameter counts: {source}.",
        "",
        f"Settings: {settings}.",
        "",
    ]
    if tables["non_hierarchical"]:
        lines += ["Non-hierarchical variant (BehaveMAE): q-strides are (1, 1, 1) per stage, "
                  "every block has width C0 and global attention.", ""]

    # Summary.
    stages = tables["stages"]
    chain = " → ".join(str(stage["tokens_full"]) for stage in stages)
    masked_chain = " → ".join(str(stage["tokens_masked"]) for stage in stages)
    widths = " → ".join(str(stage["dim"]) for stage in stages)
    outs = " / ".join(str(stage["out_dim"]) for stage in stages)
    heads = " → ".join(str(stage["num_heads"]) for stage in stages)
    totals = {row["part"]: row for row in tables["parameters"]["rows"]}

    def total(part: str) -> str:
        row = totals[part]
        return _count(row["model"] if row["model"] is not None else row["geometry"])

    lines += [
        "## Summary",
        "",
        f"- Input {_shape(inp['input_shape'])} → {inp['num_tokens']} tokens of "
        f"{inp['token_covers']} (patch {_triple(inp['patch_kernel'])}).",
        f"- Tokens per level, full pass: {chain}; masked pass (K = "
        f"{masking['num_kept_units']} of U = {masking['num_mask_units']} mask units kept at "
        f"mask ratio {masking['mask_ratio']:.2f}): {masked_chain}.",
        f"- Widths {widths} (heads {heads}), projected to {outs}.",
        f"- Decoder: U = {decoder['num_tokens']} tokens of width {decoder['embed_dim']}; "
        f"pred_stride P = {decoder['pred_stride']}: {decoder['prediction_covers']}.",
        f"- Parameters: encoder {total('encoder')}, fusion heads {total('fusion_heads')}, "
        f"decoder {total('decoder')}, total {total('total')}.",
        "",
    ]

    # Input → patches.
    lines += ["## 1. Input → patches", ""]
    lines += _table(["quantity", "value"], [
        ["input [B, T, H, W]", f"{_shape(inp['input_shape'])} (T frames × H individuals × "
                               "W features; the model adds the channel axis)"],
        ["patch kernel (pt, ph, pw)", f"{_triple(inp['patch_kernel'])}, stride = kernel, "
                                      "no padding"],
        ["token grid (T', H', W')", _triple(inp["token_grid"])],
        ["tokens N0", inp["num_tokens"]],
        ["one token covers", inp["token_covers"]],
        ["token width C0", inp["embed_dim"]],
        ["patch embedding parameters", _count(inp["patch_embed_parameters"])],
        ["position embedding parameters", f"{_count(inp['position_embedding_parameters'])}"
         + (" (separable: spatial + temporal)" if inp["sep_pos_embed"] else "")],
    ])

    # Masking.
    lines += ["", "## 2. Masking (training)", ""]
    lines += _table(["quantity", "value"], [
        ["mask unit M (tokens)", f"{_triple(masking['mask_unit'])} = "
                                 f"{masking['mask_unit_tokens']} tokens (product of all "
                                 "q-strides)"],
        ["mask unit in input units", f"{_triple(masking['mask_unit_input'])}: "
                                     f"{masking['mask_unit_covers']}"],
        ["mask grid G", _triple(masking["mask_grid"])],
        ["mask units U", masking["num_mask_units"]],
        ["mask ratio (configured)", f"{masking['mask_ratio']:.3f}"],
        ["kept units K = int(U·(1 − mask_ratio))", masking["num_kept_units"]],
        ["masked units U − K", masking["num_masked_units"]],
        ["effective mask ratio (U − K)/U", f"{masking['effective_mask_ratio']:.3f}"],
        ["tokens entering the masked pass", f"{masking['masked_pass_tokens']} "
                                            f"(K × {masking['mask_unit_tokens']})"],
    ])

    # Diagram.
    lines += ["", "## 3. The hierarchy", "", "```text", tables["diagram"], "```"]

    # Stages.
    built = tables["model_built"]
    lines += ["", "## 4. Stages (levels)", ""]
    header = ["level", "blocks", "tokens (full pass)", "tokens (masked pass)", "grid R_k",
              "window m_k", "width D_k", "heads (head dim)", "projection",
              "parameters (geometry)"]
    if built:
        header.append("parameters (built model)")
    rows = []
    for stage in tables["stages"]:
        row = [
            f"L{stage['stage']}",
            _span(stage["blocks"]),
            stage["tokens_full"],
            stage["tokens_masked"],
            _triple(stage["grid"]),
            _triple(stage["window"]),
            stage["dim"],
            f"{stage['num_heads']} ({stage['head_dim']})",
            f"{stage['dim']} → {stage['out_dim']}",
            _count(stage["parameters"]),
        ]
        if built:
            flag = "" if stage["parameters_model"] == stage["parameters"] else " **MISMATCH**"
            row.append(_count(stage["parameters_model"]) + flag)
        rows.append(row)
    lines += _table(header, rows, "llrrllrllr" + ("r" if built else ""))
    lines += [""]
    lines += _table(["level", "frames per token τ_k", "one token covers", "receptive field",
                     "attention (block: type)", "output (full pass)", "output (masked pass)"], [
        [f"L{stage['stage']}", stage["frames_per_token"], stage["token_covers"],
         f"{_triple(stage['receptive_field'])}: {stage['receptive_field_covers']}",
         "; ".join(stage["attention"]), _shape(stage["output_full"]),
         _shape(stage["output_masked"])]
        for stage in tables["stages"]
    ])
    lines += ["", "The receptive field is the input extent that can influence one token of the "
              "level: one mask unit while every block so far used mask-unit attention, the "
              "whole window once a global block ran.", ""]

    # Blocks.
    lines += ["## 5. Blocks", ""]
    header = ["block", "stage", "d_in → D", "heads", "head dim", "q-stride s", "q-stride (t,h,w)",
              "attention", "window w", "masked: in / windows / q per win / k per win",
              "full: in / windows", "+proj", "parameters"]
    rows = []
    for block in tables["blocks"]:
        attention = block["attention"] + (" (lag)" if block["lagged"] else "")
        count = _count(block["parameters"])
        if built and block["parameters_model"] != block["parameters"]:
            count += f" **MISMATCH: built {_count(block['parameters_model'])}**"
        rows.append([
            block["index"], block["stage"], f"{block['input_dim']} → {block['dim']}",
            block["num_heads"], block["head_dim"], block["q_stride"],
            _triple(block["q_stride_3d"]), attention, block["window_size"],
            f"{block['masked_tokens_in']} / {block['masked_windows']} / "
            f"{block['masked_queries_per_window']} / {block['masked_keys_per_window']}",
            f"{block['full_tokens_in']} / {block['full_windows']}",
            "yes" if block["has_projection"] else "no", count,
        ])
    lines += _table(header, rows, "rrlrrrllrllll")
    lines += ["", "(lag): the lag-by-one rule (SPEC §3.8). The first block of stage k ≥ 1 pools "
              "the queries and keeps the attention type of stage k − 1 (`mask_unit_attn[k−1]`); "
              "the stage's own type starts with its second block. The window size w is the "
              "flattened mask unit after the block's pooling; q per win / k per win are the "
              "queries and keys of one attention window in the masked pass.", ""]

    # Fusion.
    lines += ["## 6. Multi-scale fusion", ""]
    rows = []
    for entry in fusion["levels"]:
        level = entry["level"]
        if entry["role"] == "fusion head":
            state = "trainable" if entry["trainable"] else "frozen, unused"
            role = f"Φ{level}: window kernel m{level} = {_triple(entry['window'])} ({state})"
            count = _count(entry["parameters_model"])
        else:
            role, count = entry["role"], "—"
        rows.append([f"L{level}", _shape(entry["input"]), role, count])
    lines += _table(["level", "masked level", "fusion", "head parameters (built model)"], rows)
    fused = ", ".join(f"L{level}" for level in fusion["fused_levels"])
    lines.append("")
    if fusion["heads_used"]:
        text = (f"decoding_strategy='multi': the fusion heads map {fused} (levels k < Q) to one "
                f"vector of width {decoder['latent'][-1]} per kept unit; they are summed left "
                f"to right and L{fusion['last_level']} is added as is.")
        if fusion["last_level_twice"]:
            text += (f" In the non-hierarchical variant L{fusion['last_level']} appears twice: "
                     "through its head and as is.")
    else:
        text = (f"decoding_strategy='single': the latent is L{fusion['last_level']} alone. The "
                f"fusion heads of {fused} exist ({_count(fusion['parameters'])} parameters) "
                "but are unused and frozen (they receive no gradient).")
    lines += [text, f"The latent goes through encoder_norm: z = {_shape(decoder['latent'])}.", ""]

    # Decoder.
    lines += ["## 7. Decoder and prediction target", ""]
    frames, rows_, features = decoder["label_patch"]
    pred_kernel = decoder["decoder_pred_kernel"]
    lines += _table(["quantity", "value"], [
        ["decoder tokens", f"U = {decoder['num_tokens']} (mask grid {_triple(decoder['grid'])}): "
                           f"{decoder['num_kept_units']} kept units + "
                           f"{decoder['num_mask_tokens']} mask tokens"],
        ["width / heads / depth", f"{decoder['embed_dim']} / {decoder['num_heads']} / "
                                  f"{decoder['depth']}"],
        ["pred_stride P", decoder["pred_stride"]],
        ["label patch (a, b, c)", f"{_triple(decoder['label_patch'])} = "
                                  f"({_plural(frames, 'time-strided frame')}, "
                                  f"{_plural(rows_, 'row')} (individuals), "
                                  f"{_plural(features, 'feature')})"],
        ["one prediction reconstructs", decoder["prediction_covers"]],
        ["patch-t stride", f"{decoder['patch_t_stride']}: the target is x[:, 0::"
                           f"{decoder['patch_t_stride']}], the first frame of each temporal "
                           "patch"],
        ["frames spanned by one prediction", decoder["frames_per_prediction"]],
        ["prediction", f"{_shape(decoder['pred_shape'])}"
         + (f" (decoder_pred kernel {_shape(pred_kernel)})" if pred_kernel else "")],
        ["norm_loss", f"{decoder['norm_loss']}"
         + (" (each target token standardised)" if decoder["norm_loss"] else "")],
        ["loss", f"mean squared error over the {decoder['num_mask_tokens']} masked units "
                 f"× {decoder['pred_stride']} values"],
    ])

    # Parameters.
    lines += ["", "## 8. Parameters", ""]
    header = ["part", "geometry"] + (["built model", "check"] if built else [])
    rows = []
    for row in tables["parameters"]["rows"]:
        cells = [row["part"], _count(row["geometry"])]
        if built:
            ok = row["model"] is None or row["model"] == row["geometry"]
            cells += [_count(row["model"]), "ok" if ok else "**MISMATCH**"]
        rows.append(cells)
    lines += _table(header, rows, "lr" + ("rl" if built else ""))
    lines.append("")
    return "\n".join(lines)


def _setting(value) -> str:
    if isinstance(value, list):
        if value and all(isinstance(item, list) for item in value):
            return ";".join(",".join(str(v) for v in item) for item in value)
        return ",".join(str(item) for item in value)
    return str(value)


def _span(indices: list[int]) -> str:
    return str(indices[0]) if len(indices) == 1 else f"{indices[0]}–{indices[-1]}"


def render_data_flow(tables: dict, format: str = "markdown") -> str:
    """Renders `data_flow_tables(...)` as "markdown" (tables + ASCII diagram) or "json"."""
    if format not in FORMATS:
        raise ValueError(f"format: {format!r} is invalid: must be one of {FORMATS}")
    if format == "json":
        return json.dumps(tables, indent=2)
    return _markdown(tables)


def data_flow_report(config: HBehaveMAEConfig | Mapping[str, Any] | None = None, *,
                     build_model: bool = True, format: str = "markdown",
                     model=None, title: str | None = None) -> str:
    """Explains what the model does to one input window, as markdown (or JSON).

    Args: see `data_flow_tables`; `format` is "markdown" or "json".

    Raises:
        ValueError: the configuration is invalid (the config's own message), including a
            mask ratio that leaves no unit to keep or to mask.
    """
    if format not in FORMATS:
        raise ValueError(f"format: {format!r} is invalid: must be one of {FORMATS}")
    tables = data_flow_tables(config, build_model=build_model, model=model, title=title)
    return render_data_flow(tables, format)
