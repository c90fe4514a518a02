"""Bad flag values for every command: each prints one line naming the flag (or file) and the
rule, and exits non-zero; none prints a Python traceback.

Each command runs in one subprocess (`command_cases.py`) that tries all of its cases, so the
slow part, importing Keras and a backend, happens once per command. The cases are the classes
of fault found by trying every flag: numbers that are not numbers, empty lists, empty paths,
missing or damaged files, values out of range, multipliers too small for the model, NaN in
the data, and checkpoints with non-finite weights or misspelled configuration keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import FIXTURES, REPOSITORY, load_golden

from keras_hbehavemae.data import write_synthetic_dataset

# The flag checks come before any backend work: one leg runs them.
pytestmark = [pytest.mark.slow, pytest.mark.backend_independent]

PRESET = "hbehavemae_synthetic_mice"  # built-in, trained weights, 300 frames × 3 mice
RUNNER = os.path.join(os.path.dirname(__file__), "command_cases.py")


def run_cases(command: str, cases: list[list[str]], folder) -> list[dict]:
    """Runs `cases` of `hbehavemae <command>` in one process; returns one result per case."""
    path = folder / f"{command}_cases.json"
    path.write_text(json.dumps(cases))
    environment = {**os.environ, "KERAS_BACKEND": keras.config.backend(),
                   "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get(
                       "PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, RUNNER, command, str(path)], cwd=str(folder),
                               env=environment, capture_output=True, text=True, timeout=900)
    results = [json.loads(line) for line in completed.stdout.splitlines()
               if line.startswith("{")]
    assert len(results) == len(cases), completed.stderr[-3000:]
    return results


def check(result: dict, status: int, message: str) -> None:
    """The case failed with `status`, a one-line error holding `message`, and no traceback."""
    assert result["traceback"] is None, result["traceback"]
    errors = [line for line in result["stderr"].splitlines()
              if line.startswith(("error: ", "FATAL Flags parsing error"))]
    assert result["status"] == status, (result["argv"], result["stderr"][-2000:])
    assert errors and message in errors[-1], (message, result["stderr"][-2000:])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The files the cases read: a synthetic data folder, one with a NaN frame, a checkpoint
    with a NaN weight, configurations and a binary 'log'."""
    folder = tmp_path_factory.mktemp("commands")
    data = folder / "data"
    write_synthetic_dataset(data, 2, 2, num_frames_per_sequence=300, seed=3)
    content = np.load(data / "test.npy", allow_pickle=True).item()  # our own test file
    name = sorted(content["sequences"])[1]
    content["sequences"][name]["keypoints"][10, 0, 4, 1] = np.nan
    (folder / "nan_data").mkdir()
    np.save(folder / "nan_data" / "test.npy", content, allow_pickle=True)
    config, arrays, _ = load_golden("hbehavemae_tiny_multi")
    state = {key: value for key, value in arrays.items() if key.startswith("param/")}
    state["param/decoder_pred.bias"] = np.full_like(state["param/decoder_pred.bias"], np.nan)
    np.savez(folder / "nan_weights.npz", **state)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    misspelled = {**config.to_dict(), "init_num_head": 2}
    del misspelled["init_num_heads"]
    (folder / "misspelled.json").write_text(json.dumps(misspelled))
    (folder / "broken.json").write_text("{not json")
    (folder / "list.json").write_text("[1, 2]")
    (folder / "dict.json").write_text('{"sequences": ["a"]}')
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 4)
    return {"folder": folder, "data": str(data), "nan_data": str(folder / "nan_data"),
            "nan_sequence": name, "config": str(folder / "config.json")}


def test_embed_and_evaluate(inputs):
    folder, data = inputs["folder"], inputs["data"]
    good = folder / "embeddings"
    base = ["--preset", PRESET, "--path_to_data_dir", data, "--mode=fast"]
    embed = run_cases("embed", [
        [*base, "--output_dir", str(good)],
        [*base, "--output_dir", str(folder / "e1"), "--levels=a"],
        [*base, "--output_dir", str(folder / "e2"), "--levels="],
        [*base, "--output_dir="],
        [*base, "--output_dir", str(folder / "e3"), "--batch_size=0"],
        ["--preset", PRESET, "--path_to_data_dir", inputs["nan_data"], "--mode=fast",
         "--output_dir", str(folder / "e4")],
    ], folder)
    assert embed[0]["status"] == 0, embed[0]["stderr"][-2000:]
    check(embed[1], 1, "--levels: ['a'] is invalid: must be a comma-separated list of integers")
    check(embed[2], 1, "--levels: [] is invalid: give at least one value")
    check(embed[3], 1, "--output_dir: '' is invalid: must name a file or folder")
    check(embed[4], 1, "flag --batch_size=0: 0 is not a positive integer")
    check(embed[5], 1, f"sequences: sequence '{inputs['nan_sequence']}' (index 1) has 1 bad "
                       "frame, the first is frame 10 (NaN)")
    assert not os.path.exists(folder / "e4")

    base = ["--embeddings", str(good), "--output_dir", str(folder / "probes")]
    evaluate = run_cases("evaluate", [
        [*base, "--seeds=a"], [*base, "--seeds="], [*base, "--seeds=-1"],
        [*base, "--alphas=x"], [*base, "--alphas=-1"], [*base, "--tasks="],
        [*base, "--evaluation_sequences", str(folder / "missing.json")],
        [*base, "--evaluation_sequences", str(folder / "dict.json")],
    ], folder)
    check(evaluate[0], 1, "--seeds: ['a'] is invalid: must be a comma-separated list of integers")
    check(evaluate[1], 1, "--seeds: [] is invalid: give at least one value")
    check(evaluate[2], 1, "--seeds: ['-1'] is invalid: every value must be at least 0")
    check(evaluate[3], 1, "--alphas: ['x'] is invalid: must be a comma-separated list of numbers")
    check(evaluate[4], 1, "--alphas: ['-1'] is invalid: every value must be a finite number > 0")
    check(evaluate[5], 1, "--tasks: [] is invalid: name at least one task")
    check(evaluate[6], 1, "--evaluation_sequences '" + str(folder / "missing.json")
          + "': no such file")
    check(evaluate[7], 1, "expected a non-empty JSON list of sequence names")


def test_convert(inputs):
    folder = inputs["folder"]
    checkpoint = str(FIXTURES / "hbehavemae_tiny_multi.npz")
    nan_checkpoint = str(folder / "nan_weights.npz")
    results = run_cases("convert", [
        ["--checkpoint", checkpoint, "--output", str(folder / "c0"), "--config",
         str(folder / "missing.json")],
        ["--checkpoint", checkpoint, "--output", str(folder / "c1"), "--config",
         str(folder / "broken.json")],
        ["--checkpoint", checkpoint, "--output", str(folder / "c2"), "--config",
         str(folder / "list.json")],
        ["--checkpoint", checkpoint, "--output", str(folder / "c3"), "--config",
         str(folder / "misspelled.json")],
        ["--checkpoint", checkpoint, "--output=", "--config", inputs["config"]],
        ["--checkpoint", nan_checkpoint, "--output", str(folder / "c4"), "--config",
         inputs["config"]],
        ["--checkpoint", nan_checkpoint, "--output", str(folder / "c5"), "--config",
         inputs["config"], "--allow_non_finite_weights"],
    ], folder)
    check(results[0], 1, "--config '" + str(folder / "missing.json") + "': no such file")
    check(results[1], 1, "': not a readable JSON file (Expecting property name")
    check(results[2], 1, "': [1, 2] is invalid: expected a mapping of parameter names to values")
    check(results[3], 1, "unknown key 'init_num_head' (did you mean 'init_num_heads'?)")
    check(results[4], 1, "--output: '' is invalid: must name a file or folder")
    check(results[5], 1, "nan_weights.npz: the checkpoint holds non-finite weights (NaN or inf) "
                         "in 1 of 88 tensors: decoder_pred.bias (48 of 48)")
    assert not os.path.exists(folder / "c4")
    assert results[6]["status"] == 0 and "converted as it is" in results[6]["stderr"], (
        results[6]["stderr"][-2000:])


def test_data_flow_plots_and_export(inputs):
    folder, data = inputs["folder"], inputs["data"]
    flow = run_cases("data_flow", [
        ["--config", "shot7m2", "--no_build", "--dim_mul=0.01"],
        ["--config", "shot7m2", "--no_build", "--head_mul=0.1"],
        ["--config", "shot7m2", "--no_build", "--mlp_ratio=0.001"],
        ["--config", "shot7m2", "--no_build", "--mlp_ratio=0.2", "--decoder_embed_dim=4"],
    ], folder)
    check(flow[0], 2, "dim_mul: 0.01 shrinks stage 1 to width 0")
    check(flow[1], 2, "head_mul: 0.1 leaves stage 1 0 heads")
    check(flow[2], 2, "mlp_ratio: 0.001 gives the blocks of stage 0 (width 96) an MLP hidden "
                      "width int(96 · 0.001) = 0")
    check(flow[3], 2, "mlp_ratio: 0.2 is invalid: gives the decoder blocks (width "
                      "decoder_embed_dim = 4) an MLP hidden width int(4 · 0.2) = 0")

    training = run_cases("plot_training", [
        ["--log", str(folder / "missing.jsonl"), "--output", str(folder / "p.png")],
        ["--log", str(folder / "binary.csv"), "--output", str(folder / "p.png")],
    ], folder)
    check(training[0], 1, "missing.jsonl: no such training log")
    check(training[1], 1, "binary.csv: not a text file; expected a CSV or JSON training log")

    base = ["--preset", PRESET, "--data", os.path.join(data, "test.npy")]
    reconstruction = run_cases("plot_reconstruction", [
        [*base, "--keypoints=a", "--output", str(folder / "r0.png")],
        [*base, "--dpi=0", "--output", str(folder / "r1.png")],
        ["--preset", PRESET, "--data", os.path.join(inputs["nan_data"], "test.npy"),
         "--sequence", "1", "--output", str(folder / "r2.png")],
    ], folder)
    check(reconstruction[0], 1, "--keypoints: ['a'] is invalid")
    check(reconstruction[1], 1, "flag --dpi=0: 0 is not a positive integer")
    check(reconstruction[2], 1, f"sequence '{inputs['nan_sequence']}', frames [0, 300): "
                                "keypoints: sample 0 has 1 bad frame, the first is frame 10 (NaN)")
    assert not os.path.exists(folder / "r2.png")

    export = run_cases("export", [
        ["--preset", PRESET, "--output_dir", str(folder / "x0"), "--batch_size=0"],
    ], folder)
    check(export[0], 1, "batch_size: 0")


def test_pretrain(inputs):
    folder, data = inputs["folder"], inputs["data"]
    tiny = ["--input_size", "300", "3", "24", "--patch_kernel=3,1,24", "--stages", "1", "1",
            "--q_strides=2,1,1", "--mask_unit_attn", "True", "False", "--init_embed_dim=8",
            "--out_embed_dims=8,16", "--decoder_embed_dim=8", "--batch_size=2",
            "--steps_per_epoch=1", "--epochs=2", "--warmup_epochs=0"]

    def case(*argv, output="out"):
        return ["--dataset=synthetic", f"--path_to_data_dir={data}",
                f"--output_dir={folder / output}", *tiny, *argv]

    results = run_cases("pretrain", [
        case("--lr=1e-3", "--seed=-1"),
        case("--lr=1e-3", "--min_lr=0.1"),
        case("--clip_grad=-1"),
        case("--lr=1e-3", "--sliding_window=0"),
        ["--dataset=synthetic", "--path_to_data_dir=", f"--output_dir={folder / 'out'}", *tiny],
    ], folder)
    check(results[0], 1, "seed: -1 is invalid: must be an integer in [0, 2**32)")
    check(results[1], 1, "min_lr: 0.1 is invalid: must not exceed the peak lr = 0.001")
    check(results[2], 1, "clip_grad: -1.0 is invalid: must be a finite number >= 0")
    check(results[3], 1, "sliding_window must be a positive integer, got 0")
    check(results[4], 1, "--path_to_data_dir: '' is invalid: must name a file or folder")
    assert not os.path.exists(folder / "out" / "run_config.json")
