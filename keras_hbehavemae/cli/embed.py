"""Extract per-frame embeddings of a trained hBehaveMAE encoder.

Your pose-tracking files (`--data`, as for `hbehavemae pretrain`): one `<name>.npz` per
recording, one array `level_{k}` `[T, D_k]` per level aligned with the recording's frames,
with its `time` and `frame` coordinates, a JSON sidecar naming the source file, and
`recordings.json` (see `keras_hbehavemae.embeddings.recordings`). The preprocessing the
preset recorded (keypoints, individuals, confidence threshold, normalisation, frame rate)
is repeated. `--write_submission` also writes the published submission files:

    hbehavemae embed --preset runs/mine/preset --data "sessions/*.h5" --output_dir emb/

A published dataset (`--dataset`, `--path_to_data_dir`): the encoder runs unmasked over
edge-padded windows of every evaluation sequence ("exact": all stride-1 windows, averaged
per frame; "fast": one centre token per window), each level is optionally reduced by PCA,
and per level `test_submission_{k}.npy` (a NumPy-saved dict with `frame_number_map` and
float32 `embeddings`), `level_{k}.npy` and `frame_number_map.json` are written to
`--output_dir`. See `keras_hbehavemae.embeddings.extraction`.

When the sequences carry per-frame labels (the synthetic data does), the folder also gets
`labels.npy` (the published labels layout, read by `hbehavemae evaluate`) and
`keypoints.npy`: the raw keypoints `[N_frames, H·W]` after the same normalisation the
encoder sees, in the same frame order. `hbehavemae evaluate` finds both there and probes
the keypoints as the raw-keypoint baseline.

`--control PRESET` also embeds the same sequences with a control model of the same
architecture (typically its initial weights, `hbehavemae pretrain --save_initial`) into
`OUTPUT_DIR/control/`, where `hbehavemae evaluate` finds it; `--control initial` builds
the control from the --preset's configuration with the seeded initialisation a
pretraining run with `--control_seed` starts from.

Data: `--path_to_data_dir` is a split file, read directly, or the data folder of
`--dataset` (the layouts are listed in `keras_hbehavemae.data.layouts`).
`--split` overrides the split name (e.g. `train`). No augmentation is applied. Inputs are
only read: `--output_dir` may not be, hold or lie inside an input.

`--output_dir` is written whole or not at all (a temporary sibling, then a rename). A
previous embedding folder is replaced as a whole; a non-empty folder of anything else is
refused, and nothing is computed, unless `--overwrite`, which replaces the whole folder.

Usage:
    hbehavemae embed --preset presets/mabe --dataset mabe_mice --path_to_data_dir data/mabe \\
        --output_dir embeddings/mabe --pca
"""

import os
import sys
import time

from absl import flags

from keras_hbehavemae.cli import flag_parsing
from keras_hbehavemae.cli.allocator_flag import apply_allocator_flag, define_allocator_flag
from keras_hbehavemae.cli.pose_flags import define_pose_flags, embed_pose_data, embedding_defaults
from keras_hbehavemae.cli.usage import run_command
from keras_hbehavemae.data.layouts import DATASETS, layout

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("preset", None, "Preset folder of the trained backbone "
                        "(hbehavemae pretrain writes RUN/preset).")
    flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Which reader and preprocessing to use.")
    flags.DEFINE_string("path_to_data_dir", None, "A data file, or a folder laid out as in the "
                        "table of keras_hbehavemae.data.layouts (or give --data: your pose "
                        "files).")
    flags.DEFINE_string("split", None, "Split to read from a folder (default: test; hbabel: val).")
    flags.DEFINE_enum("mode", "exact", ("exact", "fast", "strided"), "exact: mean over all "
                      "stride-1 windows (published); fast: centre token of every 2nd window "
                      "(published); "
                      "strided: mean over every k-th window (k = --window_stride), ~T/4× cheaper.")
    flags.DEFINE_integer("window_stride", None, "k of --mode strided (default num_frames // 4).",
                         lower_bound=1)
    flags.DEFINE_bool("embedsum", None, "Mean over the H_k·W_k tokens instead of flattening them "
                      "(default: on for the mouse datasets, off otherwise, as published).")
    flags.DEFINE_bool("pca", False, "Reduce levels with D above the limit by PCA fitted on the "
                      "extracted embeddings, as published.")
    flags.DEFINE_integer("pca_dim", None, "PCA limit (default: the published one, 64 Shot7M2 and "
                         "hBABEL, 128 MABe22 and synthetic; 64 for generic keypoints).",
                         lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Windows per backbone call (does not change results).",
                         lower_bound=1)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "Compile the encoder's "
                      "predict path: auto = the fastest measured path (XLA under JAX; under "
                      "TensorFlow with a GPU, and on a CPU for models of Shot7M2/MABe22 size; "
                      "eager torch); false: TensorFlow's own kernels; under torch true means "
                      "torch.compile, which compiles for minutes and gained nothing here.")
    flags.DEFINE_string("output_dir", None, "Folder for the submission files (written whole; "
                        "a previous embedding folder there is replaced).")
    flags.DEFINE_bool("overwrite", False, "Replace --output_dir as a whole even if it holds "
                      "something other than embeddings.")
    flags.DEFINE_list("levels", None, "Comma-separated level indices (default: all).")
    flags.DEFINE_bool("combined", False, "Also write test_submission_combined.npy (the written "
                      "levels concatenated).")
    flags.DEFINE_bool("fill_holes", False, "MABe hole filling (mouse datasets; off as published).")
    flags.DEFINE_bool("write_labels", True, "If the sequences carry labels, also write labels.npy "
                      "and the raw-keypoint baseline keypoints.npy for hbehavemae evaluate.")
    flags.DEFINE_bool("allow_random_weights", False, "Accept a preset without trained weights "
                      "(an untrained control): its embeddings are those of random weights.")
    define_pose_flags(embedding=True)
    flags.DEFINE_string("control", None, "Also embed with a control of the same architecture "
                        "into OUTPUT_DIR/control: a preset (e.g. RUN/initial_preset from "
                        "`hbehavemae pretrain --save_initial`; random weights are accepted "
                        "here), or 'initial': the --preset's configuration with the seeded "
                        "initial weights of a run with --control_seed.")
    flags.DEFINE_integer("control_seed", None, "Seed of --control initial (default: the seed "
                         "in the --preset's metadata, if it has one).")
    define_allocator_flag()
    flags.mark_flags_as_required(["preset", "output_dir"])


def read_sequences(dataset: str, path: str, split: str | None, expected_hw, fill_holes: bool):
    """The evaluation sequences of `dataset` under `path` (a file or a folder)."""
    from keras_hbehavemae.data.layouts import read_split

    return read_split(dataset, path, split, expected_hw, fill_holes)


def write_labels_and_baseline(sequences, output_dir: str, normalise) -> list[str]:
    """Writes `labels.npy` and `keypoints.npy` (the probe baseline) next to the embeddings.

    Returns the paths written; nothing when the sequences carry no labels.
    """
    import numpy as np

    from keras_hbehavemae.evaluation import write_labels_file
    from keras_hbehavemae.files.atomic import write_atomically

    if not sequences.label_names:
        return []
    labels_path = os.path.join(output_dir, "labels.npy")
    write_atomically(labels_path, lambda path: write_labels_file(sequences, path))
    # [N_frames, H, W] in frame_number_map order -> [N_frames, H·W]
    keypoints = np.concatenate(sequences.keypoints, axis=0)
    keypoints = keypoints.reshape(keypoints.shape[0], -1)
    if normalise is not None:
        keypoints = np.asarray(normalise(keypoints), dtype=np.float32)
    keypoints_path = os.path.join(output_dir, "keypoints.npy")
    write_atomically(keypoints_path, lambda path: np.save(path, keypoints))
    return [labels_path, keypoints_path]


def control_backbone(control: str, preset: str, backbone, seed: int | None):
    """The control's backbone (same architecture as `backbone`) and its weights kind."""
    from keras_hbehavemae.loading import load_model, read_model_config
    from keras_hbehavemae.presets import read_metadata

    if control == "initial":
        from keras_hbehavemae.training.initial import seeded_pretrainer

        config, _ = read_model_config(preset, "--preset")
        if config is None:
            raise ValueError(f"--control initial: --preset {preset!r} holds no configuration")
        if seed is None:
            try:
                seed = read_metadata(preset).get("training", {}).get("seed")
            except (ValueError, OSError):
                seed = None
            if seed is None:
                raise ValueError("--control initial: the --preset's metadata names no training "
                                 "seed; give --control_seed")
        return seeded_pretrainer(config, int(seed)).backbone, f"initial, seed {seed}"
    model = load_model(control, kind="backbone", parameter="--control", allow_random_weights=True)
    if model.geometry.config.encoder_kwargs() != backbone.geometry.config.encoder_kwargs():
        raise ValueError(f"--control {control!r}: its architecture differs from --preset "
                         f"{preset!r}; a control must be the same architecture")
    try:
        kind = read_metadata(control).get("weights", "unknown")
    except (ValueError, OSError, TypeError):
        kind = "unknown"
    return model, kind


def extract(backbone, sequences, output_dir: str, description: dict) -> tuple[dict, int]:
    """Embeds `sequences` with `backbone` into `output_dir`; returns (summary, files)."""
    from keras_hbehavemae import embeddings
    from keras_hbehavemae.allocator import reusing_freed_memory
    from keras_hbehavemae.data.normalisation import ArenaNormalisation
    from keras_hbehavemae.files.atomic import write_json_atomically
    from keras_hbehavemae.models.compilation import parse_jit_compile_flag

    backbone.compile(jit_compile=parse_jit_compile_flag(FLAGS.jit_compile))
    levels = None if FLAGS.levels is None else flag_parsing.integers("--levels", FLAGS.levels)
    mice = layout(FLAGS.dataset).mice
    embedsum = mice if FLAGS.embedsum is None else FLAGS.embedsum
    normalise = ArenaNormalisation() if mice else None
    started = time.time()
    frame_number_map, per_level = embeddings.embed_sequences(
        backbone, sequences, levels=levels, mode=FLAGS.mode, embedsum=embedsum,
        batch_size=FLAGS.batch_size, normalise=normalise, window_stride=FLAGS.window_stride)
    seconds = time.time() - started
    level_ids = list(range(len(per_level))) if levels is None else [
        level % len(backbone.geometry.levels) for level in levels]
    raw_dims = [int(level.shape[1]) for level in per_level]
    limit = None
    if FLAGS.pca:
        limit = FLAGS.pca_dim
        if limit is None:
            limit = layout(FLAGS.dataset).pca_limit
        per_level = embeddings.apply_pca_limit(per_level, limit)
    paths = embeddings.write_submission(
        output_dir, frame_number_map, dict(zip(level_ids, per_level, strict=True)),
        combined=True if FLAGS.combined else None)
    if FLAGS.write_labels and description["role"] == "model":
        extra = write_labels_and_baseline(sequences, output_dir, normalise)
        paths.update({os.path.basename(path): path for path in extra})
    summary = {
        **description,
        "dataset": FLAGS.dataset,
        "path_to_data_dir": FLAGS.path_to_data_dir,
        "mode": FLAGS.mode,
        "window_stride": FLAGS.window_stride,
        "jit_compile": FLAGS.jit_compile,
        "compiled": str(backbone.jit_compile),
        "reuse_freed_memory": reusing_freed_memory(),
        "embedsum": bool(embedsum),
        "normalise": None if normalise is None else repr(normalise),
        "levels": level_ids,
        "dims_before_pca": raw_dims,
        "pca_limit": limit,
        "dims": [int(level.shape[1]) for level in per_level],
        "sequences": len(frame_number_map),
        "frames": int(per_level[0].shape[0]),
        "seconds": round(seconds, 3),
    }
    write_json_atomically(os.path.join(output_dir, "extraction.json"), summary)
    return summary, len(paths) + 1


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]} (quote a --data glob, so that the shell "
              "does not expand it)", file=sys.stderr)
        return 1
    apply_allocator_flag(FLAGS)
    from keras_hbehavemae.embeddings.recordings import is_recordings_folder
    from keras_hbehavemae.embeddings.submission import CONTROL_FOLDER, is_embedding_folder
    from keras_hbehavemae.files.atomic import (
        check_folder_replaceable,
        check_output_is_not_input,
        write_folder_atomically,
    )
    from keras_hbehavemae.loading import load_model
    from keras_hbehavemae.models.compilation import parse_jit_compile_flag
    from keras_hbehavemae.presets import read_metadata

    folder_rules = dict(
        is_same_kind=is_embedding_folder if FLAGS.data is None else is_recordings_folder,
        kind="embedding folder", overwrite=FLAGS.overwrite, flag="--output_dir")
    lines = []
    try:
        for flag in ("preset", "path_to_data_dir", "output_dir", "control"):
            flag_parsing.path(f"--{flag}", FLAGS[flag].value)
        check_output_is_not_input(FLAGS.output_dir, "--output_dir", {
            "--preset": FLAGS.preset, "--path_to_data_dir": FLAGS.path_to_data_dir,
            "--control": None if FLAGS.control == "initial" else FLAGS.control})
        check_folder_replaceable(FLAGS.output_dir, **folder_rules)
        backbone = load_model(FLAGS.preset, kind="backbone", parameter="--preset",
                              allow_random_weights=FLAGS.allow_random_weights)
        if FLAGS.data is not None:  # your pose files: one embedding file per recording
            if FLAGS.control is not None:
                raise ValueError("--control applies to --path_to_data_dir extraction, not to "
                                 "--data (embed the control preset into another folder)")
            backbone.compile(jit_compile=parse_jit_compile_flag(FLAGS.jit_compile))
            index = {}
            write_folder_atomically(
                FLAGS.output_dir,
                lambda folder: index.update(embed_pose_data(FLAGS, backbone, str(folder))),
                **folder_rules)
            frames = sum(entry["frames"] for entry in index["recordings"])
            print(f"wrote {len(index['recordings'])} recordings ({frames} frames, levels "
                  f"{', '.join(index['levels'])}) to {FLAGS.output_dir}")
            return 0
        if FLAGS.path_to_data_dir is None:
            raise ValueError("give --data (your pose files) or --path_to_data_dir")
        try:
            kind = read_metadata(FLAGS.preset).get("weights", "unknown")
        except (ValueError, OSError, TypeError):
            kind = "unknown"  # not a preset folder (a .keras or weights file)
        control = None
        if FLAGS.control is not None:
            control = control_backbone(FLAGS.control, FLAGS.preset, backbone, FLAGS.control_seed)
        input_size = tuple(int(v) for v in backbone.geometry.config.input_size)
        sequences = read_sequences(FLAGS.dataset, FLAGS.path_to_data_dir, FLAGS.split,
                                   input_size[1:], FLAGS.fill_holes)

        def write(folder) -> None:
            summary, files = extract(backbone, sequences, str(folder),
                                     {"role": "model", "preset": FLAGS.preset, "weights": kind})
            lines.append(f"wrote {files} files to {FLAGS.output_dir}: {summary['sequences']} "
                         f"sequences, {summary['frames']} frames, levels {summary['levels']}, "
                         f"dims {summary['dims']} ({summary['seconds']:.1f} s)")
            if control is not None:
                subfolder = os.path.join(folder, CONTROL_FOLDER)
                os.makedirs(subfolder)
                summary, files = extract(control[0], sequences, subfolder, {
                    "role": "control", "weights": control[1],
                    "preset": (f"{FLAGS.preset} configuration" if FLAGS.control == "initial"
                               else FLAGS.control)})
                lines.append(f"wrote {files} files to "
                             f"{os.path.join(FLAGS.output_dir, CONTROL_FOLDER)}: the control "
                             f"({control[1]}), {summary['seconds']:.1f} s")

        write_folder_atomically(FLAGS.output_dir, write, **folder_rules)
    except (ValueError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae embed` command (`hbehavemae-embed`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__,
                effective_defaults=embedding_defaults)


if __name__ == "__main__":
    command()
