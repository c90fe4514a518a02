"""Convert a published hBehaveMAE checkpoint (.pth), a PyTorch state dict or a `.npz` with
PyTorch key names into a Keras weights file or a preset folder.

The file is read without torch and without executing pickle code. The output is written
whole or not at all: a preset folder through a temporary sibling, a `.weights.h5` file
through a temporary file. An existing preset folder is replaced as a whole (never mixed:
`--backbone_only` into a folder that held a pretrainer leaves no decoder behind); a
non-empty folder of anything else, or an existing `.weights.h5` file, is refused unless
`--overwrite`.

Usage:
    hbehavemae convert --checkpoint checkpoint-199.pth \\
        --output presets/my_model            # a preset folder (backbone + decoder)
    hbehavemae convert --checkpoint checkpoint-199.pth \\
        --output encoder.weights.h5 --backbone_only
    hbehavemae convert --checkpoint weights.npz --config config.json \\
        --output presets/my_model            # no training args inside: give the config
"""

import os
import sys

from absl import flags

from keras_hbehavemae.cli.usage import run_command

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("checkpoint", None, "Published .pth, PyTorch state dict or .npz file.")
    flags.DEFINE_string("output", None, "A `.weights.h5` file, or a folder for a preset.")
    flags.DEFINE_string("config", None, "JSON file of HBehaveMAEConfig fields, for checkpoints "
                        "without training args (or to cross-check those that have them).")
    flags.DEFINE_bool("backbone_only", False, "Convert only the encoder (decoder keys are "
                      "reported and skipped).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output that is not a preset "
                      "folder (a folder of other files, or a .weights.h5 file) as a whole.")
    flags.DEFINE_bool("allow_non_finite_weights", False, "Convert a checkpoint whose weights "
                      "hold NaN or inf (a diverged run) instead of refusing it.")
    flags.DEFINE_list("extra_training_args", [], "Names in the checkpoint's args to accept "
                      "besides the model parameters and the published training settings (a "
                      "modified training script's own flags); they are not used.")
    flags.mark_flags_as_required(["checkpoint", "output"])


def write_converted(model, output: str, checkpoint: str, overwrite: bool = False) -> None:
    """Writes `model` to `output`: a `.weights.h5` file, or else a preset folder.

    Raises:
        FileExistsError: `output` exists (a `.weights.h5` file, or a folder holding
            something other than a preset) and `overwrite` is False; nothing was written.
    """
    from keras_hbehavemae.files.atomic import write_atomically
    from keras_hbehavemae.presets import save_to_preset

    if output.endswith(".weights.h5"):
        if os.path.lexists(output) and not overwrite:
            raise FileExistsError(f"--output {output!r}: the file exists; nothing was written. "
                                  "Choose a new file name, or pass --overwrite to replace it")
        write_atomically(output, model.save_weights)
    else:
        save_to_preset(model, output, weights="converted", overwrite=overwrite,
                       metadata={"source": os.path.abspath(checkpoint)}, flag="--output")


def read_config_file(path: str):
    """The `HBehaveMAEConfig` of a `--config` JSON file; errors name the flag and the file."""
    from keras_hbehavemae.cli.flag_parsing import read_json_file
    from keras_hbehavemae.models.config import HBehaveMAEConfig

    values = read_json_file("--config", path)
    return HBehaveMAEConfig.from_dict(values, where=f"--config {path!r}")


def main(argv):
    del argv
    from keras_hbehavemae.cli import flag_parsing
    from keras_hbehavemae.convert.checkpoint import build_from_torch_checkpoint
    from keras_hbehavemae.files.atomic import check_folder_replaceable, check_output_is_not_input
    from keras_hbehavemae.presets.folder import is_preset_folder

    try:
        for flag in ("checkpoint", "output", "config"):
            flag_parsing.path(f"--{flag}", FLAGS[flag].value)
        check_output_is_not_input(FLAGS.output, "--output", {"--checkpoint": FLAGS.checkpoint,
                                                             "--config": FLAGS.config})
        if not FLAGS.output.endswith(".weights.h5"):  # refused before the conversion
            check_folder_replaceable(FLAGS.output, is_same_kind=is_preset_folder,
                                     kind="preset folder", overwrite=FLAGS.overwrite,
                                     flag="--output")
        config = None if FLAGS.config is None else read_config_file(FLAGS.config)
        model = build_from_torch_checkpoint(
            FLAGS.checkpoint, config, backbone_only=FLAGS.backbone_only,
            allow_non_finite=FLAGS.allow_non_finite_weights,
            extra_training_args=FLAGS.extra_training_args)
        write_converted(model, FLAGS.output, FLAGS.checkpoint, FLAGS.overwrite)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"converted {FLAGS.checkpoint} -> {FLAGS.output} "
          f"({model.count_params():,} parameters)")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae convert` command (`hbehavemae-convert`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__)


if __name__ == "__main__":
    command()
