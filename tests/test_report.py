"""Tests of the data-flow report (`keras_hbehavemae.report`, and `hbehavemae data-flow`
through its `scripts/data_flow.py` shim).

Expected numbers are literals of the published configurations (docs/model.md, "Parameter counts
of the published configurations"), not recomputed.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from keras_hbehavemae.models.config import HBehaveMAEConfig, published_configuration
from keras_hbehavemae.presets import PUBLISHED_PRESETS, published_parameters
from keras_hbehavemae.report import data_flow_report, data_flow_tables, render_data_flow

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "data_flow.py"

TINY = dict(input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
            q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
            decoder_embed_dim=16, mask_ratio=0.75)

_TABLES = {}


def tables_of(name: str) -> dict:
    """Geometry-only tables of a published configuration (cached; no model is built)."""
    if name not in _TABLES:
        _TABLES[name] = data_flow_tables(published_configuration(name), build_model=False,
                                         title=name)
    return _TABLES[name]


def report_of(name: str) -> str:
    return render_data_flow(tables_of(name))


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


# ---------------------------------------------------------------------------------------------
# Shot7M2 (pred_stride 288, not 192).


def test_shot7m2_token_chain_widths_and_masking():
    tables, report = tables_of("shot7m2"), report_of("shot7m2")
    assert [stage["tokens_full"] for stage in tables["stages"]] == [4800, 600, 50]
    assert [stage["tokens_masked"] for stage in tables["stages"]] == [1440, 180, 15]
    assert [stage["dim"] for stage in tables["stages"]] == [96, 192, 384]
    assert [stage["out_dim"] for stage in tables["stages"]] == [78, 128, 256]
    assert "4800 → 600 → 50" in report
    assert "1440 → 180 → 15" in report
    assert "Widths 96 → 192 → 384 (heads 2 → 4 → 8), projected to 78 / 128 / 256" in report
    masking = tables["masking"]
    assert (masking["num_mask_units"], masking["num_kept_units"]) == (50, 15)
    assert masking["mask_unit"] == [4, 1, 24] and masking["mask_unit_input"] == [8, 1, 72]
    assert "| mask units U | 50 |" in report
    assert "| kept units K = int(U·(1 − mask_ratio)) | 15 |" in report
    assert "| mask ratio (configured) | 0.700 |" in report
    assert "| effective mask ratio (U − K)/U | 0.700 |" in report
    assert [stage["frames_per_token"] for stage in tables["stages"]] == [2, 4, 8]
    assert [stage["receptive_field"] for stage in tables["stages"]] == [
        [8, 1, 72], [400, 1, 72], [400, 1, 72]]


def test_shot7m2_pred_stride_is_288_never_192():
    tables, report = tables_of("shot7m2"), report_of("shot7m2")
    decoder = tables["decoder"]
    assert decoder["pred_stride"] == 288
    assert decoder["label_patch"] == [4, 1, 72]
    assert decoder["prediction_covers"] == (
        "4 time-strided frames (every 2nd frame: 8j, 8j+2, 8j+4, 8j+6) × 1 individual × "
        "72 features = 288")
    assert "| pred_stride P | 288 |" in report
    assert "pred [B, 50, 288]" in report
    # 192 is a width of Shot7M2 (D_1), but never the prediction width.
    for line in report.splitlines():
        if re.search(r"pred_stride|decoder_pred|\bpred\b|prediction|label patch", line):
            assert "192" not in line, line


def test_shot7m2_lag_by_one_rule_is_visible():
    tables, report = tables_of("shot7m2"), report_of("shot7m2")
    block = tables["blocks"][2]
    assert block["attention"] == "mask-unit" and block["lagged"]
    assert (block["q_stride"], block["q_stride_3d"], block["window_size"]) == (8, [2, 1, 4], 12)
    assert (block["masked_tokens_in"], block["masked_windows"],
            block["masked_queries_per_window"], block["masked_keys_per_window"]) == (
        1440, 15, 12, 96)
    assert not tables["blocks"][3]["lagged"] and tables["blocks"][3]["attention"] == "global"
    rows = {int(line.split("|")[1]): line for line in report.splitlines()
            if re.match(r"\| \d+ \| \d \| \d+ → \d+ \|", line)}
    assert len(rows) == 9
    assert "| mask-unit (lag) |" in rows[2] and "| 1440 / 15 / 12 / 96 |" in rows[2]
    assert "| global (lag) |" in rows[5] and "| 180 / 1 / 15 / 180 |" in rows[5]
    assert "(lag)" not in rows[3]
    assert "pooled in block 2 (mask-unit attention, lag)" in tables["diagram"]


def test_shot7m2_single_decoding_marks_fusion_unused():
    tables, report = tables_of("shot7m2"), report_of("shot7m2")
    assert tables["fusion"]["fused_levels"] == [0, 1]
    assert [entry["window"] for entry in tables["fusion"]["levels"]] == [
        [4, 1, 24], [2, 1, 6], [1, 1, 1]]
    assert "unused and frozen" in report
    assert "L2 [B, 15, 1, 1, 1, 256] --as is--> [B, 15, 256]" in tables["diagram"]
    totals = {row["part"]: row["geometry"] for row in tables["parameters"]["rows"]}
    assert totals["encoder"] == 8_624_814 and totals["fusion_heads"] == 2_310_656
    assert totals["total"] == 11_211_086


@pytest.mark.parametrize("name, pred_stride, kept, units, covers", [
    ("mabe22", 360, 7, 60, "5 time-strided frames (every 3rd frame: 15j, 15j+3, 15j+6, 15j+9, "
                           "15j+12) × 3 individuals × 24 features = 360"),
    ("hbabel", 1125, 2, 10, "15 time-strided frames (every 3rd frame: 45j, 45j+3, 45j+6, …, "
                            "45j+42) × 1 individual × 75 features = 1125"),
])
def test_published_pred_strides_and_kept_units(name, pred_stride, kept, units, covers):
    tables, report = tables_of(name), report_of(name)
    assert tables["decoder"]["pred_stride"] == pred_stride
    assert tables["masking"]["num_kept_units"] == kept
    assert tables["masking"]["num_mask_units"] == units
    assert tables["decoder"]["prediction_covers"] == covers
    assert f"| pred_stride P | {pred_stride} |" in report
    assert f"| kept units K = int(U·(1 − mask_ratio)) | {kept} |" in report
    assert "summed left to right" in report  # decoding_strategy="multi"


def test_published_configurations_are_the_spec_settings():
    assert sorted(PUBLISHED_PRESETS) == ["hbabel", "mabe22", "shot7m2"]
    shot = published_parameters("shot7m2")
    assert (shot["decoding_strategy"], shot["norm_loss"], shot["mask_ratio"]) == (
        "single", False, 0.70)
    assert published_parameters("mabe22")["norm_loss"] is True
    with pytest.raises(ValueError, match="is not one of"):
        published_configuration("shot7m3")


def test_json_format_round_trips():
    text = data_flow_report(published_configuration("hbabel"), build_model=False,
                            format="json")
    content = json.loads(text)
    assert content["decoder"]["pred_stride"] == 1125 and content["mismatches"] == []
    with pytest.raises(ValueError, match="format"):
        data_flow_report(published_configuration("hbabel"), build_model=False, format="html")


def test_non_hierarchical_last_level_appears_twice():
    config = HBehaveMAEConfig(**dict(TINY, non_hierarchical=True, q_strides="1,1,1",
                                     out_embed_dims=(8, 8, 8), mask_ratio=0.9))
    tables = data_flow_tables(config, build_model=False)
    roles = [(entry["level"], entry["role"]) for entry in tables["fusion"]["levels"]]
    assert roles == [(0, "fusion head"), (1, "fusion head"), (2, "fusion head"),
                     (2, "added as is")]
    assert "appears twice" in render_data_flow(tables)


# ---------------------------------------------------------------------------------------------
# Built models: parameter counts cross-checked against the geometry.


def test_tiny_built_counts_equal_geometry():
    tables = data_flow_tables(TINY, build_model=True)
    assert tables["model_built"] and tables["mismatches"] == []
    for stage in tables["stages"]:
        assert stage["parameters_model"] == stage["parameters"]
    for block in tables["blocks"]:
        assert block["parameters_model"] == block["parameters"]
    totals = {row["part"]: (row["geometry"], row["model"]) for row in tables["parameters"]["rows"]}
    assert totals["encoder"] == (75_748, 75_748)
    assert totals["total"] == (83_300, 83_300)
    assert tables["decoder"]["decoder_pred_kernel"] == [16, 48]
    report = render_data_flow(tables)
    assert "all counts agree" in report and "MISMATCH" not in report


def test_shot7m2_built_backbone_counts_equal_geometry():
    from keras_hbehavemae import HBehaveMAEBackbone

    config = published_configuration("shot7m2")
    backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
    tables = data_flow_tables(config, model=backbone)
    assert tables["mismatches"] == []
    # Blocks of each stage plus its projection.
    expected = [231_246, 1_322_432, 7_048_960]
    assert [stage["parameters"] for stage in tables["stages"]] == expected
    assert [stage["parameters_model"] for stage in tables["stages"]] == expected
    totals = {row["part"]: row["model"] for row in tables["parameters"]["rows"]}
    assert totals["encoder"] == 8_624_814


def test_disagreeing_model_is_reported_loudly():
    from keras_hbehavemae import HBehaveMAEBackbone

    other = HBehaveMAEBackbone(**HBehaveMAEConfig(**dict(TINY, mlp_ratio=2.0)).encoder_kwargs())
    tables = data_flow_tables(TINY, model=other)
    assert any(item.startswith("stage 0 parameters") for item in tables["mismatches"])
    report = render_data_flow(tables)
    assert report.splitlines()[2].startswith("> **ERROR")
    assert "**MISMATCH**" in report


# ---------------------------------------------------------------------------------------------
# Invalid configurations and the script.


def test_invalid_configuration_raises_its_value_error():
    bad = dict(published_parameters("mabe22"), q_strides="5,1,1;1,4,1")
    with pytest.raises(ValueError, match=r"^q_strides: mask-unit size \(5, 4, 1\)"):
        data_flow_report(bad, build_model=False)
    with pytest.raises(ValueError, match=r"^mask_ratio: .*training needs 1 <= K < U"):
        data_flow_report(dict(published_parameters("hbabel"), mask_ratio=0.95),
                         build_model=False)


@pytest.mark.slow
@pytest.mark.backend_independent  # --no_build: geometry only
def test_script_invalid_configuration_exits_2_with_the_error_and_suggestions():
    result = run_script("--config", "mabe22", "--q_strides", "5,1,1;1,4,1", "--no_build")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [index for index, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert lines[errors[0]].startswith("error: q_strides: mask-unit size (5, 4, 1)")
    # then what would divide: the individuals axis holds 3, no mask unit of 4 fits
    assert lines[errors[0] + 1:] == [
        "  H: 3 individuals is not a multiple of patch 1 x mask unit 4 = 4; valid patch "
        "sizes on this axis: none"]


@pytest.mark.slow
@pytest.mark.backend_independent  # --no_build: geometry only
def test_script_prints_the_shot7m2_report(tmp_path):
    output = tmp_path / "shot7m2.md"
    result = run_script("--config", "shot7m2", "--no_build", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# hBehaveMAE data flow: Shot7M2")
    assert "| pred_stride P | 288 |" in result.stdout
    assert "4800 → 600 → 50" in result.stdout
    assert "```text\ninput x [B, 400, 1, 72]" in result.stdout
    assert output.read_text() == result.stdout
