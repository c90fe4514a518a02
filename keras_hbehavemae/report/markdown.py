"""The markdown rendering of the data-flow report, and `data_flow_report`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from keras_hbehavemae.models import HBehaveMAEConfig
from keras_hbehavemae.report.formatting import count, plural, setting, shape, span, table, triple
from keras_hbehavemae.report.tables import FORMATS, data_flow_tables


def _markdown(tables: dict) -> str:
    inp, masking, decoder, fusion = (tables["input"], tables["masking"], tables["decoder"],
                                     tables["fusion"])
    config = tables["configuration"]
    lines = [f"# hBehaveMAE data flow: {tables['title'] or 'configuration'}", ""]
    if tables["mismatches"]:
        lines += ["> **ERROR — the built model disagrees with the geometry. This is a bug "
                  "(in the model or in `keras_hbehavemae.models.geometry`):**", ">"]
        lines += [f"> - {item}" for item in tables["mismatches"]]
        lines.append("")
    source = tables["parameters"]["source"]
    if tables["model_built"]:
        source += f" ({tables['parameters']['backend']} backend), cross-checked against the "
        source += "geometry: " + ("**MISMATCH**" if tables["mismatches"] else "all counts agree")
    settings = ", ".join(f"{key}={setting(value)}" for key, value in config.items())
    lines += [
        "Every number below comes from `keras_hbehavemae.models.geometry.compute_geometry`; "
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
        return count(row["model"] if row["model"] is not None else row["geometry"])

    lines += [
        "## Summary",
        "",
        f"- Input {shape(inp['input_shape'])} → {inp['num_tokens']} tokens of "
        f"{inp['token_covers']} (patch {triple(inp['patch_kernel'])}).",
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
    lines += table(["quantity", "value"], [
        ["input [B, T, H, W]", f"{shape(inp['input_shape'])} (T frames × H individuals × "
                               "W features; the model adds the channel axis)"],
        ["patch kernel (pt, ph, pw)", f"{triple(inp['patch_kernel'])}, stride = kernel, "
                                      "no padding"],
        ["token grid (T', H', W')", triple(inp["token_grid"])],
        ["tokens N0", inp["num_tokens"]],
        ["one token covers", inp["token_covers"]],
        ["token width C0", inp["embed_dim"]],
        ["patch embedding parameters", count(inp["patch_embed_parameters"])],
        ["position embedding parameters", f"{count(inp['position_embedding_parameters'])}"
         + (" (separable: spatial + temporal)" if inp["sep_pos_embed"] else "")],
    ])

    # Masking.
    lines += ["", "## 2. Masking (training)", ""]
    lines += table(["quantity", "value"], [
        ["mask unit M (tokens)", f"{triple(masking['mask_unit'])} = "
                                 f"{masking['mask_unit_tokens']} tokens (product of all "
                                 "q-strides)"],
        ["mask unit in input units", f"{triple(masking['mask_unit_input'])}: "
                                     f"{masking['mask_unit_covers']}"],
        ["mask grid G", triple(masking["mask_grid"])],
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
            span(stage["blocks"]),
            stage["tokens_full"],
            stage["tokens_masked"],
            triple(stage["grid"]),
            triple(stage["window"]),
            stage["dim"],
            f"{stage['num_heads']} ({stage['head_dim']})",
            f"{stage['dim']} → {stage['out_dim']}",
            count(stage["parameters"]),
        ]
        if built:
            flag = "" if stage["parameters_model"] == stage["parameters"] else " **MISMATCH**"
            row.append(count(stage["parameters_model"]) + flag)
        rows.append(row)
    lines += table(header, rows, "llrrllrllr" + ("r" if built else ""))
    lines += [""]
    lines += table(["level", "frames per token τ_k", "one token covers", "receptive field",
                     "attention (block: type)", "output (full pass)", "output (masked pass)"], [
        [f"L{stage['stage']}", stage["frames_per_token"], stage["token_covers"],
         f"{triple(stage['receptive_field'])}: {stage['receptive_field_covers']}",
         "; ".join(stage["attention"]), shape(stage["output_full"]),
         shape(stage["output_masked"])]
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
        parameters = count(block["parameters"])
        if built and block["parameters_model"] != block["parameters"]:
            parameters += f" **MISMATCH: built {count(block['parameters_model'])}**"
        rows.append([
            block["index"], block["stage"], f"{block['input_dim']} → {block['dim']}",
            block["num_heads"], block["head_dim"], block["q_stride"],
            triple(block["q_stride_3d"]), attention, block["window_size"],
            f"{block['masked_tokens_in']} / {block['masked_windows']} / "
            f"{block['masked_queries_per_window']} / {block['masked_keys_per_window']}",
            f"{block['full_tokens_in']} / {block['full_windows']}",
            "yes" if block["has_projection"] else "no", parameters,
        ])
    lines += table(header, rows, "rrlrrrllrllll")
    lines += ["", "(lag): the lag-by-one rule. The first block of stage k ≥ 1 pools "
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
            role = f"Φ{level}: window kernel m{level} = {triple(entry['window'])} ({state})"
            parameters = count(entry["parameters_model"])
        else:
            role, parameters = entry["role"], "—"
        rows.append([f"L{level}", shape(entry["input"]), role, parameters])
    lines += table(["level", "masked level", "fusion", "head parameters (built model)"], rows)
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
                f"fusion heads of {fused} exist ({count(fusion['parameters'])} parameters) "
                "but are unused and frozen (they receive no gradient).")
    lines += [text, f"The latent goes through encoder_norm: z = {shape(decoder['latent'])}.", ""]

    # Decoder.
    lines += ["## 7. Decoder and prediction target", ""]
    frames, rows_, features = decoder["label_patch"]
    pred_kernel = decoder["decoder_pred_kernel"]
    lines += table(["quantity", "value"], [
        ["decoder tokens", f"U = {decoder['num_tokens']} (mask grid {triple(decoder['grid'])}): "
                           f"{decoder['num_kept_units']} kept units + "
                           f"{decoder['num_mask_tokens']} mask tokens"],
        ["width / heads / depth", f"{decoder['embed_dim']} / {decoder['num_heads']} / "
                                  f"{decoder['depth']}"],
        ["pred_stride P", decoder["pred_stride"]],
        ["label patch (a, b, c)", f"{triple(decoder['label_patch'])} = "
                                  f"({plural(frames, 'time-strided frame')}, "
                                  f"{plural(rows_, 'row')} (individuals), "
                                  f"{plural(features, 'feature')})"],
        ["one prediction reconstructs", decoder["prediction_covers"]],
        ["patch-t stride", f"{decoder['patch_t_stride']}: the target is x[:, 0::"
                           f"{decoder['patch_t_stride']}], the first frame of each temporal "
                           "patch"],
        ["frames spanned by one prediction", decoder["frames_per_prediction"]],
        ["prediction", f"{shape(decoder['pred_shape'])}"
         + (f" (decoder_pred kernel {shape(pred_kernel)})" if pred_kernel else "")],
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
        cells = [row["part"], count(row["geometry"])]
        if built:
            ok = row["model"] is None or row["model"] == row["geometry"]
            cells += [count(row["model"]), "ok" if ok else "**MISMATCH**"]
        rows.append(cells)
    lines += table(header, rows, "lr" + ("rl" if built else ""))
    lines.append("")
    return "\n".join(lines)



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
