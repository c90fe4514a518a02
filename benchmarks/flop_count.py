"""Analytic FLOP counts of an hBehaveMAE configuration, from its `Geometry`.

A pure module (no Keras, no tensors): every number comes from
`keras_hbehavemae.models.geometry.compute_geometry`, so it follows the same block table, token
counts and windows as the layers.

**Convention.**

- 2 FLOPs per multiply-add (`FLOPS_PER_MULTIPLY_ADD`).
- Only matrix multiplies are counted: every Dense layer (patch embedding, qkv, the
  attention output projection, the pooled residual projection, MLP fc1 and fc2, the
  level projections, the fusion heads, decoder_embed, the decoder blocks and
  decoder_pred) plus the two attention products per (window, head), q·kᵀ and
  softmax(·)·v. LayerNorm, softmax, GELU, bias adds, residual adds, max pooling,
  position embeddings, gathers, the loss and the optimizer update are not counted
  (together well under 1 % here).
- A Dense layer on `n` tokens from `d_in` to `d_out` costs `2·n·d_in·d_out`. Attention
  with `n_w` windows, `q` queries and `k` keys per window and width `D` (all heads
  together) costs `2·(2·n_w·q·k·D)`.
- **Forward of the full encoder** (embedding extraction): every token of the window,
  patch embedding, all blocks and all level projections (no fusion, no decoder).
- **Pretraining forward**: the encoder on the tokens of the K kept mask units only
  (patch embedding, blocks and all level projections on `K·mu_size` tokens, the layout
  of the masked pass), the fusion heads when `decoding_strategy` is "multi", and the
  decoder on all U mask-unit tokens.
- **Training step** = 3 × pretraining forward (`TRAIN_TO_FORWARD`): the backward pass
  costs two forward passes (input and weight gradients), the usual model-FLOP
  convention of utilisation figures. `training_step_matmuls` lists the three products
  per forward product, with their shapes.
- Every count is the sum of a list of `Matmul` shapes (`encoder_matmuls`,
  `decoder_matmuls`, …), so `benchmarks/matmul_ceiling.py` can time exactly the products
  that are counted.

With this convention Shot7M2 costs 6.434 GFLOP per window for the full
encoder and 5.483 GFLOP per sample for a training step (mask ratio 0.70). The
performance issue quotes "about 6.43" and "about 5.43". The 1 % gap on the training
step is within the ambiguity of what is counted: under "single" decoding the level-0 and
level-1 projections feed nothing, and leaving them out gives 5.391 (−0.7 %), while
counting the patch embedding on all N0 tokens, as the model computes it before
selecting the kept ones, gives 5.494 (+1.2 %). MABe22: 4.595 GFLOP full-encoder forward,
1.683 GFLOP training step.

Example:

>>> from keras_hbehavemae.models.config import HBehaveMAEConfig
>>> from keras_hbehavemae.models.geometry import compute_geometry
>>> geometry = compute_geometry(HBehaveMAEConfig(
...     input_size=(400, 1, 72), patch_kernel=(2, 1, 3), stages=(2, 3, 4),
...     q_strides="2,1,4;2,1,6", out_embed_dims=(78, 128, 256), init_embed_dim=96,
...     decoder_embed_dim=128, decoding_strategy="single", mask_ratio=0.7))
>>> round(encoder_forward_flops(geometry) / 1e9, 3)
6.434
>>> round(training_step_flops(geometry) / 1e9, 3)
5.483
>>> sorted(flop_summary(geometry))[:3]
['decoder_forward', 'encoder_forward_full', 'encoder_forward_masked']
"""

from __future__ import annotations

import math
from typing import NamedTuple

from keras_hbehavemae.models.geometry import BlockGeometry, Geometry

#: FLOPs counted per multiply-add.
FLOPS_PER_MULTIPLY_ADD = 2

#: A training step (forward + backward) in units of one forward pass.
TRAIN_TO_FORWARD = 3

__all__ = [
    "FLOPS_PER_MULTIPLY_ADD",
    "TRAIN_TO_FORWARD",
    "Matmul",
    "attention_flops",
    "attention_matmuls",
    "batched",
    "decoder_forward_flops",
    "decoder_matmuls",
    "dense_flops",
    "dense_matmul",
    "encoder_forward_breakdown",
    "encoder_forward_flops",
    "encoder_matmuls",
    "flop_summary",
    "fusion_forward_flops",
    "fusion_matmuls",
    "hiera_block_matmuls",
    "masked_encoder_forward_flops",
    "pretraining_forward_flops",
    "pretraining_matmuls",
    "training_step_flops",
    "training_step_matmuls",
]


class Matmul(NamedTuple):
    """`batch` independent products `[rows × inner] · [inner × cols]`, per sample.

    A Dense layer on `n` tokens is `Matmul(name, rows=n, inner=d_in, cols=d_out)`; the
    attention products of `n_w` windows and `h` heads have `batch = n_w · h` and
    `per_window=True`. `batched` scales one to a batch of samples.
    """

    name: str
    rows: int
    inner: int
    cols: int
    batch: int = 1
    per_window: bool = False

    @property
    def flops(self) -> int:
        """`FLOPS_PER_MULTIPLY_ADD · batch · rows · inner · cols`."""
        return FLOPS_PER_MULTIPLY_ADD * self.batch * self.rows * self.inner * self.cols


def batched(matmul: Matmul, batch_size: int) -> Matmul:
    """The product for `batch_size` samples, as the model computes it.

    A Dense layer is one product over all tokens of the batch (`rows · batch_size`); the
    attention products are `batch · batch_size` independent ones.

    Example:
        >>> batched(Matmul("qkv", 4, 8, 24), 2)
        Matmul(name='qkv', rows=8, inner=8, cols=24, batch=1, per_window=False)
    """
    if matmul.per_window:
        return matmul._replace(batch=matmul.batch * batch_size)
    return matmul._replace(rows=matmul.rows * batch_size)


def _total(matmuls) -> int:
    return sum(matmul.flops for matmul in matmuls)


def dense_matmul(name: str, tokens: int, input_dim: int, output_dim: int) -> Matmul:
    """The product of a Dense layer `input_dim → output_dim` applied to `tokens` rows."""
    return Matmul(name, tokens, input_dim, output_dim)


def dense_flops(tokens: int, input_dim: int, output_dim: int) -> int:
    """FLOPs of a Dense layer `input_dim → output_dim` applied to `tokens` rows.

    Example:
        >>> dense_flops(10, 4, 3)
        240
    """
    return dense_matmul("dense", tokens, input_dim, output_dim).flops


def attention_matmuls(name: str, windows: int, queries: int, keys: int, dim: int,
                      num_heads: int = 1) -> list[Matmul]:
    """q·kᵀ (`[q × e] · [e × k]`) and attn·v (`[q × k] · [k × e]`) per window and head.

    `e = dim / num_heads`; the head split changes the shapes, not the count.
    """
    head_dim = dim // num_heads
    batch = windows * num_heads
    return [Matmul(f"{name}/scores", queries, head_dim, keys, batch, per_window=True),
            Matmul(f"{name}/values", queries, keys, head_dim, batch, per_window=True)]


def attention_flops(windows: int, queries: int, keys: int, dim: int) -> int:
    """FLOPs of q·kᵀ and attn·v for `windows` windows of `queries` × `keys`, width `dim`.

    `dim` is the full width D = heads · head_dim (the head split does not change the
    count).

    Example:
        >>> attention_flops(windows=2, queries=4, keys=4, dim=8)
        1024
    """
    return _total(attention_matmuls("attention", windows, queries, keys, dim))


def hiera_block_matmuls(tokens_in: int, input_dim: int, dim: int, query_stride: int = 1,
                        windows: int = 1, mlp_hidden_dim: int | None = None,
                        num_heads: int = 1) -> dict[str, list[Matmul]]:
    """Per-part products of one Hiera block on `tokens_in` tokens.

    Args:
        tokens_in: tokens entering the block, N.
        input_dim: d_in.
        dim: D.
        query_stride: flattened query-pooling stride s (N/s tokens leave the block).
        windows: attention windows n_w (1 = global attention).
        mlp_hidden_dim: MLP hidden width (default 4·D).
        num_heads: attention heads (shapes of the attention products only).

    Returns:
        `{"qkv", "residual_projection", "attention", "attention_projection", "mlp"}`,
        each a list of `Matmul` (empty when the block has no such part).

    Example:
        >>> parts = hiera_block_matmuls(8, 8, 16, query_stride=4, windows=2, num_heads=2)
        >>> parts["mlp"][0]
        Matmul(name='mlp_fc1', rows=2, inner=16, cols=64, batch=1, per_window=False)
    """
    hidden = 4 * dim if mlp_hidden_dim is None else mlp_hidden_dim
    tokens_out = tokens_in // query_stride
    return {
        "qkv": [dense_matmul("qkv", tokens_in, input_dim, 3 * dim)],
        # The residual is projected from the normalised input, then max-pooled.
        "residual_projection": ([dense_matmul("residual_projection", tokens_in, input_dim, dim)]
                                if input_dim != dim else []),
        "attention": attention_matmuls("attention", windows, tokens_out // windows,
                                       tokens_in // windows, dim, num_heads),
        "attention_projection": [dense_matmul("attention_projection", tokens_out, dim, dim)],
        "mlp": [dense_matmul("mlp_fc1", tokens_out, dim, hidden),
                dense_matmul("mlp_fc2", tokens_out, hidden, dim)],
    }


def _block_matmuls(block: BlockGeometry, masked: bool) -> dict[str, list[Matmul]]:
    tokens = block.tokens_in_masked if masked else block.tokens_in_full
    windows = block.windows_masked if masked else block.windows_full
    return hiera_block_matmuls(tokens, block.input_dim, block.dim, block.query_stride,
                               windows, block.mlp_hidden_dim, block.num_heads)


def encoder_matmuls(geometry: Geometry, masked: bool = False) -> dict[str, list[Matmul]]:
    """Encoder products per sample by part: patch embedding, each block, projections.

    Args:
        geometry: the configuration's geometry.
        masked: the masked pass (tokens of the K kept units) instead of all tokens.

    Returns:
        `{"patch_embedding": [...], "blocks/0": [...], …, "projections/0": [...], …}`.
    """
    config = geometry.config
    tokens = geometry.mask_unit_tokens * geometry.num_kept_units if masked else (
        geometry.num_tokens)
    parts = {"patch_embedding": [dense_matmul("patch_embedding", tokens,
                                              math.prod(config.patch_kernel),
                                              config.init_embed_dim)]}
    for block in geometry.blocks:
        parts[f"blocks/{block.index}"] = [
            matmul._replace(name=f"blocks/{block.index}/{matmul.name}")
            for matmuls in _block_matmuls(block, masked).values() for matmul in matmuls]
    for level in geometry.levels:
        level_tokens = (geometry.num_kept_units * level.window_size if masked
                        else level.num_tokens)
        parts[f"projections/{level.stage}"] = [dense_matmul(
            f"projections/{level.stage}", level_tokens, level.dim, level.out_dim)]
    return parts


def encoder_forward_breakdown(geometry: Geometry, masked: bool = False) -> dict[str, int]:
    """Encoder forward FLOPs per sample by part (`encoder_matmuls` summed per part)."""
    return {part: _total(matmuls)
            for part, matmuls in encoder_matmuls(geometry, masked).items()}


def encoder_forward_flops(geometry: Geometry) -> int:
    """FLOPs per window of the full, unmasked encoder (embedding extraction)."""
    return sum(encoder_forward_breakdown(geometry, masked=False).values())


def masked_encoder_forward_flops(geometry: Geometry) -> int:
    """FLOPs per sample of the encoder on the K kept mask units (pretraining)."""
    return sum(encoder_forward_breakdown(geometry, masked=True).values())


def fusion_matmuls(geometry: Geometry) -> list[Matmul]:
    """The multi-scale fusion heads' products per sample (none under "single" decoding)."""
    if geometry.config.decoding_strategy == "single":
        return []
    last = geometry.out_embed_dims[-1]
    return [dense_matmul(f"fusion/{level}", geometry.num_kept_units,
                         geometry.levels[level].window_size * geometry.out_embed_dims[level],
                         last)
            for level in geometry.fused_levels]


def fusion_forward_flops(geometry: Geometry) -> int:
    """FLOPs per sample of the multi-scale fusion heads (0 under "single" decoding)."""
    return _total(fusion_matmuls(geometry))


def decoder_matmuls(geometry: Geometry) -> list[Matmul]:
    """decoder_embed (K tokens), the decoder blocks and decoder_pred (U tokens), per
    sample."""
    config = geometry.config
    width, units = config.decoder_embed_dim, geometry.num_mask_units
    hidden = int(width * config.mlp_ratio)
    matmuls = [dense_matmul("decoder_embed", geometry.num_kept_units,
                            geometry.out_embed_dims[-1], width)]
    for depth in range(config.decoder_depth):
        parts = hiera_block_matmuls(units, width, width, mlp_hidden_dim=hidden,
                                    num_heads=config.decoder_num_heads)
        matmuls += [matmul._replace(name=f"decoder_blocks/{depth}/{matmul.name}")
                    for part in parts.values() for matmul in part]
    return matmuls + [dense_matmul("decoder_pred", units, width, geometry.pred_stride)]


def decoder_forward_flops(geometry: Geometry) -> int:
    """FLOPs per sample of decoder_embed (K tokens), the decoder blocks and decoder_pred
    (U tokens)."""
    return _total(decoder_matmuls(geometry))


def pretraining_matmuls(geometry: Geometry) -> list[Matmul]:
    """Every product of one pretraining forward pass: masked encoder, fusion, decoder."""
    encoder = [matmul for part in encoder_matmuls(geometry, masked=True).values()
               for matmul in part]
    return encoder + fusion_matmuls(geometry) + decoder_matmuls(geometry)


def pretraining_forward_flops(geometry: Geometry) -> int:
    """FLOPs per sample of one pretraining forward pass: masked encoder, fusion, decoder."""
    return _total(pretraining_matmuls(geometry))


def training_step_matmuls(geometry: Geometry, batch_size: int = 1) -> list[Matmul]:
    """The `TRAIN_TO_FORWARD` products per forward product `[m × k] · [k × n]`.

    For each forward product (`batched` to `batch_size` samples): the product itself, the
    left operand's gradient `[m × n] · [n × k]` and the right operand's gradient
    `[k × m] · [m × n]`, three products of equal cost.

    Example:
        >>> from keras_hbehavemae.models.config import HBehaveMAEConfig
        >>> from keras_hbehavemae.models.geometry import compute_geometry
        >>> geometry = compute_geometry(HBehaveMAEConfig(
        ...     input_size=(8, 1, 4), patch_kernel=(2, 1, 2), stages=(1, 1),
        ...     q_strides="2,1,2", out_embed_dims=(4, 4), init_embed_dim=8,
        ...     decoder_embed_dim=8, mask_ratio=0.5))
        >>> [matmul[1:4] for matmul in training_step_matmuls(geometry, 2)[:3]]  # patch embedding
        [(8, 4, 8), (8, 8, 4), (4, 8, 8)]
    """
    matmuls = []
    for forward in pretraining_matmuls(geometry):
        forward = batched(forward, batch_size)
        matmuls += [forward,
                    forward._replace(name=f"{forward.name}/input_gradient",
                                     inner=forward.cols, cols=forward.inner),
                    forward._replace(name=f"{forward.name}/weight_gradient",
                                     rows=forward.inner, inner=forward.rows)]
    return matmuls


def training_step_flops(geometry: Geometry) -> int:
    """FLOPs per sample of one training step: `TRAIN_TO_FORWARD` × the pretraining forward."""
    return TRAIN_TO_FORWARD * pretraining_forward_flops(geometry)


def flop_summary(geometry: Geometry) -> dict[str, int]:
    """The main per-sample FLOP counts of a configuration, as plain integers."""
    return {
        "encoder_forward_full": encoder_forward_flops(geometry),
        "encoder_forward_masked": masked_encoder_forward_flops(geometry),
        "fusion_forward": fusion_forward_flops(geometry),
        "decoder_forward": decoder_forward_flops(geometry),
        "pretraining_forward": pretraining_forward_flops(geometry),
        "training_step": training_step_flops(geometry),
    }
