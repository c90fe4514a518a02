"""TensorFlow SavedModel export of hBehaveMAE for serving.

`export_saved_model(model_or_preset, directory)` writes a SavedModel in TensorFlow Serving's
layout, `directory/<version>/saved_model.pb` (default version 1; see `serving.folder` for
how an existing folder is treated: whole or not at all, never mixed with other files), so
`tensorflow_model_server --model_base_path=<directory>` serves the folder as it is. The
endpoints are deterministic unless they say otherwise, and take any batch size:

- `serve` (also `serving_default`) and `embed`: input `keypoints` float32
  `[None, T, H, W]`; outputs `level_0` … `level_{L-1}`, the backbone's level maps
  `[None, T_k, H_k, W_k, out_k]` (rerolled, projected, not normalised), and
  `keypoints_are_finite` bool `[None]`.
- `reconstruct` (pretrainers only): inputs `keypoints` and `mask` bool `[None, U]`
  (True = kept, exactly K per row); outputs `pred` `[None, U, P]`, `strided`
  `[None, T/pt, H, W]` (`pred` un-patchified, see `models.losses.unpatchify`),
  `mask_is_valid` bool `[None]` (the row keeps exactly K units) and
  `keypoints_are_finite`.
- `reconstruct_seeded` (pretrainers only), the **default mask** for `reconstruct`:
  inputs `keypoints` and `seed` int64 scalar; it draws a random mask with exactly K kept
  units per row (`tf.random.stateless_uniform` noise from `[seed, 0]`, the K smallest
  kept: the same for the same seed, batch size and TensorFlow version), runs
  `reconstruct` on it and returns its outputs plus the `mask` it drew.

**Validity outputs.** The graph cannot raise, so it flags rows instead: the other
outputs of a row whose `mask_is_valid` or `keypoints_are_finite` is False are
meaningless (NaN or inf keypoints make that row's outputs non-finite; the other rows are
unaffected). The Python API rejects such input instead.

All outputs are float32 (bool for the flags). The SavedModel needs only TensorFlow to
load (`tf.saved_model.load(directory / "1")`), not Keras or this package. The numbers a
client needs (T, H, W, U, K, P, the mask grid, …) are written to
`<directory>/<version>/assets.extra/hbehavemae.json`.

Weights are never silently random: a preset without trained or converted weights is
refused unless `allow_random_weights=True` (`--allow_random_weights`).

Backends:

- **TensorFlow**: traced directly; the SavedModel runs on any device TensorFlow has.
- **JAX**: converted with `jax2tf` (native serialization: StableHLO inside an
  `XlaCallModule` op) with a symbolic batch dimension. The graph is lowered for the
  platform JAX runs on (normally `cpu`); pass `platforms=("cpu", "cuda")` to serve it on
  other platforms too.
- **torch**: Keras cannot export torch graphs to a SavedModel (that needs torch-xla).
  The model is saved to a temporary preset folder (weights are backend-independent) and
  exported by a subprocess running `hbehavemae export` with `KERAS_BACKEND=tensorflow`.

Framework messages (TensorFlow's INFO logs, Keras's export summary) are shown only with
`verbose=True` (`--verbose`).

Example (command line):

    hbehavemae export --preset presets/my_model --output_dir exported/
    tensorflow_model_server --model_name=hbehavemae --model_base_path=$PWD/exported
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import warnings

import keras
from keras import ops

from keras_hbehavemae.files.atomic import check_output_is_not_input
from keras_hbehavemae.loading import describe_source, load_model
from keras_hbehavemae.models.losses import unpatchify
from keras_hbehavemae.presets import registry
from keras_hbehavemae.presets.folder import check_weights_allowed, save_to_preset
from keras_hbehavemae.serving.folder import (
    DEFAULT_VERSION,
    check_export_folder,
    check_version,
    write_export_version,
)

EXPORT_INFO_FILE = "hbehavemae.json"
EMBED_SIGNATURES = ("serve", "embed")  # the same function
RECONSTRUCT_SIGNATURE = "reconstruct"
SEEDED_RECONSTRUCT_SIGNATURE = "reconstruct_seeded"


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
            signatures=[*EMBED_SIGNATURES, RECONSTRUCT_SIGNATURE, SEEDED_RECONSTRUCT_SIGNATURE],
            mask_grid=list(geometry.mask_grid), num_mask_units=geometry.num_mask_units,
            num_kept_units=geometry.num_kept_units, mask_ratio=config.mask_ratio,
            pred_stride=geometry.pred_stride, label_patch=list(geometry.label_patch),
            norm_loss=bool(config.norm_loss), mask_convention="True = kept/visible",
            default_mask=f"{SEEDED_RECONSTRUCT_SIGNATURE}: a random mask of exactly "
                         "num_kept_units True values per row, drawn from the int64 input "
                         "`seed`")
    return info


def _finite_rows(keypoints):
    """`[B]` bool: every value of the row is finite."""
    return ops.all(ops.isfinite(keypoints), axis=(1, 2, 3))


def _build_archive(model, batch_size, platforms):
    import tensorflow as tf

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
        outputs = {f"level_{k}": ops.cast(level, "float32") for k, level in enumerate(levels)}
        return dict(outputs, keypoints_are_finite=_finite_rows(keypoints))

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
                    "mask_is_valid": ops.equal(kept, geometry.num_kept_units),
                    "keypoints_are_finite": _finite_rows(keypoints)}

        reconstruct_function = archive.add_endpoint(
            RECONSTRUCT_SIGNATURE, reconstruct, input_signature=[keypoints_spec, mask_spec],
            **options)
        seeded = _seeded_reconstruct(reconstruct_function, keypoints_spec,
                                     geometry.num_mask_units, geometry.num_kept_units)
        archive.add_endpoint(SEEDED_RECONSTRUCT_SIGNATURE, seeded)
    return archive


def _seeded_reconstruct(reconstruct_function, keypoints_spec, num_units: int, num_kept: int):
    """The `reconstruct_seeded` endpoint: a TensorFlow function (on every backend) that
    draws a valid mask from `seed` and calls the traced `reconstruct` endpoint."""
    import tensorflow as tf

    seed_spec = tf.TensorSpec((), tf.int64, name="seed")

    @tf.function(input_signature=[keypoints_spec, seed_spec])
    def reconstruct_seeded(keypoints, seed):
        batch = tf.shape(keypoints)[0]
        noise = tf.random.stateless_uniform(tf.stack([batch, num_units]),
                                            seed=tf.stack([seed, tf.zeros_like(seed)]))
        ranks = tf.argsort(tf.argsort(noise, axis=1), axis=1)  # [B, U], rank of each unit
        mask = ranks < num_kept  # the K units of smallest noise are kept
        return dict(reconstruct_function(keypoints, mask), mask=mask)

    reconstruct_seeded.get_concrete_function()
    return reconstruct_seeded


def _export_in_subprocess(source, directory, batch_size, platforms, allow_random_weights,
                          version, overwrite):
    """Torch backend: export through a TensorFlow-backend subprocess (`hbehavemae export`)."""
    with tempfile.TemporaryDirectory(prefix="hbehavemae-export-") as temporary:
        if isinstance(source, keras.Model):
            save_to_preset(source, pathlib.Path(temporary) / "preset",
                           weights="initial" if allow_random_weights else "trained")
            source = pathlib.Path(temporary) / "preset"
        command = [sys.executable, "-m", "keras_hbehavemae.cli.export",
                   f"--preset={os.fspath(source)}", f"--output_dir={os.fspath(directory)}",
                   f"--version={version}"]
        if batch_size is not None:
            command.append(f"--batch_size={batch_size}")
        if platforms:
            command.append(f"--platforms={','.join(platforms)}")
        if allow_random_weights:
            command.append("--allow_random_weights")
        if overwrite:
            command.append("--overwrite")
        environment = dict(os.environ, KERAS_BACKEND="tensorflow")
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(
            "export: the TensorFlow-backend export subprocess failed (the torch backend "
            f"exports through it) with exit code {result.returncode}:\n"
            f"{result.stderr[-4000:]}")
    return pathlib.Path(directory) / str(version)


@contextlib.contextmanager
def quiet_framework_logs(verbose: bool):
    """Silences TensorFlow's and absl's INFO messages (not warnings) unless `verbose`."""
    if verbose:
        yield
        return
    from absl import logging as absl_logging

    tensorflow_logger = logging.getLogger("tensorflow")
    level, verbosity = tensorflow_logger.level, absl_logging.get_verbosity()
    tensorflow_logger.setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        with warnings.catch_warnings():
            # jax2tf deprecates the `native_serialization` argument Keras always passes.
            warnings.filterwarnings("ignore", message=".*native_serialization.*")
            yield
    finally:
        tensorflow_logger.setLevel(level)
        absl_logging.set_verbosity(verbosity)


def export_saved_model(model_or_preset, directory, *, version: int = DEFAULT_VERSION,
                       overwrite: bool = False, batch_size: int | None = None,
                       platforms=None, verbose: bool = False,
                       allow_random_weights: bool = False) -> pathlib.Path:
    """Writes `directory/<version>/`, a SavedModel with the signatures of the module docstring.

    Args:
        model_or_preset: an `HBehaveMAE` pretrainer (every signature), an
            `HBehaveMAEBackbone` (`serve`/`embed` only), a preset folder (with `task.json`:
            the pretrainer; without: the backbone) or a `.keras` file.
        directory: the export folder (TensorFlow Serving's `--model_base_path`).
        version: the version folder to write, a positive integer.
        overwrite: replace `directory` as a whole even if it holds something other than
            exports (by default such a folder is refused and nothing is written).
        batch_size: a fixed batch size; None (default) accepts any batch size.
        platforms: JAX backend only: the platforms to lower for, e.g. `("cpu", "cuda")`
            (default: the platform JAX runs on).
        verbose: show the framework's messages and the signatures (Keras' export summary).
        allow_random_weights: accept a preset without trained or converted weights.

    Returns:
        The SavedModel folder, `directory/<version>`.

    Raises:
        ValueError: an unsupported model or file, an invalid argument, or random weights
            without consent; FileNotFoundError: a missing path; FileExistsError: a
            `directory` that holds something else (without `overwrite`); RuntimeError: the
            torch backend's export subprocess failed.
    """
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size: {batch_size} must be a positive int or None")
    batch_size = None if batch_size is None else int(batch_size)
    version = check_version(version)
    if platforms is not None and keras.config.backend() != "jax":
        raise ValueError("platforms: applies to the JAX backend only (TensorFlow-backend "
                         "SavedModels run on any device TensorFlow has)")
    directory = pathlib.Path(directory)
    if isinstance(model_or_preset, str | os.PathLike):
        check_output_is_not_input(directory, "--output_dir", {"--preset": model_or_preset})
    check_export_folder(directory, version, overwrite)  # before anything is built
    if keras.config.backend() == "torch":
        if not isinstance(model_or_preset, keras.Model):
            model_or_preset = _local_path(model_or_preset, allow_random_weights)
        return _export_in_subprocess(model_or_preset, directory.resolve(), batch_size,
                                     platforms, allow_random_weights, version, overwrite)
    if keras.config.backend() not in ("tensorflow", "jax"):
        raise ValueError(
            f"export: the {keras.config.backend()!r} backend cannot write a SavedModel; use "
            "KERAS_BACKEND=tensorflow or jax")
    model = load_model(model_or_preset, allow_random_weights=allow_random_weights)
    info = dict(export_info(model), backend=keras.config.backend(),
                keras_version=keras.__version__, batch_size=batch_size, version=version)

    def write(folder: pathlib.Path) -> None:
        with quiet_framework_logs(verbose):
            archive = _build_archive(model, batch_size, platforms)
            archive.write_out(os.fspath(folder), verbose=verbose)
        extra = folder / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")

    return write_export_version(directory, version, write, overwrite=overwrite)


def _local_path(source, allow_random_weights: bool) -> pathlib.Path:
    """The absolute path of a preset or model file (checked before the subprocess starts)."""
    if describe_source(source) == "preset":
        directory = registry.resolve_preset(os.fspath(source))
        check_weights_allowed(directory, allow_random_weights)
        return directory.resolve()
    return pathlib.Path(source).resolve()
