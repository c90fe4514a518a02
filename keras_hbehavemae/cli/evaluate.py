"""Probe extracted embeddings with linear probes and write a score table.

Inputs:
  --embeddings  a folder written by `hbehavemae embed`: per recording `<name>.npz` with
                `recordings.json` (`embed --data`, your pose files); or per-level
                `level_{k}.npy` arrays [N_frames, D_k] with `frame_number_map.json`, or
                `test_submission_{k}.npy` dicts {frame_number_map, embeddings}.
  --labels      a per-frame labels CSV: `recording,frame,<label>,...` (one row per
                labelled frame; `recording` is the recording's name, file name or path;
                see `keras_hbehavemae.evaluation.frame_labels`), or a `.npy` dict in the
                published labels layout: frame_number_map, label_array [n_tasks,
                n_frames] (NaN = unlabelled), vocabulary, task_type ("Discrete",
                otherwise regression). Write one from a KeypointSequences with
                `keras_hbehavemae.evaluation.write_labels_file`. For a recordings folder
                whose manifest had a `labels` column, those per-recording CSVs are used.
  --baseline_keypoints  optional `.npy` [N_frames, F] raw normalised keypoints in the
                labels' frame order, probed as `raw_keypoints` and, with their motion over
                `--motion_windows` frames, as `raw_motion`.
  --control_embeddings  optional folder like --embeddings from the same architecture
                untrained (`hbehavemae embed --control`): its levels become the
                `control_level_{k}` columns, each the control of the level of that name.

`hbehavemae embed` writes `labels.npy`, `keypoints.npy` and (with `--control`) `control/`
next to the embeddings; the flags default to those.

Protocol: per seed, 4-fold cross-validation over the sequences (every frame scored once
per seed); `--split train_test_split` is the published split instead. Every cell is the
mean ± the sample standard deviation across seeds; levels are marked where they differ
from their control level beyond two seed standard deviations.

Outputs in --output_dir: probe_table.md, probe_table.csv (per-seed scores too),
probe_results.json (every α, seed and fold) and probe_heatmap.png (needs matplotlib). The
folder is written whole or not at all (a temporary sibling, then a rename); a previous probe
folder is replaced as a whole, a non-empty folder of anything else is refused unless
--overwrite. Inputs are only read: --output_dir may not be, hold or lie inside an input.

Usage:
    hbehavemae evaluate --embeddings runs/demo/embeddings \\
        --output_dir runs/demo/probes      # labels.npy, keypoints.npy, control/ found there
    hbehavemae evaluate ... --split train_test_split --seeds 41,42,43 \\
        --evaluation_sequences public_test.json   # published protocol: those clips are
        # scored, the others are split per seed for fitting
"""

import json
import os
import sys

from absl import flags

from keras_hbehavemae.cli.usage import run_command

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("embeddings", None, "Folder of level_{k}.npy + frame_number_map.json, "
                        "or of test_submission_{k}.npy dicts.")
    flags.DEFINE_string("labels", None, "Per-frame labels: a CSV (recording, frame, label "
                        "columns) or the published .npy dict (frame_number_map, label_array, "
                        "vocabulary, task_type). Default: labels.npy in --embeddings; for "
                        "`embed --data` folders, the manifest's per-recording labels CSVs.")
    flags.DEFINE_string("baseline_keypoints", None, "Optional .npy [N_frames, F] raw normalised "
                        "keypoints aligned with the labels' frame_number_map. Default: "
                        "keypoints.npy in --embeddings, if present (for `embed --data` folders: "
                        "the recordings' normalised keypoints); 'none' to skip.")
    flags.DEFINE_string("control_embeddings", None, "Optional folder of the control's embeddings "
                        "(the same architecture untrained). Default: control/ in --embeddings, "
                        "if present; 'none' to skip.")
    flags.DEFINE_list("motion_windows", ["4", "16", "64"], "Window lengths (frames) of the raw + "
                      "motion baseline; 'none' to skip it.")
    flags.DEFINE_string("output_dir", None, "Where the tables and the heat map go.")
    flags.DEFINE_list("seeds", ["41", "42", "43", "44", "45"], "Split seeds; the table gives the "
                      "mean ± sample standard deviation across them.")
    flags.DEFINE_enum("split", "kfold", ["kfold", "train_test_split"], "kfold: --folds folds "
                      "over the sequences per seed, every frame scored once per seed; "
                      "train_test_split: the published split (scikit-learn's "
                      "train_test_split(random_state=seed)), the held-out --test_fraction "
                      "scored.")
    flags.DEFINE_integer("folds", 4, "Folds per seed of --split kfold.", lower_bound=2)
    flags.DEFINE_list("alphas", ["0.1", "0.5", "1", "2", "5"], "Ridge penalties.")
    flags.DEFINE_float("reported_alpha", 1.0, "The α of the reported scores (must be in --alphas).")
    flags.DEFINE_float("test_fraction", 0.25, "--split train_test_split: fraction of the "
                       "sequences held out per seed (published: 0.25 Shot7M2, 0.1 mice and "
                       "hBABEL).")
    flags.DEFINE_string("evaluation_sequences", None, "Optional JSON list of sequence names "
                        "scored by every seed (published protocol, with --split "
                        "train_test_split); the other sequences are split for fitting.")
    flags.DEFINE_list("tasks", None, "Only these tasks (default: all of the labels file).")
    flags.DEFINE_bool("overwrite", False, "Replace --output_dir as a whole even if it holds "
                      "something other than probe results.")
    flags.DEFINE_bool("standardize", False, "Scale features to unit variance before the ridge "
                      "(the published protocol uses raw embeddings).")
    flags.mark_flags_as_required(["embeddings", "output_dir"])


PROBE_FILES = ("probe_table.md", "probe_table.csv", "probe_results.json", "probe_heatmap.png")


def is_probe_folder(directory) -> bool:
    """True if `directory` holds this command's outputs and nothing else."""
    names = set(os.listdir(directory))
    return "probe_results.json" in names and names <= set(PROBE_FILES)


def _default_inputs(embeddings: str, labels: str | None, baseline: str | None,
                    control: str | None):
    """The labels, baseline and control: as given, or the files `hbehavemae embed` wrote."""
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
    if control is None:
        candidate = os.path.join(embeddings, "control")
        control = candidate if os.path.isdir(candidate) else None
    elif control.lower() == "none":
        control = None
    return labels, baseline, control


def _aligned_levels(probes, directory: str, frame_map: dict, what: str) -> dict:
    """The levels of an embedding folder, in the labels' frame order."""
    levels, maps = probes.load_embedding_folder(directory)
    for level in levels:
        if maps[level] != frame_map:
            print(f"note: {what} {level}: frame_number_map differs from the labels'; "
                  "realigning by sequence name", file=sys.stderr)
        levels[level] = probes.align_frames(levels[level], maps[level], frame_map)
    return levels


def _control_note(directory: str) -> list[str]:
    """What the control is, from its extraction.json (written by `hbehavemae embed`)."""
    path = os.path.join(directory, "extraction.json")
    source = directory
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            summary = json.load(file)
        source = f"{summary.get('preset')} (weights: {summary.get('weights', 'unknown')})"
    return [f"control_level_k: the levels of {source}, the same architecture untrained."]


def _motion_windows(values: list[str]) -> list[int] | None:
    """`--motion_windows`: frame counts of at least 1, or `none` for no motion columns."""
    from keras_hbehavemae.cli import flag_parsing

    if [value.lower() for value in values] == ["none"]:
        return None
    return flag_parsing.integers("--motion_windows", values, minimum=1)


def _baseline(path):
    """The baseline keypoints `[N_frames, F]` float32 of a `.npy` file, or None."""
    import numpy as np

    from keras_hbehavemae.files.npy import read_npy

    if not path:
        return None
    baseline = read_npy(path)
    if baseline.ndim < 1 or baseline.dtype.kind not in "iuf":
        raise ValueError(f"{path}: the baseline keypoints must be a numeric array "
                         f"[N_frames, ...], got shape {baseline.shape} and dtype {baseline.dtype}")
    return baseline.reshape(baseline.shape[0], -1).astype(np.float32)


def _evaluation_sequences(path: str) -> list[str]:
    """The `--evaluation_sequences` file: a JSON list of sequence names."""
    from keras_hbehavemae.cli.flag_parsing import read_json_file

    names = read_json_file("--evaluation_sequences", path)
    if not isinstance(names, list) or not names:
        raise ValueError(f"--evaluation_sequences {path!r}: expected a non-empty JSON list of "
                         "sequence names")
    return [str(name) for name in names]


def main(argv):
    del argv
    from keras_hbehavemae import evaluation as probes
    from keras_hbehavemae.cli import flag_parsing
    from keras_hbehavemae.files.atomic import (
        check_folder_replaceable,
        check_output_is_not_input,
        write_folder_atomically,
    )

    folder_rules = dict(is_same_kind=is_probe_folder, kind="probe results folder",
                        overwrite=FLAGS.overwrite, flag="--output_dir")
    try:
        for flag in ("embeddings", "labels", "baseline_keypoints", "control_embeddings",
                     "output_dir", "evaluation_sequences"):
            flag_parsing.path(f"--{flag}", FLAGS[flag].value)
        seeds = flag_parsing.integers("--seeds", FLAGS.seeds, minimum=0)
        alphas = flag_parsing.positive_numbers("--alphas", FLAGS.alphas)
        if FLAGS.tasks is not None and not FLAGS.tasks:
            raise ValueError("--tasks: [] is invalid: name at least one task, or leave the flag "
                             "out for every task of the labels file")
        recordings = probes.is_recording_folder(FLAGS.embeddings)  # hbehavemae embed --data
        if recordings:
            labels_path, baseline_path, control_path = (
                FLAGS.labels, FLAGS.baseline_keypoints, FLAGS.control_embeddings)
        else:
            labels_path, baseline_path, control_path = _default_inputs(
                FLAGS.embeddings, FLAGS.labels, FLAGS.baseline_keypoints,
                FLAGS.control_embeddings)
        check_output_is_not_input(FLAGS.output_dir, "--output_dir", {
            "--embeddings": FLAGS.embeddings, "--labels": labels_path,
            "--baseline_keypoints": baseline_path, "--control_embeddings": control_path,
            "--evaluation_sequences": FLAGS.evaluation_sequences})
        check_folder_replaceable(FLAGS.output_dir, **folder_rules)
        control, notes = None, []
        if recordings:
            if control_path not in (None, "none"):
                raise ValueError("--control_embeddings applies to level-file folders, not to "
                                 "`embed --data` recording folders")
            levels, labels, baseline = probes.recording_probe_inputs(
                FLAGS.embeddings, FLAGS.labels, FLAGS.baseline_keypoints)
            frame_map = labels.frame_number_map
        else:
            _, maps = probes.load_embedding_folder(FLAGS.embeddings)
            labels = probes.load_labels(labels_path, next(iter(maps.values())))
            frame_map = labels.frame_number_map
            levels = _aligned_levels(probes, FLAGS.embeddings, frame_map, "embeddings")
            if control_path:
                control = _aligned_levels(probes, control_path, frame_map, "control")
                notes = _control_note(control_path)
            baseline = _baseline(baseline_path)
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
            control_embeddings=control,
            baseline=baseline,
            motion_windows=_motion_windows(FLAGS.motion_windows),
            notes=notes,
            alphas=alphas,
            seeds=seeds,
            split=FLAGS.split,
            folds=FLAGS.folds,
            test_fraction=FLAGS.test_fraction,
            reported_alpha=FLAGS.reported_alpha,
            evaluation_sequences=evaluation,
            standardize=FLAGS.standardize,
        )
    except (ValueError, OSError, KeyError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    written = ["probe_table.md", "probe_table.csv", "probe_results.json"]

    def write(folder) -> None:
        table.write_markdown(os.path.join(folder, "probe_table.md"))
        table.write_csv(os.path.join(folder, "probe_table.csv"))
        with open(os.path.join(folder, "probe_results.json"), "w", encoding="utf-8") as file:
            json.dump(table.to_dict(), file, indent=2, allow_nan=True)
        try:
            from keras_hbehavemae.evaluation.plots import plot_probe_heatmap

            plot_probe_heatmap(table, os.path.join(folder, "probe_heatmap.png"))
            written.append("probe_heatmap.png")
        except ImportError as error:
            print(f"warning: no heat map: {error}", file=sys.stderr)

    try:
        write_folder_atomically(FLAGS.output_dir, write, **folder_rules)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(table.to_markdown())
    print(f"wrote {FLAGS.output_dir}/{', '.join(written)}")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae evaluate` command (`hbehavemae-evaluate`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__)


if __name__ == "__main__":
    command()
