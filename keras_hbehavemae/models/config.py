"""The hBehaveMAE configuration: every published parameter, parsing of the published
command-line forms, and validation (docs/model.md, "Configuration rules").

Example:

>>> from keras_hbehavemae.models.config import HBehaveMAEConfig
>>> config = HBehaveMAEConfig(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
...     decoder_embed_dim=16)
>>> config.q_strides
((2, 1, 2), (2, 2, 1))
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from keras_hbehavemae.errors import check_known_keys, invalid
from keras_hbehavemae.models.decoding import STRATEGIES
from keras_hbehavemae.models.geometry import Triple, compute_geometry
from keras_hbehavemae.presets.registry import (
    preset_parameter_files,
    published_parameters,
    resolve_preset,
)

DECODING_STRATEGIES = tuple(STRATEGIES)

# Fields that describe the encoder (the backbone). The rest belong to the pretrainer.
ENCODER_FIELDS = (
    "input_size",
    "patch_kernel",
    "stages",
    "q_strides",
    "mask_unit_attn",
    "init_embed_dim",
    "init_num_heads",
    "out_embed_dims",
    "dim_mul",
    "head_mul",
    "mlp_ratio",
    "layer_norm_eps",
    "sep_pos_embed",
    "non_hierarchical",
    "drop_path_rate",
)
PRETRAINER_FIELDS = (
    "decoder_embed_dim",
    "decoder_depth",
    "decoder_num_heads",
    "decoding_strategy",
    "norm_loss",
    "mask_ratio",
)
#: Every parameter of the model (the fields of `HBehaveMAEConfig`).
PARAMETER_NAMES = ENCODER_FIELDS + PRETRAINER_FIELDS
#: Keras's own keywords the model constructors accept besides the parameters and `dtype`.
KERAS_KEYWORDS = ("name", "trainable")


def parse_bool(value: Any, parameter: str = "value") -> bool:
    """Parses `True`/`False` in the published command-line spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "t", "y"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "f", "n"):
        return False
    raise invalid(parameter, value, "expected a boolean (True/False)")


def _split_values(value: Any, parameter: str, kind: str) -> list:
    """Items of `"a b c"`, `"a,b,c"`, a list/tuple or an array."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, Sequence) or hasattr(value, "tolist"):
        return list(value.tolist() if hasattr(value, "tolist") else value)
    raise invalid(parameter, value, f"expected a sequence of {kind}")


def parse_int_sequence(value: Any, parameter: str) -> tuple[int, ...]:
    """Parses `"400 1 72"`, `"400,1,72"`, `[400, 1, 72]` into a tuple of ints."""
    parts = _split_values(value, parameter, "integers")
    result = []
    for part in parts:
        if isinstance(part, bool):
            raise invalid(parameter, value, "expected integers, got a boolean")
        try:
            number = float(part)
        except (TypeError, ValueError):
            raise invalid(parameter, value, "expected integers") from None
        if not math.isfinite(number) or number != int(number):
            raise invalid(parameter, value, "expected integers")
        result.append(int(number))
    return tuple(result)


def parse_triple(value: Any, parameter: str) -> Triple:
    """Parses a (t, h, w) triple of positive ints (validation rule 1)."""
    triple = parse_int_sequence(value, parameter)
    if len(triple) != 3:
        raise invalid(parameter, value, "must be a (t, h, w) triple of three integers")
    if any(entry <= 0 for entry in triple):
        raise invalid(parameter, value, "every entry must be a positive integer")
    return triple  # type: ignore[return-value]


def parse_q_strides(value: Any) -> tuple[Triple, ...]:
    """Parses `"2,1,4;2,1,6"` or `[[2, 1, 4], [2, 1, 6]]` into triples."""
    if isinstance(value, str):
        groups = [group for group in value.split(";") if group.strip()]
    elif isinstance(value, Sequence) or hasattr(value, "tolist"):
        groups = list(value.tolist() if hasattr(value, "tolist") else value)
        if groups and all(isinstance(v, int | float) and not isinstance(v, bool) for v in groups):
            # A flat list of 3·Q integers, as argparse nargs="+" would give.
            if len(groups) % 3:
                raise invalid("q_strides", value, "a flat list must hold a multiple of 3 integers")
            groups = [groups[i : i + 3] for i in range(0, len(groups), 3)]
    else:
        raise invalid("q_strides", value, 'expected "t,h,w;t,h,w" or a list of triples')
    return tuple(parse_triple(group, "q_strides") for group in groups)


def parse_bool_sequence(value: Any, parameter: str) -> tuple[bool, ...]:
    """Parses `"True False False"`, `"True,False,False"` or a list of bools."""
    parts = _split_values(value, parameter, "booleans")
    return tuple(parse_bool(part, parameter) for part in parts)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HBehaveMAEConfig:
    """Every parameter of the published hBehaveMAE model.

    Sequences may be given in the published command-line forms (`"2,1,4;2,1,6"`,
    `"True False False"`, `"400 1 72"`); they are normalised to tuples. Construction
    checks validation rules 1–8 and 10 (docs/model.md, "Configuration rules"); rule 9
    (the kept-unit count) is checked by `validate_for_training`, because an encoder used
    only for embedding never masks.

    Args:
        input_size: (T, H, W): frames, individuals, features per individual.
        patch_kernel: (pt, ph, pw) patch size; the stride equals the kernel.
        stages: blocks per stage.
        q_strides: one (t, h, w) query-pooling stride per pooling stage transition.
        out_embed_dims: width of each stage's output projection.
        init_embed_dim: width C0 of stage 0.
        init_num_heads: attention heads of stage 0.
        mask_unit_attn: one bool per stage; `None` means (True, False, ...).
        dim_mul: width multiplier per stage transition.
        head_mul: head-count multiplier per stage transition.
        mlp_ratio: MLP hidden width over block width.
        layer_norm_eps: epsilon of every LayerNorm.
        sep_pos_embed: separable spatial + temporal position embedding.
        non_hierarchical: the BehaveMAE baseline (one width, no pooling, global attention).
        drop_path_rate: stochastic-depth rate of the last block (linear ramp from 0).
        decoder_embed_dim: decoder width Cd.
        decoder_depth: number of decoder blocks.
        decoder_num_heads: decoder attention heads.
        decoding_strategy: "multi" (fuse all levels) or "single" (last level only).
        norm_loss: standardise each target token before the loss.
        mask_ratio: fraction of mask units removed in training.
    """

    input_size: Triple
    patch_kernel: Triple
    stages: tuple[int, ...]
    q_strides: tuple[Triple, ...]
    out_embed_dims: tuple[int, ...]
    init_embed_dim: int
    init_num_heads: int = 2
    mask_unit_attn: tuple[bool, ...] | None = None
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6
    sep_pos_embed: bool = True
    non_hierarchical: bool = False
    drop_path_rate: float = 0.0
    decoder_embed_dim: int = 128
    decoder_depth: int = 1
    decoder_num_heads: int = 1
    decoding_strategy: str = "multi"
    norm_loss: bool = False
    mask_ratio: float = 0.75

    def __post_init__(self):
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_field("input_size", parse_triple(self.input_size, "input_size"))
        set_field("patch_kernel", parse_triple(self.patch_kernel, "patch_kernel"))
        set_field("stages", parse_int_sequence(self.stages, "stages"))
        set_field("out_embed_dims", parse_int_sequence(self.out_embed_dims, "out_embed_dims"))
        set_field("q_strides", parse_q_strides(self.q_strides))
        if self.mask_unit_attn is None:
            set_field("mask_unit_attn", (True,) + (False,) * (len(self.stages) - 1))
        else:
            set_field(
                "mask_unit_attn", parse_bool_sequence(self.mask_unit_attn, "mask_unit_attn")
            )
        for name in ("sep_pos_embed", "non_hierarchical", "norm_loss"):
            set_field(name, parse_bool(getattr(self, name), name))
        for name in ("init_embed_dim", "init_num_heads", "decoder_embed_dim",
                     "decoder_num_heads", "decoder_depth"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value != int(value)):
                raise invalid(name, value, "must be an integer")
            set_field(name, int(value))
        for name in ("dim_mul", "head_mul", "mlp_ratio", "layer_norm_eps", "drop_path_rate",
                     "mask_ratio"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value)):
                raise invalid(name, value, "must be a finite number")
            set_field(name, float(value))
        set_field("decoding_strategy", str(self.decoding_strategy).strip().lower())
        self._validate()

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        """Validation rules 1–8 and 10 (docs/model.md, "Configuration rules")."""
        if not self.stages:
            raise invalid("stages", self.stages, "must hold at least one stage")
        if any(count < 1 for count in self.stages):
            raise invalid("stages", self.stages, "every stage needs at least 1 block")
        num_stages = len(self.stages)
        if len(self.mask_unit_attn) != num_stages:
            raise invalid("mask_unit_attn", self.mask_unit_attn,
                  f"needs one entry per stage ({num_stages} stages)")
        if len(self.out_embed_dims) != num_stages:
            raise invalid("out_embed_dims", self.out_embed_dims,
                  f"needs one entry per stage ({num_stages} stages)")
        if any(dim < 1 for dim in self.out_embed_dims):
            raise invalid("out_embed_dims", self.out_embed_dims, "every width must be positive")
        for name in ("init_embed_dim", "init_num_heads", "decoder_embed_dim",
                     "decoder_num_heads"):
            if getattr(self, name) < 1:
                raise invalid(name, getattr(self, name), "must be a positive integer")
        if self.decoder_depth < 0:
            raise invalid("decoder_depth", self.decoder_depth, "must be 0 or more")
        for name in ("dim_mul", "head_mul", "mlp_ratio", "layer_norm_eps"):
            if not getattr(self, name) > 0:
                raise invalid(name, getattr(self, name), "must be positive")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise invalid("drop_path_rate", self.drop_path_rate, "must lie in [0, 1)")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise invalid("mask_ratio", self.mask_ratio, "must lie in [0, 1)")
        if self.decoding_strategy not in DECODING_STRATEGIES:
            raise invalid("decoding_strategy", self.decoding_strategy,
                  f"must be one of {DECODING_STRATEGIES}")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise invalid("decoder_num_heads", self.decoder_num_heads,
                  f"must divide decoder_embed_dim ({self.decoder_embed_dim})")
        for axis, (size, patch) in enumerate(zip(self.input_size, self.patch_kernel, strict=True)):
            if size % patch:
                raise invalid("patch_kernel", self.patch_kernel,
                      f"must divide input_size {self.input_size} on every axis "
                      f"(axis {'thw'[axis]}: {size} % {patch} != 0)")
        if self.non_hierarchical:
            hierarchical_strides = any(stride != (1, 1, 1) for stride in self.q_strides)
            if hierarchical_strides or len(set(self.out_embed_dims)) > 1:
                warnings.warn(
                    "non_hierarchical=True overrides q_strides with (1,1,1) per stage and "
                    f"out_embed_dims with [{self.out_embed_dims[0]}] per stage; the given "
                    f"q_strides={self.q_strides} and out_embed_dims={self.out_embed_dims} "
                    "are ignored.",
                    stacklevel=3,
                )
        elif not 1 <= len(self.q_strides) <= num_stages - 1:
            raise invalid("q_strides", self.q_strides,
                  f"a hierarchical model with {num_stages} stages needs between 1 and "
                  f"{num_stages - 1} q-stride triples (one per pooling stage transition)")
        # Rules 5-7 concern derived sizes (token grid, stage widths): the geometry checks them.
        compute_geometry(self)

    def validate_for_training(self) -> None:
        """Validation rule 9 (docs/model.md), what the pretrainer needs besides the encoder:
        1 <= K < U for the configured mask ratio, and a decoder MLP of at least one unit."""
        geometry = compute_geometry(self)
        kept = geometry.num_kept_units
        if not 1 <= kept < geometry.num_mask_units:
            raise invalid("mask_ratio", self.mask_ratio,
                  f"keeps K = int(U·(1 − mask_ratio)) = {kept} of U = "
                  f"{geometry.num_mask_units} mask units; training needs 1 <= K < U")
        hidden = int(self.decoder_embed_dim * self.mlp_ratio)
        if self.decoder_depth > 0 and hidden < 1:
            raise invalid("mlp_ratio", self.mlp_ratio,
                  f"gives the decoder blocks (width decoder_embed_dim = "
                  f"{self.decoder_embed_dim}) an MLP hidden width int({self.decoder_embed_dim} "
                  f"· {self.mlp_ratio}) = {hidden}; it must be at least 1")

    # ------------------------------------------------------------------ conversion

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        def plain(value):
            if isinstance(value, tuple):
                return [plain(item) for item in value]
            return value

        return {field.name: plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    def encoder_kwargs(self) -> dict[str, Any]:
        """The encoder (backbone) parameters only."""
        return {name: value for name, value in self.to_dict().items() if name in ENCODER_FIELDS}

    def pretrainer_kwargs(self) -> dict[str, Any]:
        """The decoder, masking and loss parameters only."""
        return {name: value for name, value in self.to_dict().items()
                if name in PRETRAINER_FIELDS}

    def replace(self, **changes: Any) -> HBehaveMAEConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, known_extra_keys: Collection[str] = (),
                  where: str = "HBehaveMAEConfig") -> HBehaveMAEConfig:
        """Builds a config from parameter names → values, in any published spelling.

        Strict: a key that is neither a parameter nor one of `known_extra_keys` raises,
        naming the closest parameter (a misspelled `init_num_head` is never dropped).

        Args:
            values: parameter names to values.
            known_extra_keys: keys that may be present and are not parameters, e.g. the
                published training-only settings of a checkpoint's `args`
                (`convert.checkpoint.PUBLISHED_TRAINING_ARGS`). Among them, `num_frames`
                (the published window length) must equal `input_size[0]`.
            where: what holds `values` (a file, "checkpoint args", ...), for messages.
        """
        if not isinstance(values, Mapping):
            raise invalid(where, values, "expected a mapping of parameter names to values")
        check_known_keys(where, values, (*PARAMETER_NAMES, *known_extra_keys))
        kwargs = {name: value for name, value in values.items() if name in PARAMETER_NAMES}
        num_frames = values.get("num_frames")
        if num_frames is not None and "input_size" in kwargs:
            frames = parse_triple(kwargs["input_size"], "input_size")[0]
            if parse_int_sequence([num_frames], "num_frames") != (frames,):
                raise invalid("num_frames", num_frames, f"must equal input_size[0] = {frames}")
        missing = [field.name for field in dataclasses.fields(cls)
                   if field.name not in kwargs and field.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{where}: missing required configuration parameters {missing}")
        return cls(**kwargs)

    @classmethod
    def from_preset(cls, preset) -> HBehaveMAEConfig:
        """The configuration of a preset (a built-in name or a folder).

        Raises:
            ValueError: a key of `config.json` or `task.json` that is no parameter (naming
                the file, the key and the closest parameter), or an invalid configuration.
        """
        values = {}
        for path, parameters in preset_parameter_files(preset):
            check_known_keys(str(path), parameters, PARAMETER_NAMES)
            values.update(parameters)
        return cls.from_dict(values, where=f"preset {str(resolve_preset(preset))!r}")


def published_configuration(name: str) -> HBehaveMAEConfig:
    """The published configuration "shot7m2", "mabe22" or "hbabel" (its built-in preset)."""
    return HBehaveMAEConfig.from_dict(published_parameters(name))
