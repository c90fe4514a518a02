"""Embedding extraction (docs/model.md, "Embedding extraction (exact and fast modes)"): exact
and fast modes against explicit-window references, PCA, submission files and the extraction
script, on every backend."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import TINY, compiled, to_numpy
from window_references import edge_pad

from keras_hbehavemae import HBehaveMAEBackbone
from keras_hbehavemae.embeddings import (
    apply_pca_limit,
    count_windows,
    embed_sequence,
    embed_sequences,
    embedding_dims,
    encode_levels,
    fit_pca,
    level_rows,
    write_submission,
)
from keras_hbehavemae.embeddings.modes import fast_mode_plan, fast_mode_stride_and_padding
from keras_hbehavemae.presets.folder import save_to_preset

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_FRAMES = TINY["input_size"][0]  # 32


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(0)
    return HBehaveMAEBackbone(**TINY)


def sequence(length, seed=0):
    return np.random.default_rng(seed).standard_normal((length, 4, 12)).astype("float32")


def reference_exact(backbone, seq, embedsum=False, every=1):
    """Slow, literal exact mode: every window materialised, each frame averaged explicitly.
    With `every` = k > 1, only the windows at padded starts 0, k, 2k, … (strided mode)."""
    length, frames = seq.shape[0], NUM_FRAMES
    padded = edge_pad(seq, frames - 1, frames - 1)
    starts = list(range(0, length + frames - 1, every))
    windows = np.stack([padded[w:w + frames] for w in starts])
    result = []
    for k, level_map in enumerate(encode_levels(backbone, windows)):
        tau = backbone.geometry.levels[k].frames_per_token
        rows = np.repeat(level_rows(level_map, embedsum), tau, axis=1)  # [windows, T, D]
        per_frame = []
        for frame in range(length):
            padded_frame = frame + frames - 1
            covering = [rows[i, padded_frame - w] for i, w in enumerate(starts)
                        if w <= padded_frame < w + frames]
            assert len(covering) in (frames // every, -(-frames // every))
            per_frame.append(np.mean(covering, axis=0))
        result.append(np.stack(per_frame))
    return result


def reference_fast(backbone, seq, embedsum=False):
    """Literal published fast mode: stride windows, centre token repeated, re-pad, truncate."""
    length, frames = seq.shape[0], NUM_FRAMES
    stride = 2 if frames % 2 == 0 else 1
    pad = (frames - stride) // 2
    padded = edge_pad(seq, pad, pad)
    count = max((len(padded) - frames) // stride + 1, 0)
    if count * stride != length:
        padded = edge_pad(padded, 0, stride)
        count = (len(padded) - frames) // stride + 1
    windows = np.stack([padded[i * stride:i * stride + frames] for i in range(count)])
    result = []
    for k, level_map in enumerate(encode_levels(backbone, windows)):
        tau = backbone.geometry.levels[k].frames_per_token
        token = level_rows(level_map, embedsum)[:, pad // tau]  # [count, D]
        result.append(np.repeat(token, stride, axis=0)[:length])
    return result


# ------------------------------------------------------------------ encode_levels
def test_encode_levels_matches_a_forward_pass(backbone):
    windows = sequence(3 * NUM_FRAMES).reshape(3, NUM_FRAMES, 4, 12)
    expected = [to_numpy(level) for level in compiled(backbone, backbone)(windows)]
    got = encode_levels(backbone, windows)
    assert [level.shape for level in got] == [(3, *lv.grid, lv.out_dim)
                                              for lv in backbone.geometry.levels]
    for level, reference in zip(got, expected, strict=True):
        assert level.dtype == np.float32
        np.testing.assert_allclose(level, reference, atol=1e-5)
    flat = encode_levels(backbone, windows.reshape(3, NUM_FRAMES, 48), levels=[2])
    np.testing.assert_array_equal(flat[0], got[2])


# ------------------------------------------------------------------ exact mode
@pytest.mark.parametrize("embedsum", [False, True])
def test_exact_mode_equals_explicit_windows(backbone, embedsum):
    seq = sequence(45)
    got = embed_sequence(backbone, seq, mode="exact", embedsum=embedsum)  # 76 windows, 2 batches
    expected = reference_exact(backbone, seq, embedsum)
    assert [e.shape for e in got] == [(45, d) for d in embedding_dims(backbone,
                                                                      embedsum=embedsum)]
    for level, reference in zip(got, expected, strict=True):
        assert level.dtype == np.float32
        np.testing.assert_allclose(level, reference, atol=1e-5, rtol=1e-5)


def test_embedding_dims_follow_the_geometry(backbone):
    # D_k = H_k·W_k·out_k: (4·4·8, 4·2·12, 2·2·16); embedsum: out_k.
    assert embedding_dims(backbone) == [128, 96, 64]
    assert embedding_dims(backbone, embedsum=True) == [8, 12, 16]
    assert embedding_dims(backbone, levels=[2, 0]) == [64, 128]


def test_exact_mode_does_not_depend_on_batch_size(backbone):
    seq = sequence(40, seed=1)
    # Few distinct sizes: each one is a new compiled shape (slow under JAX).
    results = [embed_sequence(backbone, seq, batch_size=size) for size in (64, 1, 8)]
    for other in results[1:]:
        for level, reference in zip(other, results[0], strict=True):
            np.testing.assert_allclose(level, reference, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["exact", "fast", "strided"])
def test_on_batch_reports_progress_over_the_windows(backbone, mode):
    reports = []
    embed_sequence(backbone, sequence(45), mode=mode, batch_size=16,
                   on_batch=lambda done, total: reports.append((done, total)))
    total = count_windows(45, 32, mode)
    assert reports[-1] == (total, total) and len(reports) == -(-total // 16)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)


@pytest.mark.parametrize("length", [1, 2, 7, 31])
def test_sequences_shorter_than_a_window(backbone, length):
    seq = sequence(length, seed=length)
    exact = embed_sequence(backbone, seq, levels=[0, 2])
    for level, reference in zip(exact, [r for k, r in enumerate(
            reference_exact(backbone, seq)) if k in (0, 2)], strict=True):
        assert level.shape[0] == length
        np.testing.assert_allclose(level, reference, atol=1e-5, rtol=1e-5)
    fast = embed_sequence(backbone, seq, mode="fast")
    assert [e.shape for e in fast] == [(length, d) for d in embedding_dims(backbone)]


def test_levels_argument_selects_and_orders(backbone):
    seq = sequence(20, seed=3)
    every = embed_sequence(backbone, seq, mode="fast")
    chosen = embed_sequence(backbone, seq, levels=[-1, 1], mode="fast")
    np.testing.assert_array_equal(chosen[0], every[2])
    np.testing.assert_array_equal(chosen[1], every[1])
    with pytest.raises(ValueError, match="not a level"):
        embed_sequence(backbone, seq, levels=[3])


def test_normalise_is_applied_to_the_windows(backbone):
    seq = 400.0 + 30.0 * sequence(20, seed=4)
    got = embed_sequence(backbone, seq, normalise=lambda v: (v - 425.0) / 425.0, mode="fast")
    expected = embed_sequence(backbone, (seq - 425.0) / 425.0, mode="fast")
    for level, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(level, reference, atol=1e-6)


def test_bad_inputs_are_rejected(backbone):
    with pytest.raises(ValueError, match="expected \\[L, 4, 12\\]"):
        embed_sequence(backbone, np.zeros((10, 3, 12), "float32"))
    bad = sequence(10)
    bad[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        embed_sequence(backbone, bad)
    with pytest.raises(ValueError, match="mode"):
        embed_sequence(backbone, sequence(10), mode="slow")


# ------------------------------------------------------------------ fast mode
@pytest.mark.parametrize("length", [45, 46])
def test_fast_mode_equals_the_spec_recipe(backbone, length):
    seq = sequence(length, seed=5)
    got = embed_sequence(backbone, seq, mode="fast", batch_size=8)
    expected = reference_fast(backbone, seq)
    for level, reference in zip(got, expected, strict=True):
        assert level.shape == reference.shape == (length, level.shape[1])
        np.testing.assert_allclose(level, reference, atol=1e-5, rtol=1e-5)


def test_fast_mode_cost_relation():
    assert fast_mode_stride_and_padding(32) == (2, 15)
    assert fast_mode_stride_and_padding(45) == (1, 22)
    for length in (1, 2, 45, 1800):
        assert count_windows(length, 32, "exact") == length + 31
        assert count_windows(length, 32, "fast") == -(-length // 2)
        assert count_windows(length, 45, "fast") == length  # odd T: stride 1
    plan = fast_mode_plan(5, num_frames=32)  # L odd: one extra window, truncated to L
    assert plan.starts.tolist() == [0, 2, 4]
    # The kept token holds window frame `pad`, which is original frame i·stride.
    assert (plan.frame_indices()[:, plan.pad_before] == plan.starts.clip(0, 4)).all()


@pytest.mark.parametrize("every", [1, 5, 8, 32])
def test_strided_mode_equals_the_literal_mean_over_every_kth_window(backbone, every):
    seq = sequence(45, seed=6)
    got = embed_sequence(backbone, seq, mode="strided", window_stride=every, batch_size=8)
    expected = reference_exact(backbone, seq, every=every)
    for level, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(level, reference, atol=1e-5, rtol=1e-5)
    if every == 1:  # stride 1 is exact mode
        for level, exact in zip(got, embed_sequence(backbone, seq), strict=True):
            np.testing.assert_allclose(level, exact, atol=1e-6)


def test_strided_mode_cost_and_arguments(backbone):
    # Shot7M2's T = 400 on an 1800-frame sequence: 2199 exact windows against 22.
    assert count_windows(1800, 400, "strided") == 22
    assert count_windows(1800, 400, "exact") / count_windows(1800, 400, "strided") > 99
    assert count_windows(45, 32, "strided", window_stride=8) == 10  # ⌈76 / 8⌉
    with pytest.raises(ValueError, match="window_stride applies to mode='strided' only"):
        embed_sequence(backbone, sequence(40), mode="exact", window_stride=4)
    for bad in (0, 33, 2.5):
        with pytest.raises(ValueError, match="window_stride must be an integer in"):
            embed_sequence(backbone, sequence(40), mode="strided", window_stride=bad)


def test_constant_sequence_without_time_position_exact_equals_fast(backbone):
    """With a constant input and no temporal position embedding, every token of every window
    is the same along time, so the mean over windows (exact) equals the centre token (fast)."""
    original = [to_numpy(w) for w in backbone.position_embedding.weights]
    try:
        for weight in backbone.position_embedding.weights:
            if "temporal" in weight.path:
                weight.assign(np.zeros(weight.shape, "float32"))
        seq = np.broadcast_to(sequence(1), (30, 4, 12)).copy()
        exact = embed_sequence(backbone, seq, mode="exact")
        fast = embed_sequence(backbone, seq, mode="fast")
        for a, b in zip(exact, fast, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
            np.testing.assert_allclose(a, np.broadcast_to(a[:1], a.shape), atol=1e-5)
    finally:
        for weight, value in zip(backbone.position_embedding.weights, original, strict=True):
            weight.assign(value)


# ------------------------------------------------------------------ many sequences
def test_embed_sequences_concatenates_in_source_order(backbone):
    data = {"b": sequence(7, 1), "a": sequence(3, 2), "c": sequence(5, 3)}
    frame_map, levels = embed_sequences(backbone, data, mode="fast", verbose=0)
    assert list(frame_map.items()) == [("b", (0, 7)), ("a", (7, 10)), ("c", (10, 15))]
    assert [level.shape for level in levels] == [(15, d) for d in embedding_dims(backbone)]
    single = embed_sequence(backbone, data["a"], mode="fast")
    for level, reference in zip(levels, single, strict=True):
        np.testing.assert_allclose(level[7:10], reference, atol=1e-6)


def test_batches_run_across_sequences_and_only_the_last_one_is_padded(backbone, monkeypatch):
    data = {"a": sequence(3, 4), "b": sequence(5, 5)}  # 34 + 36 exact windows
    separate = {name: embed_sequence(backbone, array, batch_size=32)
                for name, array in data.items()}
    batches = []
    predict = backbone.predict_on_batch
    monkeypatch.setattr(backbone, "predict_on_batch",
                        lambda windows: batches.append(len(windows)) or predict(windows))
    frame_map, levels = embed_sequences(backbone, data, batch_size=32, verbose=0)
    # 70 windows: two full batches (the second holds both sequences) and a last one of 6.
    last = 6 if keras.config.backend() == "torch" else 32  # padded where shapes compile
    assert batches == [32, 32, last]
    for name, (begin, end) in frame_map.items():
        for level, reference in zip(levels, separate[name], strict=True):
            np.testing.assert_allclose(level[begin:end], reference, atol=1e-6, rtol=1e-6)


def test_frame_accumulator_takes_windows_in_order_and_all_of_them(backbone):
    from keras_hbehavemae.embeddings.accumulation import FrameAccumulator
    from keras_hbehavemae.embeddings.modes import window_plan

    plan = window_plan(3, NUM_FRAMES, "exact")
    accumulator = FrameAccumulator(plan, "exact", taus=[2], dims=[4])
    maps = np.zeros((2, NUM_FRAMES // 2, 1, 1, 4), np.float32)
    with pytest.raises(ValueError, match="out of order"):
        accumulator.add(1, [maps])
    accumulator.add(0, [maps])
    with pytest.raises(ValueError, match="only 2 of 34 windows"):
        accumulator.result()


# ------------------------------------------------------------------ PCA
def correlated(rows=600, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.linspace(6.0, 0.5, dim)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (rng.standard_normal((rows, dim)) * scales @ rotation + 3.0).astype("float32")


def test_pca_dims_dtype_and_variance_order():
    x = correlated()
    pca = fit_pca(x, 5)
    assert pca.method == "full"
    y = pca.transform(x)
    assert y.shape == (600, 5) and y.dtype == np.float32
    variances = y.var(axis=0, ddof=1)
    assert (np.diff(variances) < 0).all()
    np.testing.assert_allclose(variances, pca.explained_variance, rtol=1e-4)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(5), atol=1e-10)
    errors = [np.mean((fit_pca(x, k).inverse_transform(fit_pca(x, k).transform(x)) - x) ** 2)
              for k in (1, 3, 5, 12)]
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[3] < 1e-8


def test_incremental_pca_equals_full_pca():
    x = correlated(rows=1000, dim=10, seed=1)
    full = fit_pca(x, 4, method="full")
    incremental = fit_pca(x, 4, method="incremental", batch_size=128)
    assert incremental.method == "incremental"
    np.testing.assert_allclose(incremental.mean, full.mean, atol=1e-9)
    np.testing.assert_allclose(incremental.components, full.components, atol=1e-8)
    np.testing.assert_allclose(incremental.explained_variance, full.explained_variance,
                               rtol=1e-9)
    np.testing.assert_allclose(incremental.transform(x), full.transform(x), atol=1e-4)


def test_pca_limits_per_level():
    rng = np.random.default_rng(2)
    levels = [rng.standard_normal((300, d)).astype("float64") for d in (150, 64, 30)]
    reduced = apply_pca_limit(levels, 64)
    assert [r.shape[1] for r in reduced] == [64, 64, 30]
    assert all(r.dtype == np.float32 for r in reduced)
    np.testing.assert_array_equal(reduced[2], levels[2].astype("float32"))
    assert fit_pca(levels[0], 64).method == "incremental"  # D ≥ 100
    assert fit_pca(levels[2], 8).method == "full"  # D < 100


# ------------------------------------------------------------------ submission files
def test_write_submission_round_trip(tmp_path):
    frame_map = {"z": (0, 4), "y": (4, 6), "x": (6, 9)}
    levels = {0: np.arange(27, dtype="float64").reshape(9, 3), 2: np.ones((9, 2), "float32")}
    paths = write_submission(tmp_path, frame_map, levels, combined=True)
    for key, expected in [("0", levels[0]), ("2", levels[2]),
                          ("combined", np.concatenate([levels[0], levels[2]], axis=1))]:
        content = np.load(tmp_path / f"test_submission_{key}.npy", allow_pickle=True).item()
        assert list(content["frame_number_map"].items()) == list(frame_map.items())
        assert content["embeddings"].dtype == np.float32
        assert np.isfinite(content["embeddings"]).all()
        np.testing.assert_array_equal(content["embeddings"], expected.astype("float32"))
        np.testing.assert_array_equal(np.load(tmp_path / f"level_{key}.npy"), content["embeddings"])
    assert json.loads(paths["frame_number_map"].read_text()) == {
        "z": [0, 4], "y": [4, 6], "x": [6, 9]}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".partial")]
    with pytest.raises(ValueError, match="one row per frame"):
        write_submission(tmp_path, frame_map, [np.ones((8, 2))])
    with pytest.raises(ValueError, match="NaN"):
        write_submission(tmp_path, frame_map, [np.full((9, 2), np.nan)])
    with pytest.raises(ValueError, match="cumulative"):
        write_submission(tmp_path, {"a": (0, 3), "b": (4, 9)}, [np.ones((9, 2))])


# ------------------------------------------------------------------ the script
@pytest.mark.slow
def test_extract_embeddings_script_end_to_end(backbone, tmp_path):
    preset = tmp_path / "preset"
    save_to_preset(backbone, preset)
    data = tmp_path / "data"
    data.mkdir()
    lengths = {"s1": 40, "s0": 9}
    for name, length in lengths.items():
        np.save(data / f"{name}.npy", sequence(length, seed=length))
    output = tmp_path / "out"
    command = [
        sys.executable, str(REPO / "scripts" / "extract_embeddings.py"),
        f"--preset={preset}", "--dataset=keypoints", f"--path_to_data_dir={data}",
        f"--output_dir={output}", "--mode=fast", "--pca", "--pca_dim=70", "--combined",
        "--batch_size=8",
        # XLA for TensorFlow on a CPU, which this small model would not get by default; its
        # embeddings must equal the eager ones below.
        f"--jit_compile={'true' if keras.config.backend() == 'tensorflow' else 'auto'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KERAS_BACKEND": keras.config.backend()})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "extraction.json").read_text())
    assert summary["dims_before_pca"] == [128, 96, 64] and summary["dims"] == [70, 70, 64]
    assert summary["jit_compile"] == command[-1].split("=")[1]
    assert summary["compiled"] == str(keras.config.backend() != "torch")
    files = np.load(output / "test_submission_0.npy", allow_pickle=True).item()
    assert list(files["frame_number_map"].items()) == [("s0", (0, 9)), ("s1", (9, 49))]
    assert files["embeddings"].shape == (49, 70) and files["embeddings"].dtype == np.float32
    assert np.isfinite(files["embeddings"]).all()
    combined = np.load(output / "level_combined.npy")
    assert combined.shape == (49, 70 + 70 + 64)
    assert backbone.jit_compile is (keras.config.backend() == "jax")  # eager TensorFlow
    raw = embed_sequence(backbone, np.load(data / "s0.npy"), levels=[2], mode="fast")[0]
    np.testing.assert_allclose(np.load(output / "level_2.npy")[:9], raw, atol=1e-5)
