"""SavedModel export, checked by loading it with TensorFlow alone in a fresh subprocess.

Under TensorFlow and JAX the model is exported in this process (JAX through jax2tf);
under torch `export_saved_model` re-runs itself in a TensorFlow-backend subprocess.
The loader subprocess cannot import keras_hbehavemae (nor Keras), runs the `embed`,
`serve`, `reconstruct` and `reconstruct_seeded` signatures at two batch sizes and saves
the outputs, which are compared here with the Keras model's. The export folder is in
TensorFlow Serving's layout (`OUTPUT/1/saved_model.pb`). Folder rules, weightless presets
and bad arguments: tests/faults/test_output_folder_faults.py.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import TINY, build_pretrainer, to_numpy

from keras_hbehavemae import HBehaveMAEConfig
from keras_hbehavemae.presets.folder import save_to_preset
from keras_hbehavemae.serving.export import export_saved_model

pytestmark = pytest.mark.slow  # subprocesses, model builds and SavedModels

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = HBehaveMAEConfig(**TINY, decoder_embed_dim=16, mask_ratio=0.75)
BATCH_SIZES = (1, 3)
ATOL = 1e-5

LOADER = textwrap.dedent("""
    import sys
    sys.modules["keras_hbehavemae"] = None  # the SavedModel must not need the package
    sys.modules["keras"] = None  # nor Keras
    import json
    import numpy as np
    import tensorflow as tf

    try:
        import keras_hbehavemae  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("keras_hbehavemae is importable in the loader")
    inputs, jobs, output = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    data = dict(np.load(inputs))
    results = {}
    for name, directory in jobs.items():
        loaded = tf.saved_model.load(directory)
        results[f"{name}/signatures"] = np.array(sorted(loaded.signatures))
        for batch in data["batch_sizes"]:
            keypoints = tf.constant(data[f"keypoints_{batch}"])
            for signature in ("embed", "serve"):
                outputs = loaded.signatures[signature](keypoints=keypoints)
                for key, value in outputs.items():
                    results[f"{name}/{signature}/{batch}/{key}"] = value.numpy()
            if "reconstruct" in loaded.signatures:
                outputs = loaded.signatures["reconstruct"](
                    keypoints=keypoints, mask=tf.constant(data[f"mask_{batch}"]))
                for key, value in outputs.items():
                    results[f"{name}/reconstruct/{batch}/{key}"] = value.numpy()
                for call, seed in enumerate((5, 5, 6)):
                    outputs = loaded.signatures["reconstruct_seeded"](
                        keypoints=keypoints, seed=tf.constant(seed, tf.int64))
                    for key, value in outputs.items():
                        results[f"{name}/seeded_{call}/{batch}/{key}"] = value.numpy()
    np.savez(output, **results)
""")


# What TensorFlow's C++ code writes while it loads, before its logging is set up: on CPUs
# where it turns on oneDNN's custom operations (AVX-512 VNNI and BF16 here, TensorFlow
# 2.21) these lines come whatever TF_CPP_MIN_LOG_LEVEL, TF_ENABLE_ONEDNN_OPTS or absl's
# settings say, before any code of the package runs. Every other line counts as noise.
TENSORFLOW_LOAD_LINES = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR|I0000 [\d:. ]+ \d+ (port|cpu_feature_guard)\.cc:\d+\] .*|To enable the "
    r"following instructions: .* in other operations, rebuild TensorFlow with the "
    r"appropriate compiler flags\.")


def framework_messages(stderr: str) -> list[str]:
    """The lines of `stderr` other than TensorFlow's load-time lines."""
    return [line for line in stderr.splitlines() if not TENSORFLOW_LOAD_LINES.fullmatch(line)]


def inputs_for(batch):
    rng = np.random.default_rng(batch)
    keypoints = rng.standard_normal((batch, 32, 4, 12)).astype("float32")
    mask = np.zeros((batch, 16), bool)
    for row in mask:
        row[rng.choice(16, 4, replace=False)] = True
    if batch > 1:
        mask[-1, :] = False
        mask[-1, :5] = True  # one row with a wrong kept count: flagged, not raised
        keypoints[0, 7, 1, 2] = np.nan  # one row with a NaN keypoint: flagged, not raised
    return keypoints, mask


def finite_rows(batch):
    keypoints, _ = inputs_for(batch)
    return np.isfinite(keypoints).all(axis=(1, 2, 3))


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports the tiny pretrainer (under JAX from a `.keras` file; under TensorFlow also a
    backbone-only preset through scripts/export.py), loads the SavedModels in one isolated
    subprocess and returns the outputs."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("export")
    model = build_pretrainer(CONFIG, seed=0)
    if keras.config.backend() == "jax":  # also covers the .keras file input
        model.save(folder / "model.keras")
        path = export_saved_model(folder / "model.keras", folder / "pretrainer")
    else:  # torch: saved to a temporary preset and exported by a TensorFlow subprocess
        path = export_saved_model(model, folder / "pretrainer")
    jobs = {"pretrainer": str(path)}
    if keras.config.backend() == "tensorflow":
        save_to_preset(model.backbone, folder / "backbone_preset")
        result = run([sys.executable, str(ROOT / "scripts" / "export.py"),
                      f"--preset={folder / 'backbone_preset'}",
                      f"--output_dir={folder / 'backbone'}", "--version=3"])
        jobs["backbone"] = str(folder / "backbone" / "3")
        assert result.stdout.splitlines() == [
            f"exported {folder / 'backbone_preset'} -> {jobs['backbone']}",
            "signatures: serve, embed"]
        assert framework_messages(result.stderr) == [], (
            f"framework messages without --verbose:\n{result.stderr}")
    data = {"batch_sizes": np.array(BATCH_SIZES)}
    for batch in BATCH_SIZES:
        data[f"keypoints_{batch}"], data[f"mask_{batch}"] = inputs_for(batch)
    np.savez(folder / "inputs.npz", **data)
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("PYTHON")}
    run([sys.executable, "-I", "-c", LOADER, str(folder / "inputs.npz"), json.dumps(jobs),
         str(folder / "outputs.npz")], cwd=folder, env=environment)
    with np.load(folder / "outputs.npz") as archive:
        results = {key: archive[key] for key in archive.files}
    return model, jobs, results


def test_tensorflow_serving_layout_signatures_and_export_info(exported):
    model, jobs, results = exported
    version = pathlib.Path(jobs["pretrainer"])
    assert version.name == "1" and (version / "saved_model.pb").is_file()
    assert [entry.name for entry in version.parent.iterdir()] == ["1"]
    assert set(results["pretrainer/signatures"]) == {
        "serve", "embed", "reconstruct", "reconstruct_seeded", "serving_default"}
    info = json.loads((version / "assets.extra" / "hbehavemae.json").read_text())
    assert info["num_mask_units"] == 16 and info["num_kept_units"] == 4
    assert info["pred_stride"] == 48 and info["input_size"] == [32, 4, 12]
    assert info["version"] == 1 and "reconstruct_seeded" in info["default_mask"]
    if "backbone" in jobs:
        assert set(results["backbone/signatures"]) == {"serve", "embed", "serving_default"}
        assert json.loads((pathlib.Path(jobs["backbone"]) / "assets.extra" / "hbehavemae.json")
                          .read_text())["version"] == 3


def test_embed_matches_keras(exported):
    model, jobs, results = exported
    for batch in BATCH_SIZES:
        keypoints, _ = inputs_for(batch)
        finite = finite_rows(batch)  # the Python API takes finite rows only
        expected = [to_numpy(level)
                    for level in model.backbone.predict_on_batch(keypoints[finite])]
        for name in jobs:
            for signature in ("embed", "serve"):
                np.testing.assert_array_equal(
                    results[f"{name}/{signature}/{batch}/keypoints_are_finite"], finite)
                for k, level in enumerate(expected):
                    got = results[f"{name}/{signature}/{batch}/level_{k}"]
                    assert got.shape == (batch, *level.shape[1:])
                    np.testing.assert_allclose(got[finite], level, rtol=0, atol=ATOL,
                                               err_msg=f"{name}/{signature}/{batch}/{k}")


def test_reconstruct_matches_keras(exported):
    from keras_hbehavemae.embeddings.reconstruction import unpatchify

    model, _, results = exported
    for batch in BATCH_SIZES:
        keypoints, mask = inputs_for(batch)
        valid = mask.sum(axis=1) == 4
        np.testing.assert_array_equal(results[f"pretrainer/reconstruct/{batch}/mask_is_valid"],
                                      valid)
        finite = finite_rows(batch)
        np.testing.assert_array_equal(
            results[f"pretrainer/reconstruct/{batch}/keypoints_are_finite"], finite)
        valid &= finite
        expected = to_numpy(model.predict_on_batch(
            {"keypoints": keypoints[valid], "mask": mask[valid]})["pred"])
        pred = results[f"pretrainer/reconstruct/{batch}/pred"]
        assert pred.shape == (batch, 16, 48)
        np.testing.assert_allclose(pred[valid], expected, rtol=0, atol=ATOL)
        np.testing.assert_array_equal(results[f"pretrainer/reconstruct/{batch}/strided"],
                                      unpatchify(pred, model.geometry))


def test_reconstruct_seeded_draws_a_valid_mask_from_the_seed(exported):
    model, _, results = exported
    for batch in BATCH_SIZES:
        keypoints, _ = inputs_for(batch)
        finite = finite_rows(batch)
        seeded = {key.split("/")[-1]: value for key, value in results.items()
                  if key.startswith(f"pretrainer/seeded_0/{batch}/")}  # seed 5
        mask = seeded["mask"]
        assert mask.shape == (batch, 16) and (mask.sum(axis=1) == 4).all()
        assert seeded["mask_is_valid"].all()
        np.testing.assert_array_equal(seeded["keypoints_are_finite"], finite)
        np.testing.assert_array_equal(results[f"pretrainer/seeded_2/{batch}/mask"].sum(1), 4)
        # The same seed gives the same mask (calls 0 and 1); another seed another (call 2).
        np.testing.assert_array_equal(mask, results[f"pretrainer/seeded_1/{batch}/mask"])
        expected = to_numpy(model.predict_on_batch(
            {"keypoints": keypoints[finite], "mask": mask[finite]})["pred"])
        np.testing.assert_allclose(seeded["pred"][finite], expected, rtol=0, atol=ATOL)
    assert (results["pretrainer/seeded_0/3/mask"] != results["pretrainer/seeded_2/3/mask"]).any()
