"""Pretrain hBehaveMAE (or the non-hierarchical BehaveMAE) with the published recipe.

On your own pose-tracking files (DeepLabCut, SLEAP, LightningPose, Anipose, NWB; the
`[pose]` extra), one line; `--size small|base` sizes the model from the files' geometry:

    hbehavemae pretrain --data "sessions/*.h5" --source_software DeepLabCut \\
        --output_dir runs/mine

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

Synthetic data is generated only into the run's own `OUTPUT_DIR/data`, or into a new or
empty `--path_to_data_dir`; a folder with other content is refused, and no file is ever
written over. Every other dataset folder is only read.

`--save_initial` also keeps the weights the run starts from as the preset
`OUTPUT_DIR/initial_preset` (weights "initial"): the untrained control of the probe
table. `--epochs 0` writes only that preset and trains nothing.

Rerunning the same command resumes an interrupted run from its last completed epoch; a
different configuration for an existing `--output_dir` is refused (use a new one). One
run writes to an `--output_dir` at a time: a second one exits with status 1, naming the
process that holds the folder. SIGTERM (or Ctrl-C) stops the run at the next step
boundary, keeps the last completed epoch's checkpoint, prints one line and exits with
status 143 (Ctrl-C: 130); rerun the command to resume.
Invalid settings print the error and exit with status 1.

Several processes (machines) train one model with `--distribute multi_worker`: under JAX
give every process `--coordinator_address HOST:PORT --num_processes N --process_id I` (or
start them with srun, which JAX reads); under TensorFlow set `TF_CONFIG`. See the README,
"Training on several GPUs or machines".
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

from absl import flags

from keras_hbehavemae.cli import flag_parsing
from keras_hbehavemae.cli.allocator_flag import apply_allocator_flag, define_allocator_flag
from keras_hbehavemae.cli.cluster_flags import cluster_settings, define_cluster_flags, leave_at_once
from keras_hbehavemae.cli.pose_flags import (
    DEFAULT_NORMALISE,
    define_pose_flags,
    help_defaults,
    pose_pretraining,
)
from keras_hbehavemae.cli.usage import run_command

# Defaults per dataset. The published datasets take their architecture, decoder and
# masking from their built-in presets (`keras_hbehavemae.presets.PUBLISHED_PRESETS`), looked up
# only when needed because importing the package loads Keras; their training settings
# (docs/model.md, "Training recipe") are here. "synthetic" is the small default run.
PUBLISHED_ARCHITECTURE = {"mabe_mice": "mabe22", "shot7m2": "shot7m2", "hbabel": "hbabel"}
SYNTHETIC_INPUT_SIZE = (300, 3, 24)
DATASET_DEFAULTS = {
    # The architecture: `--size small` for its (300, 3, 24) windows (`models.sizes`).
    "synthetic": dict(batch_size=32, epochs=8, warmup_epochs=1, blr=4e-3, data_augment=False),
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
BOOL_FLAGS = ("norm_loss", "fill_holes", "data_augment", "save_initial")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the script's flags on `flag_values` (default: absl's global FLAGS)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_enum("dataset", "synthetic", list(DATASET_DEFAULTS),
                      "Dataset; the other defaults follow it (published settings).", **fv)
    flags.DEFINE_string("path_to_data_dir", None, "Data folder, only read (synthetic: generated "
                        "there only if the folder is new or empty; default OUTPUT_DIR/data), "
                        "or one file: the training split, whatever its name.", **fv)
    flags.DEFINE_string("held_out_path", None, "A file holding the held-out split, whatever "
                        "its name (default: the folder's held-out split).", **fv)
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
            ("epochs", "Training epochs (0: only save the initial weights, see --save_initial)."),
            ("sliding_window", "Stride between windows."),
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
    flags.DEFINE_float("clip_grad", 0.02, "Global gradient-norm clip, > 0 (0: no clipping).",
                       **fv)
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
    flags.DEFINE_boolean("allow_random_weights", False, "Accept a --preset without trained "
                         "weights (e.g. a published architecture-only preset): training starts "
                         "from scratch on its architecture.", **fv)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA-compile the train "
                      "step. auto: the fastest measured path (XLA under JAX; under TensorFlow "
                      "with a GPU, and on a CPU for models of Shot7M2/MABe22 size; eager "
                      "torch); false: TensorFlow's own kernels.", **fv)
    flags.DEFINE_boolean("save_initial", False, "Also save the initial weights (the seeded "
                         "initialisation the run starts from) as the preset folder "
                         "OUTPUT_DIR/initial_preset: the untrained control for `hbehavemae "
                         "embed --control`. --epochs 0 saves only that preset.", **fv)
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Precision.",
                      **fv)
    define_cluster_flags(flag_values)
    define_pose_flags(flag_values)
    define_allocator_flag(flag_values)


def join_multi_value_flags(argv: list[str]) -> list[str]:
    """The published argparse forms of `MULTI_VALUE_FLAGS` and `BOOL_FLAGS` joined for absl."""
    return flag_parsing.join_published_forms(argv, MULTI_VALUE_FLAGS, BOOL_FLAGS,
                                             semicolon_joined=("q_strides",))


def _setting(flag_values, name: str):
    """The flag's value if given, else the default of the dataset (or of --size for --data)."""
    value = flag_values[name].value
    if value is None:
        value = command_defaults(flag_values).get(name)
    return value


def command_defaults(flag_values) -> dict:
    """The defaults that apply: `--size`'s for `--data`, else the dataset's."""
    if flag_values["data"].value is not None:
        from keras_hbehavemae.cli.pose_flags import size_defaults

        return size_defaults(flag_values.size)
    return dataset_defaults(flag_values.dataset)


def effective_defaults(flag_values) -> dict:
    """What `--help` shows as each flag's default for the given dataset or size."""
    if flag_values["data"].value is not None:
        return help_defaults(flag_values)
    from keras_hbehavemae.data.layouts import layout

    defaults = {name: ",".join(str(v) for v in value) if isinstance(value, tuple) else value
                for name, value in dataset_defaults(flag_values.dataset).items()}
    defaults.update(sliding_window=layout(flag_values.dataset).sliding_window,
                    normalise=DEFAULT_NORMALISE, fill="interpolate")
    if isinstance(defaults.get("input_size"), str):
        defaults["num_frames"] = int(defaults["input_size"].replace(",", " ").split()[0])
    return defaults


def dataset_defaults(dataset: str) -> dict:
    """The published (or default-run) settings of `dataset`."""
    defaults = DATASET_DEFAULTS[dataset]
    if dataset == "synthetic":
        from keras_hbehavemae.models.sizes import sized_parameters

        defaults = {**sized_parameters("small", SYNTHETIC_INPUT_SIZE), **defaults}
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
        clip_grad=None if flag_values.clip_grad == 0 else flag_values.clip_grad,  # 0: none
        seed=flag_values.seed,
        precision=flag_values.precision,
        distribute=None if flag_values.distribute == "none" else flag_values.distribute,
        steps_per_epoch=_setting(flag_values, "steps_per_epoch"))


def pretraining_data(flag_values, config, distribution=None):
    """The data of the run; with several processes (`distribution`) only process 0
    generates the synthetic data, and the others wait for it."""
    from keras_hbehavemae.data.recipes import ensure_synthetic_dataset, load_pretraining_data

    if flag_values.num_frames is not None and flag_values.num_frames != config.input_size[0]:
        raise ValueError(f"num_frames: {flag_values.num_frames} is invalid: it must equal "
                         f"input_size[0] = {config.input_size[0]}")
    path = flag_values.path_to_data_dir
    if path is not None and not path.strip():
        raise ValueError("--path_to_data_dir: '' is invalid: must name a file or folder (leave "
                         "it out for the default)")
    if flag_values.dataset == "synthetic":
        flag = "--path_to_data_dir"
        if path is None:
            path, flag = os.path.join(flag_values.output_dir, "data"), "--output_dir"
        counts = [int(value) if value.strip().isdigit() else 0
                  for value in flag_values.synthetic_sequences]
        if len(counts) != 2 or min(counts) < 1:
            raise ValueError(f"synthetic_sequences: {flag_values.synthetic_sequences} is invalid: "
                             "give two positive counts, training and test, e.g. 32,8")
        if distribution is None or distribution.is_chief:
            ensure_synthetic_dataset(path, seed=flag_values.seed,
                                     num_train_sequences=counts[0],
                                     num_test_sequences=counts[1],
                                     num_frames_per_sequence=flag_values.synthetic_frames,
                                     flag=flag)
        if distribution is not None:
            distribution.barrier()
    elif path is None:
        raise ValueError(f"--dataset {flag_values.dataset} needs --path_to_data_dir")
    return load_pretraining_data(
        flag_values.dataset, path, config.input_size,
        sliding_window=flag_values.sliding_window, sampling_rate=flag_values.sampling_rate,
        fill_holes=flag_values.fill_holes, data_augment=bool(_setting(flag_values,
                                                                      "data_augment")),
        held_out_path=flag_values.held_out_path)


def run(flag_values) -> int:
    """Runs the pretraining the flags describe; returns the exit status (0 done, 1 an error,
    128 + the signal number for a run stopped by SIGTERM or Ctrl-C)."""
    import contextlib

    from keras_hbehavemae.files.atomic import check_output_is_not_input
    from keras_hbehavemae.files.locking import FolderInUseError, FolderLock
    from keras_hbehavemae.models.compilation import parse_jit_compile_flag
    from keras_hbehavemae.training import (
        PeerLostError,
        TrainingInterrupted,
        run_pretraining,
        setup_distribution,
    )
    from keras_hbehavemae.training.callbacks import NonFiniteLossError
    from keras_hbehavemae.training.initial import save_initial_only

    cluster = None
    try:
        for flag in ("output_dir", "path_to_data_dir", "held_out_path", "preset"):
            flag_parsing.path(f"--{flag}", flag_values[flag].value)
        check_output_is_not_input(flag_values.output_dir, "--output_dir", {
            "--path_to_data_dir": flag_values.path_to_data_dir,
            "--held_out_path": flag_values.held_out_path, "--preset": flag_values.preset},
            may_hold_inputs=True)
        cluster = cluster_settings(flag_values)
        # Several processes meet first: under JAX before anything else uses JAX.
        distribution = setup_distribution("multi_worker", cluster) if cluster else None
        jit_compile = parse_jit_compile_flag(flag_values.jit_compile)
        # One writer per run folder, the lock covering the run's own data folder too. Of
        # several processes, process 0 is the writer (the others write nothing).
        writer = distribution is None or distribution.is_chief
        lock = (FolderLock(flag_values.output_dir, flag="--output_dir") if writer
                else contextlib.nullcontext())
        with lock:
            data = None
            if flag_values.data is not None:  # your pose-tracking files
                config, data = pose_pretraining(
                    flag_values, ARCHITECTURE_FLAGS + DECODER_FLAGS,
                    model_config(flag_values) if flag_values.preset else None,
                    flag_values.sliding_window)
            else:
                config = model_config(flag_values)
            if _setting(flag_values, "epochs") == 0:
                if cluster is not None:
                    raise ValueError("epochs: 0 is invalid with --distribute multi_worker: "
                                     "the initial weights are written by one process")
                if flag_values.preset:
                    raise ValueError("epochs: 0 is invalid with --preset: the initial weights "
                                     "are the architecture's seeded initialisation; give the "
                                     "architecture flags")
                directory = save_initial_only(config, flag_values.seed, flag_values.output_dir)
                print(f"wrote {directory} (the initial weights, seed {flag_values.seed}; "
                      "nothing trained)", flush=True)
                return 0
            training = training_config(flag_values)
            if data is None:
                data = pretraining_data(flag_values, config, distribution)
            run_pretraining(config, data, training, flag_values.output_dir,
                            log_dir=None if flag_values.log_dir == "" else flag_values.log_dir,
                            preset=flag_values.preset,
                            jit_compile=jit_compile, save_initial=flag_values.save_initial,
                            allow_random_weights=flag_values.allow_random_weights,
                            cluster=cluster)
    except TrainingInterrupted as stopped:
        print(str(stopped), file=sys.stderr, flush=True)
        if cluster is not None:
            leave_at_once(stopped.exit_status)
        return stopped.exit_status
    except (ValueError, OSError, ImportError, NonFiniteLossError, FolderInUseError,
            PeerLostError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        if cluster is not None:
            leave_at_once(1)
        return 1
    except Exception:
        if cluster is None:
            raise
        traceback.print_exc()
        leave_at_once(1)
    return 0


def main(argv):
    if len(argv) > 1:
        hint = " (quote a --data glob, so that the shell does not expand it)" if (
            flags.FLAGS.data is not None) else ""
        print(f"error: unexpected arguments {argv[1:]}{hint}", file=sys.stderr)
        return 1
    apply_allocator_flag(flags.FLAGS)
    return run(flags.FLAGS)


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae pretrain` command (`hbehavemae-pretrain`)."""
    define_flags()
    run_command(main, join_multi_value_flags(sys.argv if argv is None else argv), __doc__,
                effective_defaults=effective_defaults,
                shared={"log_dir": "TensorBoard folder (default OUTPUT_DIR/logs)."})


if __name__ == "__main__":
    command()
