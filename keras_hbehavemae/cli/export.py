"""Export an hBehaveMAE preset folder (or `.keras` file) as a TensorFlow SavedModel for serving.

The output is TensorFlow Serving's layout, `OUTPUT_DIR/<version>/saved_model.pb` (default
version 1), so `tensorflow_model_server --model_base_path=OUTPUT_DIR` serves it as it is.
Another `--version` is added next to the existing ones; an existing version is replaced
as a whole. A non-empty `--output_dir` that is not an export folder is refused (nothing is
written) unless `--overwrite`, which replaces the whole folder.

Signatures (any batch size unless --batch_size is given):

- `serve` / `embed`: `keypoints` float32 [batch, T, H, W] -> `level_0` ... `level_{L-1}`
  and `keypoints_are_finite` [batch];
- `reconstruct` (presets with a decoder, i.e. `task.json`): `keypoints` and `mask` bool
  [batch, U] (True = kept, exactly K per row) -> `pred` [batch, U, P], `strided`
  [batch, T/pt, H, W], `mask_is_valid` [batch] and `keypoints_are_finite` [batch];
- `reconstruct_seeded`: `keypoints` and an int64 `seed` -> `reconstruct`'s outputs for a
  random valid mask drawn from the seed, and that `mask`.

The numbers a client needs (U, K, P, the mask grid, ...) are written to
`OUTPUT_DIR/<version>/assets.extra/hbehavemae.json`. Runs under KERAS_BACKEND=tensorflow
or jax; under torch the export runs in a TensorFlow-backend subprocess. Framework messages
(TensorFlow's and absl's INFO logs, Keras's export summary) are shown only with --verbose;
TensorFlow's C++ INFO lines are off unless TF_CPP_MIN_LOG_LEVEL=0 is set, except the
few that TensorFlow 2.21 writes while it loads on CPUs where it turns on oneDNN's custom
operations ("oneDNN custom operations are on", "This TensorFlow binary is optimized"):
they come before its logging is set up, whatever the environment says.

Usage:
    hbehavemae export --preset presets/my_model --output_dir exported/my_model
    KERAS_BACKEND=jax hbehavemae export --preset model.keras --output_dir out \\
        --platforms cpu,cuda --version 2
"""

import json
import sys

from absl import flags

from keras_hbehavemae.cli.usage import run_command

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("preset", None, "Preset folder (with task.json for the reconstruct "
                        "signatures) or a .keras file.")
    flags.DEFINE_string("output_dir", None, "Export folder: the SavedModel goes to "
                        "OUTPUT_DIR/<version>/ (TensorFlow Serving's layout).")
    flags.DEFINE_integer("version", 1, "The version folder to write (a positive integer).")
    flags.DEFINE_bool("overwrite", False, "Replace --output_dir as a whole even if it holds "
                      "something other than exports.")
    flags.DEFINE_integer("batch_size", None, "Fixed batch size (default: any batch size).")
    flags.DEFINE_list("platforms", None, "JAX backend only: platforms to lower for, e.g. "
                      "cpu,cuda (default: the platform JAX runs on).")
    flags.DEFINE_bool("allow_random_weights", False, "Accept a preset without trained or "
                      "converted weights: the SavedModel then computes with random weights.")
    flags.DEFINE_bool("verbose", False, "Show TensorFlow's and Keras's messages and the "
                      "signatures.")
    flags.mark_flags_as_required(["preset", "output_dir"])


def main(argv):
    del argv
    from keras_hbehavemae.serving.export import EXPORT_INFO_FILE, export_saved_model

    try:
        path = export_saved_model(FLAGS.preset, FLAGS.output_dir, version=FLAGS.version,
                                  overwrite=FLAGS.overwrite, batch_size=FLAGS.batch_size,
                                  platforms=FLAGS.platforms, verbose=FLAGS.verbose,
                                  allow_random_weights=FLAGS.allow_random_weights)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    info = json.loads((path / "assets.extra" / EXPORT_INFO_FILE).read_text())
    print(f"exported {FLAGS.preset} -> {path}")
    print(f"signatures: {', '.join(info['signatures'])}")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae export` command (`hbehavemae-export`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__)


if __name__ == "__main__":
    command()
