"""TensorFlow SavedModel export of hBehaveMAE for serving (SPEC §12.1, Export).

`export_saved_model(model_or_preset, directory)` writes a SavedModel whose endpoints are
deterministic (no random masking) and take any batch size:

- `serve` (also `serving_default`) and `embed`: input `keypoints` float32
  `[None, T, H, W]`; outputs `level_0` … `level_{L-1}`, the backbone's level maps
  `[None, T_k, H_k, W_k, out_k]` (SPEC §10: rerolled, projected, not normalised).
- `reconstruct` (pretrainers only): inputs `keypoints` and `mask` bool `[None, U]`
  (True = kept, exactly K per row); outputs `pred` `[None, U, P]`, `strided`
  `[None, T/pt, H, W]` (`pred` un-patchified, see `reconstruction.unpatchify`) and
  `mask_is_valid` bool `[None]` (the row keeps exactly K units; the other outputs of an
  invalid row are meaningless, since the graph cannot raise).

All outputs are float32 (bool for `mask_is_valid`). The SavedModel needs only TensorFlow
to load (`tf.saved_model.load(directory)`), not Keras or this package. The numbers a client
needs (T, H, W, U, K, P, the mask grid, …) are written to
`<directory>/assets.extra/hbehavemae.json`.

Backends:

- **TensorFlow**: traced directly; the SavedModel runs on any device TensorFlow has.
- **JAX**: converted with `jax2tf` (native serialization: StableHLO inside an
  `XlaCallModule` op) with a symbolic batch dimension. The graph is lowered for the
  platform JAX runs on (normally `cpu`); pass `platforms=("cpu", "cuda")` to serve it on
  other platforms too.
- **torch**: Keras cannot export torch graphs to a SavedModel (that needs torch-xla).
  The model is saved to a temporary preset folder (weights are backend-independent) and
  exported by a subprocess running `python -m keras_hbehavemae.export` with
  `KERAS_BACKEND=tensorflow`.

Example (command line):

    python -m keras_hbehavemae.export --source presets/my_model --output_dir exported/
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import warnings

import keras
from keras import ops

EXPORT_INFO_FILE = "hbehavemae.json"
EMBED_SIGNATURES = ("serve", "embed")  # the same function
RECONSTRUCT_SIGNATURE = "reconstruct"


def resolve_source(source) -> pathlib.Path:
    """The preset folder or `.keras` file that `source` names (nothing is loaded).

    Raises:
        ValueError: no such path nor built-in preset name (the message lists the names),
            or a path that is neither a folder nor a `.keras` file.
    """
    from keras_hbehavemae import presets

    path = pathlib.Path(source)
    if not path.exists() and isinstance(source, str):
        path = presets.resolve_preset(source)  # a built-in name, or an error listing them
    if path.is_dir() or (path.suffix == ".keras" and path.is_file()):
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such preset folder or .keras file")
    raise ValueError(
        f"{path}: expected a preset folder (config.json, model.weights.h5, optional "
        "task.json) or a .keras file")


def load_model_for_export(source):
    """An `HBehaveMAE` or `HBehaveMAEBackbone` from a model, a preset folder or a `.keras` file.

    A preset folder with `task.json` gives the pretrainer (with its decoder); one without
    gives the backbone.
    """
    from keras_hbehavemae.backbone import HBehaveMAEBackbone
    from keras_hbehavemae.presets import TASK_CONFIG_FILE, load_backbone, load_pretrainer
    from keras_hbehavemae.pretrainer import HBehaveMAE

    if isinstance(source, keras.Model):
        model = source
    else:
        path = resolve_source(source)
        if path.is_dir():
            model = (load_pretrainer(path) if (path / TASK_CONFIG_FILE).exists()
                     else load_backbone(path))
        else:
            model = keras.saving.load_model(path)
    if not isinstance(model, HBehaveMAE | HBehaveMAEBackbone):
        raise ValueError(
            f"model: expected an HBehaveMAE or HBehaveMAEBackbone, got {type(model).__name__}")
    return model


def _split(model):
    """`(backbone, pretrainer or None)`."""
    backbone = getattr(model, "backbone", None)
    return (backbone, model) if backbone is not None else (model, None)


def export_info(model) -> dict:
    """The geometry a serving client needs, as plain JSON values."""
    backbone, pretrainer = _split(model)
    geometry = (pretrainer or backbone).geometry
    config = geometry.config
    info = {
        "input_size": list(config.input_size),
        "patch_kernel": list(config.patch_kernel),
        "levels": [
            {"name": f"level_{level.stage}", "grid": list(level.grid), "out_dim": level.out_dim,
             "frames_per_token": level.frames_per_token}
            for level in geometry.levels
        ],
        "signatures": list(EMBED_SIGNATURES),
    }
    if pretrainer is not None:
        info.update(
            signatures=[*EMBED_SIGNATURES, RECONSTRUCT_SIGNATURE],
            mask_grid=list(geometry.mask_grid), num_mask_units=geometry.num_mask_units,
            num_kept_units=geometry.num_kept_units, mask_ratio=config.mask_ratio,
            pred_stride=geometry.pred_stride, label_patch=list(geometry.label_patch),
            norm_loss=bool(config.norm_loss), mask_convention="True = kept/visible")
    return info


def _build_archive(model, batch_size, platforms):
    import tensorflow as tf

    from keras_hbehavemae.reconstruction import unpatchify

    backbone, pretrainer = _split(model)
    geometry = (pretrainer or backbone).geometry
    keypoints_spec = tf.TensorSpec((batch_size, *geometry.config.input_size), tf.float32,
                                   name="keypoints")
    archive = keras.export.ExportArchive()
    archive.track(pretrainer or backbone)
    options = {}
    if keras.config.backend() == "jax":
        # Serving needs no gradients; without this, saving also exports (and traces) the
        # model's VJP, which doubles the export time.
        jax2tf_kwargs = {"with_gradient": False}
        if platforms:
            jax2tf_kwargs["native_serialization_platforms"] = tuple(platforms)
        options["jax2tf_kwargs"] = jax2tf_kwargs

    def embed(keypoints):
        levels = backbone(keypoints, training=False)
        return {f"level_{k}": ops.cast(level, "float32") for k, level in enumerate(levels)}

    # "serve" is the same traced function as "embed": trace (and, on JAX, convert) once.
    embed_function = archive.add_endpoint("embed", embed, input_signature=[keypoints_spec],
                                          **options)
    embed_function.get_concrete_function()
    archive.add_endpoint("serve", embed_function)

    if pretrainer is not None:
        mask_spec = tf.TensorSpec((batch_size, geometry.num_mask_units), tf.bool, name="mask")

        def reconstruct(keypoints, mask):
            pred = ops.cast(pretrainer(keypoints, unit_mask=mask, training=False)["pred"],
                            "float32")
            kept = ops.sum(ops.cast(mask, "int32"), axis=1)
            return {"pred": pred, "strided": unpatchify(pred, geometry),
                    "mask_is_valid": ops.equal(kept, geometry.num_kept_units)}

        archive.add_endpoint(RECONSTRUCT_SIGNATURE, reconstruct,
                             input_signature=[keypoints_spec, mask_spec], **options)
    return archive


def _export_in_subprocess(source, directory, batch_size, platforms):
    """Torch backend: export through a TensorFlow-backend subprocess."""
    with tempfile.TemporaryDirectory(prefix="hbehavemae-export-") as temporary:
        if isinstance(source, keras.Model):
            from keras_hbehavemae.presets import save_to_preset

            save_to_preset(source, temporary)
            source = temporary
        command = [sys.executable, "-m", "keras_hbehavemae.export",
                   f"--source={os.fspath(source)}", f"--output_dir={os.fspath(directory)}"]
        if batch_size is not None:
            command.append(f"--batch_size={batch_size}")
        if platforms:
            command.append(f"--platforms={','.join(platforms)}")
        environment = dict(os.environ, KERAS_BACKEND="tensorflow")
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(
            "export: the TensorFlow-backend export subprocess failed (the torch backend "
            f"exports through it) with exit code {result.returncode}:\n"
            f"{result.stderr[-4000:]}")
    return pathlib.Path(directory)


def export_saved_model(model_or_preset, directory, *, batch_size: int | None = None,
                       platforms=None, verbose: bool = False) -> pathlib.Path:
    """Writes a TensorFlow SavedModel with the `serve`/`embed` (and `reconstruct`) signatures.

    Args:
        model_or_preset: an `HBehaveMAE` pretrainer (all three signatures), an
            `HBehaveMAEBackbone` (`serve`/`embed` only), a preset folder (with `task.json`:
            the pretrainer; without: the backbone) or a `.keras` file.
        directory: the SavedModel folder to write.
        batch_size: a fixed batch size; None (default) accepts any batch size.
        platforms: JAX backend only: the platforms to lower for, e.g. `("cpu", "cuda")`
            (default: the platform JAX runs on).
        verbose: print the signatures (Keras' export summary).

    Returns:
        The SavedModel directory.

    Raises:
        ValueError: an unsupported model or file; FileNotFoundError: a missing path;
        RuntimeError: the torch backend's export subprocess failed.
    """
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size: {batch_size} must be a positive int or None")
    batch_size = None if batch_size is None else int(batch_size)
    if platforms is not None and keras.config.backend() != "jax":
        raise ValueError("platforms: applies to the JAX backend only (TensorFlow-backend "
                         "SavedModels run on any device TensorFlow has)")
    directory = pathlib.Path(directory)
    if keras.config.backend() == "torch":
        if not isinstance(model_or_preset, keras.Model):
            model_or_preset = resolve_source(model_or_preset).resolve()
        return _export_in_subprocess(model_or_preset, directory.resolve(), batch_size,
                                     platforms)
    if keras.config.backend() not in ("tensorflow", "jax"):
        raise ValueError(
            f"export: the {keras.config.backend()!r} backend cannot write a SavedModel; use "
            "KERAS_BACKEND=tensorflow or jax")
    model = load_model_for_export(model_or_preset)
    with warnings.catch_warnings():
        # jax2tf deprecates the `native_serialization` argument Keras always passes.
        warnings.filterwarnings("ignore", message=".*native_serialization.*")
        archive = _build_archive(model, batch_size, platforms)
        archive.write_out(os.fspath(directory), verbose=verbose)
    extra = directory / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    info = dict(export_info(model), backend=keras.config.backend(),
                keras_version=keras.__version__, batch_size=batch_size)
    (extra / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return directory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_hbehavemae.export",
        description="Export an hBehaveMAE preset folder or .keras file as a SavedModel.")
    parser.add_argument("--source", required=True, help="Preset folder or .keras file.")
    parser.add_argument("--output_dir", required=True, help="SavedModel folder to write.")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="Fixed batch size (default: any).")
    parser.add_argument("--platforms", default=None,
                        help="JAX only: comma-separated platforms, e.g. cpu,cuda.")
    arguments = parser.parse_args(argv)
    platforms = arguments.platforms.split(",") if arguments.platforms else None
    try:
        path = export_saved_model(arguments.source, arguments.output_dir,
                                  batch_size=arguments.batch_size, platforms=platforms)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    info = json.loads((path / "assets.extra" / EXPORT_INFO_FILE).read_text())
    print(f"exported {arguments.source} -> {path} (signatures: {', '.join(info['signatures'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
