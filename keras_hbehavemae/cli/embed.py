"""Extract per-frame embeddings of a trained hBehaveMAE encoder and write submission files.

Implements the published extraction (docs/model.md, "Embedding extraction (exact and
fast modes)"): the encoder runs unmasked over edge-padded windows of every
evaluation sequence ("exact": all stride-1 windows, averaged per frame; "fast": one
centre token per window), each level is optionally reduced by PCA, and per level
`test_submission_{k}.npy` (a NumPy-saved dict with `frame_number_map` and float32
`embeddings`), `level_{k}.npy` and `frame_number_map.json` are written to
`--output_dir`. See `keras_hbehavemae.embeddings.extraction`.

When the sequences carry per-frame labels (the synthetic data does), the folder also gets
`labels.npy` (the published labels layout, read by `hbehavemae evaluate`) and
`keypoints.npy`: the raw keypoints `[N_frames, H·W]` after the same normalisation the
encoder sees, in the same frame order. `hbehavemae evaluate` finds both there and probes
the keypoints as the raw-keypoint baseline.

Data: `--path_to_data_dir` is a split file, read directly, or the data folder of
`--dataset` (the layouts are listed in `keras_hbehavemae.data.layouts`).
`--split` overrides the split name (e.g. `train`). No augmentation is applied.

Usage:
    hbehavemae embed --preset presets/mabe --dataset mabe_mice --path_to_data_dir data/mabe \\
        --output_dir embeddings/mabe --pca
"""

import os
import sys
import time

from absl import app, flags

from keras_hbehavemae.data.layouts import DATASETS, layout

FLAGS = flags.FLAGS
def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("preset", None, "Preset folder of the trained backbone "
                        "(keras_hbehavemae.presets.save_to_preset).")
    flags.DEFINE_enum("dataset", "synthetic", DATASETS, "Which reader and preprocessing to use.")
    flags.DEFINE_string("path_to_data_dir", None, "A data file, or a folder laid out as in the "
                        "table of the module docstring.")
    flags.DEFINE_string("split", None, "Split to read from a folder (default: test; hbabel: val).")
    flags.DEFINE_enum("mode", "exact", ("exact", "fast", "strided"), "exact: mean over all "
                      "stride-1 windows (published); fast: centre token of every 2nd window "
                      "(published); strided: mean over every k-th window (k = --window_stride), "
                      "~T/4× cheaper.")
    flags.DEFINE_integer("window_stride", None, "k of --mode strided (default num_frames // 4).")
    flags.DEFINE_bool("embedsum", None, "Mean over the H_k·W_k tokens instead of flattening them "
                      "(default: on for the mouse datasets, off otherwise, as published).")
    flags.DEFINE_bool("pca", False, "Reduce levels with D above the limit by PCA fitted on the "
                      "extracted embeddings, as published.")
    flags.DEFINE_integer("pca_dim", None, "PCA limit (default: the published one, 64 Shot7M2 and "
                         "hBABEL, 128 MABe22 and synthetic; 64 for generic keypoints).",
                         lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Windows per backbone call (does not change results).")
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "Compile the encoder's "
                      "predict path: auto = the fastest measured path (XLA under TensorFlow, on "
                      "a CPU too, and JAX: one compilation per batch shape; eager torch); false: "
                      "TensorFlow's own kernels; under torch true means torch.compile, which "
                      "compiles for minutes and gained nothing here.")
    flags.DEFINE_string("output_dir", None, "Folder for the submission files.")
    flags.DEFINE_list("levels", None, "Comma-separated level indices (default: all).")
    flags.DEFINE_bool("combined", False, "Also write test_submission_combined.npy (the written "
                      "levels concatenated).")
    flags.DEFINE_bool("fill_holes", False, "MABe hole filling (mouse datasets; off as published).")
    flags.DEFINE_bool("write_labels", True, "If the sequences carry labels, also write labels.npy "
                      "and the raw-keypoint baseline keypoints.npy for hbehavemae evaluate.")
    flags.DEFINE_bool("allow_random_weights", False, "Accept a preset without trained weights "
                      "(an untrained control): its embeddings are those of random weights.")
    flags.mark_flags_as_required(["preset", "path_to_data_dir", "output_dir"])


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
    os.makedirs(output_dir, exist_ok=True)
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


def main(argv):
    del argv
    from keras_hbehavemae import embeddings
    from keras_hbehavemae.data.normalisation import ArenaNormalisation
    from keras_hbehavemae.files.atomic import write_json_atomically
    from keras_hbehavemae.loading import load_model
    from keras_hbehavemae.models.compilation import parse_jit_compile_flag

    try:
        backbone = load_model(FLAGS.preset, kind="backbone", parameter="--preset",
                              allow_random_weights=FLAGS.allow_random_weights)
        backbone.compile(jit_compile=parse_jit_compile_flag(FLAGS.jit_compile))
        input_size = tuple(int(v) for v in backbone.geometry.config.input_size)
        sequences = read_sequences(FLAGS.dataset, FLAGS.path_to_data_dir, FLAGS.split,
                                   input_size[1:], FLAGS.fill_holes)
        levels = None if FLAGS.levels is None else [int(level) for level in FLAGS.levels]
        mice = layout(FLAGS.dataset).mice
        embedsum = mice if FLAGS.embedsum is None else FLAGS.embedsum
        normalise = ArenaNormalisation() if mice else None
        started = time.time()
        frame_number_map, per_level = embeddings.embed_sequences(
            backbone, sequences, levels=levels, mode=FLAGS.mode, embedsum=embedsum,
            batch_size=FLAGS.batch_size, normalise=normalise,
            window_stride=FLAGS.window_stride)
        seconds = time.time() - started
        level_ids = list(range(len(per_level))) if levels is None else [
            level % len(backbone.geometry.levels) for level in levels]
        raw_dims = [int(level.shape[1]) for level in per_level]
        limit = None
        if FLAGS.pca:
            limit = FLAGS.pca_dim
            if limit is None:
                limit = layout(FLAGS.dataset).pca_limit or 64
            per_level = embeddings.apply_pca_limit(per_level, limit)
        paths = embeddings.write_submission(
            FLAGS.output_dir, frame_number_map, dict(zip(level_ids, per_level, strict=True)),
            combined=True if FLAGS.combined else None)
        if FLAGS.write_labels:
            extra = write_labels_and_baseline(sequences, FLAGS.output_dir, normalise)
            paths.update({os.path.basename(path): path for path in extra})
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = {
        "preset": FLAGS.preset,
        "dataset": FLAGS.dataset,
        "path_to_data_dir": FLAGS.path_to_data_dir,
        "mode": FLAGS.mode,
        "window_stride": FLAGS.window_stride,
        "jit_compile": FLAGS.jit_compile,
        "compiled": str(backbone.jit_compile),
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
    write_json_atomically(os.path.join(FLAGS.output_dir, "extraction.json"), summary)
    print(f"wrote {len(paths)} files to {FLAGS.output_dir}: {summary['sequences']} sequences, "
          f"{summary['frames']} frames, levels {level_ids}, dims {summary['dims']} "
          f"({seconds:.1f} s)")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae embed` command (`hbehavemae-embed`)."""
    define_flags()
    app.run(main, argv=argv)


if __name__ == "__main__":
    command()
