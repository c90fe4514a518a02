"""Pretrainer behaviour on every backend: masking, fit/evaluate/predict, save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY, build_pretrainer, compiled, to_numpy

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.models.backbone import embed_kept_units, kept_token_ids, select_kept_units
from keras_hbehavemae.training.optimizer import published_optimizer

CONFIG = HBehaveMAEConfig(**TINY, decoder_embed_dim=16, mask_ratio=0.75, norm_loss=True)


def keypoints(batch=8, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 32, 4, 12)).astype("float32")


@pytest.fixture(scope="module")
def trained():
    """A tiny pretrainer after 3 epochs of `fit` on tf.data, and its history."""
    keras.utils.set_random_seed(0)
    model = build_pretrainer(CONFIG, seed=1)
    model.compile(optimizer=published_optimizer(model, 2e-3, clip_grad=1.0))
    dataset = tf.data.Dataset.from_tensor_slices(keypoints(64)).batch(8, drop_remainder=True)
    history = model.fit(dataset, epochs=3, verbose=0)
    return model, history.history, dataset


@pytest.mark.slow
def test_fit_on_tf_data_lowers_the_loss_and_logs(trained):
    _, history, _ = trained
    assert set(history) >= {"loss", "grad_norm", "learning_rate"}
    assert history["loss"][-1] < history["loss"][0]
    assert all(np.isfinite(history["grad_norm"])) and history["grad_norm"][0] > 0
    assert history["learning_rate"][-1] == pytest.approx(2e-3)


@pytest.mark.slow
def test_evaluate_and_predict(trained):
    model, _, dataset = trained
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    predictions = model.predict(dataset, verbose=0)
    assert predictions["pred"].shape == (64, 16, 48)
    assert predictions["mask"].shape == (64, 16)
    assert (predictions["mask"].sum(axis=1) == 4).all()


def test_masks_are_random_per_call_and_keep_k_units():
    model = build_pretrainer(CONFIG, seed=3)
    forward = compiled(model, lambda x: model(x)["mask"])
    first, second = to_numpy(forward(keypoints(4))), to_numpy(forward(keypoints(4)))
    assert first.shape == (4, 16) and (first.sum(axis=1) == 4).all()
    assert not np.array_equal(first, second), "the seed generator must advance between calls"
    assert len({row.tobytes() for row in first}) > 1, "rows of one batch get different masks"


def test_explicit_mask_is_used():
    # Masks of the wrong shape or kept count: tests/faults/test_input_faults.py.
    model = build_pretrainer(CONFIG)
    mask = np.zeros((2, 16), bool)
    mask[:, [1, 5, 9, 12]] = True
    outputs = model(keypoints(2), unit_mask=mask)
    np.testing.assert_array_equal(to_numpy(outputs["mask"]), mask)
    dict_outputs = model({"keypoints": keypoints(2), "mask": mask})
    np.testing.assert_allclose(to_numpy(dict_outputs["pred"]), to_numpy(outputs["pred"]),
                               atol=1e-6)


def test_kept_units_are_embedded_as_if_every_token_were():
    """The masked pass embeds only the kept units' patches; the tokens equal those of
    embedding every patch, adding positions, unrolling and selecting the kept units."""
    model = build_pretrainer(CONFIG)
    model(keypoints(2))  # builds
    layers, geometry = model.backbone.encoder_layers(), model.geometry
    rng = np.random.default_rng(3)
    keep = np.sort(np.stack([rng.choice(geometry.num_mask_units, geometry.num_kept_units,
                                        replace=False) for _ in range(2)]), axis=1)
    x = keypoints(2, seed=5)
    every_token = layers.unroll(layers.position_embedding(layers.patch_embedding(x)))
    expected = to_numpy(select_kept_units(every_token, keep, geometry))
    kept_first = to_numpy(embed_kept_units(layers, geometry, x, keep))
    assert kept_first.shape == (2, geometry.mask_unit_tokens * geometry.num_kept_units,
                                CONFIG.init_embed_dim)
    np.testing.assert_allclose(kept_first, expected, rtol=1e-6, atol=1e-6)
    # The token indices are the unrolled positions of the kept units' tokens.
    ids = to_numpy(kept_token_ids(keep, geometry))
    units = geometry.num_mask_units
    np.testing.assert_array_equal(ids % units, np.tile(keep, (1, geometry.mask_unit_tokens)))
    np.testing.assert_array_equal(
        ids // units, np.repeat(np.arange(geometry.mask_unit_tokens), keep.shape[1])[None]
        .repeat(2, axis=0))


def test_masked_units_do_not_change_visible_level_zero():
    """Stage 0 attends within mask units: a kept unit's window ignores masked input."""
    model = build_pretrainer(CONFIG)
    mask = np.zeros((1, 16), bool)
    mask[0, [0, 3, 9, 12]] = True
    x = keypoints(1)
    changed = x.copy()
    changed[:, 8:16] += 5.0  # frames 8..15 are unit row gt=1 (units 4..7), all masked
    first = to_numpy(model(x, unit_mask=mask, return_intermediates=True)
                     ["intermediates"]["intermediate/0"])
    second = to_numpy(model(changed, unit_mask=mask, return_intermediates=True)
                      ["intermediates"]["intermediate/0"])
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_single_decoding_freezes_fusion_heads():
    model = build_pretrainer(CONFIG.replace(decoding_strategy="single"))
    assert all(not head.trainable for head in model.fusion_heads)
    trainable = {id(v) for v in model.trainable_variables}
    assert not any(id(v) in trainable for head in model.fusion_heads for v in head.weights)
    # The lower levels' projections feed only the fusion heads: frozen too, so no optimizer
    # decays them; the last level's projection feeds the decoder and trains.
    *lower, last = model.backbone.projections
    assert not any(id(v) in trainable for layer in lower for v in layer.weights)
    assert all(id(v) in trainable for v in last.weights)
    multi = build_pretrainer(CONFIG)
    assert all(layer.trainable for layer in multi.backbone.projections)


@pytest.mark.slow
def test_keras_file_round_trip(tmp_path, trained):
    model, _, _ = trained
    path = tmp_path / "pretrainer.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, HBehaveMAE)
    assert isinstance(restored.backbone, HBehaveMAEBackbone)
    x = keypoints(2)
    mask = np.zeros((2, 16), bool)
    mask[:, :4] = True
    np.testing.assert_allclose(to_numpy(restored(x, unit_mask=mask)["pred"]),
                               to_numpy(model(x, unit_mask=mask)["pred"]), atol=1e-6)
    for original, loaded in zip(model.backbone(x), restored.backbone(x), strict=True):
        np.testing.assert_allclose(to_numpy(loaded), to_numpy(original), atol=1e-6)
    assert restored.get_config() == model.get_config()


@pytest.mark.slow
def test_backbone_round_trip_and_shared_weights(tmp_path, trained):
    model, _, _ = trained
    backbone = model.backbone
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    x = keypoints(2)
    for original, loaded in zip(backbone(x), restored(x), strict=True):
        np.testing.assert_allclose(to_numpy(loaded), to_numpy(original), atol=1e-6)
    # The pretrainer trains the backbone's own variables, not a copy.
    backbone_ids = {id(v) for v in backbone.weights}
    assert backbone_ids <= {id(v) for v in model.weights}


def test_backbone_accepts_flat_features():
    # Inputs of the wrong shape or dtype: tests/faults/test_input_faults.py.
    backbone = HBehaveMAEBackbone(**CONFIG.encoder_kwargs())
    x = keypoints(2)
    flat = backbone(x.reshape(2, 32, 48))
    for a, b in zip(flat, backbone(x), strict=True):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)


@pytest.mark.slow
def test_non_hierarchical_variant_trains():
    config = CONFIG.replace(non_hierarchical=True, q_strides=((1, 1, 1),) * 3,
                            out_embed_dims=(8, 8, 8), mask_ratio=0.75)
    model = build_pretrainer(config)
    geometry = model.geometry
    assert geometry.num_mask_units == 256 and geometry.num_kept_units == 64
    assert len(model.fusion_heads) == 3
    model.compile(optimizer=published_optimizer(model, 1e-3, clip_grad=1.0))
    history = model.fit(keypoints(8), epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
