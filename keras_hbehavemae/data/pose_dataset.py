"""Pose files as training data (`load_pose_pretraining_data`) and as evaluation sequences.

Pretraining on pose files resolves the options the files leave open and records them:

- `keypoints` (not given): the first file's keypoints, in its order; every other file is
  then read by these names;
- `num_individuals` (individuals not given by name): the first file's count, checked on
  every other file;
- `model_fps` (not given): the first file's frame rate; files at another rate are resampled;
- the normalisation's numbers: fitted on the training files.

The resolved `PoseOptions` go into `PretrainingData.source["preprocessing"]`, which the run
writes to `run_config.json` and the preset's `metadata.json` (`data.source`), so that
`hbehavemae embed` repeats them (`pose_options_from_metadata`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras_hbehavemae.data.pose import PoseOptions, PoseRecording, read_pose
from keras_hbehavemae.data.pose_files import HELD_OUT, PoseFile, list_pose_files, split_files
from keras_hbehavemae.data.recipes import PretrainingData
from keras_hbehavemae.data.sequences import KeypointSequences

DATASET_NAME = "pose"


def resolved_options(first: PoseRecording, options: PoseOptions) -> PoseOptions:
    """`options` with keypoints, the individual count and `model_fps` taken from `first`."""
    changes: dict[str, Any] = {}
    if options.keypoints is None:
        changes["keypoints"] = first.keypoints
    if options.individuals is None and options.num_individuals is None:
        changes["num_individuals"] = len(first.individuals)
    if options.model_fps is None and first.fps is not None:
        changes["model_fps"] = first.fps
    return options.replace(**changes) if changes else options


def read_recordings(files: Sequence[PoseFile], options: PoseOptions
                    ) -> tuple[list[PoseRecording], PoseOptions]:
    """Reads every file (steps 1–4); the options resolved on the first file (see above)."""
    recordings = []
    for file in files:
        recordings.append(read_pose(file.path, options, name=file.name))
        if len(recordings) == 1:  # the first file's keypoints are read in its own order
            options = resolved_options(recordings[0], options)
    return recordings, options


def _sequences(recordings: Sequence[PoseRecording], options: PoseOptions, where: str
               ) -> KeypointSequences:
    try:
        return KeypointSequences(
            [recording.name for recording in recordings],
            [recording.model_input(options) for recording in recordings])
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def load_pose_pretraining_data(
    data: str | Sequence[PoseFile],
    options: PoseOptions,
    num_frames: int,
    *,
    held_out_fraction: float = 0.1,
    seed: int = 0,
    sliding_window: int = 17,
    sampling_rate: int = 1,
) -> tuple[PretrainingData, PoseOptions]:
    """Training and held-out sequences from pose files; returns them and the resolved options.

    Args:
        data: `--data` (a folder, glob, manifest or file; see `pose_files`) or the files.
        options: the preprocessing (`source_software` is required for paths).
        num_frames: the model's window length T.
        held_out_fraction: files held out for the held-out loss (seeded by `seed`; a
            manifest's `split` column takes precedence).
        seed: the split seed.
        sliding_window: stride between training windows.
        sampling_rate: stride between frames inside a window.

    Raises:
        FileNotFoundError, ValueError: see `list_pose_files` and `read_pose`.
        ImportError: a file needs the `[pose]` extra, and it is not installed.
    """
    files = list_pose_files(data, options.source_software) if isinstance(data, str) else list(
        data)
    files = split_files(files, held_out_fraction, seed)
    recordings, options = read_recordings(files, options)
    train = [recording for recording, file in zip(recordings, files, strict=True)
             if file.split != HELD_OUT]
    test = [recording for recording, file in zip(recordings, files, strict=True)
            if file.split == HELD_OUT]
    if not train:
        raise ValueError(f"--data {data!r}: every file is held out; mark some as train")
    normalisation = options.normalisation.fitted([recording.poses for recording in train],
                                                 options.keypoints)
    options = options.replace(normalisation=normalisation)
    source = {
        "data": data if isinstance(data, str) else None,
        "files": {"train": [recording.source for recording in train],
                  "held_out": [recording.source for recording in test]},
        "held_out_fraction": held_out_fraction,
        "split_seed": seed,
        "preprocessing": options.to_dict(),
    }
    where = f"--data {data!r}" if isinstance(data, str) else "pose files"
    return PretrainingData(
        DATASET_NAME, _sequences(train, options, where),
        _sequences(test, options, where) if test else None, num_frames=num_frames,
        sliding_window=sliding_window, sampling_rate=sampling_rate, source=source), options


def pose_options_from_metadata(metadata: dict) -> PoseOptions | None:
    """The preprocessing a pose-trained preset (or run configuration) recorded, else None.

    `metadata` is a preset's `metadata.json` or a run's `run_config.json` content.
    """
    source = (metadata.get("data") or {}).get("source")
    if not isinstance(source, dict) or "preprocessing" not in source:
        return None
    return PoseOptions.from_dict(source["preprocessing"])
