"""The published PyTorch hBehaveMAE, imported from a user's own checkout at run time.

Nothing of the published code is part of this repository: `load_published_models(path)`
imports the `models` package of a checkout of the published BehaveMAE repository (the
folder that holds `models/models_defs.py`) under a private module name, so that its
generic top-level names (`models`, `util`, `datasets`) never enter `sys.modules`, and
returns its `models_defs` module (the published factory functions `hbehavemae(**args)`
and `gen_hiera(**args)`).

**timm.** The published `general_hiera.py` imports `DropPath` and `Mlp` from
`timm.models.layers`, and nothing else of timm. Importing timm imports torchvision, and a
torchvision that matches a CPU build of torch may not exist (torch 2.13+cpu here: the only
torchvision wheel is a CUDA build that fails at import). `ensure_timm_layers()` therefore
imports the installed timm when that works, and otherwise registers a stand-in module
`timm.models.layers` holding `StandInMlp` and `StandInDropPath` (written here). They are
numerically the same as timm's layers in the published use: `Mlp(in, hidden,
act_layer=nn.GELU)` is `fc2(GELU(fc1(x)))` with parameters named `fc1.*` and `fc2.*`,
created in that order (the same random initialisation under the same torch seed), and its
dropouts of probability 0 do nothing; `DropPath` is only built for a drop-path rate above
0, which the published configurations do not use. `ensure_timm_layers` says which one is in
use, and the comparison prints it.

`published_arguments(parameters)` turns this package's published configuration (the
built-in presets are the one definition of it) into the published argparse names.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
import types

#: The private name the checkout's `models` package is imported under.
PRIVATE_PACKAGE = "_published_behavemae_models"

#: The published training recipe's optimizer settings (docs/model.md, "Training recipe").
BASE_LEARNING_RATE = 1.6e-4
WEIGHT_DECAY = 0.05
BETAS = (0.9, 0.95)
CLIP_GRAD = 0.02


class PublishedCodeError(RuntimeError):
    """The published code cannot be imported from the given folder."""


def _stand_in_layers():
    """A `timm.models.layers` stand-in module: `Mlp` and `DropPath` (see module docstring)."""
    import torch
    from torch import nn

    class StandInMlp(nn.Module):
        """Linear → activation → Linear, with timm's parameter names (fc1, fc2)."""

        def __init__(self, in_features, hidden_features=None, out_features=None,
                     act_layer=nn.GELU, bias=True, drop=0.0):
            super().__init__()
            hidden_features = hidden_features or in_features
            out_features = out_features or in_features
            self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
            self.act = act_layer()
            self.drop1 = nn.Dropout(drop)
            self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
            self.drop2 = nn.Dropout(drop)

        def forward(self, tokens):
            hidden = self.drop1(self.act(self.fc1(tokens)))
            return self.drop2(self.fc2(hidden))

    class StandInDropPath(nn.Module):
        """Stochastic depth: in training, zero whole samples with probability `drop_prob`
        and scale the kept ones by 1 / (1 − drop_prob)."""

        def __init__(self, drop_prob=0.0, scale_by_keep=True):
            super().__init__()
            self.drop_prob = float(drop_prob)
            self.scale_by_keep = scale_by_keep

        def forward(self, tokens):
            if not self.training or self.drop_prob == 0.0:
                return tokens
            keep = 1.0 - self.drop_prob
            shape = (tokens.shape[0],) + (1,) * (tokens.ndim - 1)
            kept = torch.empty(shape, dtype=tokens.dtype, device=tokens.device)
            kept = kept.bernoulli_(keep)
            return tokens * (kept / keep if self.scale_by_keep and keep > 0 else kept)

    module = types.ModuleType("timm.models.layers")
    module.Mlp, module.DropPath = StandInMlp, StandInDropPath
    module.__doc__ = "Stand-in for timm.models.layers (benchmarks/published_model.py)."
    return module


def ensure_timm_layers(prefer: str = "auto") -> str:
    """Makes `from timm.models.layers import DropPath, Mlp` work; returns what it uses.

    Args:
        prefer: "auto" (the installed timm if it imports, else the stand-in), "timm" (the
            installed timm or an error) or "stand-in".

    Raises:
        PublishedCodeError: `prefer="timm"` and timm cannot be imported.
    """
    if prefer not in ("auto", "timm", "stand-in"):
        raise ValueError(f"timm: {prefer!r} is invalid; give auto, timm or stand-in")
    layers = sys.modules.get("timm.models.layers")
    if layers is not None:
        return getattr(layers, "_described_as", "timm.models.layers (already imported)")
    reason = "not asked for"
    if prefer != "stand-in":
        try:
            import timm
            import timm.models.layers  # noqa: F401
        except Exception as error:  # an ImportError, or torchvision failing at import
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            for name in [name for name in sys.modules
                         if name == "timm" or name.startswith("timm.")]:
                del sys.modules[name]
        else:
            return f"timm {timm.__version__} (installed)"
        if prefer == "timm":
            raise PublishedCodeError(f"timm cannot be imported ({reason})")
    stand_in = _stand_in_layers()
    description = f"stand-in Mlp/DropPath (benchmarks/published_model.py; timm: {reason})"
    stand_in._described_as = description
    for name in ("timm", "timm.models"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["timm.models"].layers = stand_in
    sys.modules["timm"].models = sys.modules["timm.models"]
    sys.modules["timm.models.layers"] = stand_in
    return description


def load_published_models(behavemae_dir, timm: str = "auto"):
    """The published `models.models_defs` module of the checkout at `behavemae_dir`.

    Raises:
        PublishedCodeError: the folder holds no `models/models_defs.py`, or importing it
            fails (the message says why).
    """
    root = pathlib.Path(behavemae_dir).expanduser().resolve()
    package_dir = root / "models"
    if not (package_dir / "models_defs.py").is_file():
        raise PublishedCodeError(
            f"--behavemae_dir {str(behavemae_dir)!r}: no models/models_defs.py there; give the "
            "root folder of a checkout of the published BehaveMAE repository")
    defs_name = f"{PRIVATE_PACKAGE}.models_defs"
    if defs_name in sys.modules:
        return sys.modules[defs_name]
    ensure_timm_layers(timm)
    init = package_dir / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        PRIVATE_PACKAGE, init if init.is_file() else None,
        submodule_search_locations=[str(package_dir)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[PRIVATE_PACKAGE] = package
    try:
        if spec.loader is not None:
            spec.loader.exec_module(package)
        return importlib.import_module(defs_name)
    except Exception as error:
        for name in [name for name in sys.modules if name.startswith(PRIVATE_PACKAGE)]:
            del sys.modules[name]
        raise PublishedCodeError(
            f"--behavemae_dir {str(behavemae_dir)!r}: importing its models failed: "
            f"{type(error).__name__}: {error}") from error


def published_arguments(parameters: dict) -> dict:
    """The published argparse arguments of one of this package's published configurations.

    `parameters` is `keras_hbehavemae.presets.published_parameters(name)` (encoder, decoder
    and masking parameters).
    """
    return {
        "input_size": list(parameters["input_size"]),
        "stages": list(parameters["stages"]),
        "q_strides": [tuple(stride) for stride in parameters["q_strides"]],
        "mask_unit_attn": list(parameters["mask_unit_attn"]),
        "patch_kernel": list(parameters["patch_kernel"]),
        "init_embed_dim": parameters["init_embed_dim"],
        "init_num_heads": parameters["init_num_heads"],
        "out_embed_dims": list(parameters["out_embed_dims"]),
        "decoding_strategy": parameters["decoding_strategy"],
        "decoder_embed_dim": parameters["decoder_embed_dim"],
        "decoder_depth": parameters["decoder_depth"],
        "decoder_num_heads": parameters["decoder_num_heads"],
        "norm_loss": parameters["norm_loss"],
        "mask_ratio": parameters["mask_ratio"],
        "sep_pos_embed": parameters.get("sep_pos_embed", True),
        "non_hierarchical": parameters.get("non_hierarchical", False),
        "mlp_ratio": parameters.get("mlp_ratio", 4.0),
        "dim_mul": parameters.get("dim_mul", 2.0),
        "head_mul": parameters.get("head_mul", 2.0),
        "drop_path_rate": parameters.get("drop_path_rate", 0.0),
        "num_frames": parameters["input_size"][0],
    }


def published_parameter_groups(model, weight_decay: float = WEIGHT_DECAY) -> list[dict]:
    """AdamW parameter groups of the published recipe: no weight decay on rank-1
    parameters (biases, norms, position embeddings of rank 1) and parameters named
    `*.bias`; `weight_decay` on the rest; frozen parameters left out."""
    decayed, undecayed = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim == 1 or name.endswith(".bias"):
            undecayed.append(parameter)
        else:
            decayed.append(parameter)
    return [{"params": undecayed, "weight_decay": 0.0},
            {"params": decayed, "weight_decay": weight_decay}]
