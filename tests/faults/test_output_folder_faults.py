"""Output folders are written whole or not at all, never mixed with other files, never over
an input; and weights are never silently random.

- Preset folders (`save_to_preset`, `hbehavemae convert`): a pretrainer's preset replaced
  by a backbone leaves no decoder behind; a folder of other files is refused unless
  `overwrite`; a failing write keeps the old preset.
- Export folders (`serving.folder`, `export_saved_model`): TensorFlow Serving's layout,
  versions added or replaced whole, other folders refused unless `--overwrite`.
- Embedding and probe folders (`embed`, `evaluate`): the same rules.
- An output that is, holds or lies inside an input is refused, even with `--overwrite`.
- A preset of random weights is refused by every command that loads one, with a message
  naming `--allow_random_weights`.
The SavedModel's content: tests/test_export.py. Every command's inputs stay byte for byte:
tests/test_read_only_inputs.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import (
    FIXTURES,
    REPOSITORY,
    SMALL,
    TINY,
    build_pretrainer,
    load_golden,
    parse_pretrain_flags,
    pretrain_script,
    to_numpy,
)

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig, load_model
from keras_hbehavemae.cli.convert import write_converted
from keras_hbehavemae.cli.evaluate import is_probe_folder
from keras_hbehavemae.embeddings.imputation import impute
from keras_hbehavemae.embeddings.reconstruction import reconstruct
from keras_hbehavemae.embeddings.submission import is_embedding_folder
from keras_hbehavemae.files.atomic import check_output_is_not_input
from keras_hbehavemae.presets.folder import read_metadata, save_to_preset
from keras_hbehavemae.serving.export import export_info, export_saved_model
from keras_hbehavemae.serving.folder import check_export_folder, write_export_version


def tree_digest(folder) -> dict[str, str]:
    """Relative path -> sha256 of every file below `folder` (folders as `<dir>`)."""
    folder = pathlib.Path(folder)
    return {str(path.relative_to(folder)): "<dir>" if path.is_dir()
            else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*"))}


@pytest.fixture
def users_folder(tmp_path):
    """A non-empty folder of the user's own files."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "saved_model.pb").write_bytes(b"my own file of this name")
    return folder


# ---------------------------------------------------------------- preset folders


@pytest.fixture(scope="module")
def two_models():
    """Pretrainer A and another pretrainer B (other seeds: other weights), same TINY shape."""
    config = HBehaveMAEConfig(**TINY, decoder_embed_dim=16, mask_ratio=0.75)
    keras.utils.set_random_seed(1)
    first = build_pretrainer(config, seed=1)
    keras.utils.set_random_seed(2)
    return first, build_pretrainer(config, seed=2)


def weights_equal(first, second) -> bool:
    return all(np.array_equal(to_numpy(a), to_numpy(b))
               for a, b in zip(first.weights, second.weights, strict=True))


def test_a_backbone_saved_over_a_pretrainer_preset_leaves_no_decoder(two_models, tmp_path):
    model_a, model_b = two_models
    folder = tmp_path / "preset"
    save_to_preset(model_a, folder)
    assert (folder / "task.json").is_file()
    save_to_preset(model_b.backbone, folder)
    assert sorted(os.listdir(folder)) == ["config.json", "metadata.json", "model.weights.h5"]
    assert read_metadata(folder)["has_task"] is False
    assert weights_equal(HBehaveMAEBackbone.from_preset(folder), model_b.backbone)
    loaded = HBehaveMAE.from_preset(folder)  # a fresh decoder around B's backbone
    assert weights_equal(loaded.backbone, model_b.backbone)
    assert not weights_equal(loaded.decoder, model_a.decoder), "A's decoder came back"
    model = load_model(folder)  # what export and the commands load: the backbone only
    assert isinstance(model, HBehaveMAEBackbone)
    assert "reconstruct" not in export_info(model)["signatures"]


def test_a_preset_is_not_written_into_a_folder_of_other_files(two_models, users_folder):
    before = tree_digest(users_folder)
    with pytest.raises(FileExistsError, match=r"directory '.*mine': the folder is not empty "
                                              r"and does not hold a preset folder; nothing was "
                                              r"written.*--overwrite"):
        save_to_preset(two_models[0], users_folder)
    assert tree_digest(users_folder) == before
    save_to_preset(two_models[0], users_folder, overwrite=True)  # replaced as a whole
    assert "notes.txt" not in os.listdir(users_folder)


def test_a_failing_preset_write_keeps_the_old_preset(two_models, tmp_path, monkeypatch):
    folder = tmp_path / "preset"
    save_to_preset(two_models[0], folder)
    before = tree_digest(folder)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(two_models[1]), "save_weights", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        save_to_preset(two_models[1], folder)
    assert tree_digest(folder) == before
    assert os.listdir(tmp_path) == ["preset"]  # no temporary folder left behind


def test_converted_backbone_only_into_an_existing_preset_and_weights_files(two_models,
                                                                           tmp_path):
    model_a, model_b = two_models
    folder = tmp_path / "converted"
    write_converted(model_a, str(folder), "checkpoint.pth")
    write_converted(model_b.backbone, str(folder), "checkpoint.pth")  # --backbone_only
    assert not (folder / "task.json").exists() and not (folder / "task.weights.h5").exists()
    assert read_metadata(folder)["weights"] == "converted"
    weights = tmp_path / "encoder.weights.h5"
    write_converted(model_a.backbone, str(weights), "checkpoint.pth")
    before = weights.read_bytes()
    with pytest.raises(FileExistsError, match=r"--output '.*encoder.weights.h5': the file "
                                              r"exists; nothing was written.*--overwrite"):
        write_converted(model_b.backbone, str(weights), "checkpoint.pth")
    assert weights.read_bytes() == before
    write_converted(model_b.backbone, str(weights), "checkpoint.pth", overwrite=True)
    assert weights.read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["converted", "encoder.weights.h5"]


# ---------------------------------------------------------------- export folders


def fake_saved_model(marker: str):
    def write(folder: pathlib.Path) -> None:
        (folder / "saved_model.pb").write_text(marker)
        (folder / "variables").mkdir()
    return write


@pytest.mark.backend_independent
def test_export_folder_versions_are_added_and_replaced_whole(tmp_path):
    output = tmp_path / "exported"
    assert write_export_version(output, 1, fake_saved_model("one")) == output / "1"
    write_export_version(output, 2, fake_saved_model("two"))
    assert sorted(os.listdir(output)) == ["1", "2"]
    (output / "1" / "variables" / "old-shard").write_text("")
    write_export_version(output, 1, fake_saved_model("one again"))  # replaced as a whole
    assert (output / "1" / "saved_model.pb").read_text() == "one again"
    assert os.listdir(output / "1" / "variables") == []
    assert (output / "2" / "saved_model.pb").read_text() == "two"
    (output / "2" / "notes.txt").write_text("")  # a version holding other files: refused
    with pytest.raises(FileExistsError, match="is not an export folder"):
        write_export_version(output, 3, fake_saved_model("three"))


@pytest.mark.backend_independent
def test_export_into_a_folder_of_other_files_is_refused(users_folder):
    before = tree_digest(users_folder)
    with pytest.raises(FileExistsError, match=r"--output_dir '.*mine': the folder is not empty "
                                              r"and is not an export folder .*nothing was "
                                              r"written.*--overwrite"):
        write_export_version(users_folder, 1, fake_saved_model("x"))
    assert tree_digest(users_folder) == before
    write_export_version(users_folder, 4, fake_saved_model("x"), overwrite=True)
    assert os.listdir(users_folder) == ["4"]  # --overwrite replaces the whole folder


@pytest.mark.backend_independent
def test_an_export_in_the_old_single_folder_layout_is_named(tmp_path):
    fake_saved_model("old")(tmp_path)
    with pytest.raises(FileExistsError, match="older single-folder layout"):
        check_export_folder(tmp_path, 1)


@pytest.mark.backend_independent
def test_a_failing_export_leaves_the_previous_version(tmp_path):
    output = tmp_path / "exported"
    write_export_version(output, 1, fake_saved_model("good"))

    def fail(folder):
        (folder / "saved_model.pb").write_text("half")
        raise RuntimeError("tracing failed")

    with pytest.raises(RuntimeError, match="tracing failed"):
        write_export_version(output, 1, fail)
    assert os.listdir(output) == ["1"]
    assert (output / "1" / "saved_model.pb").read_text() == "good"


@pytest.mark.backend_independent
@pytest.mark.parametrize("version", [0, -1, "a", 1.5, True])
def test_invalid_version_is_named(version):
    from keras_hbehavemae.serving.folder import check_version

    with pytest.raises(ValueError, match=r"version: .* is invalid: must be a positive integer"):
        check_version(version)


def test_export_refuses_before_building_anything(tmp_path, users_folder):
    before = tree_digest(users_folder)
    with pytest.raises(FileExistsError, match="is not an export folder"):
        export_saved_model("hbehavemae_synthetic_mice", users_folder)
    assert tree_digest(users_folder) == before
    with pytest.raises(ValueError, match=r"preset '.*hbehavemae_shot7m2' holds no weights .*"
                                         r"--allow_random_weights"):
        export_saved_model("hbehavemae_shot7m2", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no such preset folder"):
        export_saved_model(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="Available presets: .*hbehavemae_shot7m2"):
        export_saved_model("hbehavemae_no_such_name", tmp_path / "out")
    (tmp_path / "weights.txt").write_text("")
    with pytest.raises(ValueError, match="expected a preset folder"):
        export_saved_model(tmp_path / "weights.txt", tmp_path / "out")
    with pytest.raises(ValueError, match="batch_size"):
        export_saved_model(tmp_path / "missing", tmp_path / "out", batch_size=0)
    with pytest.raises(ValueError, match="version: 0 is invalid"):
        export_saved_model(tmp_path / "missing", tmp_path / "out", version=0)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- outputs over inputs


@pytest.mark.backend_independent
def test_an_output_that_is_holds_or_lies_in_an_input_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.npy").write_bytes(b"")
    for output in (data, tmp_path, data / "embeddings"):
        with pytest.raises(ValueError, match=r"--output_dir '.*': overlaps the input "
                                             r"--path_to_data_dir '.*data'; input folders and "
                                             r"files are only read"):
            check_output_is_not_input(output, "--output_dir", {"--path_to_data_dir": data})
    check_output_is_not_input(tmp_path / "embeddings", "--output_dir",
                              {"--path_to_data_dir": data, "--preset": None})
    # An input file: its folder may take outputs, the file itself may not be one.
    check_output_is_not_input(data / "plot.png", "--output", {"--data": data / "test.npy"})
    with pytest.raises(ValueError, match="overlaps the input --data"):
        check_output_is_not_input(data / "test.npy", "--output", {"--data": data / "test.npy"})
    # A run folder may hold its inputs (it is written into, never replaced whole).
    check_output_is_not_input(tmp_path, "--output_dir", {"--path_to_data_dir": data},
                              may_hold_inputs=True)


@pytest.mark.backend_independent
def test_embedding_and_probe_folders_are_told_from_other_folders(tmp_path):
    for name in ("frame_number_map.json", "level_0.npy", "test_submission_combined.npy",
                 "labels.npy", "keypoints.npy", "extraction.json"):
        (tmp_path / name).write_bytes(b"")
    assert is_embedding_folder(tmp_path)
    (tmp_path / "train.npy").write_bytes(b"")
    assert not is_embedding_folder(tmp_path)
    probes = tmp_path / "probes"
    probes.mkdir()
    for name in ("probe_results.json", "probe_table.md"):
        (probes / name).write_text("")
    assert is_probe_folder(probes)
    (probes / "notes.txt").write_text("")
    assert not is_probe_folder(probes)


# ---------------------------------------------------------------- weights never silently random


def test_reconstruction_api_refuses_a_weightless_preset():
    keypoints = np.zeros((1, 400, 1, 72), "float32")
    for function in (lambda **kw: reconstruct("hbehavemae_shot7m2", keypoints, **kw),
                     lambda **kw: impute("hbehavemae_shot7m2", keypoints,
                                         np.zeros((1, 400), bool), **kw)):
        with pytest.raises(ValueError, match=r"holds no weights.*allow_random_weights=True"):
            function()


@pytest.mark.slow
def test_reconstruct_takes_a_preset_folder(two_models, tmp_path):
    model = two_models[0]
    save_to_preset(model, tmp_path / "initial", weights="initial")
    keypoints = np.random.default_rng(0).standard_normal((2, 32, 4, 12)).astype("float32")
    mask = np.zeros((2, 16), bool)
    mask[:, :4] = True
    with pytest.raises(ValueError, match="random initial weights of an untrained model"):
        reconstruct(tmp_path / "initial", keypoints, mask)
    from_folder = reconstruct(tmp_path / "initial", keypoints, mask, allow_random_weights=True)
    np.testing.assert_allclose(from_folder["pred"], reconstruct(model, keypoints, mask)["pred"],
                               atol=1e-5)


def test_pretrain_refuses_a_weightless_preset_before_writing(tmp_path, capsys):
    config = HBehaveMAEConfig(**SMALL)
    preset = tmp_path / "architecture"
    save_to_preset(build_pretrainer(config), preset, weights="none")
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "seq.npy", np.zeros((60, 3, 24), "float32"))
    arguments = ["--dataset=keypoints", f"--path_to_data_dir={data}", f"--preset={preset}",
                 f"--output_dir={tmp_path / 'run'}", "--batch_size=2", "--epochs=1",
                 "--steps_per_epoch=1", "--warmup_epochs=0", "--sliding_window=4"]
    assert pretrain_script().run(parse_pretrain_flags(*arguments)) == 1
    error = capsys.readouterr().err
    assert "holds no weights (architecture only)" in error and "--allow_random_weights" in error
    assert not (tmp_path / "run" / "run_config.json").exists()


def command_environment():
    return {**os.environ, "KERAS_BACKEND": keras.config.backend()}


def cli(*arguments):
    return subprocess.run([sys.executable, "-m", "keras_hbehavemae.cli.main", *arguments],
                          cwd=str(REPOSITORY), env=command_environment(),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def command_inputs(tmp_path_factory):
    """A data file, a checkpoint with its config, and an embeddings folder with labels."""
    folder = tmp_path_factory.mktemp("inputs")
    np.save(folder / "keypoints.npy", np.zeros((500, 1, 72), "float32"))
    config, _, _ = load_golden("hbehavemae_tiny_multi")
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    (folder / "embeddings").mkdir()
    (folder / "embeddings" / "labels.npy").write_bytes(b"")
    return folder


COMMANDS = {  # command -> (arguments given a data folder D and an output O, flag named)
    "embed, weightless": (["embed", "--preset=hbehavemae_shot7m2", "--dataset=keypoints",
                           "--path_to_data_dir={D}/keypoints.npy", "--output_dir={O}"],
                          "--allow_random_weights"),
    "export, weightless": (["export", "--preset=hbehavemae_shot7m2", "--output_dir={O}"],
                           "--allow_random_weights"),
    "plot-reconstruction, weightless": (["plot-reconstruction", "--preset=hbehavemae_shot7m2",
                                         "--data={D}/keypoints.npy", "--output={O}/r.png"],
                                        "--allow_random_weights"),
    "embed, a folder of other files": (["embed", "--preset=hbehavemae_synthetic_mice",
                                        "--path_to_data_dir={D}/keypoints.npy",
                                        "--output_dir={U}"], "--overwrite"),
    "export, a folder of other files": (["export", "--preset=hbehavemae_synthetic_mice",
                                         "--output_dir={U}"], "--overwrite"),
    "convert, a folder of other files": (["convert", f"--checkpoint={FIXTURES}/"
                                          "hbehavemae_tiny_multi.npz", "--config={D}/config.json",
                                          "--output={U}"], "--overwrite"),
    "evaluate, a folder of other files": (["evaluate", "--embeddings={D}/embeddings",
                                           "--output_dir={U}"], "--overwrite"),
}


@pytest.mark.slow
@pytest.mark.backend_independent  # refused from the flags and folders, before any model
@pytest.mark.parametrize("case", list(COMMANDS))
def test_commands_refuse_with_a_message_naming_the_flag(case, command_inputs, users_folder,
                                                        tmp_path):
    arguments, flag = COMMANDS[case]
    output = tmp_path / "out"
    arguments = [argument.format(D=command_inputs, O=output, U=users_folder)
                 for argument in arguments]
    inputs_before, users_before = tree_digest(command_inputs), tree_digest(users_folder)
    result = cli(*arguments)
    assert result.returncode == 1, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and flag in error, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert tree_digest(command_inputs) == inputs_before
    assert tree_digest(users_folder) == users_before
    assert not output.exists()
