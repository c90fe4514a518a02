"""Bad inputs to the models: wrong rank, wrong (T, H, W), non-float dtypes, empty batches,
dict inputs with unknown keys, user masks (`unit_mask`) of the wrong shape, batch, values or
kept count, and NaN, inf or huge keypoints. Each raises a ValueError that names the input and
what it should be; a non-finite value is named with its sample, first bad frame and count,
at every public entry point (the policy: `keras_hbehavemae.models.inputs`). Each entry point
checks its keypoints exactly once.

Inside a compiled training step NaN keypoints cannot be rejected; there the step is skipped
(`test_training_faults.py`). The loss tests below pin down that a NaN anywhere makes the loss
non-finite, which is what the step's skip tests, so a NaN never turns into a silently finite
loss.

The tiny pretrainer (`tiny_pretrainer`, U = 16 mask units, K = 4 kept) is built once; every
error here is raised before the forward pass.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import GOLDEN_NAMES, TINY, compiled, load_golden, to_numpy

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone
from keras_hbehavemae.convert.checkpoint import load_torch_state_dict
from keras_hbehavemae.data.pipeline import make_evaluation_dataset, make_pretraining_dataset
from keras_hbehavemae.embeddings import embed_sequence, embed_sequences
from keras_hbehavemae.embeddings.imputation import impute
from keras_hbehavemae.embeddings.reconstruction import reconstruct
from keras_hbehavemae.models.inputs import MAX_ABS_KEYPOINT, check_keypoint_values

SHAPE_MESSAGE = r"keypoints: shape .* does not fit this model; expected \[batch, 32, 4, 12\]"


def keypoints(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 32, 4, 12)).astype("float32")


def kept_mask(batch=2, kept=(1, 5, 9, 12)):
    mask = np.zeros((batch, 16), bool)
    mask[:, list(kept)] = True
    return mask


@pytest.fixture(scope="module")
def checked_forward(tiny_pretrainer):
    """`(pred, loss)` of the tiny pretrainer for `(x, mask)` along the training step's path
    (inputs taken as checked), compiled once under JAX."""
    model = tiny_pretrainer

    def run(x, mask):
        outputs = model.checked_forward(x, mask)
        return outputs["pred"], model.pretraining_loss(x, outputs)

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


# ---------------------------------------------------------------- NaN, inf and huge keypoints

def bad_keypoints(value, batch=3):
    """Sample 1 holds `value` in frames 8, 9 and 20; sample 2 in frame 0."""
    x = keypoints(batch)
    x[1, [8, 9, 20], 2, 5] = value
    x[2, 0, 0, 0] = value
    return x


BAD_VALUE_MESSAGE = (r"keypoints: sample 1 has 3 bad frames, the first is frame 8 \({}\); 4 frames "
                     r"of 2 samples hold such values in all\. The models reject NaN, inf and "
                     r"values beyond ±1e6")
BAD_VALUES = [("nan", np.nan, "NaN"), ("inf", np.inf, "inf"), ("-inf", -np.inf, "-inf"),
              ("huge", 1e30, r"1e\+30, beyond ±1e6"),
              ("just-beyond", -1.5e6, r"-1\.5e\+06, beyond ±1e6")]

ENTRY_POINTS = {
    "pretrainer-call": lambda model, x: model(x),
    "pretrainer-call-dict": lambda model, x: model({"keypoints": x}),
    "pretrainer-predict": lambda model, x: model.predict(x, verbose=0),
    "pretrainer-predict_on_batch": lambda model, x: model.predict_on_batch(x),
    "pretrainer-compute_targets": lambda model, x: model.compute_targets(x),
    "pretrainer-compute_pretraining_loss": lambda model, x: model.compute_pretraining_loss(
        x, {"pred": None, "mask": None}),
    "pretrainer-fit-arrays": lambda model, x: model.fit(x, epochs=1, verbose=0),
    "pretrainer-evaluate-arrays": lambda model, x: model.evaluate(x, verbose=0),
    "backbone-call": lambda model, x: model.backbone(x),
    "backbone-predict": lambda model, x: model.backbone.predict(x, verbose=0),
    "backbone-predict_on_batch": lambda model, x: model.backbone.predict_on_batch(x),
    "backbone-encode": lambda model, x: model.backbone.encode(x),
    "flat-features": lambda model, x: model(x.reshape(len(x), 32, 48)),
}


@pytest.mark.parametrize("value, shown", [row[1:] for row in BAD_VALUES],
                         ids=[row[0] for row in BAD_VALUES])
def test_non_finite_or_huge_keypoints_are_named_by_sample_and_frame(tiny_pretrainer, value,
                                                                    shown):
    with pytest.raises(ValueError, match=BAD_VALUE_MESSAGE.format(shown)):
        tiny_pretrainer(bad_keypoints(value))


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
def test_every_entry_point_rejects_nan_keypoints(tiny_pretrainer, entry_point):
    with pytest.raises(ValueError, match=BAD_VALUE_MESSAGE.format("NaN")):
        ENTRY_POINTS[entry_point](tiny_pretrainer, bad_keypoints(np.nan))


def test_the_bound_itself_is_accepted():
    x = keypoints()
    x[0, 0, 0, 0] = -MAX_ABS_KEYPOINT
    check_keypoint_values(x)  # no error: the bound is inclusive


def test_eager_backend_tensors_are_checked_too(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"sample 1 has 3 bad frames, the first is frame 8"):
        tiny_pretrainer.backbone(keras.ops.convert_to_tensor(bad_keypoints(np.inf)))


def test_one_sample_is_named_without_a_total():
    x = keypoints()
    x[0, 31, 3, 11] = np.nan
    with pytest.raises(ValueError, match=r"^keypoints: sample 0 has 1 bad frame, the first is "
                                         r"frame 31 \(NaN\)\. The models"):
        check_keypoint_values(x)


# The embeddings and reconstructions apply the same policy, naming sequences and frames.

def sequence_with_nan(frame, length=40, seed=0):
    sequence = np.random.default_rng(seed).standard_normal((length, 4, 12)).astype("float32")
    if frame is not None:
        sequence[frame, 1, 3] = np.nan
    return sequence


def test_embed_sequence_names_the_first_bad_frame(tiny_pretrainer):
    with pytest.raises(ValueError, match=r"^sequence: the sequence has 1 bad frame, the first is "
                                         r"frame 17 \(NaN\)\. The models reject"):
        embed_sequence(tiny_pretrainer.backbone, sequence_with_nan(17))


def test_embed_sequences_names_the_sequence_before_embedding_any(tiny_pretrainer, monkeypatch):
    calls = []
    monkeypatch.setattr(type(tiny_pretrainer.backbone), "predict_on_batch",
                        lambda *args: calls.append(args))
    sequences = {"a": sequence_with_nan(None), "b": sequence_with_nan(5), "c": sequence_with_nan(9)}
    with pytest.raises(ValueError, match=r"^sequences: sequence 'b' \(index 1\) has 1 bad frame, "
                                         r"the first is frame 5 \(NaN\)\. .* \(2 of 3 sequences "
                                         r"hold such values\)$"):
        embed_sequences(tiny_pretrainer.backbone, sequences, verbose=0)
    assert calls == [], "no sequence is embedded before every one is checked"


def test_reconstruct_names_the_sample_and_frame(tiny_pretrainer):
    with pytest.raises(ValueError, match=BAD_VALUE_MESSAGE.format("inf")):
        reconstruct(tiny_pretrainer, bad_keypoints(np.inf))
    with pytest.raises(ValueError, match=r"^denormalise_with: sample 1 has 3 bad frames"):
        reconstruct(tiny_pretrainer, keypoints(3), denormalise_with=bad_keypoints(np.nan))


@pytest.fixture(scope="module")
def plain_pretrainer(tiny_pretrainer):
    """A pretrainer without norm_loss (impute needs one) on the tiny backbone."""
    return HBehaveMAE(tiny_pretrainer.backbone, decoder_embed_dim=16, norm_loss=False, seed=0)


def test_impute_accepts_nan_in_bad_frames_only(plain_pretrainer):
    x = keypoints(2)
    bad = np.zeros((2, 32), bool)
    bad[0, 4:6] = True
    x[0, 4:6] = np.nan  # untracked: hidden from the model and replaced
    result = impute(plain_pretrainer, x, bad)
    assert np.isfinite(result["keypoints"]).all()
    np.testing.assert_array_equal(result["keypoints"][~bad], x[~bad])
    x[1, 20, 0, 0] = np.nan  # untracked, but not marked as bad
    with pytest.raises(ValueError, match=r"^keypoints outside bad_frames: sample 1 has 1 bad "
                                         r"frame, the first is frame 20 \(NaN\)"):
        impute(plain_pretrainer, x, bad)


# Checkpoints: a diverged run's NaN weights are refused, naming the tensors.

def golden_state(poisoned=("decoder_pred.bias",)):
    _, arrays, _ = load_golden(GOLDEN_NAMES[0])
    state = {key[len("param/"):]: value for key, value in arrays.items()
             if key.startswith("param/")}
    for key in poisoned:
        state[key] = np.full_like(state[key], np.nan)
    return state


def test_a_checkpoint_with_nan_weights_is_refused(tiny_pretrainer):
    before = [to_numpy(weight) for weight in tiny_pretrainer.weights]
    with pytest.raises(ValueError, match=r"^the checkpoint holds non-finite weights \(NaN or "
                                         r"inf\) in 2 of 88 tensors: pos_embed_spatial \(256 of "
                                         r"256\), decoder_pred.bias \(48 of 48\); it comes from "
                                         r"a diverged run\. Convert another checkpoint, or pass "
                                         r"allow_non_finite=True"):
        load_torch_state_dict(tiny_pretrainer,
                              golden_state(("decoder_pred.bias", "pos_embed_spatial")))
    for old, weight in zip(before, tiny_pretrainer.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(weight), old)  # nothing was loaded


def test_a_checkpoint_with_nan_weights_loads_only_when_allowed():
    backbone = HBehaveMAEBackbone(**TINY)
    with pytest.warns(UserWarning, match=r"non-finite weights .* pos_embed_spatial .* converted "
                                         r"as it is \(allow_non_finite=True\)"):
        load_torch_state_dict(backbone, golden_state(("pos_embed_spatial",)),
                              allow_non_finite=True)
    assert np.isnan(to_numpy(backbone.position_embedding.spatial)).all()


# What makes the training step skip a batch: a NaN anywhere makes the loss non-finite, in a
# kept unit (through the encoder) or in a hidden one (through the target). The checked paths
# below are the ones the training step uses; they do not check values themselves.

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_keypoints_in_a_kept_unit_give_a_non_finite_loss(checked_forward, value):
    x = keypoints()
    x[0, 8:16] = value  # frames 8..15 are unit row 1 (units 4..7); unit 5 is kept
    pred, loss = (to_numpy(out) for out in checked_forward(x, kept_mask()))
    assert not np.isfinite(loss)
    assert not np.isfinite(pred[0]).all() and np.isfinite(pred[1]).all()


def test_nan_keypoints_in_hidden_units_keep_predictions_finite_but_not_the_loss(checked_forward):
    x = keypoints()
    x[:, :8] = np.nan  # frames 0..7 are unit row 0 (units 0..3), all hidden by this mask
    pred, loss = (to_numpy(out) for out in checked_forward(x, kept_mask(kept=(5, 6, 9, 12))))
    assert np.isfinite(pred).all()
    assert np.isnan(loss), "a NaN target must not vanish from the loss"


# ---------------------------------------------------------------- validated once

class CountingValidator:
    """Wraps `HBehaveMAEBackbone.standardize_keypoints`, the one keypoint check, counting calls."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = HBehaveMAEBackbone.standardize_keypoints

        def counted(backbone, *args, **kwargs):
            self.calls += 1
            return original(backbone, *args, **kwargs)

        monkeypatch.setattr(HBehaveMAEBackbone, "standardize_keypoints", counted)


ONE_PASS = {
    "pretrainer-call": lambda model, x: model(x),
    "pretrainer-call-with-mask": lambda model, x: model(x, unit_mask=kept_mask()),
    "pretrainer-predict": lambda model, x: model.predict(x, verbose=0),
    "pretrainer-predict-dict": lambda model, x: model.predict(
        {"keypoints": x, "mask": kept_mask()}, verbose=0),
    "pretrainer-predict_on_batch": lambda model, x: model.predict_on_batch(x),
    "pretrainer-compute_targets": lambda model, x: model.compute_targets(x),
    "pretrainer-compute_pretraining_loss": lambda model, x: model.compute_pretraining_loss(
        x, {"pred": np.zeros((2, 16, 48), "float32"), "mask": kept_mask()}),
    "backbone-call": lambda model, x: model.backbone(x),
    "backbone-predict": lambda model, x: model.backbone.predict(x, verbose=0),
    "backbone-predict_on_batch": lambda model, x: model.backbone.predict_on_batch(x),
    "backbone-encode": lambda model, x: model.backbone.encode(x),
}


@pytest.mark.parametrize("entry_point", list(ONE_PASS))
def test_each_entry_point_checks_the_keypoints_once(tiny_pretrainer, monkeypatch, entry_point):
    validator = CountingValidator(monkeypatch)
    run = compiled(tiny_pretrainer, lambda x: ONE_PASS[entry_point](tiny_pretrainer, x)) \
        if entry_point.endswith(("-call", "-mask", "-targets", "-loss", "-encode")) else (
            lambda x: ONE_PASS[entry_point](tiny_pretrainer, x))
    run(keypoints())
    assert validator.calls == 1


# ---------------------------------------------------------------- data pipelines

SEQUENCES = [np.zeros((90, 3, 24), "float32"), np.zeros((61, 3, 24), "float32")]


def test_pipeline_windows_of_another_length_than_the_models():
    with pytest.raises(ValueError, match=r"num_frames=32 must equal the model's input_size T=900"):
        make_pretraining_dataset(SEQUENCES, 32, batch_size=4, expected_input_size=(900, 3, 24))


def test_pipeline_frames_of_another_shape_than_the_models():
    with pytest.raises(ValueError, match=r"per-frame shape \(H, W\) = \(3, 24\)"):
        make_evaluation_dataset(SEQUENCES, 32, batch_size=4, expected_input_size=(32, 1, 72))
