"""Reading and windowing one long pose recording: seconds and peak memory.

Writes one recording of `--minutes` at `--fps` (default: one hour at 30 fps) for
`--individuals` x `--keypoints` (default 2 x 12; smooth random walks, x, y and a
confidence, about 1% of points missing) as a `--format` file into a temporary folder:
`dlc_h5` (a DeepLabCut `.h5` in pandas' table format, as DeepLabCut writes it), `sleap_h5`
(a SLEAP analysis `.h5`, gzip-chunked) or `dlc_csv`. Then, in a fresh process:

1. opens the file's header and, when the reader needs it, imports movement (timed apart:
   an import cost, paid once per process). `--reader auto` is what `read_pose` does (all
   three formats directly, a block of frames at a time: `data.pose_hdf5`, `data.pose_csv`);
   `--reader movement` sends them through movement instead, for comparison;
2. reads the file (`read_pose`: selection, confidence threshold, gap filling), fits and
   applies the `bounds` normalisation and builds the model's `[T, H, W]` float32 array;
3. windows it: the training `WindowPlan` (window `--num_frames`, stride 17) and a pass
   over every window in batches of 64, each gathered from the unpadded array by clipped
   frame indices, as the `tf.data` pipeline gathers them (`data.pipeline.window_dataset`).

Memory: the peak of numpy's and Python's allocations during steps 2–3 (`tracemalloc`,
which numpy reports to) and the growth of the process's peak RSS over steps 2–3, both as
a ratio to the `[T, H, W]` float32 array (and to the float64 position and confidence
arrays movement builds). Writing the files needs the `[pose]` extra (pandas, PyTables).

    python benchmarks/pose_read_speed.py --output runs/bench/pose_read.json
    python benchmarks/pose_read_speed.py --format dlc_h5 --reader movement
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")


FORMATS = {"dlc_h5": ("recording.h5", "DeepLabCut"), "sleap_h5": ("recording.analysis.h5",
                                                                   "SLEAP"),
           "dlc_csv": ("recording.csv", "DeepLabCut")}


def write_recording(path: str, file_format: str, minutes: float, fps: float, individuals: int,
                    keypoints: int, seed: int = 0) -> int:
    """A pose file of smooth random walks with ~1% missing points; returns T."""
    sys.path.insert(0, TESTS)
    from pose_writers import write_dlc_csv, write_dlc_h5, write_sleap_analysis_h5

    frames = int(round(minutes * 60 * fps))
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=0.5, size=(frames, 2, keypoints, individuals))
    position = 400 + np.cumsum(steps, axis=0)  # [T, 2, K, I]
    position[rng.random(position.shape) < 0.005] = np.nan
    confidence = rng.uniform(0.4, 1.0, size=(frames, keypoints, individuals))
    names = dict(keypoints=tuple(f"k{index}" for index in range(keypoints)),
                 individuals=tuple(f"animal{index}" for index in range(individuals)))
    writer = {"dlc_h5": write_dlc_h5, "sleap_h5": write_sleap_analysis_h5,
              "dlc_csv": write_dlc_csv}[file_format]
    writer(path, position, confidence, **names)
    return frames


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(path: str, software: str, reader: str, num_frames: int, batch_size: int) -> dict:
    """Steps 1–3 of the module docstring in this process."""
    import tracemalloc

    from keras_hbehavemae.data import pose
    from keras_hbehavemae.data.pose import PoseOptions, read_pose
    from keras_hbehavemae.data.pose_io import import_movement
    from keras_hbehavemae.data.windows import training_windows

    if reader == "movement":  # every file through movement
        pose.open_direct_tracks = lambda *arguments: None
    started = time.perf_counter()
    direct = pose.open_direct_tracks(path, software, None) is not None  # the header only
    if not direct:
        import_movement()
    import_seconds = time.perf_counter() - started
    rss_before = _max_rss_mib()
    tracemalloc.start()
    started = time.perf_counter()
    options = PoseOptions(source_software=software, fps=30.0, confidence_threshold=0.5,
                          normalisation="bounds")
    recording = read_pose(path, options)
    read_seconds = time.perf_counter() - started
    options = options.replace(normalisation=options.normalisation.fitted(
        [recording.poses], recording.keypoints))
    array = recording.model_input(options)  # [T, H, W] float32
    del recording
    prepared_seconds = time.perf_counter() - started
    plan = training_windows([array.shape[0]], num_frames)
    steps = plan.sampling_rate * np.arange(num_frames)
    checksum = 0.0
    for first in range(0, len(plan), batch_size):  # per window: first frame, then clipped
        starts = plan.starts[first:first + batch_size] - plan.pad_before
        indices = np.clip(starts[:, None] + steps, 0, array.shape[0] - 1)  # [b, num_frames]
        windows = array[indices]  # [b, T, H, W]
        checksum += float(windows[:, 0, 0, 0].sum())
    total_seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = _max_rss_mib() - rss_before
    array_mib = array.nbytes / 2**20
    frames, individuals, features = array.shape
    movement_mib = frames * individuals * (features // 2) * (2 + 1) * 8 / 2**20
    return {
        "frames": frames, "individuals": individuals, "features": features,
        "windows": len(plan), "window_frames": num_frames, "file_mib": os.path.getsize(path)
        / 2**20, "read_directly": direct, "import_seconds": import_seconds,
        "read_seconds": read_seconds,
        "read_and_prepare_seconds": prepared_seconds,
        "read_and_window_seconds": total_seconds,
        "array_mib": array_mib, "movement_arrays_mib": movement_mib,
        "traced_peak_mib": traced_peak / 2**20,
        "traced_peak_over_array": traced_peak / 2**20 / array_mib,
        "traced_peak_over_movement_arrays": traced_peak / 2**20 / movement_mib,
        "rss_growth_mib": rss_growth, "rss_growth_over_array": rss_growth / array_mib,
        "checksum": checksum,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=sorted(FORMATS), default="dlc_h5")
    parser.add_argument("--reader", choices=("auto", "movement"), default="auto")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--individuals", type=int, default=2)
    parser.add_argument("--keypoints", type=int, default=12)
    parser.add_argument("--num_frames", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--output", default=None, help="Also write the figures as JSON.")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child
    arguments = parser.parse_args()
    file_name, software = FORMATS[arguments.format]
    if arguments.measure:
        print(json.dumps(measure(arguments.measure, software, arguments.reader,
                                 arguments.num_frames, arguments.batch_size)))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, file_name)
        started = time.perf_counter()
        write_recording(path, arguments.format, arguments.minutes, arguments.fps,
                        arguments.individuals, arguments.keypoints)
        written = time.perf_counter() - started
        completed = subprocess.run(
            [sys.executable, __file__, "--measure", path, "--format", arguments.format,
             "--reader", arguments.reader, "--num_frames", str(arguments.num_frames),
             "--batch_size", str(arguments.batch_size)],
            capture_output=True, text=True, check=False)
        if completed.returncode:
            sys.exit(f"the measurement failed:\n{completed.stderr[-3000:]}")
        figures = json.loads(completed.stdout.strip().splitlines()[-1])
    figures.update(format=arguments.format, reader=arguments.reader, write_seconds=written)
    for key, value in figures.items():
        print(f"{key:34s} {value:.3f}" if isinstance(value, float) else f"{key:34s} {value}")
    if arguments.output:
        os.makedirs(os.path.dirname(os.path.abspath(arguments.output)), exist_ok=True)
        with open(arguments.output, "w") as file:
            json.dump(figures, file, indent=1)


if __name__ == "__main__":
    main()
