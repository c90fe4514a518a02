"""Convert a published hBehaveMAE checkpoint (.pth), a PyTorch state dict or a `.npz` with
PyTorch key names into a Keras weights file or a preset folder.

The file is read without torch and without executing pickle code.

Usage:
    hbehavemae convert --checkpoint checkpoint-199.pth \\
        --output presets/my_model            # a preset folder (backbone + decoder)
    hbehavemae convert --checkpoint checkpoint-199.pth \\
        --output encoder.weights.h5 --backbone_only
    hbehavemae convert --checkpoint weights.npz --config config.json \\
        --output presets/my_model            # no training args inside: give the config
"""

import json
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
    flags.mark_flags_as_required(["checkpoint", "output"])


def main(argv):
    del argv
    from keras_hbehavemae.convert.checkpoint import build_from_torch_checkpoint
    from keras_hbehavemae.models.config import HBehaveMAEConfig
    from keras_hbehavemae.presets import save_to_preset

    config = None
    if FLAGS.config:
        with open(FLAGS.config) as file:
            config = HBehaveMAEConfig.from_dict(json.load(file))
    try:
        model = build_from_torch_checkpoint(FLAGS.checkpoint, config,
                                            backbone_only=FLAGS.backbone_only)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if FLAGS.output.endswith(".weights.h5"):
        model.save_weights(FLAGS.output)
    else:
        save_to_preset(model, FLAGS.output, weights="converted",
                       metadata={"source": os.path.abspath(FLAGS.checkpoint)})
    print(f"converted {FLAGS.checkpoint} -> {FLAGS.output} "
          f"({model.count_params():,} parameters)")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae convert` command (`hbehavemae-convert`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__)


if __name__ == "__main__":
    command()
