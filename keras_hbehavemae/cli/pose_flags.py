"""The pose-file flags of `hbehavemae pretrain` and `hbehavemae embed`, and what they build.

`pretrain --data FILES --source_software NAME` reads your tracking files, sizes the model
from their geometry (`--size small|base`, `keras_hbehavemae.models.sizes`) and records the
preprocessing in the run; `embed --preset RUN/preset --data FILES` repeats it.
"""

from __future__ import annotations

from typing import Any

from absl import flags

#: Training settings per `--size` (the architecture is `models.sizes.SIZES`). `small` caps an
#: epoch at 200 steps, so that a run takes minutes on a 2-core CPU whatever the data's size.
SIZE_TRAINING = {
    "small": dict(batch_size=32, epochs=8, warmup_epochs=1, blr=4e-3, steps_per_epoch=200,
                  data_augment=False),
    "base": dict(batch_size=512, epochs=200, warmup_epochs=40, blr=1.6e-4, data_augment=False),
}
PREPROCESSING_FLAGS = ("keypoints", "individuals", "confidence_threshold", "normalise", "fill",
                       "target_fps")
DEFAULT_NORMALISE = "bounds"
GEOMETRY_PLACEHOLDER = {
    "input_size": "WINDOW,H,W from your files (H individuals, W = keypoints x space)",
    "patch_kernel": "3,1,W",
    "q_strides": "5,1,1;1,H,1 (one individual: 5,1,1;2,1,1)",
}


def define_pose_flags(flag_values: flags.FlagValues = flags.FLAGS, *,
                      embedding: bool = False) -> None:
    """Defines the pose flags; `embedding` words the preprocessing ones as the preset's."""
    from keras_hbehavemae.data.pose_io import SOURCE_SOFTWARE

    fv = dict(flag_values=flag_values)

    def default(training: str | None) -> str:
        if embedding:
            return " (default: as the preset recorded it)."
        return f" (default: {training})." if training else "."

    flags.DEFINE_string("data", None, "Your pose-tracking files: a folder, a quoted glob "
                        "(\"sessions/*.h5\"), a manifest CSV (columns path, split, labels) or "
                        "one file. Each file is one recording.", **fv)
    flags.DEFINE_string("source_software", None, "The software that wrote the --data files: "
                        + ", ".join(SOURCE_SOFTWARE) + " (DeepLabCut and SLEAP .h5 are read "
                        "directly; the other files need the [pose] extra)" + default(None),
                        **fv)
    flags.DEFINE_float("fps", None, "The recordings' frame rate, for files that do not store "
                       "one (DeepLabCut, SLEAP, LightningPose, Anipose)" + default(None), **fv)
    flags.DEFINE_list("keypoints", None, "Keypoint names, in model order"
                      + default("the first file's"), **fv)
    flags.DEFINE_list("individuals", None, "Individual names, in model order"
                      + default("every individual of each file, in its order"), **fv)
    flags.DEFINE_float("confidence_threshold", None, "Points with a lower confidence become "
                       "gaps, filled along time" + default("keep every point"), **fv)
    flags.DEFINE_string("normalise", None, "none, arena:SIZE[,SIZE] (the arena [0, SIZE] maps "
                        "to [-1, 1]), bounds (the training data's range maps to [-1, 1]) or "
                        "egocentric:KEYPOINT[,HEADING_KEYPOINT]" + default(None), **fv)
    flags.DEFINE_enum("fill", None, ["interpolate", "hold"], "Gap filling along time"
                      + default(None), **fv)
    flags.DEFINE_float("target_fps", None, "The model's frame rate; recordings at another rate "
                       "are resampled" + default("the first recording's"), **fv)
    if embedding:
        flags.DEFINE_bool("write_submission", False, "With --data: also write the published "
                          "submission files (all recordings concatenated in order).", **fv)
        return
    flags.DEFINE_enum("size", "small", ["small", "base"], "With --data: the model size, derived "
                      "from the files' geometry. small trains on a CPU in minutes; base is the "
                      "published MABe22 model.", **fv)
    flags.DEFINE_float("held_out_fraction", 0.1, "With --data: fraction of the files held out "
                       "for the held-out loss (seeded by --seed; a manifest's split column "
                       "takes precedence).", **fv)


def size_defaults(size: str) -> dict[str, Any]:
    """The flag defaults `--size` gives (model fields, window and training settings)."""
    from keras_hbehavemae.models.sizes import DEFAULT_WINDOW, SIZES

    model = dict(SIZES[size])
    model["stages"] = ",".join(str(v) for v in model["stages"])
    model["out_embed_dims"] = ",".join(str(v) for v in model["out_embed_dims"])
    return {**model, "num_frames": DEFAULT_WINDOW[size], **SIZE_TRAINING[size]}


def help_defaults(flag_values) -> dict[str, Any]:
    """`size_defaults` plus the pose defaults and geometry placeholders, for `--help`."""
    return {**size_defaults(flag_values.size), **GEOMETRY_PLACEHOLDER,
            "mask_unit_attn": "True,False,False", "normalise": DEFAULT_NORMALISE,
            "fill": "interpolate"}


def training_pose_options(flag_values):
    """The `PoseOptions` the pretraining flags describe (the rest is resolved on the files)."""
    from keras_hbehavemae.data.pose import PoseOptions

    if flag_values.source_software is None:
        raise ValueError("--data needs --source_software (the software that wrote the files)")
    return PoseOptions(
        source_software=flag_values.source_software, keypoints=flag_values.keypoints,
        individuals=flag_values.individuals,
        confidence_threshold=flag_values.confidence_threshold, fps=flag_values.fps,
        model_fps=flag_values.target_fps,
        normalisation=flag_values.normalise or DEFAULT_NORMALISE,
        fill=flag_values.fill or "interpolate")


def _window(flag_values, preset_config) -> int:
    from keras_hbehavemae.models.config import parse_triple
    from keras_hbehavemae.models.sizes import DEFAULT_WINDOW

    if preset_config is not None:
        return int(preset_config.input_size[0])
    if flag_values.num_frames is not None:
        return int(flag_values.num_frames)
    if flag_values.input_size is not None:
        return parse_triple(flag_values.input_size, "input_size")[0]
    return DEFAULT_WINDOW[flag_values.size]


def sized_model_config(flag_values, feature_shape, num_frames: int, given_flags):
    """The `HBehaveMAEConfig` of `--size` for `(num_frames, *feature_shape)`; explicitly given
    model flags (`given_flags`) override it. A geometry that does not divide is reported
    with the nearest valid windows and patches."""
    from keras_hbehavemae.models.config import HBehaveMAEConfig, parse_triple
    from keras_hbehavemae.models.sizes import sized_parameters
    from keras_hbehavemae.report.suggestions import divisibility_suggestions

    given = {name: flag_values[name].value for name in given_flags if flag_values[name].present}
    if "input_size" in given and parse_triple(given["input_size"], "input_size")[1:] != tuple(
            feature_shape):
        raise ValueError(f"input_size: {given['input_size']!r} is invalid: the --data files "
                         f"give frames of (H, W) = {tuple(feature_shape)}")
    values = {**sized_parameters(flag_values.size, (num_frames, *feature_shape)), **given}
    try:
        config = HBehaveMAEConfig(**values)
        config.validate_for_training()
    except ValueError as error:
        hints = divisibility_suggestions(values["input_size"], values["patch_kernel"],
                                         values["q_strides"])
        raise ValueError("; ".join([str(error), *hints])) from None
    return config


def pose_pretraining(flag_values, given_flags, preset_config=None, sliding_window=None):
    """`(model config, PretrainingData)` for `pretrain --data`; prints the sized model."""
    from keras_hbehavemae.data.pose_dataset import load_pose_pretraining_data
    from keras_hbehavemae.models.sizes import size_summary

    if flag_values["dataset"].present or flag_values.path_to_data_dir is not None or (
            flag_values.held_out_path is not None):
        raise ValueError("give --data (your pose files) or --dataset/--path_to_data_dir/"
                         "--held_out_path, not both (a manifest's split column holds files "
                         "out)")
    num_frames = _window(flag_values, preset_config)
    data, _ = load_pose_pretraining_data(
        flag_values.data, training_pose_options(flag_values), num_frames,
        held_out_fraction=flag_values.held_out_fraction, seed=flag_values.seed,
        sliding_window=17 if sliding_window is None else sliding_window,
        sampling_rate=flag_values.sampling_rate)
    if preset_config is not None:
        if tuple(preset_config.input_size[1:]) != tuple(data.feature_shape):
            raise ValueError(f"--preset: the model takes frames of (H, W) = "
                             f"{tuple(preset_config.input_size[1:])}, the --data files give "
                             f"{tuple(data.feature_shape)}")
        return preset_config, data
    config = sized_model_config(flag_values, data.feature_shape, num_frames, given_flags)
    described = data.describe()
    changed = [name for name in given_flags if flag_values[name].present]
    model = (size_summary(flag_values.size, config.input_size) if not changed else
             f"--size {flag_values.size} for input {config.input_size}, with --"
             + ", --".join(changed))
    print(f"{described['train_sequences']} training and {described['test_sequences']} "
          f"held-out recordings ({described['train_windows']} training windows); {model}",
          flush=True)
    return config, data


def _preset_options(preset: str | None):
    """The pose preprocessing a preset recorded (None: not trained on pose files)."""
    if preset is None:
        return None
    from keras_hbehavemae.data.pose_dataset import pose_options_from_metadata
    from keras_hbehavemae.presets.folder import read_metadata

    return pose_options_from_metadata(read_metadata(preset))


def embedding_pose_options(flag_values, stored):
    """The preprocessing for `embed --data`: the preset's (`stored`), with the input-file
    flags (`--source_software`, `--fps`) applied; a preprocessing flag that contradicts the
    preset is refused. Without stored preprocessing the flags define it (`--normalise`
    none or arena only: the others are fitted on training data)."""
    from keras_hbehavemae.data.pose import PoseOptions
    from keras_hbehavemae.data.pose_transforms import PoseNormalisation

    given = {"keypoints": flag_values.keypoints, "individuals": flag_values.individuals,
             "confidence_threshold": flag_values.confidence_threshold,
             "fill": flag_values.fill, "model_fps": flag_values.target_fps}
    given = {name: value for name, value in given.items() if value is not None}
    if stored is None:
        normalisation = PoseNormalisation.parse(flag_values.normalise or "none")
        if normalisation.needs_fitting:
            raise ValueError(f"--normalise {flag_values.normalise}: the preset records no pose "
                             "preprocessing to take its fitted numbers from; use none or "
                             "arena:SIZE")
        options = PoseOptions(source_software=flag_values.source_software,
                              fps=flag_values.fps, normalisation=normalisation, **given)
    else:
        if flag_values.normalise is not None:
            given["normalisation"] = PoseNormalisation.parse(flag_values.normalise)
        stored_values = {name: getattr(stored, name) for name in given}
        for name, value in given.items():
            if name == "normalisation":  # the choice must agree; the numbers are the preset's
                same = all(getattr(value, field) == getattr(stored.normalisation, field)
                           for field in ("method", "arena_size", "keypoint", "heading_keypoint"))
            else:
                same = getattr(stored.replace(**{name: value}), name) == stored_values[name]
            if not same:
                flag = "target_fps" if name == "model_fps" else name
                shown = (stored.normalisation.to_dict() if name == "normalisation"
                         else stored_values[name])
                raise ValueError(f"--{flag}: the preset was trained with {shown!r}, and "
                                 "extraction repeats it; drop the flag (or train with the "
                                 "other value)")
        options = stored.replace(
            source_software=flag_values.source_software or stored.source_software,
            fps=flag_values.fps if flag_values.fps is not None else stored.fps)
    if options.source_software is None:
        raise ValueError("--data needs --source_software (the software that wrote the files)")
    return options


def embed_pose_data(flag_values, backbone, output_dir: str) -> dict:
    """`hbehavemae embed --data`: one embedding file per recording, written into `output_dir`
    (a temporary sibling of `--output_dir`); returns the index."""
    from keras_hbehavemae.data.pose_files import list_pose_files
    from keras_hbehavemae.embeddings.recordings import embed_pose_files

    if flag_values.pca:
        raise ValueError("--pca applies to --path_to_data_dir extraction, not to --data")
    options = embedding_pose_options(flag_values, _preset_options(flag_values.preset))
    files = list_pose_files(flag_values.data, options.source_software)
    levels = None if flag_values.levels is None else [int(v) for v in flag_values.levels]
    index = embed_pose_files(
        backbone, files, options, output_dir, final_dir=flag_values.output_dir, levels=levels,
        mode=flag_values.mode, embedsum=bool(flag_values.embedsum),
        batch_size=flag_values.batch_size, window_stride=flag_values.window_stride,
        submission=flag_values.write_submission,
        description={"preset": flag_values.preset})
    return index


def embedding_defaults(flag_values) -> dict[str, Any]:
    """What `embed --help` shows as defaults: the dataset's, and the preset's preprocessing."""
    from keras_hbehavemae.data.layouts import layout

    spec = layout(flag_values.dataset)
    defaults: dict[str, Any] = {"split": spec.held_out_split, "pca_dim": spec.pca_limit or 64,
                                "embedsum": spec.mice and flag_values.data is None}
    stored = _preset_options(flag_values.preset)
    if stored is not None:
        defaults.update(
            source_software=stored.source_software, fps=stored.fps,
            keypoints=list(stored.keypoints or []) or None,
            individuals=list(stored.individuals) if stored.individuals else None,
            confidence_threshold=stored.confidence_threshold, fill=stored.fill,
            target_fps=stored.model_fps, normalise=stored.normalisation.method)
    return defaults
