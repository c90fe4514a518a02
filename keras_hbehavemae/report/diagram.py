"""The ASCII diagram of the data-flow report: input, stages, fusion and decoder, top to bottom."""

from __future__ import annotations

from keras_hbehavemae.report.formatting import box, extent, plural, shape, triple


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



def diagram(tables: dict) -> str:
    inp, masking, decoder, fusion = (tables["input"], tables["masking"], tables["decoder"],
                                     tables["fusion"])
    grid = inp["token_grid"]
    down = "  |"
    lines = [
        f"input x {shape(inp['input_shape'])}   (T frames x H individuals x W features)",
        down + f"  patch embedding: kernel = stride = {triple(inp['patch_kernel'])}, "
        f"width C0 = {inp['embed_dim']}, + position embedding",
        "  v",
        f"token grid (T', H', W') = {triple(grid)}: N0 = {inp['num_tokens']} tokens; "
        f"1 token = {extent(inp['token_extent'], inp['input_size'], ' x ')}",
        down + "  mask units over the token grid (time axis; one '.' = one token time step"
        f" of {grid[1]} x {grid[2]} tokens):",
        *_timeline(tables, down + "    "),
        down + f"    M = {triple(masking['mask_unit'])} tokens = "
        f"{triple(masking['mask_unit_input'])} input units; G = "
        f"{triple(masking['mask_grid'])}, U = {masking['num_mask_units']} units",
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
                text = (f"q-stride {triple(entry['q_stride'])} = x{entry['flat']} fewer tokens,"
                        f" pooled in block {entry['block']} ({entry['attention']} attention,"
                        " lag)")
            else:
                text = (f"no pooling (block {entry['block']}, {entry['attention']} attention,"
                        " lag)")
            lines += [down + "  " + text, "  v"]
        first, final = stage["blocks"][0], stage["blocks"][-1]
        span = f"block {first}" if first == final else f"blocks {first}-{final}"
        lines += box([
            f"stage {index} ({span}): width {stage['dim']}, {stage['num_heads']} heads",
            f"grid R{index} {triple(stage['grid'])} = {stage['tokens_full']} tokens "
            f"(masked pass: {stage['tokens_masked']})",
            f"1 token = {extent(stage['token_extent'], inp['input_size'], ' x ')}",
            f"window m{index} {triple(stage['window'])}; " + _attention_runs(stage),
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
        source = f"  L{level} {shape(entry['input'])}"
        if entry["role"] == "fusion head":
            used = "" if fusion["heads_used"] else "  (unused)"
            lines.append(f"{source} --Phi{level}, window {triple(entry['window'])}--> "
                         f"[B, {kept}, {decoder['latent'][-1]}]{used}")
        elif entry["role"] == "added as is":
            lines.append(f"{source} --as is--> [B, {kept}, {decoder['latent'][-1]}]")
        else:
            lines.append(f"{source}   (not used by the decoder)")
    lines += [
        "  v",
        f"encoder_norm -> z {shape(decoder['latent'])} -> decoder_embed -> "
        f"[B, {kept}, {decoder['embed_dim']}]",
        down + f"  + {decoder['num_mask_tokens']} mask tokens -> "
        f"[B, {decoder['num_tokens']}, {decoder['embed_dim']}] in mask-grid order, "
        "+ decoder_pos_embed",
        down + f"  {plural(decoder['depth'], 'decoder block')}: width {decoder['embed_dim']}, "
        f"{plural(decoder['num_heads'], 'head')}, global attention",
        down + f"  decoder_norm, decoder_pred {decoder['embed_dim']} -> {decoder['pred_stride']}",
        "  v",
        f"pred {shape(decoder['pred_shape'])}: one row per mask unit =",
        "  " + decoder["prediction_covers"].replace("×", "x").replace("…", "..."),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- markdown


