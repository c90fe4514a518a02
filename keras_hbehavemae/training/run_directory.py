"""The files of a pretraining run directory, each written atomically.

- `run_config.json` (once, at the first start): model, training, schedule and data
  configuration, the fingerprint a resumed run must match;
- `checkpoint-epoch{E:04d}.weights.h5` (after epoch E, 0-based): model and optimizer
  variables (`save_weights`), kept by the retention rule of `checkpoints_to_delete`;
- `state.json` (after each checkpoint): completed epochs, the latest checkpoint, the mask
  RNG state and the training sessions;
- `metrics.jsonl` (after each epoch): one JSON line with `epoch`, `train_*`, `test_loss`;
- `final_metrics.json` and `preset/` (at the end): the summary and the trained model.

Every file is written to a temporary file in the same folder and then renamed into place
(`os.replace`), so an interrupted write never replaces a good file.

Example:

>>> import tempfile, os
>>> directory = tempfile.mkdtemp()
>>> write_json_atomically(os.path.join(directory, "state.json"), {"completed_epochs": 1})
>>> read_json(os.path.join(directory, "state.json"))
{'completed_epochs': 1}
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

from keras_hbehavemae.files.atomic import (  # noqa: F401  (re-exported)
    TEMPORARY_PREFIX,
    write_atomically,
    write_json_atomically,
)

RUN_CONFIG_FILE = "run_config.json"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
FINAL_METRICS_FILE = "final_metrics.json"
PRESET_FOLDER = "preset"
CHECKPOINT_PATTERN = "checkpoint-epoch{epoch:04d}.weights.h5"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-epoch(\d+)\.weights\.h5$")

# Sections of run_config.json that must match to resume; the rest is informational.
COMPARED_SECTIONS = ("model", "training", "schedule", "data", "preset")


def read_json(path: str) -> Any:
    """The content of a JSON file; a damaged file raises a ValueError that names it."""
    try:
        with open(path) as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path}: not valid JSON ({error}); the file is damaged (this package writes it "
            "atomically, so something else changed it). Restore it, or start afresh in "
            "another --output_dir") from None


def save_weights_atomically(model, path: str) -> None:
    """`model.save_weights(path)` (model and optimizer variables) via a temporary file."""
    write_atomically(path, model.save_weights)


def remove_partial_files(directory: str) -> None:
    """Deletes temporary files that a killed process left behind."""
    for name in os.listdir(directory):
        if name.startswith(TEMPORARY_PREFIX):
            os.remove(os.path.join(directory, name))


# ---------------------------------------------------------------- checks before training


def check_writable(directory: str, flag: str) -> None:
    """Creates `directory` if needed and checks that a file can be written into it.

    Raises:
        OSError: naming the flag and the folder, before any training starts.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise OSError(
            f"{flag} {directory!r} is not a writable folder ({error.strerror or error}); "
            f"choose another {flag}") from None


def checkpoint_bytes(num_parameters: int) -> int:
    """Estimated size of one checkpoint: float32 weights + two AdamW moments, plus slack."""
    return int(num_parameters * 4 * 3 * 1.1) + (1 << 20)


def check_free_space(directory: str, needed_bytes: int, flag: str) -> None:
    """Raises OSError unless `directory` has at least `needed_bytes` free."""
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise OSError(
            f"{flag} {directory!r} has {free / 2**20:.1f} MiB free, but two checkpoints "
            f"need about {needed_bytes / 2**20:.1f} MiB; free some space or choose another "
            f"{flag}")


# ---------------------------------------------------------------- configuration fingerprint


def _flatten(content: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(content, dict):
        flat = {}
        for key, value in content.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: content}


def configuration_differences(saved: dict, current: dict) -> list[str]:
    """`"key: saved X, now Y"` for every compared key that differs (dotted key paths)."""
    normalise = lambda content: json.loads(json.dumps(content))  # noqa: E731  (tuples → lists)
    saved_flat = _flatten({k: normalise(saved.get(k)) for k in COMPARED_SECTIONS})
    current_flat = _flatten({k: normalise(current.get(k)) for k in COMPARED_SECTIONS})
    missing = object()
    return [
        f"{key}: saved {saved_flat.get(key, missing)!r}, now {current_flat.get(key, missing)!r}"
        .replace(repr(missing), "<absent>")
        for key in sorted(set(saved_flat) | set(current_flat))
        if saved_flat.get(key, missing) != current_flat.get(key, missing)
    ]


def read_run_config(output_dir: str) -> dict | None:
    """The saved `run_config.json`, or None when there is none yet."""
    path = os.path.join(output_dir, RUN_CONFIG_FILE)
    return read_json(path) if os.path.exists(path) else None


def check_run_config(output_dir: str, run_config: dict, write: bool = True) -> None:
    """Writes `run_config.json` (unless `write` is False), or checks that the saved one
    matches `run_config`.

    Raises:
        ValueError: naming every differing key, if `output_dir` holds a run with another
            configuration (resuming it would silently mix two runs).
    """
    path = os.path.join(output_dir, RUN_CONFIG_FILE)
    if not os.path.exists(path):
        if write:
            write_json_atomically(path, run_config)
        return
    differences = configuration_differences(read_json(path), run_config)
    if differences:
        raise ValueError(
            f"--output_dir {output_dir!r} holds a run with a different configuration "
            f"({RUN_CONFIG_FILE}): " + "; ".join(differences) + ". Resuming it would mix two "
            "configurations: rerun with the saved settings to resume, or use a new "
            "--output_dir.")


# ---------------------------------------------------------------- checkpoints and state


def checkpoint_epochs(output_dir: str) -> list[int]:
    """The 0-based epochs of the checkpoints present, ascending."""
    epochs = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.match(name)
        if match:
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def checkpoint_path(output_dir: str, epoch: int) -> str:
    return os.path.join(output_dir, CHECKPOINT_PATTERN.format(epoch=epoch))


def is_milestone(epoch: int, epochs: int, every: int) -> bool:
    """The published checkpoint schedule: epoch % every == 0 and the last epoch."""
    return epoch % every == 0 or epoch == epochs - 1


def checkpoints_to_delete(present: Iterable[int], epochs: int, every: int,
                          keep_last: int) -> list[int]:
    """Retention: keep milestones and the newest `keep_last` checkpoints; delete the rest.

    Example:
        >>> checkpoints_to_delete([0, 1, 2, 3, 4], epochs=10, every=20, keep_last=2)
        [1, 2]
    """
    present = sorted(present)
    newest = set(present[-keep_last:]) if keep_last > 0 else set()
    return [epoch for epoch in present
            if epoch not in newest and not is_milestone(epoch, epochs, every)]


def read_state(output_dir: str) -> dict | None:
    path = os.path.join(output_dir, STATE_FILE)
    return read_json(path) if os.path.exists(path) else None


def write_state(output_dir: str, state: dict) -> None:
    write_json_atomically(os.path.join(output_dir, STATE_FILE), state)


def read_metrics(output_dir: str) -> list[dict]:
    """The lines of `metrics.jsonl`. A last line cut short (a write that a full disk or a
    crash interrupted) is dropped; a damaged earlier line raises a ValueError naming it."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as file:
        lines = [line for line in file if line.strip()]
    metrics = []
    for number, line in enumerate(lines, start=1):
        try:
            metrics.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not line.endswith("\n"):
                break  # a torn final append; the epoch is rerun and logged again
            raise ValueError(f"{path}: line {number} is not valid JSON ({error})") from None
    return metrics


def truncate_metrics(output_dir: str, completed_epochs: int) -> None:
    """Drops metric lines of epochs that were not checkpointed (they will be rerun)."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.exists(path):
        return
    kept = [line for line in read_metrics(output_dir) if line["epoch"] < completed_epochs]

    def write(temporary: str) -> None:
        with open(temporary, "w") as file:
            file.writelines(json.dumps(line, sort_keys=True) + "\n" for line in kept)

    write_atomically(path, write)


def append_metrics(output_dir: str, line: dict) -> None:
    """Appends one JSON line (flushed and synced)."""
    with open(os.path.join(output_dir, METRICS_FILE), "a") as file:
        file.write(json.dumps(line, sort_keys=True) + "\n")
        file.flush()
        os.fsync(file.fileno())
