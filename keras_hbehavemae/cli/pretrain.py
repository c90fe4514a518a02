"""Pretrain hBehaveMAE (or the non-hierarchical BehaveMAE) with the published recipe.

With no flags it trains a small hierarchical model on the built-in synthetic mouse-triplet
data (generated into `runs/pretrain/data` on first use) for a few minutes on a CPU:

    hbehavemae pretrain

A published configuration only needs the dataset and its folder; every other
flag defaults to the published value for that dataset:

    hbehavemae pretrain --dataset mabe_mice --path_to_data_dir data/mabe \\
        --output_dir runs/mabe --log_dir runs/mabe/logs

Multi-value flags take the published space-separated form as well as commas:
`--input_size 400 1 72`, `--input_size=400,1,72` and `--input_size "400 1 72"` are the same
(likewise `--patch_kernel`, `--stages`, `--out_embed_dims`, `--mask_unit_attn True False
False`; `--q_strides "2,1,4;2,1,6"`). Boolean flags accept `--norm_loss`,
`--nonorm_loss`, `--norm_loss=True` and the published `--norm_loss True`.

Rerunning the same command resumes an interrupted run from its last completed epoch; a
different configuration for an existing `--output_dir` is refused (use a new one).
Invalid settings print the error and exit with status 1.
"""

from __future__ import annotations

import os
import sys
import warnings

from absl import app, flags

# Defaults per dataset. The published datasets take their architecture, decoder and
# masking from their built-in presets (`keras_hbehavemae.presets.PUBLISHED_PRESETS`), looked up
# only when needed because importing the package loads Keras; their training settings
# (docs/model.md, "Training recipe") are here. "synthetic" is the small default run.
PUBLISHED_ARCHITECTURE = {"mabe_mice": "mabe22", "shot7m2": "shot7m2", "hbabel": "hbabel"}
DATASET_DEFAULTS = {
    "synthetic": dict(
        input_size="300,3,24", patch_kernel="3,1,24", stages="1,2,1", q_strides="5,1,1;1,3,1",
        mask_unit_attn="True,False,False", init_embed_dim=32, init_num_heads=2,
        out_embed_dims="32,48,64", decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=1,
        decoding_strategy="multi", norm_loss=True, mask_ratio=0.75, batch_size=32, epochs=8,
        warmup_epochs=1, blr=4e-3, data_augment=False),
    "mabe_mice": dict(batch_size=768, epochs=200, warmup_epochs=40, blr=1.6e-4,
                      data_augment=True),
    "shot7m2": dict(batch_size=512, epochs=200, warmup_epochs=40, blr=1.6e-4,
                    data_augment=False),
    "hbabel": dict(batch_size=512, epochs=200, warmup_epochs=40, blr=1.6e-4,
                   data_augment=False),
    # Generic arrays: the architecture flags are required; decoder and training as published.
    "keypoints": dict(
        init_num_heads=2, decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=1,
        decoding_strategy="multi", norm_loss=False, mask_ratio=0.75, batch_size=64,
        epochs=200, warmup_epochs=40, blr=1.6e-4, data_augment=False),
}

ARCHITECTURE_FLAGS = ("input_size", "patch_kernel", "stages", "q_strides", "mask_unit_attn",
                      "init_embed_dim", "init_num_heads", "out_embed_dims")
DECODER_FLAGS = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads", "decoding_strategy",
                 "norm_loss", "mask_ratio")
# Flags whose published form takes several space-separated values.
MULTI_VALUE_FLAGS = ("input_size", "patch_kernel", "stages", "out_embed_dims", "mask_unit_attn",
                     "q_strides")
BOOL_FLAGS = ("norm_loss", "fill_holes", "data_augment")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the script's flags on `flag_values` (default: absl's global FLAGS)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_enum("dataset", "synthetic", list(DATASET_DEFAULTS),
                      "Dataset; the other defaults follow it (published settings).", **fv)
    flags.DEFINE_string("path_to_data_dir", None, "Data folder (synthetic: generated there if "
                        "empty; default OUTPUT_DIR/data).", **fv)
    flags.DEFINE_list("synthetic_sequences", ["32", "8"], "Synthetic data only: training and "
                      "test sequences (1800 frames each) generated into an empty data folder.",
                      **fv)
    flags.DEFINE_integer("synthetic_frames", 1800, "Synthetic data only: frames per generated "
                         "sequence.", lower_bound=1, **fv)
    flags.DEFINE_enum("model", "hbehavemae", ["hbehavemae", "behavemae"],
                      "hbehavemae, or behavemae: the non-hierarchical baseline.", **fv)
    for name, meaning in (
            ("input_size", "(T, H, W), e.g. 400 1 72"), ("patch_kernel", "(pt, ph, pw)"),
            ("stages", "blocks per stage, e.g. 2 3 4"),
            ("q_strides", "q-pooling strides, e.g. '2,1,4;2,1,6'"),
            ("mask_unit_attn", "one bool per stage, e.g. True False False"),
            ("out_embed_dims", "output width per stage, e.g. 78 128 256")):
        flags.DEFINE_string(name, None, meaning + ".", **fv)
    for name, meaning in (
            ("init_embed_dim", "Width of stage 0."), ("init_num_heads", "Heads of stage 0."),
            ("num_frames", "Window length; must equal input_size[0]."),
            ("decoder_embed_dim", "Decoder width."), ("decoder_depth", "Decoder blocks."),
            ("decoder_num_heads", "Decoder heads."), ("batch_size", "Windows per device."),
            ("epochs", "Training epochs."), ("sliding_window", "Stride between windows."),
            ("steps_per_epoch", "Cap on steps per epoch (smoke runs).")):
        flags.DEFINE_integer(name, None, meaning, **fv)
    flags.DEFINE_enum("decoding_strategy", None, ["multi", "single"], "Decoder input.", **fv)
    flags.DEFINE_float("mask_ratio", None, "Fraction of mask units removed.", **fv)
    flags.DEFINE_boolean("norm_loss", None, "Standardise each target token.", **fv)
    flags.DEFINE_float("blr", None, "Base learning rate: lr = blr * effective batch / 256.", **fv)
    flags.DEFINE_float("lr", None, "Absolute peak learning rate (overrides --blr).", **fv)
    flags.DEFINE_float("min_lr", 0.0, "Final learning rate.", **fv)
    flags.DEFINE_float("warmup_epochs", None, "Linear warmup epochs.", **fv)
    flags.DEFINE_float("weight_decay", 0.05, "AdamW weight decay.", **fv)
    flags.DEFINE_float("clip_grad", 0.02, "Global gradient-norm clip (0: none).", **fv)
    flags.DEFINE_integer("sampling_rate", 1, "Stride between frames inside a window.", **fv)
    flags.DEFINE_boolean("fill_holes", False, "MABe hole filling (mouse datasets).", **fv)
    flags.DEFINE_boolean("data_augment", None, "Arena augmentation (mouse datasets).", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of initialisation, data order and masks.", **fv)
    flags.DEFINE_string("output_dir", "runs/pretrain", "Run folder (checkpoints, state, "
                        "metrics, preset).", **fv)
    if "log_dir" not in flag_values:  # absl.logging defines --log_dir already; share it
        flags.DEFINE_string("log_dir", "", "TensorBoard folder (default OUTPUT_DIR/logs).",
                            **fv)
    flags.DEFINE_string("preset", None, "Start from a preset folder, .keras or .weights.h5 "
                        "file (its architecture replaces the model flags).", **fv)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA-compile the train "
                      "step. auto: the fastest measured path (XLA under TensorFlow, on a CPU "
                      "too, and JAX; eager torch); false: TensorFlow's own kernels.", **fv)
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Precision.",
                      **fv)
    flags.DEFINE_enum("distribute", "none", ["none", "data_parallel"],
                      "Data parallelism over local devices (JAX, TensorFlow).", **fv)


def join_multi_value_flags(argv: list[str]) -> list[str]:
    """Rewrites the published argparse forms for absl.

    `--input_size 400 1 72` becomes `--input_size=400 1 72` (for `MULTI_VALUE_FLAGS`), and
    `--norm_loss True` becomes `--norm_loss=True` (for `BOOL_FLAGS`).
    """
    result, index = [], 0
    while index < len(argv):
        argument = argv[index]
        name = argument[2:] if argument.startswith("--") and "=" not in argument else None
        index += 1
        if name in MULTI_VALUE_FLAGS:
            values = []
            while index < len(argv) and not argv[index].startswith("--"):
                values.append(argv[index])
                index += 1
            separator = ";" if name == "q_strides" else " "  # one triple per value
            result.append(f"--{name}={separator.join(values)}" if values else argument)
        elif (name in BOOL_FLAGS and index < len(argv)
              and argv[index].lower() in ("true", "false")):
            result.append(f"--{name}={argv[index]}")
            index += 1
        else:
            result.append(argument)
    return result


def _setting(flag_values, name: str):
    """The flag's value if given, else the dataset's published default."""
    value = flag_values[name].value
    if value is None:
        value = dataset_defaults(flag_values.dataset).get(name)
    return value


def dataset_defaults(dataset: str) -> dict:
    """The published (or default-run) settings of `dataset`."""
    defaults = DATASET_DEFAULTS[dataset]
    if dataset in PUBLISHED_ARCHITECTURE:
        from keras_hbehavemae.presets import published_parameters

        defaults = {**published_parameters(PUBLISHED_ARCHITECTURE[dataset]), **defaults}
    return defaults


def model_config(flag_values):
    """The `HBehaveMAEConfig` the flags (or the preset) describe."""
    from keras_hbehavemae.loading import read_model_config
    from keras_hbehavemae.models.config import HBehaveMAEConfig, parse_int_sequence

    if flag_values.preset:
        preset_config, has_decoder = read_model_config(flag_values.preset, "--preset")
        if preset_config is not None:
            ignored = [name for name in ARCHITECTURE_FLAGS + ("model",)
                       + (DECODER_FLAGS if has_decoder else ())
                       if flag_values[name].present]
            if ignored:
                warnings.warn("--preset defines the architecture; ignoring --"
                              + ", --".join(ignored), stacklevel=2)
            if has_decoder:
                return preset_config
            decoder = {name: _setting(flag_values, name) for name in DECODER_FLAGS}
            return preset_config.replace(**decoder)
    values = {name: _setting(flag_values, name) for name in ARCHITECTURE_FLAGS + DECODER_FLAGS}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ValueError(f"--dataset {flag_values.dataset} has no default for "
                         f"--{', --'.join(missing)}; give them")
    if flag_values.model == "behavemae":
        stages = parse_int_sequence(values["stages"], "stages")
        widths = parse_int_sequence(values["out_embed_dims"], "out_embed_dims")
        if not flag_values["q_strides"].present:
            values["q_strides"] = ";".join(["1,1,1"] * len(stages))
        if not flag_values["out_embed_dims"].present:
            values["out_embed_dims"] = [widths[0]] * len(stages)
    config = HBehaveMAEConfig(**values, non_hierarchical=flag_values.model == "behavemae")
    config.validate_for_training()
    return config


def training_config(flag_values):
    from keras_hbehavemae.training import TrainingConfig

    return TrainingConfig(
        batch_size=_setting(flag_values, "batch_size"), epochs=_setting(flag_values, "epochs"),
        warmup_epochs=_setting(flag_values, "warmup_epochs"), blr=_setting(flag_values, "blr"),
        lr=flag_values.lr, min_lr=flag_values.min_lr, weight_decay=flag_values.weight_decay,
        clip_grad=flag_values.clip_grad or None, seed=flag_values.seed,
        precision=flag_values.precision,
        distribute=None if flag_values.distribute == "none" else flag_values.distribute,
        steps_per_epoch=flag_values.steps_per_epoch)


def pretraining_data(flag_values, config):
    from keras_hbehavemae.data.recipes import ensure_synthetic_dataset, load_pretraining_data

    if flag_values.num_frames is not None and flag_values.num_frames != config.input_size[0]:
        raise ValueError(f"num_frames: {flag_values.num_frames} is invalid: it must equal "
                         f"input_size[0] = {config.input_size[0]}")
    path = flag_values.path_to_data_dir
    if flag_values.dataset == "synthetic":
        path = path or os.path.join(flag_values.output_dir, "data")
        counts = [int(value) if value.strip().isdigit() else 0
                  for value in flag_values.synthetic_sequences]
        if len(counts) != 2 or min(counts) < 1:
            raise ValueError(f"synthetic_sequences: {flag_values.synthetic_sequences} is invalid: "
                             "give two positive counts, training and test, e.g. 32,8")
        ensure_synthetic_dataset(path, seed=flag_values.seed, num_train_sequences=counts[0],
                                 num_test_sequences=counts[1],
                                 num_frames_per_sequence=flag_values.synthetic_frames)
    elif path is None:
        raise ValueError(f"--dataset {flag_values.dataset} needs --path_to_data_dir")
    return load_pretraining_data(
        flag_values.dataset, path, config.input_size,
        sliding_window=flag_values.sliding_window, sampling_rate=flag_values.sampling_rate,
        fill_holes=flag_values.fill_holes, data_augment=bool(_setting(flag_values,
                                                                      "data_augment")))


def run(flag_values) -> int:
    """Runs the pretraining the flags describe; returns the exit status."""
    from keras_hbehavemae.models.compilation import parse_jit_compile_flag
    from keras_hbehavemae.training import run_pretraining
    from keras_hbehavemae.training.callbacks import NonFiniteLossError

    try:
        config = model_config(flag_values)
        training = training_config(flag_values)
        data = pretraining_data(flag_values, config)
        jit_compile = parse_jit_compile_flag(flag_values.jit_compile)
        run_pretraining(config, data, training, flag_values.output_dir,
                        log_dir=flag_values.log_dir or None, preset=flag_values.preset,
                        jit_compile=jit_compile)
    except (ValueError, OSError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 1
    return run(flags.FLAGS)


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae pretrain` command (`hbehavemae-pretrain`)."""
    define_flags()
    app.run(main, argv=join_multi_value_flags(sys.argv if argv is None else argv))


if __name__ == "__main__":
    command()
