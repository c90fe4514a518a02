"""Reconstruction and imputation: un-patchify exactness, fill modes, masks, golden predictions."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY, build_pretrainer, golden_pretrainer

from keras_hbehavemae import HBehaveMAEConfig, compute_geometry
from keras_hbehavemae.embeddings.imputation import bad_unit_mask, imputation_mask, impute
from keras_hbehavemae.embeddings.reconstruction import (
    fill_strided_frames,
    hidden_element_mask,
    reconstruct,
    to_numpy,
    token_statistics,
    unit_extent,
    unpatchify,
)
from keras_hbehavemae.models.losses import time_strided_targets
from keras_hbehavemae.presets.folder import save_to_preset

TINY_CONFIG = HBehaveMAEConfig(**TINY, decoder_embed_dim=16, mask_ratio=0.75)
# pt = 3: token grid (12, 1, 3), mask unit (2, 1, 3), mask grid (6, 1, 1), label patch (2, 1, 12).
PT3_CONFIG = HBehaveMAEConfig(
    input_size=(36, 1, 12), patch_kernel=(3, 1, 4), stages=(1, 1), q_strides="2,1,3",
    out_embed_dims=(8, 16), init_embed_dim=8, mask_unit_attn=(True, False),
    decoder_embed_dim=16, mask_ratio=0.5)


def smooth_keypoints(shape, seed=0):
    """Random smooth trajectories [B, T, H, W] (float32)."""
    rng = np.random.default_rng(seed)
    frames = np.arange(shape[1], dtype="float32")[None, :, None, None]
    phase = rng.uniform(0, 2 * np.pi, (shape[0], 1, *shape[2:]))
    return np.sin(frames / 5.0 + phase).astype("float32")


@pytest.fixture(scope="module")
def golden():
    return golden_pretrainer("hbehavemae_tiny_single")


# ---------------------------------------------------------------------- layout (no model)


@pytest.mark.parametrize("config", [TINY_CONFIG, PT3_CONFIG], ids=["tiny", "pt3"])
def test_unpatchify_inverts_time_strided_targets_exactly(config):
    geometry = compute_geometry(config)
    patch_t = config.patch_kernel[0]
    x = np.random.default_rng(1).standard_normal((3, *config.input_size)).astype("float32")
    targets = time_strided_targets(x, geometry)
    assert tuple(targets.shape) == (3, geometry.num_mask_units, geometry.pred_stride)
    np.testing.assert_array_equal(to_numpy(unpatchify(targets, geometry)), x[:, ::patch_t])
    # numpy in, numpy out, same layout
    np.testing.assert_array_equal(unpatchify(to_numpy(targets), geometry), x[:, ::patch_t])


def test_unpatchify_matches_the_reference_labels(golden):
    """The published model's labels (fixture `label_all`) un-patchify to x[:, ::pt]."""
    model, arrays, _ = golden
    strided = unpatchify(arrays["label_all"], model.geometry)
    np.testing.assert_array_equal(strided, arrays["input"][:, ::2])


def test_unpatchify_rejects_wrong_shapes():
    geometry = compute_geometry(TINY_CONFIG)
    with pytest.raises(ValueError, match=r"expected \[batch, 16, 48\]"):
        unpatchify(np.zeros((2, 16, 47), "float32"), geometry)


def test_hidden_element_mask_follows_the_unit_layout():
    geometry = compute_geometry(TINY_CONFIG)
    assert unit_extent(geometry) == (8, 2, 6)  # M_t·pt frames, ph·M_h rows, pw·M_w features
    rng = np.random.default_rng(0)
    mask = np.zeros((2, 16), bool)
    for row in mask:
        row[rng.choice(16, 4, replace=False)] = True
    hidden = hidden_element_mask(mask, geometry)
    t, h, w = np.meshgrid(np.arange(32), np.arange(4), np.arange(12), indexing="ij")
    unit = (t // 8) * 4 + (h // 2) * 2 + w // 6  # row-major over the mask grid (4, 2, 2)
    for b in range(2):
        np.testing.assert_array_equal(hidden[b], ~mask[b][unit])
    # a frame can be partly hidden: units split H and W
    assert hidden.any(axis=(2, 3)).sum() > 0 and not hidden.all(axis=(2, 3)).all()


def test_fill_modes_on_a_hand_made_case():
    strided = np.array([[0.0, 3.0, 9.0]], "float32")[:, :, None, None]  # [1, 3, 1, 1]
    held = fill_strided_frames(strided, 3, "hold")[0, :, 0, 0]
    np.testing.assert_array_equal(held, [0, 0, 0, 3, 3, 3, 9, 9, 9])
    linear = fill_strided_frames(strided, 3, "linear")[0, :, 0, 0]
    np.testing.assert_allclose(linear, [0, 1, 2, 3, 5, 7, 9, 9, 9], rtol=0, atol=1e-6)
    two = fill_strided_frames(strided, 2, "linear")[0, :, 0, 0]
    np.testing.assert_allclose(two, [0, 1.5, 3, 6, 9, 9], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(fill_strided_frames(strided, 1, "linear"), strided)
    with pytest.raises(ValueError, match="fill"):
        fill_strided_frames(strided, 2, "cubic")


def test_token_statistics_undo_norm_loss():
    geometry = compute_geometry(TINY_CONFIG)
    x = np.random.default_rng(2).standard_normal((2, 32, 4, 12)).astype("float32")
    normalised = to_numpy(time_strided_targets(x, geometry, norm_loss=True))
    mean, std = token_statistics(x, geometry)
    restored = unpatchify(normalised * std + mean, geometry)
    np.testing.assert_allclose(restored, x[:, ::2], rtol=0, atol=1e-5)


def test_imputation_mask_hides_bad_units_and_exactly_u_minus_k():
    geometry = compute_geometry(TINY_CONFIG)  # U = 16, K = 4, 8 frames per unit
    bad = np.zeros((2, 32), bool)
    bad[0, 3] = True  # time slice 0: 4 units (2 × 2 cells)
    bad[1, [9, 30]] = True  # time slices 1 and 3
    units = bad_unit_mask(bad, geometry)
    assert units.sum(axis=1).tolist() == [4, 8]
    assert units[0, :4].all() and units[1, 4:8].all() and units[1, 12:].all()
    mask = imputation_mask(bad, geometry, seed=0)
    assert mask.sum(axis=1).tolist() == [4, 4]
    assert not (mask & units).any()
    np.testing.assert_array_equal(imputation_mask(bad, geometry, seed=0), mask)  # deterministic
    too_many = np.zeros((1, 32), bool)
    too_many[0, ::8] = True  # all four time slices: 16 bad units > U − K = 12
    with pytest.raises(ValueError, match=r"16 of 16 mask units.*at most U − K = 12"):
        imputation_mask(too_many, geometry)


# ---------------------------------------------------------------------- with a model


def test_golden_reconstruction_matches_fixture_predictions(golden):
    model, arrays, _ = golden
    result = reconstruct(model, arrays["input"], arrays["mask"])
    hidden = result["hidden"]
    np.testing.assert_array_equal(result["mask"], arrays["mask"])
    assert hidden.shape == (2, 32, 4, 12) and result["frame_mask"].shape == (2, 32)
    np.testing.assert_array_equal(hidden, hidden_element_mask(arrays["mask"], model.geometry))
    # the layout is exact: strided frames are the un-patchified predictions, unchanged
    np.testing.assert_array_equal(result["strided"], unpatchify(result["pred"], model.geometry))
    np.testing.assert_array_equal(result["reconstruction"][:, ::2], result["strided"])
    reference = unpatchify(arrays["pred"], model.geometry)
    strided_hidden = hidden[:, ::2]
    np.testing.assert_allclose(result["strided"][strided_hidden], reference[strided_hidden],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(result["pred"], arrays["pred"], rtol=0, atol=1e-5)
    # hold fill: odd frames repeat the strided frame before them
    np.testing.assert_array_equal(result["reconstruction"][:, 1::2], result["strided"])
    np.testing.assert_array_equal(result["composite"][~hidden], arrays["input"][~hidden])
    np.testing.assert_array_equal(result["composite"][hidden],
                                  result["reconstruction"][hidden])
    assert result["normalised"] is False


def test_linear_fill_and_flat_layout(golden):
    model, arrays, _ = golden
    flat = arrays["input"].reshape(2, 32, 48)
    result = reconstruct(model, flat, arrays["mask"], fill="linear")
    assert result["reconstruction"].shape == (2, 32, 48) and result["hidden"].shape == (2, 32, 48)
    full = result["reconstruction"].reshape(2, 32, 4, 12)
    strided = result["strided"]
    np.testing.assert_array_equal(full[:, ::2], strided)
    np.testing.assert_allclose(full[:, 1:-1:2], 0.5 * (strided[:, :-1] + strided[:, 1:]),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(full[:, -1], strided[:, -1])  # held after the last one
    # the composite interpolates hidden frames towards the *true* visible strided frames
    x, hidden = arrays["input"], result["hidden"].reshape(2, 32, 4, 12)
    composite = result["composite"].reshape(2, 32, 4, 12)
    np.testing.assert_array_equal(composite[~hidden], x[~hidden])
    known = np.where(hidden[:, ::2], strided, x[:, ::2])
    expected = np.where(hidden[:, 1:-1:2], 0.5 * (known[:, :-1] + known[:, 1:]), x[:, 1:-1:2])
    np.testing.assert_allclose(composite[:, 1:-1:2], expected, rtol=0, atol=1e-6)
    edge = hidden[:, 1:-1:2] & ~hidden[:, 2::2]  # hidden frame followed by a visible one
    assert edge.any()


def test_random_mask_keeps_k_units_and_is_seeded(golden):
    model, arrays, _ = golden
    first = reconstruct(model, arrays["input"], seed=5)
    second = reconstruct(model, arrays["input"], seed=5)
    assert first["mask"].shape == (2, 16) and (first["mask"].sum(axis=1) == 4).all()
    np.testing.assert_array_equal(first["mask"], second["mask"])
    shared = reconstruct(model, arrays["input"], arrays["mask"][0])  # one [U] mask for all rows
    np.testing.assert_array_equal(shared["mask"], np.stack([arrays["mask"][0]] * 2))


def test_errors_reach_the_user(golden):
    model, arrays, _ = golden
    x, mask = arrays["input"], arrays["mask"]
    bad = mask.copy()
    bad[0, np.flatnonzero(~mask[0])[0]] = True
    with pytest.raises(ValueError, match=r"exactly K = 4.*rows \[0\] keep \[5\].*mask_ratio"):
        reconstruct(model, x, bad)
    with pytest.raises(ValueError, match=r"expected \[batch, 16\]"):
        reconstruct(model, x, np.ones((2, 15), bool))
    with pytest.raises(ValueError, match="batch size 3 does not match"):
        reconstruct(model, x, np.concatenate([mask, mask[:1]]))
    with pytest.raises(ValueError, match="does not fit this model"):
        reconstruct(model, x[:, :30], mask)
    with pytest.raises(ValueError, match="fill"):
        reconstruct(model, x, mask, fill="cubic")
    with pytest.raises(ValueError, match="without norm_loss"):
        reconstruct(model, x, mask, denormalise_with=x)
    with pytest.raises(ValueError, match="HBehaveMAE pretrainer"):
        reconstruct(model.backbone, x, mask)
    with pytest.raises(ValueError, match=r"bad_frames: shape \(2, 30\)"):
        impute(model, x, np.zeros((2, 30), bool))
    with pytest.raises(ValueError, match="dtype"):
        impute(model, x, np.zeros((2, 32), "float32"))


def test_impute_replaces_only_bad_frames(golden):
    model, arrays, _ = golden
    x = arrays["input"]
    bad = np.zeros((2, 32), bool)
    bad[0, [4, 5, 7]] = True  # time slice 0 (frames 0-7)
    bad[1, [17, 26]] = True  # time slices 2 and 3
    result = impute(model, x, bad, fill="linear", seed=3)
    mask, imputed, hidden = result["mask"], result["keypoints"], result["hidden"]
    assert (mask.sum(axis=1) == 4).all()
    assert not (mask & bad_unit_mask(bad, model.geometry)).any()
    np.testing.assert_array_equal(imputed[~bad], x[~bad])
    assert (np.abs(imputed[bad] - x[bad]).max(axis=(1, 2)) > 0).all()
    assert hidden[bad].all()  # every element of a bad frame was hidden
    # strided bad frames are the model's predictions; the others interpolate between the
    # strided neighbours: the true values where visible, the predictions where hidden
    pred = reconstruct(model, x, mask)["strided"]
    np.testing.assert_allclose(imputed[0, 4], pred[0, 2], rtol=0, atol=1e-6)
    np.testing.assert_allclose(imputed[1, 26], pred[1, 13], rtol=0, atol=1e-6)
    np.testing.assert_allclose(imputed[0, 5], 0.5 * (pred[0, 2] + pred[0, 3]), rtol=0,
                               atol=1e-5)
    next_strided = np.where(hidden[0, 8], pred[0, 4], x[0, 8])  # frame 8: time slice 1
    assert not hidden[0, 8].all(), "seed 3 leaves part of time slice 1 visible"
    np.testing.assert_allclose(imputed[0, 7], 0.5 * (pred[0, 3] + next_strided), rtol=0,
                               atol=1e-5)
    too_many = np.zeros((2, 32), bool)
    too_many[:, [0, 8, 16, 24]] = True
    with pytest.raises(ValueError, match="too many bad frames for this mask ratio"):
        impute(model, x, too_many)


def test_norm_loss_reconstruction_is_per_token_and_can_be_denormalised(golden):
    model, arrays, _ = golden
    norm_model = build_pretrainer(TINY_CONFIG.replace(norm_loss=True), seed=0)
    x, mask = arrays["input"], arrays["mask"]
    plain = reconstruct(norm_model, x, mask)
    assert plain["normalised"] is True and plain["composite"] is None
    restored = reconstruct(norm_model, x, mask, denormalise_with=x)
    assert restored["normalised"] is False
    mean, std = token_statistics(x, norm_model.geometry)
    np.testing.assert_allclose(restored["strided"],
                               unpatchify(plain["pred"] * std + mean, norm_model.geometry),
                               rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="without norm_loss"):
        impute(norm_model, x, np.zeros((2, 32), bool))


def test_pt3_model_reconstruction():
    model = build_pretrainer(PT3_CONFIG, seed=0)
    x = smooth_keypoints((2, 36, 1, 12))
    result = reconstruct(model, x, seed=1, fill="hold")
    assert result["pred"].shape == (2, 6, 24) and result["strided"].shape == (2, 12, 1, 12)
    assert (result["mask"].sum(axis=1) == 3).all()
    for offset in range(3):
        np.testing.assert_array_equal(result["reconstruction"][:, offset::3], result["strided"])
    assert (result["hidden"].sum(axis=(1, 2, 3)) == 3 * 6 * 12).all()  # 3 units × 6 frames


# ---------------------------------------------------------------------- plot script

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLOT_SCRIPT = ROOT / "scripts" / "plot_reconstruction.py"


@pytest.mark.slow
def test_plot_script_writes_a_png(tmp_path, golden):
    pytest.importorskip("matplotlib")
    model, _, _ = golden
    save_to_preset(model, tmp_path / "preset")
    np.save(tmp_path / "track.npy", smooth_keypoints((1, 40, 4, 12))[0])
    output = tmp_path / "reconstruction.png"
    result = subprocess.run(
        [sys.executable, str(PLOT_SCRIPT), f"--preset={tmp_path / 'preset'}",
         f"--data={tmp_path / 'track.npy'}", "--start=4", "--keypoints=0,5", "--individual=1",
         "--mask_seed=2", f"--output={output}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.stat().st_size > 20_000


@pytest.mark.slow
def test_plot_script_explains_a_missing_matplotlib(tmp_path):
    code = ("import runpy, sys; sys.modules['matplotlib'] = None; "
            f"sys.argv = ['plot', '--preset={tmp_path}', '--data={tmp_path}/x.npy']; "
            f"runpy.run_path({str(PLOT_SCRIPT)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "pip install matplotlib" in result.stderr
