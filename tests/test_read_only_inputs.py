"""Every command-line app leaves its inputs as they were.

The eight `hbehavemae` commands run as a user would type them, at a tiny size: pretrain
(on a data folder the user made), embed, evaluate, export, convert, data-flow,
plot-training and plot-reconstruction. Each input folder and file is made read-only
(which binds only where the tests do not run as root) and hashed before its first use;
after the last command every input holds the same bytes and no new entry, and every
output went to its own folder.
"""

import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import keras
import pytest
from helpers import FIXTURES, REPOSITORY, load_golden

from keras_hbehavemae.data import write_synthetic_dataset

# Eight subprocesses and a short training run. What they must not do to input files is the
# same under every backend, so the check runs in one leg.
pytestmark = [pytest.mark.slow, pytest.mark.backend_independent]

TINY_ARCHITECTURE = ["--input_size=24,3,24", "--patch_kernel=3,1,24", "--stages=1,1",
                     "--q_strides=2,1,1", "--mask_unit_attn=True,False", "--init_embed_dim=8",
                     "--out_embed_dims=8,16", "--decoder_embed_dim=8"]


def tree_digest(path) -> dict[str, str]:
    """Relative path -> sha256 of a file, or of every file and folder below a folder."""
    path = pathlib.Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(entry.relative_to(path)): "<dir>" if entry.is_dir()
            else hashlib.sha256(entry.read_bytes()).hexdigest()
            for entry in sorted(path.rglob("*"))}


def set_writable(path, writable: bool) -> None:
    """Adds or removes the write bits of `path` and of everything below it."""
    path = pathlib.Path(path)
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        mode = entry.stat().st_mode
        write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        entry.chmod(mode | stat.S_IWUSR if writable else mode & ~write_bits)


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    """Runs the eight commands; returns `(inputs: {name: (path, digest before)}, outputs)`."""
    pytest.importorskip("matplotlib")  # plot-training and plot-reconstruction draw with it
    root = tmp_path_factory.mktemp("read_only")
    data, checkpoint, out = root / "data", root / "checkpoint", root / "out"
    write_synthetic_dataset(data, 4, 2, num_frames_per_sequence=300, seed=1)
    checkpoint.mkdir()
    shutil.copy(FIXTURES / "hbehavemae_tiny_multi.npz", checkpoint / "tiny.npz")
    config, _, _ = load_golden("hbehavemae_tiny_multi")
    (checkpoint / "config.json").write_text(json.dumps(config.to_dict()))
    run = out / "run"
    environment = {**os.environ, "KERAS_BACKEND": keras.config.backend(),
                   "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    inputs = {}

    def protect(name, path):
        inputs[name] = (path, tree_digest(path))
        set_writable(path, False)

    def hbehavemae(*arguments):
        result = subprocess.run([sys.executable, "-m", "keras_hbehavemae.cli.main",
                                 *map(str, arguments)], cwd=str(REPOSITORY), env=environment,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{arguments[0]}:\n{result.stderr[-3000:]}"

    protect("data", data)
    protect("checkpoint", checkpoint)
    try:
        hbehavemae("pretrain", f"--path_to_data_dir={data}", f"--output_dir={run}",
                   *TINY_ARCHITECTURE, "--epochs=1", "--warmup_epochs=0", "--batch_size=8",
                   "--steps_per_epoch=2")
        protect("run", run)  # from here on the run folder is an input
        hbehavemae("embed", f"--preset={run / 'preset'}", f"--path_to_data_dir={data}",
                   "--noembedsum", "--batch_size=256", f"--output_dir={out / 'embeddings'}")
        protect("embeddings", out / "embeddings")
        hbehavemae("evaluate", f"--embeddings={out / 'embeddings'}", "--seeds=41",
                   "--folds=2", f"--output_dir={out / 'probes'}")  # two test sequences
        hbehavemae("export", f"--preset={run / 'preset'}", f"--output_dir={out / 'exported'}")
        hbehavemae("convert", f"--checkpoint={checkpoint / 'tiny.npz'}",
                   f"--config={checkpoint / 'config.json'}", f"--output={out / 'converted'}")
        hbehavemae("data-flow", f"--preset={run / 'preset'}", f"--output={out / 'flow.md'}")
        hbehavemae("plot-training", f"--log={run / 'metrics.jsonl'}",
                   f"--output={out / 'training.png'}")
        hbehavemae("plot-reconstruction", f"--preset={run / 'preset'}",
                   f"--data={data / 'test.npy'}", "--start=0", "--keypoints=0",
                   f"--output={out / 'reconstruction.png'}")
    finally:
        for path, _ in inputs.values():
            set_writable(path, True)
    return inputs, out


def test_no_input_byte_changes_and_nothing_new_appears(commands):
    inputs, _ = commands
    for name, (path, before) in inputs.items():
        after = tree_digest(path)
        assert sorted(set(after) - set(before)) == [], f"new entries in the input {name}"
        assert sorted(set(before) - set(after)) == [], f"entries gone from the input {name}"
        changed = [key for key in before if before[key] != after[key]]
        assert changed == [], f"changed in the input {name}: {changed}"


def test_every_output_went_to_its_own_place(commands):
    _, out = commands
    assert sorted(os.listdir(out)) == sorted([
        "run", "embeddings", "probes", "exported", "converted", "flow.md", "training.png",
        "reconstruction.png"])
    assert (out / "exported" / "1" / "saved_model.pb").is_file()
    assert (out / "converted" / "task.weights.h5").is_file()
    assert (out / "probes" / "probe_results.json").is_file()
