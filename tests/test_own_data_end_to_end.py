"""Your own tracking data in, embeddings out, through the installed commands: DeepLabCut
files (in a read-only folder) → `hbehavemae pretrain --size small` → `hbehavemae embed` →
one embedding file per recording, aligned with its frames and times → `hbehavemae evaluate`
with a labels CSV. And `--help` of every command."""

import json
import os
import shutil
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest
from pose_writers import require_movement, synthetic_poses, write_dlc_h5

# Subprocesses and training runs. The reading, resampling and stitching of pose files is
# numpy; the model steps in between are the ones tests/test_end_to_end.py runs under every
# backend, so this module runs in one leg.
pytestmark = [pytest.mark.slow, pytest.mark.backend_independent]

COMMANDS = ("pretrain", "embed", "evaluate", "export", "convert", "data-flow", "plot-training",
            "plot-reconstruction")
LENGTHS = (300, 340, 380, 420)


def hbehavemae():
    """The installed `hbehavemae` command (or the same entry point through this Python)."""
    installed = shutil.which("hbehavemae")
    return [installed] if installed else [sys.executable, "-m", "keras_hbehavemae.cli.main"]


def environment():
    return {**os.environ, "KERAS_BACKEND": keras.config.backend(),
            "XLA_FLAGS": "--xla_backend_optimization_level=0"}


def run(*arguments, cwd):
    completed = subprocess.run([*hbehavemae(), *arguments], cwd=cwd, env=environment(),
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, f"{arguments[0]} failed:\n{completed.stderr[-3000:]}"
    return completed


def snapshot(folder):
    return {name: (os.stat(folder / name).st_mtime_ns, (folder / name).read_bytes())
            for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    require_movement()
    root = tmp_path_factory.mktemp("own_data")
    sessions = root / "sessions"
    sessions.mkdir()
    with open(root / "labels.csv", "w") as labels:
        labels.write("recording,frame,action,speed\n")
        for index, length in enumerate(LENGTHS):
            position, confidence = synthetic_poses(length, seed=index)
            write_dlc_h5(sessions / f"session{index}.h5", position, confidence)
            speed = np.linalg.norm(np.diff(position[:, :, 0, 0], axis=0, prepend=0), axis=1)
            for frame in range(0, length, 2):
                action = "run" if speed[frame] > np.median(speed) else "rest"
                labels.write(f"session{index}.h5,{frame},{action},{speed[frame]:.4f}\n")
    for path in sessions.iterdir():
        os.chmod(path, stat.S_IRUSR)
    os.chmod(sessions, stat.S_IRUSR | stat.S_IXUSR)
    before = snapshot(sessions)
    glob = str(sessions / "*.h5")
    run("pretrain", "--data", glob, "--source_software", "DeepLabCut", "--fps", "30",
        "--target_fps", "15", "--size", "small", "--num_frames", "60", "--epochs", "1",
        "--warmup_epochs", "0",
        "--steps_per_epoch", "2", "--batch_size", "8", "--output_dir", "runs/mine", cwd=root)
    embedded = run("embed", "--preset", "runs/mine/preset", "--data", glob, "--output_dir",
                   "emb", "--mode", "strided", "--write_submission", cwd=root)
    run("evaluate", "--embeddings", "emb", "--labels", "labels.csv", "--output_dir", "probes",
        "--seeds", "0,1", cwd=root)
    yield root, before, embedded
    os.chmod(sessions, stat.S_IRWXU)


def test_pretraining_records_the_preprocessing(own_data):
    root, _, _ = own_data
    run_config = json.loads((root / "runs/mine/run_config.json").read_text())
    preprocessing = run_config["data"]["source"]["preprocessing"]
    assert preprocessing["source_software"] == "DeepLabCut" and preprocessing["fps"] == 30
    assert preprocessing["model_fps"] == 15 and preprocessing["num_individuals"] == 2
    assert preprocessing["normalisation"]["method"] == "bounds"
    assert run_config["model"]["input_size"] == [60, 2, 10]
    metadata = json.loads((root / "runs/mine/preset/metadata.json").read_text())
    assert metadata["data"]["source"]["preprocessing"] == preprocessing


def test_one_embedding_file_per_recording_aligned_with_its_frames(own_data):
    root, _, embedded = own_data
    index = json.loads((root / "emb/recordings.json").read_text())
    assert [entry["frames"] for entry in index["recordings"]] == list(LENGTHS)
    for number, length in enumerate(LENGTHS):
        sidecar = json.loads((root / f"emb/session{number}.json").read_text())
        assert sidecar["source"] == str(root / f"sessions/session{number}.h5")
        assert sidecar["frames"] == length and sidecar["resampled"] is True
        with np.load(root / f"emb/session{number}.npz") as archive:
            np.testing.assert_allclose(archive["time"], np.arange(length) / 30)
            np.testing.assert_array_equal(archive["frame"], np.arange(length))
            for level in index["levels"]:
                assert archive[level].shape == (length, sidecar["levels"][level])
                assert np.isfinite(archive[level]).all()
    submission = np.load(root / "emb/test_submission_0.npy", allow_pickle=True).item()
    assert submission["embeddings"].shape[0] == sum(LENGTHS)
    assert "recording 4/4 session3" in embedded.stderr


def test_evaluate_takes_the_embeddings_with_a_labels_csv(own_data):
    root, _, _ = own_data
    table = (root / "probes/probe_table.csv").read_text()
    assert "action" in table and "speed" in table and "raw_keypoints" in table


def test_the_input_files_stay_as_they_were(own_data):
    root, before, _ = own_data
    assert snapshot(root / "sessions") == before


def test_embed_help_shows_the_presets_preprocessing(own_data):
    root, _, _ = own_data
    text = run("embed", "--preset", "runs/mine/preset", "--help", cwd=root).stdout
    assert "--source_software" in text and "(default: 'DeepLabCut')" in text
    assert "(default: 'nose,ear_left,ear_right,centre,tail_base')" in text


def test_every_command_help_exits_zero_and_cites_only_what_ships(tmp_path):
    processes = {name: subprocess.Popen([*hbehavemae(), name, "--help"], env=environment(),
                                        cwd=tmp_path, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name in COMMANDS}
    for name, process in processes.items():
        output, errors = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name} --help: {errors[-2000:]}"
        assert "flags:" in output and "--" in output
        for absent in ("SPEC", "scripts/", "BUILD_NOTES", "--tt_check_filter"):
            assert absent not in output, f"{name} --help mentions {absent}"


def test_help_shows_the_defaults_of_the_chosen_dataset_or_size(tmp_path):
    mice = run("pretrain", "--dataset", "mabe_mice", "--help", cwd=tmp_path).stdout
    assert "--batch_size: Windows per device.\n    (default: '768')" in mice
    base = run("pretrain", "--data", "x/*.h5", "--size", "base", "--help", cwd=tmp_path).stdout
    assert "--stages: blocks per stage, e.g. 2 3 4.\n    (default: '3,4,5')" in base
    assert "(default: '900')" in base


@pytest.mark.parametrize("home", ["writable", "missing"])
def test_importing_movement_writes_nothing_to_the_home_folder(tmp_path, home):
    require_movement()
    folder = tmp_path / "home" if home == "writable" else tmp_path / "no" / "such" / "home"
    if home == "writable":
        folder.mkdir()
    code = ("import warnings; before = warnings.showwarning; "
            "from keras_hbehavemae.data.pose_io import import_movement; import_movement(); "
            "assert warnings.showwarning is before; print('imported')")
    completed = subprocess.run([sys.executable, "-c", code], env={**environment(),
                               "HOME": str(folder)}, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0 and "imported" in completed.stdout, completed.stderr
    assert not (folder / ".movement").exists()  # (Keras itself may write ~/.keras)
