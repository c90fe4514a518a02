"""Pose-tracking files read through `movement`, the optional `[pose]` extra.

`movement` (neuroinformatics-unit) reads the field's formats into one xarray Dataset with
`position` `(time, space, keypoints, individuals)` and `confidence` `(time, keypoints,
individuals)`:

| `source_software` | files |
|---|---|
| `DeepLabCut` | `.h5`, `.csv` (single- and multi-animal) |
| `SLEAP` | `.slp`, analysis `.h5` |
| `LightningPose` | `.csv` (one individual) |
| `Anipose` | `.csv` (3-D triangulation, one individual) |
| `NWB` | `.nwb` with ndx-pose (one individual per file) |

It is heavy (pandas, xarray, PyTables, sleap-io, pynwb, numba, about 1.4 GB installed), so
it is an extra: `pip install "keras-hbehavemae[pose]"`. Without it, reading a pose file
through it raises an ImportError that names the extra. DeepLabCut and SLEAP analysis `.h5`
and DeepLabCut-style `.csv` files do not come here: `pose_hdf5` and `pose_csv` read them a
block of frames at a time, with movement's names and values (`pose.open_tracks` chooses).

Importing `movement` has two process-wide side effects, which `import_movement` contains:
it configures its loguru logger with a log file in `~/.movement/` (the import fails when
the home folder is not writable) and a console sink, and it replaces
`warnings.showwarning` so that every Python warning goes through loguru. Here the import
runs with `HOME` pointed at a temporary folder (removed afterwards), loguru's sinks are
removed (loguru's logger is one object per process, so sinks added before the import are
gone too: movement's own import removes them), `warnings.showwarning` is restored, and
movement's WARNING messages are turned into Python warnings of category
`PoseReaderWarning`. Nothing is written to the home folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from typing import Any

from keras_hbehavemae.errors import invalid

#: The `source_software` values, as movement spells them.
SOURCE_SOFTWARE = ("DeepLabCut", "SLEAP", "LightningPose", "Anipose", "NWB")
#: File suffixes of each source software (lower case), used to list a folder.
SUFFIXES = {"DeepLabCut": (".h5", ".csv"), "SLEAP": (".slp", ".h5"),
            "LightningPose": (".csv",), "Anipose": (".csv",), "NWB": (".nwb",)}
EXTRA_MESSAGE = ("reading pose-tracking files needs the optional 'pose' extra, which installs "
                 "movement: pip install \"keras-hbehavemae[pose]\" (from a source checkout: "
                 "pip install -e \".[pose]\")")

_MOVEMENT: dict[str, Any] = {}


class PoseReaderWarning(UserWarning):
    """A warning `movement` logged while reading a file."""


def source_software_name(value: str, parameter: str = "source_software") -> str:
    """The canonical spelling of a source software (case-insensitive).

    Example:
        >>> source_software_name("deeplabcut")
        'DeepLabCut'
    """
    if isinstance(value, str):
        for name in SOURCE_SOFTWARE:
            if value.strip().lower() == name.lower():
                return name
    raise invalid(parameter, value, f"must be one of {', '.join(SOURCE_SOFTWARE)}")


def _forward_warning(message) -> None:
    record = message.record
    warnings.warn(f"movement: {record['message']}", PoseReaderWarning, stacklevel=2)


@contextlib.contextmanager
def _private_home():
    """`HOME` pointed at a fresh temporary folder for the duration, then removed."""
    folder = tempfile.mkdtemp(prefix="keras_hbehavemae_movement_")
    previous = os.environ.get("HOME")
    os.environ["HOME"] = folder
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = previous
        shutil.rmtree(folder, ignore_errors=True)


def import_movement():
    """`movement.io`, imported once with its process-wide side effects contained.

    Raises:
        ImportError: movement is not installed (the message names the `[pose]` extra).
    """
    if "io" in _MOVEMENT:
        return _MOVEMENT["io"]
    showwarning = warnings.showwarning
    try:
        with _private_home():
            import movement.io as movement_io
            from movement.utils.logging import logger
            logger.remove()  # the console sink and the log file in the temporary home
    except ImportError as error:
        raise ImportError(f"{EXTRA_MESSAGE} ({error})") from None
    finally:
        warnings.showwarning = showwarning
    logger.add(_forward_warning, level="WARNING",
               filter=lambda record: (record["level"].name == "WARNING"
                                       and str(record["name"]).startswith("movement")),
               format="{message}")
    _MOVEMENT["io"] = movement_io
    return movement_io


def import_pandas():
    """pandas, which the `[pose]` extra installs (the CSV reader, `pose_csv`, parses with it).

    Raises:
        ImportError: pandas is not installed (the message names the `[pose]` extra).
    """
    try:
        import pandas
    except ImportError as error:
        raise ImportError(f"{EXTRA_MESSAGE} ({error})") from None
    return pandas


def cannot_read(path: str, software: str, why: str) -> ValueError:
    """The error for a file that is not (or not readably) the software's layout."""
    return ValueError(f"{path}: cannot read it as a {software} pose file ({why})")


def is_pose_dataset(value: Any) -> bool:
    """True for an xarray Dataset with a `position` variable (movement's poses layout)."""
    return type(value).__name__ == "Dataset" and hasattr(value, "data_vars") and (
        "position" in value.data_vars)


def check_pose_file(path: str, source_software: str, fps: float | None) -> str:
    """The canonical software name, after checking it, the frame rate and that `path` exists.

    Raises:
        ValueError: an unknown source software or a bad frame rate, naming the file.
        FileNotFoundError: `path` does not exist.
    """
    software = source_software_name(source_software, f"{path}: source_software")
    if fps is not None and not fps > 0:
        raise invalid(f"{path}: fps", fps, "the frame rate must be a positive number of frames "
                      "per second")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    return software


def load_pose_dataset(path: str, source_software: str, fps: float | None = None):
    """Reads one pose file through movement (`movement.io.load_dataset`).

    Args:
        path: the file.
        source_software: one of `SOURCE_SOFTWARE` (any case).
        fps: the recording's frame rate, when the file does not store one (NWB files do;
            for them `fps` is checked against the stored rate instead).

    Returns:
        The xarray Dataset, with `attrs["fps"]` when the rate is known.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: an unknown source software, a bad frame rate, or a file movement cannot
            read as that software (the message names the file).
        ImportError: movement is not installed.
    """
    software = check_pose_file(path, source_software, fps)
    movement_io = import_movement()
    try:
        with warnings.catch_warnings():
            # movement's validators warn (UserWarning) about fps it ignores; we check it
            warnings.filterwarnings("ignore", message=".*fps.*", category=UserWarning)
            dataset = movement_io.load_dataset(path, source_software=software,
                                               fps=None if software == "NWB" else fps)
    except (ValueError, KeyError, OSError, TypeError) as error:
        raise cannot_read(path, software, f"{type(error).__name__}: {error}") from None
    if "position" not in dataset.data_vars:
        raise ValueError(f"{path}: movement read no 'position' variable (not a poses file)")
    stored = dataset.attrs.get("fps")
    if software == "NWB" and fps is not None and stored is not None and float(stored) != fps:
        raise ValueError(f"{path}: the file stores {float(stored):g} frames per second, but "
                         f"--fps is {fps:g}; drop --fps or fix the file")
    if software == "NWB" and fps is not None and stored is None:
        dataset.attrs["fps"] = float(fps)
    return dataset
