"""Prints the largest deviation from the golden fixtures, per array group, on this backend.

Usage: KERAS_BACKEND=jax python benchmarks/parity_report.py
"""

import json
import pathlib

import keras
import numpy as np

from keras_hbehavemae.convert.checkpoint import build_from_torch_checkpoint
from keras_hbehavemae.convert.published import config_from_published_arguments

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def report(name: str) -> None:
    metadata = json.loads((FIXTURES / f"{name}.json").read_text())
    config = config_from_published_arguments(
        dict(metadata["model"], mask_ratio=metadata["run"]["mask_ratio"]), f"{name}.json")
    model = build_from_torch_checkpoint(FIXTURES / f"{name}.npz", config)
    arrays = dict(np.load(FIXTURES / f"{name}.npz"))
    outputs = model(arrays["input"], unit_mask=arrays["mask"], return_intermediates=True)
    deviations = {}
    for key, value in outputs["intermediates"].items():
        expected = arrays[key].reshape(keras.ops.convert_to_numpy(value).shape)
        deviations[key] = np.abs(keras.ops.convert_to_numpy(value) - expected).max()
    deviations["pred"] = np.abs(keras.ops.convert_to_numpy(outputs["pred"]) - arrays["pred"]).max()
    loss = float(keras.ops.convert_to_numpy(
        model.compute_pretraining_loss(arrays["input"], outputs)))
    block_outputs = []
    levels = model.backbone.encode(arrays["input"], block_outputs=block_outputs)
    for index, tokens in enumerate(block_outputs):
        deviations[f"full/block/{index}"] = np.abs(
            keras.ops.convert_to_numpy(tokens) - arrays[f"full/block/{index}"]).max()
    for index, level in enumerate(levels):
        deviations[f"full/intermediate/{index}"] = np.abs(
            keras.ops.convert_to_numpy(level) - arrays[f"full/intermediate/{index}"]).max()
    worst = max(deviations, key=deviations.get)
    print(f"{keras.config.backend():10s} {name:24s} max |activation diff| = "
          f"{deviations[worst]:.2e} ({worst}); loss rel. diff = "
          f"{abs(loss - metadata['loss']) / metadata['loss']:.2e}")


if __name__ == "__main__":
    for fixture in ("hbehavemae_tiny_multi", "hbehavemae_tiny_single"):
        report(fixture)
