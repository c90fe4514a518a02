"""Print what hBehaveMAE does to one input window: patches, mask units, stages, fusion,
decoder and prediction target, with parameter counts and an ASCII diagram.

Usage:
    hbehavemae data-flow --config shot7m2                 # a published configuration
    hbehavemae data-flow --config mabe22 --mask_ratio 0.75  # ... with a change
    hbehavemae data-flow --preset presets/my_model --output data_flow.md
    hbehavemae data-flow --input_size 400 1 72 --patch_kernel 2 1 3 --stages 2 3 4 \\
        --q_strides "2,1,4;2,1,6" --mask_unit_attn True False False --init_embed_dim 96 \\
        --out_embed_dims 78 128 256 --mask_ratio 0.7 --decoding_strategy single

The model flags keep the published names and spellings (`--input_size 400 1 72` or
"400,1,72", `--q_strides "2,1,4;2,1,6"`, `--norm_loss False`). Flags given explicitly
override `--config` / `--preset`. `--no_build` skips building the Keras model (parameter
counts then come from the geometry only). An invalid configuration prints one line on
stderr and exits with status 2.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up logs quiet

from absl import flags  # noqa: E402

from keras_hbehavemae.cli.usage import run_command  # noqa: E402

FLAGS = flags.FLAGS

# Model flags, published names. Strings, so that the published spellings parse and an
# unset flag is distinguishable from a given one.
MODEL_FLAGS = {
    "input_size": "Window (T, H, W): frames, individuals, features, e.g. '400 1 72'.",
    "patch_kernel": "Patch (pt, ph, pw), e.g. '2 1 3'.",
    "stages": "Blocks per stage, e.g. '2 3 4'.",
    "q_strides": "Query-pooling strides, one triple per pooling transition: '2,1,4;2,1,6'.",
    "mask_unit_attn": "Mask-unit attention per stage, e.g. 'True False False'.",
    "init_embed_dim": "Width C0 of stage 0.",
    "init_num_heads": "Heads of stage 0.",
    "out_embed_dims": "Output projection width per stage, e.g. '78 128 256'.",
    "dim_mul": "Width multiplier per stage transition.",
    "head_mul": "Heads multiplier per stage transition.",
    "mlp_ratio": "MLP hidden width over block width.",
    "decoder_embed_dim": "Decoder width.",
    "decoder_depth": "Decoder blocks.",
    "decoder_num_heads": "Decoder heads.",
    "decoding_strategy": "multi or single.",
    "mask_ratio": "Fraction of mask units removed.",
    "norm_loss": "Standardise target tokens (True/False).",
    "non_hierarchical": "The BehaveMAE baseline (True/False).",
}

INTEGER_FLAGS = ("init_embed_dim", "init_num_heads", "decoder_embed_dim", "decoder_depth",
                 "decoder_num_heads")
FLOAT_FLAGS = ("dim_mul", "head_mul", "mlp_ratio", "mask_ratio")
# Flags whose published form is several words: `--input_size 400 1 72`.
LIST_FLAGS = ("input_size", "patch_kernel", "stages", "mask_unit_attn", "out_embed_dims")


def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("config", None, "A published configuration: shot7m2, mabe22 or hbabel.")
    flags.DEFINE_string("preset", None, "A preset folder with config.json (and optionally "
                        "task.json for the decoder settings).")
    flags.DEFINE_bool("no_build", False, "Do not build the Keras model; counts from the geometry.")
    flags.DEFINE_string("output", None, "Also write the report to this file.")
    flags.DEFINE_string("format", "markdown", "markdown or json.")
    for name, meaning in MODEL_FLAGS.items():
        flags.DEFINE_string(name, None, meaning)


class UsageError(ValueError):
    pass


def join_list_values(argv: list[str]) -> list[str]:
    """`--stages 2 3 4` → `--stages=2 3 4` (absl takes one value per flag)."""
    result, index = [], 0
    while index < len(argv):
        argument = argv[index]
        name = argument.lstrip("-")
        if argument.startswith("--") and "=" not in argument and name in LIST_FLAGS:
            values = []
            index += 1
            while index < len(argv) and not argv[index].startswith("--"):
                values.append(argv[index])
                index += 1
            result.append(f"--{name}={' '.join(values)}" if values else argument)
            continue
        result.append(argument)
        index += 1
    return result


def parse_flags(argv: list[str]) -> list[str]:
    try:
        return FLAGS(join_list_values(argv))
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def _number(name: str, text: str):
    try:
        return int(text) if name in INTEGER_FLAGS else float(text)
    except ValueError:
        kind = "an integer" if name in INTEGER_FLAGS else "a number"
        raise ValueError(f"{name}: {text!r} is invalid: must be {kind}") from None


def preset_values(preset: str) -> dict:
    """The configuration fields of a preset (name or folder: config.json, task.json)."""
    from keras_hbehavemae.presets import preset_parameters

    try:
        return preset_parameters(preset)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"preset: cannot read {preset} ({error})") from None


def configuration_values() -> tuple[dict, str | None]:
    """The configuration dict from --config / --preset and the explicit model flags."""
    from keras_hbehavemae.presets import PUBLISHED_PRESETS, list_presets, published_parameters

    if FLAGS.config and FLAGS.preset:
        raise UsageError("give --config or --preset, not both")
    values, title = {}, None
    if FLAGS.config:
        name = FLAGS.config.strip().lower()
        if name not in PUBLISHED_PRESETS:
            raise UsageError(f"config: {FLAGS.config!r} is not a published configuration; "
                             f"choose one of {', '.join(sorted(PUBLISHED_PRESETS))}")
        values = published_parameters(name)
        title = f"{list_presets()[PUBLISHED_PRESETS[name]].description} (published hBehaveMAE)"
    elif FLAGS.preset:
        values, title = preset_values(FLAGS.preset), f"preset {FLAGS.preset}"
    changed = []
    for name in MODEL_FLAGS:
        text = FLAGS[name].value
        if text is None:
            continue
        values[name] = _number(name, text) if name in INTEGER_FLAGS + FLOAT_FLAGS else text
        changed.append(name)
    if title and changed:
        title += " with " + ", ".join(f"{name}={FLAGS[name].value}" for name in changed)
    return values, title


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]} (quote multi-word values, e.g. "
              "--q_strides \"2,1,4;2,1,6\")", file=sys.stderr)
        return 2
    if FLAGS.format not in ("markdown", "json"):
        print(f"error: format: {FLAGS.format!r} is invalid: must be markdown or json",
              file=sys.stderr)
        return 2
    from keras_hbehavemae.models.config import HBehaveMAEConfig
    from keras_hbehavemae.report import data_flow_report

    values: dict = {}
    try:
        values, title = configuration_values()
        if not values:
            raise UsageError("give --config shot7m2|mabe22|hbabel, --preset FOLDER or the "
                             "model flags (--input_size, --patch_kernel, --stages, ...)")
        config = HBehaveMAEConfig.from_dict(values)
        report = data_flow_report(config, build_model=not FLAGS.no_build,
                                  format=FLAGS.format, title=title)
    except ValueError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        from keras_hbehavemae.report.suggestions import divisibility_suggestions

        for hint in divisibility_suggestions(values.get("input_size"),
                                             values.get("patch_kernel"),
                                             values.get("q_strides")):
            print(f"  {hint}", file=sys.stderr)
        return 2
    text = report if report.endswith("\n") else report + "\n"
    sys.stdout.write(text)
    if FLAGS.output:
        from keras_hbehavemae.files.atomic import check_output_is_not_input, write_text_atomically

        try:
            check_output_is_not_input(FLAGS.output, "--output", {"--preset": FLAGS.preset})
            write_text_atomically(FLAGS.output, text)
        except (ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae data-flow` command (`hbehavemae-data-flow`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__, flags_parser=parse_flags)


if __name__ == "__main__":
    command()
