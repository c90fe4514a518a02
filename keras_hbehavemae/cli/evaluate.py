"""Probe extracted embeddings with linear probes (SPEC §11) and write a score table.

Inputs:
  --embeddings  a folder written by the extraction script: per-level `level_{k}.npy`
                arrays [N_frames, D_k] with `frame_number_map.json`, or
                `test_submission_{k}.npy` dicts {frame_number_map, embeddings}.
  --labels      a `.npy` dict in the published labels layout: frame_number_map,
                label_array [n_tasks, n_frames] (NaN = unlabelled), vocabulary,
                task_type ("Discrete", otherwise regression). Write one from a
                KeypointSequences with `keras_hbehavemae.evaluation.write_labels_file`.
  --baseline_keypoints  optional `.npy` [N_frames, F] raw normalised keypoints in the
                labels' frame order, probed as an extra column.

The extraction script writes `labels.npy` and `keypoints.npy` next to the embeddings when
its data carries labels; `--labels` and `--baseline_keypoints` default to those files.

Outputs in --output_dir: probe_table.md, probe_table.csv, probe_results.json (every
α and seed) and probe_heatmap.png (needs matplotlib).

Usage:
    python scripts/evaluate.py --embeddings runs/demo/embeddings \\
        --output_dir runs/demo/probes      # labels.npy, keypoints.npy found there
    python scripts/evaluate.py ... --evaluation_sequences public_test.json   # published
        # protocol: those clips are scored, the others are split per seed for fitting
"""

import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("embeddings", None, "Folder of level_{k}.npy + frame_number_map.json, "
                        "or of test_submission_{k}.npy dicts.")
    flags.DEFINE_string("labels", None, "Labels .npy dict (frame_number_map, label_array, "
                        "vocabulary, task_type). Default: labels.npy in --embeddings.")
    flags.DEFINE_string("baseline_keypoints", None, "Optional .npy [N_frames, F] raw normalised "
                        "keypoints aligned with the labels' frame_number_map. Default: "
                        "keypoints.npy in --embeddings, if present; 'none' to skip.")
    flags.DEFINE_string("output_dir", None, "Where the tables and the heat map go.")
    flags.DEFINE_list("seeds", ["41", "42", "43"], "Split seeds (one probe per seed and α).")
    flags.DEFINE_list("alphas", ["0.1", "0.5", "1", "2", "5"], "Ridge penalties.")
    flags.DEFINE_float("reported_alpha", 1.0, "The α of the reported scores (must be in --alphas).")
    flags.DEFINE_float("test_fraction", 0.25, "Fraction of sequences held out per seed "
                       "(SPEC: 0.25 Shot7M2, 0.1 mice and hBABEL).")
    flags.DEFINE_string("evaluation_sequences", None, "Optional JSON list of sequence names "
                        "scored by every seed (published protocol); by default each seed "
                        "scores its own held-out sequences.")
    flags.DEFINE_list("tasks", None, "Only these tasks (default: all of the labels file).")
    flags.DEFINE_bool("standardize", False, "Scale features to unit variance before the ridge "
                      "(the published protocol uses raw embeddings).")
    flags.mark_flags_as_required(["embeddings", "output_dir"])


def _default_inputs(embeddings: str, labels: str | None, baseline: str | None):
    """The labels and baseline files: as given, or the extraction script's files."""
    if labels is None:
        labels = os.path.join(embeddings, "labels.npy")
        if not os.path.isfile(labels):
            raise FileNotFoundError(
                f"{labels}: not found; pass --labels (the extraction script writes labels.npy "
                "only when its data carries labels)")
    if baseline is None:
        candidate = os.path.join(embeddings, "keypoints.npy")
        baseline = candidate if os.path.isfile(candidate) else None
    elif baseline.lower() == "none":
        baseline = None
    return labels, baseline


def _evaluation_sequences(path: str) -> list[str]:
    """The `--evaluation_sequences` file: a JSON list of sequence names."""
    try:
        with open(path, encoding="utf-8") as file:
            names = json.load(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"--evaluation_sequences {path!r}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"--evaluation_sequences {path!r}: not a readable JSON file "
                         f"({error})") from None
    if not isinstance(names, list) or not names:
        raise ValueError(f"--evaluation_sequences {path!r}: expected a non-empty JSON list of "
                         "sequence names")
    return [str(name) for name in names]


def main(argv):
    del argv
    import numpy as np

    from keras_hbehavemae import evaluation as probes
    from keras_hbehavemae.cli import flag_parsing

    try:
        for flag in ("embeddings", "labels", "baseline_keypoints", "output_dir",
                     "evaluation_sequences"):
            flag_parsing.path(f"--{flag}", FLAGS[flag].value)
        seeds = flag_parsing.integers("--seeds", FLAGS.seeds, minimum=0)
        alphas = flag_parsing.positive_numbers("--alphas", FLAGS.alphas)
        if FLAGS.tasks is not None and not FLAGS.tasks:
            raise ValueError("--tasks: [] is invalid: name at least one task, or leave the flag "
                             "out for every task of the labels file")
        labels_path, baseline_path = _default_inputs(
            FLAGS.embeddings, FLAGS.labels, FLAGS.baseline_keypoints)
        labels = probes.load_labels_file(labels_path)
        levels, maps = probes.load_embedding_folder(FLAGS.embeddings)
        frame_map = labels.frame_number_map
        for level in levels:
            if maps[level] != frame_map:
                print(f"note: {level}: frame_number_map differs from the labels'; "
                      "realigning by sequence name", file=sys.stderr)
            levels[level] = probes.align_frames(levels[level], maps[level], frame_map)
        baseline = None
        if baseline_path:
            baseline = np.load(baseline_path)
            baseline = baseline.reshape(baseline.shape[0], -1).astype(np.float32)
        evaluation = None
        if FLAGS.evaluation_sequences is not None:
            evaluation = _evaluation_sequences(FLAGS.evaluation_sequences)
        tasks = list(labels.labels) if FLAGS.tasks is None else FLAGS.tasks
        unknown = sorted(set(tasks) - set(labels.labels))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; the labels file has {list(labels.labels)}")
        table = probes.probe_table(
            levels,
            {task: labels.labels[task] for task in tasks},
            labels.task_types,
            frame_map,
            baseline=baseline,
            alphas=alphas,
            seeds=seeds,
            test_fraction=FLAGS.test_fraction,
            reported_alpha=FLAGS.reported_alpha,
            evaluation_sequences=evaluation,
            standardize=FLAGS.standardize,
        )
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    os.makedirs(FLAGS.output_dir, exist_ok=True)
    table.write_markdown(os.path.join(FLAGS.output_dir, "probe_table.md"))
    table.write_csv(os.path.join(FLAGS.output_dir, "probe_table.csv"))
    with open(os.path.join(FLAGS.output_dir, "probe_results.json"), "w", encoding="utf-8") as file:
        json.dump(table.to_dict(), file, indent=2, allow_nan=True)
    try:
        from keras_hbehavemae.evaluation.plots import plot_probe_heatmap

        plot_probe_heatmap(table, os.path.join(FLAGS.output_dir, "probe_heatmap.png"))
    except ImportError as error:
        print(f"warning: no heat map: {error}", file=sys.stderr)
    print(table.to_markdown())
    print(f"wrote {FLAGS.output_dir}/probe_table.md, probe_table.csv, probe_results.json")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae evaluate` command (`hbehavemae-evaluate`)."""
    define_flags()
    app.run(main, argv=argv)


if __name__ == "__main__":
    command()
