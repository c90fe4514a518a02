"""Derived geometry of an hBehaveMAE configuration (docs/model.md, "Derived geometry").

This pure module (no Keras, no tensors) is the single source of every derived number:
token grid, mask units, kept units, per-block widths/heads/strides/windows/attention
type, per-level grids and windows, pred_stride, receptive fields, the unroll/reroll
permutations and parameter counts. Layers, data pipelines and reports read it;
nothing else recomputes these numbers.

Example:

>>> from keras_hbehavemae.models.config import HBehaveMAEConfig
>>> from keras_hbehavemae.models.geometry import compute_geometry
>>> geometry = compute_geometry(HBehaveMAEConfig(
...     input_size=(400, 1, 72), patch_kernel=(2, 1, 3), stages=(2, 3, 4),
...     q_strides="2,1,4;2,1,6", out_embed_dims=(78, 128, 256), init_embed_dim=96,
...     mask_ratio=0.7))
>>> geometry.num_tokens, geometry.num_mask_units, geometry.num_kept_units
(4800, 50, 15)
>>> geometry.pred_stride
288
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the config imports this module to validate derived sizes
    from keras_hbehavemae.models.config import HBehaveMAEConfig

Triple = tuple[int, int, int]

AXES = "thw"


def _product(triples, start: int = 0, stop: int | None = None) -> Triple:
    """Element-wise product of `triples[start:stop]` ((1, 1, 1) when empty)."""
    result = [1, 1, 1]
    for triple in triples[start:stop]:
        result = [a * b for a, b in zip(result, triple, strict=True)]
    return tuple(result)


def _divide(numerator: Triple, denominator: Triple) -> Triple:
    return tuple(a // b for a, b in zip(numerator, denominator, strict=True))


@dataclasses.dataclass(frozen=True)
class TokenPermutation:
    """A reshape → transpose → reshape of the token axis (batch and channel axes aside).

    `[B, prod(split_shape), C] -> [B, *split_shape, C] -> transpose by `order`
    -> [B, *output_shape, C]`. Unroll, reroll and undo_windowing are all of this form.
    """

    split_shape: tuple[int, ...]
    order: tuple[int, ...]
    output_shape: tuple[int, ...]

    def apply_numpy(self, tokens: np.ndarray) -> np.ndarray:
        """Applies the permutation to a numpy array `[B, N, C]` (reference for tests)."""
        batch, channels = tokens.shape[0], tokens.shape[-1]
        split = tokens.reshape(batch, *self.split_shape, channels)
        moved = split.transpose(0, *[axis + 1 for axis in self.order], len(self.split_shape) + 1)
        return moved.reshape(batch, *self.output_shape, channels)


@dataclasses.dataclass(frozen=True)
class BlockGeometry:
    """One encoder block (its width, heads, pooling, window and attention type)."""

    index: int
    stage: int
    input_dim: int
    dim: int
    num_heads: int
    head_dim: int
    query_stride: int  # flattened q-stride s (1: no pooling)
    query_stride_3d: Triple
    window_size: int  # w: flattened mask unit after this block's pooling
    use_mask_unit_attention: bool
    opens_stage: bool  # first block of stage >= 1 (the lag-by-one rule applies)
    is_stage_end: bool
    has_projection: bool  # d_in != D: pooled projected residual
    mlp_hidden_dim: int
    tokens_in_full: int
    tokens_in_masked: int
    windows_full: int
    windows_masked: int
    parameters: int

    @property
    def tokens_out_full(self) -> int:
        return self.tokens_in_full // self.query_stride

    @property
    def tokens_out_masked(self) -> int:
        return self.tokens_in_masked // self.query_stride

    @property
    def queries_per_window_masked(self) -> int:
        return self.tokens_in_masked // (self.query_stride * self.windows_masked)

    @property
    def keys_per_window_masked(self) -> int:
        return self.tokens_in_masked // self.windows_masked


@dataclasses.dataclass(frozen=True)
class LevelGeometry:
    """The output of one stage (a "level")."""

    stage: int
    dim: int
    num_heads: int
    out_dim: int
    strides_applied: Triple  # product of the q-strides applied before this level
    grid: Triple  # R_k, the level map (T_k, H_k, W_k)
    window: Triple  # m_k, the mask-unit window at this level's resolution
    frames_per_token: int  # tau_k
    token_extent: Triple  # input (frames, rows, features) covered by one token
    receptive_field: Triple  # input extent that can influence one token
    stage_end_block: int
    parameters: int  # blocks of this stage plus its projection

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def window_size(self) -> int:
        return math.prod(self.window)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Every number derived from a configuration."""

    config: HBehaveMAEConfig
    token_grid: Triple
    num_tokens: int
    q_strides: tuple[Triple, ...]  # effective (non_hierarchical overrides them)
    out_embed_dims: tuple[int, ...]  # effective
    num_pooling_stages: int  # Q
    mask_unit: Triple  # M, in stage-0 tokens
    mask_unit_tokens: int  # mu_size
    mask_grid: Triple  # G (= the final / prediction grid)
    num_mask_units: int  # U (= decoder tokens)
    num_kept_units: int  # K = int(U·(1 − mask_ratio))
    stage_ends: tuple[int, ...]
    pooling_blocks: tuple[int, ...]
    blocks: tuple[BlockGeometry, ...]
    levels: tuple[LevelGeometry, ...]
    fused_levels: tuple[int, ...]  # levels with a fusion head (k < Q); the last is added as is
    pred_stride: int  # P, the label width
    label_patch: Triple  # (a, b, c) = (M_t, ph·M_h, pw·M_w) in time-strided input units
    unroll: TokenPermutation
    parameter_counts: dict[str, int]

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def num_masked_units(self) -> int:
        return self.num_mask_units - self.num_kept_units

    @property
    def effective_mask_ratio(self) -> float:
        return self.num_masked_units / self.num_mask_units

    def reroll(self, level: int, num_units: int | None = None) -> TokenPermutation:
        """Token order after stage `level` → per-unit windows (docs/model.md, "Unroll, reroll
        and mask units").

        With `num_units` (masked pass, K units): `[B, units·|m_k|, C] -> [B, units, m_t, m_h,
        m_w, C]`. Without (unmasked pass): reroll and undo_windowing in one step,
        `[B, N_k, C] -> [B, T_k, H_k, W_k, C]`.
        """
        first = min(level, self.num_pooling_stages)
        strides = self.q_strides[first:]
        offsets = [stride[axis] for stride in strides for axis in range(3)]

        def offset_positions(axis: int) -> list[int]:
            # Coarsest stride is the most significant digit of the window coordinate.
            return [3 * j + axis for j in reversed(range(len(strides)))]

        if num_units is not None:
            split = (*offsets, num_units)
            order = [len(offsets)] + [p for axis in range(3) for p in offset_positions(axis)]
            return TokenPermutation(split, tuple(order), (num_units, *self.levels[level].window))
        split = (*offsets, *self.mask_grid)
        order = []
        for axis in range(3):
            order += [len(offsets) + axis] + offset_positions(axis)
        return TokenPermutation(split, tuple(order), self.levels[level].grid)

    def summary_dict(self) -> dict:
        """The main derived numbers as plain Python values (for reports and JSON)."""
        return {
            "token_grid": self.token_grid,
            "num_tokens": self.num_tokens,
            "mask_unit": self.mask_unit,
            "mask_unit_tokens": self.mask_unit_tokens,
            "mask_grid": self.mask_grid,
            "num_mask_units": self.num_mask_units,
            "num_kept_units": self.num_kept_units,
            "stage_ends": self.stage_ends,
            "pooling_blocks": self.pooling_blocks,
            "pred_stride": self.pred_stride,
            "label_patch": self.label_patch,
            "level_grids": tuple(level.grid for level in self.levels),
            "level_windows": tuple(level.window for level in self.levels),
            "frames_per_token": tuple(level.frames_per_token for level in self.levels),
            "parameter_counts": dict(self.parameter_counts),
        }


def _block_parameters(input_dim: int, dim: int, hidden: int) -> int:
    count = 2 * input_dim  # norm1
    count += input_dim * 3 * dim + 3 * dim  # qkv
    count += dim * dim + dim  # attention output projection
    count += 2 * dim  # norm2
    count += dim * hidden + hidden + hidden * dim + dim  # mlp
    if input_dim != dim:
        count += input_dim * dim + dim  # pooled residual projection
    return count


def compute_geometry(config: HBehaveMAEConfig) -> Geometry:
    """Derives every size of `config`; raises ValueError on a validation rule it breaks."""
    num_stages = len(config.stages)
    if config.non_hierarchical:
        q_strides = ((1, 1, 1),) * num_stages
        out_embed_dims = (config.out_embed_dims[0],) * num_stages
        widths = (config.init_embed_dim,) * num_stages
        heads = (config.init_num_heads,) * num_stages
        mask_unit_attn = (False,) * num_stages
    else:
        q_strides = config.q_strides
        out_embed_dims = config.out_embed_dims
        widths, heads = [config.init_embed_dim], [config.init_num_heads]
        for _ in range(1, num_stages):
            widths.append(int(widths[-1] * config.dim_mul))
            heads.append(int(heads[-1] * config.head_mul))
        widths, heads = tuple(widths), tuple(heads)
        mask_unit_attn = config.mask_unit_attn
    num_pooling = len(q_strides)

    token_grid = _divide(config.input_size, config.patch_kernel)
    mask_unit = _product(q_strides)
    for axis in range(3):
        if token_grid[axis] % mask_unit[axis]:
            raise ValueError(
                f"q_strides: mask-unit size {mask_unit} (the product of all q-strides) must "
                f"divide the token grid {token_grid} = input_size / patch_kernel on every axis "
                f"(axis {AXES[axis]}: {token_grid[axis]} % {mask_unit[axis]} != 0)"
            )
    for stage, (width, count) in enumerate(zip(widths, heads, strict=True)):
        if width < 1:  # stage 0 is init_embed_dim >= 1, so a later stage: dim_mul shrank it
            raise ValueError(
                f"dim_mul: {config.dim_mul} shrinks stage {stage} to width {width} "
                f"(int({widths[stage - 1]} · {config.dim_mul})); every stage width "
                f"int(previous width · dim_mul) must be at least 1 (widths {widths})")
        if count < 1:
            raise ValueError(
                f"head_mul: {config.head_mul} leaves stage {stage} {count} heads "
                f"(int({heads[stage - 1]} · {config.head_mul})); every stage head count "
                f"int(previous heads · head_mul) must be at least 1 (heads {heads})")
        if width % count:
            derived = "" if stage == 0 else (
                f" (width int({widths[stage - 1]} · dim_mul {config.dim_mul}), heads "
                f"int({heads[stage - 1]} · head_mul {config.head_mul}))")
            raise ValueError(
                f"init_num_heads/head_mul: stage {stage} width {width} must be divisible by its "
                f"head count {count}{derived} (widths {widths}, heads {heads})"
            )
        hidden = int(width * config.mlp_ratio)
        if hidden < 1:
            raise ValueError(
                f"mlp_ratio: {config.mlp_ratio} gives the blocks of stage {stage} (width "
                f"{width}) an MLP hidden width int({width} · {config.mlp_ratio}) = {hidden}; "
                f"it must be at least 1 (mlp_ratio >= 1/{width})")
    for j in range(1, num_stages):
        pools = j - 1 < num_pooling and math.prod(q_strides[j - 1]) > 1
        if pools and widths[j] == widths[j - 1]:
            raise ValueError(
                f"dim_mul: {config.dim_mul} keeps the width at {widths[j]} across the pooling "
                f"transition into stage {j}; a pooling stage must change the width (the "
                "unpooled residual would not match the pooled attention output)"
            )

    mask_grid = _divide(token_grid, mask_unit)
    num_mask_units = math.prod(mask_grid)
    mask_unit_tokens = math.prod(mask_unit)
    num_kept_units = int(num_mask_units * (1 - config.mask_ratio))
    flat_strides = [math.prod(stride) for stride in q_strides]
    stage_ends = tuple(int(v) - 1 for v in np.cumsum(config.stages))
    pooling_blocks = tuple(stage_ends[j] + 1 for j in range(num_pooling) if j < num_stages - 1)

    blocks = []
    input_dim = config.init_embed_dim
    tokens_full = math.prod(token_grid)
    tokens_masked = mask_unit_tokens * num_kept_units
    for index in range(sum(config.stages)):
        stage = int(np.searchsorted(stage_ends, index))
        opens_stage = stage > 0 and index == stage_ends[stage - 1] + 1
        pools = opens_stage and stage - 1 < num_pooling
        query_stride = flat_strides[stage - 1] if pools else 1
        window_size = mask_unit_tokens // math.prod(flat_strides[: min(stage, num_pooling)])
        use_mu = mask_unit_attn[stage - 1] if opens_stage else mask_unit_attn[stage]
        dim = widths[stage]
        hidden = int(dim * config.mlp_ratio)


        blocks.append(BlockGeometry(
            index=index, stage=stage, input_dim=input_dim, dim=dim, num_heads=heads[stage],
            head_dim=dim // heads[stage], query_stride=query_stride,
            query_stride_3d=q_strides[stage - 1] if pools else (1, 1, 1),
            window_size=window_size, use_mask_unit_attention=bool(use_mu),
            opens_stage=opens_stage, is_stage_end=index in stage_ends,
            has_projection=input_dim != dim, mlp_hidden_dim=hidden,
            tokens_in_full=tokens_full, tokens_in_masked=tokens_masked,
            windows_full=tokens_full // (query_stride * window_size) if use_mu else 1,
            windows_masked=tokens_masked // (query_stride * window_size) if use_mu else 1,
            parameters=_block_parameters(input_dim, dim, hidden),
        ))
        tokens_full //= query_stride
        tokens_masked //= query_stride
        input_dim = dim

    patch_t, patch_h, patch_w = config.patch_kernel
    levels = []
    for stage in range(num_stages):
        applied = _product(q_strides, 0, min(stage, num_pooling))
        window = _product(q_strides, min(stage, num_pooling))
        extent = tuple(p * a for p, a in zip(config.patch_kernel, applied, strict=True))
        stage_blocks = [block for block in blocks if block.stage <= stage]
        if all(block.use_mask_unit_attention for block in stage_blocks):
            receptive = tuple(p * m for p, m in zip(config.patch_kernel, mask_unit, strict=True))
        else:
            receptive = tuple(config.input_size)
        levels.append(LevelGeometry(
            stage=stage, dim=widths[stage], num_heads=heads[stage],
            out_dim=out_embed_dims[stage], strides_applied=applied,
            grid=_divide(token_grid, applied), window=window,
            frames_per_token=patch_t * applied[0], token_extent=extent,
            receptive_field=receptive, stage_end_block=stage_ends[stage],
            parameters=sum(b.parameters for b in blocks if b.stage == stage)
            + widths[stage] * out_embed_dims[stage] + out_embed_dims[stage],
        ))

    fused_levels = tuple(range(min(num_pooling, num_stages)))
    last_out = out_embed_dims[-1]
    label_patch = (mask_unit[0], patch_h * mask_unit[1], patch_w * mask_unit[2])
    pred_stride = math.prod(label_patch)

    # Unroll: per axis [G, S_{Q-1}, ..., S_0]; order (o_0 thw, ..., o_{Q-1} thw, G thw).
    split = []
    for axis in range(3):
        split += [mask_grid[axis]] + [q_strides[j][axis] for j in reversed(range(num_pooling))]

    def stride_position(axis: int, j: int) -> int:
        return axis * (num_pooling + 1) + 1 + (num_pooling - 1 - j)

    order = [stride_position(axis, j) for j in range(num_pooling) for axis in range(3)]
    order += [axis * (num_pooling + 1) for axis in range(3)]
    unroll = TokenPermutation(tuple(split), tuple(order), (math.prod(token_grid),))

    decoder_hidden = int(config.decoder_embed_dim * config.mlp_ratio)
    embed_dim = config.init_embed_dim
    patch_parameters = patch_t * patch_h * patch_w * embed_dim + embed_dim
    if config.sep_pos_embed:
        position_parameters = (token_grid[1] * token_grid[2] + token_grid[0]) * embed_dim
    else:
        position_parameters = math.prod(token_grid) * embed_dim
    encoder = patch_parameters + position_parameters + sum(level.parameters for level in levels)
    fusion = sum(
        levels[k].window_size * out_embed_dims[k] * last_out + last_out for k in fused_levels
    )
    decoder_dim = config.decoder_embed_dim
    decoder = (
        last_out * decoder_dim + decoder_dim  # decoder_embed
        + decoder_dim + num_mask_units * decoder_dim  # mask_token, decoder_pos_embed
        + config.decoder_depth * _block_parameters(decoder_dim, decoder_dim, decoder_hidden)
        + 2 * decoder_dim  # decoder_norm
        + decoder_dim * pred_stride + pred_stride  # decoder_pred
    )
    parameter_counts = {
        "patch_embed": patch_parameters,
        "position_embedding": position_parameters,
        "blocks": sum(block.parameters for block in blocks),
        "projections": sum(w * o + o for w, o in zip(widths, out_embed_dims, strict=True)),
        "encoder": encoder,
        "encoder_norm": 2 * last_out,
        "fusion_heads": fusion,
        "decoder": decoder,
        "total": encoder + 2 * last_out + fusion + decoder,
    }

    return Geometry(
        config=config, token_grid=token_grid, num_tokens=math.prod(token_grid),
        q_strides=tuple(q_strides), out_embed_dims=tuple(out_embed_dims),
        num_pooling_stages=num_pooling, mask_unit=mask_unit, mask_unit_tokens=mask_unit_tokens,
        mask_grid=mask_grid, num_mask_units=num_mask_units, num_kept_units=num_kept_units,
        stage_ends=stage_ends, pooling_blocks=pooling_blocks, blocks=tuple(blocks),
        levels=tuple(levels), fused_levels=fused_levels, pred_stride=pred_stride,
        label_patch=label_patch, unroll=unroll, parameter_counts=parameter_counts,
    )
