"""Submission files: per-level embeddings in the published evaluation format.

**Submission files** (`write_submission`): per level k, `test_submission_{k}.npy`,
a NumPy-saved dict `{"frame_number_map": {name: (start, end)}, "embeddings":
float32 [N, D]}` (read it with `files.pickle_files.load_pickled_file`, which runs no code
from the file, or a folder with `evaluation.load_embedding_folder`), the plain
array `level_{k}.npy`, and `frame_number_map.json`; optionally
`test_submission_combined.npy` / `level_combined.npy`.

An **embedding folder** (`is_embedding_folder`) holds these files and the extraction's
`labels.npy`, `keypoints.npy` and `extraction.json`, nothing else. `hbehavemae embed`
writes it whole (a temporary sibling, then a rename) and replaces only a folder of this
kind.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Mapping, Sequence

import numpy as np

from keras_hbehavemae.files.atomic import write_atomically, write_text_atomically

#: The names an embedding folder may hold (`frame_number_map.json` always among them).
EMBEDDING_FOLDER_FILES = re.compile(
    r"^(test_submission_(\d+|combined)\.npy|level_(\d+|combined)\.npy|frame_number_map\.json"
    r"|labels\.npy|keypoints\.npy|extraction\.json)$")


#: The sub-folder of an embedding folder that holds the control's embeddings (`embed --control`).
CONTROL_FOLDER = "control"


def is_embedding_folder(directory) -> bool:
    """True if `directory` holds the files of an extraction (and optionally a control
    extraction in `CONTROL_FOLDER`) and nothing else."""
    directory = pathlib.Path(directory)
    names = [entry.name for entry in directory.iterdir()]
    control = directory / CONTROL_FOLDER
    return ("frame_number_map.json" in names
            and all(EMBEDDING_FOLDER_FILES.match(name) for name in names
                    if name != CONTROL_FOLDER)
            and (not control.exists() or (control.is_dir() and is_embedding_folder(control))))


# ---------------------------------------------------------------- submission files
def _checked_map(frame_number_map: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    checked, expected_start = {}, 0
    for name, (start, end) in frame_number_map.items():
        start, end = int(start), int(end)
        if start != expected_start or end < start:
            raise ValueError(
                f"frame_number_map: {name!r} → ({start}, {end}) does not continue the previous "
                f"range ending at {expected_start}; ranges must be half-open and cumulative")
        checked[str(name)] = (start, end)
        expected_start = end
    return checked


def write_submission(
    directory,
    frame_number_map: Mapping[str, Sequence[int]],
    embeddings_per_level: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    combined: bool | np.ndarray | None = None,
) -> dict[str, pathlib.Path]:
    """Writes the published submission files, each atomically (temporary file + rename).

    Args:
        directory: output folder (created if needed).
        frame_number_map: name → (start, end), half-open and cumulative in source order.
        embeddings_per_level: one `[N, D_k]` array per level, as a list (levels 0, 1,
            …) or a dict level index → array (e.g. only the extracted levels).
        combined: None/False for no combined file; True to concatenate the given
            levels along the feature axis; or a `[N, D]` array (e.g. fused embeddings).

    Returns:
        The written paths by key: `"submission_{k}"`, `"level_{k}"` (and
        `"submission_combined"`, `"level_combined"`), `"frame_number_map"`.

    Raises:
        ValueError: if the map is not cumulative, an array is not 2-D with one row per
            frame, or an embedding is not finite.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frame_map = _checked_map(frame_number_map)
    total = max((end for _, end in frame_map.values()), default=0)
    if isinstance(embeddings_per_level, Mapping):
        items = [(str(int(level)), array) for level, array in embeddings_per_level.items()]
    else:
        items = [(str(level), array) for level, array in enumerate(embeddings_per_level)]
    if combined is True:
        combined = np.concatenate([np.asarray(array, np.float32) for _, array in items], axis=1)
    if combined is not None and combined is not False:
        items.append(("combined", combined))

    checked = []
    for key, array in items:  # check everything before writing anything
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != total:
            raise ValueError(
                f"level {key}: expected embeddings [{total}, D] (one row per frame of the map), "
                f"got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"level {key}: the embeddings hold NaN or inf")
        checked.append((key, array))

    paths = {}
    for key, array in checked:
        content = {"frame_number_map": dict(frame_map), "embeddings": array}
        submission = directory / f"test_submission_{key}.npy"
        write_atomically(submission, lambda temporary, c=content: np.save(
            temporary, c, allow_pickle=True))
        plain = directory / f"level_{key}.npy"
        write_atomically(plain, lambda temporary, a=array: np.save(
            temporary, a, allow_pickle=False))
        paths[f"submission_{key}"], paths[f"level_{key}"] = submission, plain
    map_path = directory / "frame_number_map.json"
    write_text_atomically(
        map_path, json.dumps({n: list(r) for n, r in frame_map.items()}, indent=1) + "\n")
    paths["frame_number_map"] = map_path
    return paths
