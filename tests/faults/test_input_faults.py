"""Bad inputs to the models: wrong rank, wrong (T, H, W), non-float dtypes, empty batches,
dict inputs with unknown keys, and user masks (`unit_mask`) of the wrong shape, batch, values
or kept count. Each raises a ValueError that names the input and what it should be.

NaN and inf keypoints are *not* rejected: values in hidden mask units never reach the encoder,
so predictions stay finite (`reconstruction.impute` relies on this), but any of them makes the
loss non-finite, and training stops on it (`NonFiniteLossGuard`; see
`test_training_faults.py`). The tests below pin that down, so a NaN can never turn into a
silently finite loss.

The tiny pretrainer (`tiny_pretrainer`, U = 16 mask units, K = 4 kept) is built once; every
error here is raised before the forward pass, so no test but the NaN ones runs the model.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import compiled, to_numpy

from keras_hbehavemae.data.pipeline import make_evaluation_dataset, make_pretraining_dataset

SHAPE_MESSAGE = r"keypoints: shape .* does not fit this model; expected \[batch, 32, 4, 12\]"


def keypoints(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 32, 4, 12)).astype("float32")


def kept_mask(batch=2, kept=(1, 5, 9, 12)):
    mask = np.zeros((batch, 16), bool)
    mask[:, list(kept)] = True
    return mask


@pytest.fixture(scope="module")
def forward(tiny_pretrainer):
    """`(pred, loss)` of the tiny pretrainer for `(x, mask)`, compiled once under JAX."""
    model = tiny_pretrainer

    def run(x, mask):
        outputs = model(x, unit_mask=mask)
        return outputs["pred"], model.compute_pretraining_loss(x, outputs)

    return compiled(model, run)


# ---------------------------------------------------------------- keypoints of the wrong shape

BAD_SHAPES = [
    ("wrong-T", (2, 30, 4, 12)),
    ("wrong-H", (2, 32, 3, 12)),
    ("wrong-W", (2, 32, 4, 11)),
    ("flat-wrong-features", (2, 32, 47)),
    ("rank-2-one-window-without-batch", (32, 48)),
    ("rank-3-one-window-without-batch", (32, 4, 12)),
    ("rank-5", (2, 32, 4, 12, 1)),
]


@pytest.mark.parametrize("shape", [row[1] for row in BAD_SHAPES],
                         ids=[row[0] for row in BAD_SHAPES])
def test_pretrainer_rejects_keypoints_of_the_wrong_shape(tiny_pretrainer, shape):
    with pytest.raises(ValueError, match=SHAPE_MESSAGE):
        tiny_pretrainer(np.zeros(shape, "float32"))


def test_backbone_rejects_windows_of_the_wrong_length(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"expected \[batch, 32, 4, 12\]"):
        tiny_pretrainer.backbone(np.zeros((2, 30, 4, 12), "float32"))


def test_pretrainer_rejects_an_empty_batch(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"keypoints: the batch is empty \(batch size 0\)"):
        tiny_pretrainer(np.zeros((0, 32, 4, 12), "float32"))


def test_backbone_rejects_an_empty_batch(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"keypoints: the batch is empty \(batch size 0\)"):
        tiny_pretrainer.backbone(np.zeros((0, 32, 4, 12), "float32"))


# ---------------------------------------------------------------- keypoints of the wrong dtype

DTYPE_MESSAGE = r"keypoints: dtype {} is not supported; the model takes floating-point"


@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_pretrainer_rejects_non_float_keypoints(tiny_pretrainer, dtype):
    with pytest.raises(ValueError, match=DTYPE_MESSAGE.format(dtype)):
        tiny_pretrainer(np.zeros((2, 32, 4, 12), dtype))


def test_backbone_rejects_integer_keypoints(tiny_pretrainer):
    with pytest.raises(ValueError, match="dtype int32"):
        tiny_pretrainer.backbone(np.zeros((2, 32, 4, 12), "int32"))


def test_pretrainer_rejects_string_keypoints(tiny_pretrainer):
    # Fails under JAX and torch until `HBehaveMAE.__call__` checks its inputs before Keras
    # converts them: JAX parses these numeric strings and runs the model on them silently,
    # torch raises "Invalid dtype: str32".
    with pytest.raises(ValueError, match=r"keypoints: dtype \S+ is not supported"):
        tiny_pretrainer(np.full((2, 32, 4, 12), "1.0"))


def test_backbone_rejects_string_keypoints(tiny_pretrainer):
    # Fails on every backend: `standardize_keypoints` passes the numpy string dtype to
    # `keras.backend.standardize_dtype`, which raises "Invalid dtype: str32".
    with pytest.raises(ValueError, match=r"keypoints: dtype \S+ is not supported"):
        tiny_pretrainer.backbone(np.full((2, 32, 4, 12), "1.0"))


# ---------------------------------------------------------------- dict inputs

def test_dict_input_with_an_unknown_key_is_named(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"inputs: a dict must hold 'keypoints' and optionally "
                                         r"'mask'; got keys \['keypoints', 'masks'\]"):
        tiny_pretrainer({"keypoints": keypoints(), "masks": kept_mask()})


def test_dict_input_without_keypoints_is_named(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"got keys \['mask'\]"):
        tiny_pretrainer({"mask": kept_mask()})


# ---------------------------------------------------------------- user masks

def test_mask_with_another_kept_count_in_one_row(tiny_pretrainer):
    bad = kept_mask()
    bad[0, 0] = True  # row 0 keeps 5 units, row 1 keeps 4
    with pytest.raises(ValueError, match=r"exactly K = 4 of 16 mask units .*rows \[0\] keep \[5\]"):
        tiny_pretrainer(keypoints(), unit_mask=bad)


def test_mask_with_the_wrong_number_of_units(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"expected \[batch, 16\]"):
        tiny_pretrainer(keypoints(), unit_mask=np.ones((2, 15), bool))


def test_mask_of_rank_three(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"mask: shape \(2, 16, 1\) is invalid; expected "
                                         r"\[batch, 16\]"):
        tiny_pretrainer(keypoints(), unit_mask=kept_mask()[..., None])


def test_mask_with_values_other_than_zero_and_one(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"mask: values must be True/False \(or 1/0\)"):
        tiny_pretrainer(keypoints(), unit_mask=kept_mask().astype("float32") * 0.5)


def test_mask_of_strings(tiny_pretrainer):
    # Fails under JAX and torch until `HBehaveMAE.__call__` checks the mask before Keras
    # converts it ("could not convert string to float" / "Invalid dtype: str32").
    with pytest.raises(ValueError, match=r"mask: dtype \S+ is invalid; expected bool"):
        tiny_pretrainer(keypoints(), unit_mask=np.where(kept_mask(), "True", "False"))


def test_mask_of_another_batch_size(tiny_pretrainer):
    # Fails on every backend until `HBehaveMAE.call` passes its batch size to
    # `check_unit_mask` (today: a backend broadcasting error deep in the encoder).
    with pytest.raises(ValueError, match=r"mask: batch size 3 does not match the keypoints' "
                                         r"batch size 2"):
        tiny_pretrainer(keypoints(2), unit_mask=kept_mask(3))


def test_mask_with_another_kept_count_in_predict(tiny_pretrainer):
    # `predict` traces the model, so `check_unit_mask` sees no values and cannot count; fails
    # under TensorFlow and JAX (the mask is used silently) until `HBehaveMAE.predict` checks
    # a dict's mask before tracing. Torch predicts eagerly and raises.
    bad = kept_mask(4)
    bad[:, 0] = True  # every row keeps 5 units
    with pytest.raises(ValueError, match=r"exactly K = 4 of 16 mask units"):
        tiny_pretrainer.predict({"keypoints": keypoints(4), "mask": bad}, verbose=0)


# ---------------------------------------------------------------- NaN and inf keypoints

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_keypoints_in_a_kept_unit_give_a_non_finite_loss(forward, value):
    x = keypoints()
    x[0, 8:16] = value  # frames 8..15 are unit row 1 (units 4..7); unit 5 is kept
    pred, loss = (to_numpy(out) for out in forward(x, kept_mask()))
    assert not np.isfinite(loss)
    assert not np.isfinite(pred[0]).all() and np.isfinite(pred[1]).all()


def test_nan_keypoints_in_hidden_units_keep_predictions_finite_but_not_the_loss(forward):
    x = keypoints()
    x[:, :8] = np.nan  # frames 0..7 are unit row 0 (units 0..3), all hidden by this mask
    pred, loss = (to_numpy(out) for out in forward(x, kept_mask(kept=(5, 6, 9, 12))))
    assert np.isfinite(pred).all()
    assert np.isnan(loss), "a NaN target must not vanish from the loss"


# ---------------------------------------------------------------- data pipelines

SEQUENCES = [np.zeros((90, 3, 24), "float32"), np.zeros((61, 3, 24), "float32")]


def test_pipeline_windows_of_another_length_than_the_models():
    with pytest.raises(ValueError, match=r"num_frames=32 must equal the model's input_size T=900"):
        make_pretraining_dataset(SEQUENCES, 32, batch_size=4, expected_input_size=(900, 3, 24))


def test_pipeline_frames_of_another_shape_than_the_models():
    with pytest.raises(ValueError, match=r"per-frame shape \(H, W\) = \(3, 24\)"):
        make_evaluation_dataset(SEQUENCES, 32, batch_size=4, expected_input_size=(32, 1, 72))
