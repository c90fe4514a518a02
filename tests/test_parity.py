"""Parity with the published model's golden fixtures, on every backend:
activations and gradients to 1e-5, the loss to 1e-6 relative."""

import numpy as np
import pytest
from helpers import GOLDEN_NAMES, compiled, golden_pretrainer, loss_and_gradients, to_numpy

from keras_hbehavemae.convert.checkpoint import parameter_table, torch_to_keras_layout

ATOL = 1e-5


@pytest.fixture(scope="module", params=GOLDEN_NAMES)
def golden(request):
    model, arrays, metadata = golden_pretrainer(request.param)
    forward = compiled(model, lambda x, mask: model(x, unit_mask=mask, return_intermediates=True))
    outputs = forward(arrays["input"], arrays["mask"])
    return request.param, model, arrays, metadata, outputs


def test_parameter_counts_match_fixture(golden):
    _, model, _, metadata, _ = golden
    counts = metadata["param_counts"]
    assert model.count_params() == counts["total"]
    assert model.backbone.count_params() == counts["encoder"]
    assert len(parameter_table(model)) == 88  # state-dict key count of the tiny config


def test_masked_pass_matches(golden):
    _, _, arrays, _, outputs = golden
    intermediates = outputs["intermediates"]
    assert np.array_equal(to_numpy(outputs["mask"]), arrays["mask"])
    for key in ["block/0", "block/1", "block/2", "block/3", "intermediate/0",
                "intermediate/1", "intermediate/2", "decoder/input", "decoder/norm_out"]:
        np.testing.assert_allclose(to_numpy(intermediates[key]), arrays[key], atol=ATOL,
                                   rtol=0, err_msg=key)
    for key in ["latent_prenorm", "latent"]:
        np.testing.assert_allclose(to_numpy(intermediates[key]),
                                   arrays[key].reshape(arrays[key].shape[0], -1,
                                                       arrays[key].shape[-1]),
                                   atol=ATOL, rtol=0, err_msg=key)
    np.testing.assert_allclose(to_numpy(outputs["pred"]), arrays["pred"], atol=ATOL, rtol=0)


def test_targets_and_loss_match(golden):
    _, model, arrays, metadata, outputs = golden
    targets = to_numpy(model.compute_targets(arrays["input"]))
    np.testing.assert_allclose(targets, arrays["label_all"], atol=ATOL, rtol=0)
    masked = ~arrays["pred_mask"]
    np.testing.assert_allclose(targets[masked], arrays["label"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(to_numpy(outputs["pred"])[masked], arrays["pred_masked"],
                               atol=ATOL, rtol=0)
    loss = float(to_numpy(model.compute_pretraining_loss(arrays["input"], outputs)))
    assert loss == pytest.approx(metadata["loss"], rel=1e-6)
    assert loss == pytest.approx(float(arrays["loss"]), rel=1e-6)


def test_unmasked_pass_matches(golden):
    _, model, arrays, _, _ = golden

    def unmasked(keypoints):
        block_outputs = []
        levels = model.backbone.encode(keypoints, block_outputs=block_outputs)
        return levels, block_outputs, model.backbone(keypoints)

    levels, block_outputs, functional = compiled(model, unmasked)(arrays["input"])
    for index, tokens in enumerate(block_outputs):
        np.testing.assert_allclose(to_numpy(tokens), arrays[f"full/block/{index}"], atol=ATOL,
                                   rtol=0, err_msg=f"full/block/{index}")
    for index, (level, level_functional) in enumerate(zip(levels, functional, strict=True)):
        key = f"full/intermediate/{index}"
        np.testing.assert_allclose(to_numpy(level), arrays[key], atol=ATOL, rtol=0, err_msg=key)
        np.testing.assert_allclose(to_numpy(level_functional), arrays[key], atol=ATOL, rtol=0,
                                   err_msg=key)


def test_gradients_match(golden):
    name, model, arrays, metadata, _ = golden
    loss, gradients = loss_and_gradients(model, arrays["input"], arrays["mask"])
    assert loss == pytest.approx(metadata["loss"], rel=1e-6)
    for key, entry in parameter_table(model).items():
        expected = torch_to_keras_layout(arrays[f"grad/{key}"], entry.layout)
        actual = gradients[id(entry.variable)]
        np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0, err_msg=key)
        if name.endswith("single") and key.startswith("multi_scale_fusion_heads"):
            assert not np.any(actual), key
