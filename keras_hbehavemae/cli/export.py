"""Export an hBehaveMAE preset folder (or `.keras` file) as a TensorFlow SavedModel for serving.

Signatures (any batch size unless --batch_size is given):

- `serve` / `embed`: `keypoints` float32 [batch, T, H, W] -> `level_0` ... `level_{L-1}`;
- `reconstruct` (presets with a decoder, i.e. `task.json`): `keypoints` and `mask` bool
  [batch, U] (True = kept, exactly K per row) -> `pred` [batch, U, P], `strided`
  [batch, T/pt, H, W] and `mask_is_valid` [batch].

The numbers a client needs (U, K, P, the mask grid, ...) are written to
`<output_dir>/assets.extra/hbehavemae.json`. Runs under KERAS_BACKEND=tensorflow or jax;
under torch the export runs in a TensorFlow-backend subprocess.

Usage:
    hbehavemae export --preset presets/my_model --output_dir exported/my_model
    KERAS_BACKEND=jax hbehavemae export --preset model.keras --output_dir out \\
        --platforms cpu,cuda
"""

import json
import sys

from absl import flags

from keras_hbehavemae.cli.usage import run_command

FLAGS = flags.FLAGS
def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("preset", None, "Preset folder (with task.json for the reconstruct "
                        "signature) or a .keras file.")
    flags.DEFINE_string("output_dir", None, "SavedModel folder to write.")
    flags.DEFINE_integer("batch_size", None, "Fixed batch size (default: any batch size).")
    flags.DEFINE_list("platforms", None, "JAX backend only: platforms to lower for, e.g. "
                      "cpu,cuda (default: the platform JAX runs on).")
    flags.mark_flags_as_required(["preset", "output_dir"])


def main(argv):
    del argv
    from keras_hbehavemae.serving.export import EXPORT_INFO_FILE, export_saved_model

    try:
        path = export_saved_model(FLAGS.preset, FLAGS.output_dir, batch_size=FLAGS.batch_size,
                                  platforms=FLAGS.platforms)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
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
