"""Per-recording embedding files of pose recordings: `embed_pose_files`.

For every input file, `OUTPUT/<name>.npz` holds, aligned with the recording's own frames
(also when the model works at another frame rate: the model-rate embeddings are then
interpolated linearly back onto the recording's frame times):

| array | shape | what |
|---|---|---|
| `level_{k}` | `[T, D_k]` float32 | the per-frame embedding of level k |
| `time` | `[T]` float64 | the frame times: seconds when the frame rate is known, else frame indices |
| `frame` | `[T]` int64 | the frame index in the file |
| `keypoints` | `[T, H·W]` float32 | the normalised, gap-filled input (the probes' raw-keypoint baseline) |
| `valid` | `[T]` bool | True where every selected point was tracked |

and `OUTPUT/<name>.json` (the sidecar) the source path, source software, frame count, frame
rates, names of individuals and keypoints, levels and widths, the extraction mode and the
preprocessing. `OUTPUT/recordings.json` lists the recordings in order; it is written last,
and `hbehavemae evaluate --embeddings OUTPUT` reads the folder through it. Every file is
written atomically. Nothing is written next to the input files: an output folder that holds
one of them is refused.
"""  # noqa: E501

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence

import numpy as np

from keras_hbehavemae.data.pose import PoseOptions, read_pose
from keras_hbehavemae.data.pose_files import PoseFile
from keras_hbehavemae.data.pose_transforms import interpolate_rows
from keras_hbehavemae.embeddings.extraction import (
    DEFAULT_BATCH_SIZE,
    _resolve_levels,
    embed_sequence,
)
from keras_hbehavemae.embeddings.submission import EMBEDDING_FOLDER_FILES, write_submission
from keras_hbehavemae.files.atomic import write_atomically, write_json_atomically

INDEX_FILE = "recordings.json"


class RecordingProgress:
    """Progress over recordings and windows, on one line of `stream` (stderr).

    On a terminal the line is redrawn at most every 0.2 s; elsewhere one line per recording
    is printed when it is done.
    """

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.stream, self.enabled = total, stream or sys.stderr, enabled
        self.index, self.name, self.last = 0, "", 0.0
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def start(self, index: int, name: str) -> None:
        self.index, self.name = index, name

    def windows(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not (self.enabled and self.interactive) or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        self.stream.write(f"\rrecording {self.index + 1}/{self.total} {self.name}: windows "
                          f"{done}/{total} ({100 * done // max(total, 1)}%)")
        self.stream.flush()

    def finish(self, frames: int, seconds: float) -> None:
        if not self.enabled:
            return
        start = "\r" if self.interactive else ""
        self.stream.write(f"{start}recording {self.index + 1}/{self.total} {self.name}: "
                          f"{frames} frames embedded in {seconds:.1f} s\n")
        self.stream.flush()


def is_recordings_folder(directory) -> bool:
    """True if `directory` holds the files of an `embed --data` run and nothing else."""
    names = [entry.name for entry in pathlib.Path(directory).iterdir()]
    return INDEX_FILE in names and all(
        name.endswith((".npz", ".json")) or EMBEDDING_FOLDER_FILES.match(name) for name in names)


def check_output_folder(output_dir: str, files: Sequence[PoseFile]) -> None:
    """Refuses an output folder that holds one of the input files (inputs stay untouched)."""
    output = os.path.realpath(output_dir)
    for file in files:
        if os.path.dirname(os.path.realpath(file.path)) == output:
            raise ValueError(f"--output_dir {output_dir!r} holds the input file {file.path}; "
                             "write the embeddings to another folder (inputs are never "
                             "written next to)")


def _embed_one(backbone, file: PoseFile, options: PoseOptions, levels, progress, **extraction):
    recording = read_pose(file.path, options, name=file.name)
    model_input = recording.model_input(options)
    expected = tuple(int(v) for v in backbone.geometry.config.input_size[1:])
    if model_input.shape[1:] != expected:
        raise ValueError(f"{file.path}: the recording gives frames of (H, W) = "
                         f"{model_input.shape[1:]} ({len(recording.individuals)} individuals x "
                         f"{len(recording.keypoints)} keypoints x {len(recording.space)} "
                         f"coordinates), but the model expects (H, W) = {expected}")
    per_level = embed_sequence(backbone, model_input, levels, on_batch=progress.windows,
                               **extraction)
    positions = recording.model_positions(options)
    if positions is not None:  # model frames → the recording's frames
        back = np.arange(recording.num_frames) * (options.model_fps / recording.fps)
        per_level = [interpolate_rows(level, back) for level in per_level]
    return recording, per_level


def embed_pose_files(backbone, files: Sequence[PoseFile], options: PoseOptions,
                     output_dir: str, *, levels=None, mode: str = "exact",
                     embedsum: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                     window_stride: int | None = None, submission: bool = False,
                     verbose: int = 1, description: dict | None = None,
                     final_dir: str | None = None) -> dict:
    """Embeds every pose file and writes the files of the module docstring.

    Args:
        backbone: an `HBehaveMAEBackbone`.
        files: the recordings (`pose_files.list_pose_files`).
        options: the preprocessing (the preset's, see `pose_dataset.pose_options_from_metadata`);
            with `individuals` None, the number of individuals is checked against the
            model's H.
        output_dir: the folder to write into (created; must not hold an input file).
        final_dir: where `output_dir` will be moved once complete (a temporary sibling is
            written first); checked against the inputs instead of `output_dir`.
        levels, mode, embedsum, batch_size, window_stride: as in `embed_sequence`.
        submission: also write the published submission files (all recordings
            concatenated in order; `submission.write_submission`).
        verbose: 1 shows the progress over recordings and windows (stderr).
        description: extra JSON fields for every sidecar (e.g. the preset).

    Returns:
        The index written to `recordings.json`.
    """
    if not files:
        raise ValueError("--data: no files to embed")
    check_output_folder(output_dir if final_dir is None else final_dir, files)
    height = int(backbone.geometry.config.input_size[1])
    if options.individuals is None:
        options = options.replace(num_individuals=height)
    level_ids = _resolve_levels(backbone, levels)
    os.makedirs(output_dir, exist_ok=True)
    progress = RecordingProgress(len(files), enabled=bool(verbose))
    entries, concatenated = [], {level: [] for level in level_ids}
    for index, file in enumerate(files):
        progress.start(index, file.name)
        started = time.time()
        recording, per_level = _embed_one(backbone, file, options, level_ids, progress,
                                          mode=mode, embedsum=embedsum,
                                          batch_size=batch_size, window_stride=window_stride)
        arrays = {f"level_{level}": array for level, array in zip(level_ids, per_level,
                                                                   strict=True)}
        frames = recording.frames(options)
        arrays.update(time=recording.times, frame=np.arange(recording.num_frames),
                      keypoints=frames.reshape(recording.num_frames, -1),  # [T, H·W]
                      valid=recording.validity)
        sidecar = {
            "name": file.name, "source": os.path.abspath(file.path),
            "source_software": options.source_software, "frames": recording.num_frames,
            "fps": recording.fps, "time_unit": recording.time_unit,
            "model_fps": options.model_fps,
            "resampled": recording.model_positions(options) is not None,
            "individuals": list(recording.individuals), "keypoints": list(recording.keypoints),
            "space": list(recording.space),
            "levels": {f"level_{level}": int(array.shape[1]) for level, array in zip(
                level_ids, per_level, strict=True)},
            "mode": mode, "embedsum": bool(embedsum), "window_stride": window_stride,
            "preprocessing": options.to_dict(), **(description or {}),
        }
        npz_path = os.path.join(output_dir, f"{file.name}.npz")
        write_atomically(npz_path, lambda path, a=arrays: np.savez(path, **a))
        write_json_atomically(os.path.join(output_dir, f"{file.name}.json"), sidecar)
        entries.append({"name": file.name, "file": f"{file.name}.npz",
                        "sidecar": f"{file.name}.json", "source": sidecar["source"],
                        "frames": recording.num_frames, "labels": file.labels})
        if submission:
            for level, array in zip(level_ids, per_level, strict=True):
                concatenated[level].append(array)
        progress.finish(recording.num_frames, time.time() - started)
    index_content = {"recordings": entries, "levels": [f"level_{level}" for level in level_ids],
                     "preprocessing": options.to_dict(), **(description or {})}
    if submission:
        frame_map, start = {}, 0
        for entry in entries:
            frame_map[entry["name"]] = (start, start + entry["frames"])
            start += entry["frames"]
        write_submission(output_dir, frame_map, {
            level: np.concatenate(arrays) for level, arrays in concatenated.items()})
    write_json_atomically(os.path.join(output_dir, INDEX_FILE), index_content)
    return json.loads(json.dumps(index_content))
