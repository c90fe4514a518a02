"""SavedModel export, checked by loading it with TensorFlow alone in a fresh subprocess.

Under TensorFlow and JAX the model is exported in this process (JAX through jax2tf);
under torch `export_saved_model` re-runs itself in a TensorFlow-backend subprocess.
The loader subprocess cannot import keras_hbehavemae (nor Keras), runs the `embed`,
`serve` and `reconstruct` signatures at two batch sizes and saves the outputs, which are
compared here with the Keras model's.
"""

import json
import os
import pathlib
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
    np.savez(output, **results)
""")


def inputs_for(batch):
    rng = np.random.default_rng(batch)
    keypoints = rng.standard_normal((batch, 32, 4, 12)).astype("float32")
    mask = np.zeros((batch, 16), bool)
    for row in mask:
        row[rng.choice(16, 4, replace=False)] = True
    if batch > 1:
        mask[-1, :] = False
        mask[-1, :5] = True  # one row with a wrong kept count: flagged, not raised
    return keypoints, mask


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
    jobs = {"pretrainer": str(folder / "pretrainer")}
    if keras.config.backend() == "jax":  # also covers the .keras file input
        model.save(folder / "model.keras")
        export_saved_model(folder / "model.keras", jobs["pretrainer"])
    else:  # torch: saved to a temporary preset and exported by a TensorFlow subprocess
        export_saved_model(model, jobs["pretrainer"])
    if keras.config.backend() == "tensorflow":
        save_to_preset(model.backbone, folder / "backbone_preset")
        jobs["backbone"] = str(folder / "backbone")
        result = run([sys.executable, str(ROOT / "scripts" / "export.py"),
                      f"--preset={folder / 'backbone_preset'}",
                      f"--output_dir={jobs['backbone']}"])
        assert "signatures: serve, embed" in result.stdout
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


def test_signatures_and_export_info(exported):
    model, jobs, results = exported
    assert set(results["pretrainer/signatures"]) == {
        "serve", "embed", "reconstruct", "serving_default"}
    info = json.loads(
        (pathlib.Path(jobs["pretrainer"]) / "assets.extra" / "hbehavemae.json").read_text())
    assert info["num_mask_units"] == 16 and info["num_kept_units"] == 4
    assert info["pred_stride"] == 48 and info["input_size"] == [32, 4, 12]
    if "backbone" in jobs:
        assert set(results["backbone/signatures"]) == {"serve", "embed", "serving_default"}


def test_embed_matches_keras(exported):
    model, jobs, results = exported
    for batch in BATCH_SIZES:
        keypoints, _ = inputs_for(batch)
        expected = [to_numpy(level) for level in model.backbone.predict_on_batch(keypoints)]
        for name in jobs:
            for signature in ("embed", "serve"):
                for k, level in enumerate(expected):
                    got = results[f"{name}/{signature}/{batch}/level_{k}"]
                    assert got.shape == level.shape
                    np.testing.assert_allclose(got, level, rtol=0, atol=ATOL,
                                               err_msg=f"{name}/{signature}/{batch}/{k}")


def test_reconstruct_matches_keras(exported):
    from keras_hbehavemae.embeddings.reconstruction import unpatchify

    model, _, results = exported
    for batch in BATCH_SIZES:
        keypoints, mask = inputs_for(batch)
        valid = mask.sum(axis=1) == 4
        np.testing.assert_array_equal(results[f"pretrainer/reconstruct/{batch}/mask_is_valid"],
                                      valid)
        expected = to_numpy(model.predict_on_batch(
            {"keypoints": keypoints[valid], "mask": mask[valid]})["pred"])
        pred = results[f"pretrainer/reconstruct/{batch}/pred"]
        assert pred.shape == (batch, 16, 48)
        np.testing.assert_allclose(pred[valid], expected, rtol=0, atol=ATOL)
        np.testing.assert_array_equal(results[f"pretrainer/reconstruct/{batch}/strided"],
                                      unpatchify(pred, model.geometry))


def test_export_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such preset folder"):
        export_saved_model(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="Available presets: .*hbehavemae_shot7m2"):
        export_saved_model("hbehavemae_no_such_name", tmp_path / "out")
    (tmp_path / "weights.txt").write_text("")
    with pytest.raises(ValueError, match="expected a preset folder"):
        export_saved_model(tmp_path / "weights.txt", tmp_path / "out")
    with pytest.raises(ValueError, match="batch_size"):
        export_saved_model(tmp_path / "missing", tmp_path / "out", batch_size=0)
