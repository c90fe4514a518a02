"""`HBehaveMAEBackbone`: the hBehaveMAE encoder as a functional Keras model.

The rules it follows are in docs/model.md ("Levels and projections").

Example:

>>> import numpy as np
>>> from keras_hbehavemae import HBehaveMAEBackbone
>>> backbone = HBehaveMAEBackbone(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)
>>> levels = backbone(np.zeros((2, 32, 4, 12), "float32"))
>>> [tuple(level.shape) for level in levels]
[(2, 16, 4, 4, 8), (2, 8, 4, 2, 12), (2, 4, 2, 2, 16)]
"""

from __future__ import annotations

import typing

import keras
import numpy as np
from keras import ops

from keras_hbehavemae.errors import check_known_keys, invalid
from keras_hbehavemae.models import inputs as keypoint_inputs
from keras_hbehavemae.models.compilation import resolve_jit_compile
from keras_hbehavemae.models.config import ENCODER_FIELDS, KERAS_KEYWORDS, HBehaveMAEConfig
from keras_hbehavemae.models.geometry import Geometry, compute_geometry
from keras_hbehavemae.models.layers import (
    HieraBlock,
    PatchEmbedding,
    PositionEmbedding,
    TokenPermute,
    permute_tokens,
)
from keras_hbehavemae.presets import folder as preset_folder


class EncoderLayers(typing.NamedTuple):
    """The layers one encoder pass uses (shared by the masked and unmasked passes)."""

    patch_embedding: PatchEmbedding
    position_embedding: PositionEmbedding
    unroll: TokenPermute
    blocks: list
    rerolls: list  # unmasked: reroll + undo_windowing, one per level
    projections: list


def checked_dtype(dtype):
    """`dtype` as given when it is None or a floating-point Keras dtype policy.

    Raises:
        ValueError: naming `dtype`, before Keras fails on it (an integer policy failed deep
            inside the first weight initialiser).
    """
    if dtype is None:
        return None
    try:
        policy = keras.dtype_policies.get(dtype)
    except (ValueError, TypeError) as error:
        raise invalid("dtype", dtype, f"must be a Keras dtype policy such as 'float32' or "
                      f"'mixed_bfloat16' ({error})") from None
    if "float" not in policy.compute_dtype or "float" not in policy.variable_dtype:
        raise invalid("dtype", dtype, "must be a floating-point policy such as 'float32' or "
                      "'mixed_bfloat16'")
    return dtype


def kept_token_ids(keep_unit_ids, geometry: Geometry):
    """Unrolled token indices `[B, mu_size·K]` of the kept units, ordered by j, then k.

    In unrolled order token `j·U + u` is token j of mask unit u (U units), so the kept
    tokens are `j·U + keep_unit_ids[:, k]`.
    """
    units, unit_tokens = geometry.num_mask_units, geometry.mask_unit_tokens
    num_kept = keep_unit_ids.shape[1]
    offsets = ops.reshape(ops.arange(unit_tokens, dtype="int32") * units,
                          (1, unit_tokens, 1))  # [1, mu_size, 1]
    kept = ops.reshape(ops.cast(keep_unit_ids, "int32"), (-1, 1, num_kept))  # [B, 1, K]
    return ops.reshape(offsets + kept, (-1, unit_tokens * num_kept))  # [B, mu_size·K]


def select_kept_units(tokens, keep_unit_ids, geometry: Geometry):
    """Keeps the tokens of the kept mask units, in ascending unit order.

    Args:
        tokens: unrolled tokens `[B, N0, C]`.
        keep_unit_ids: `[B, K]` int, kept unit indices in ascending order.
        geometry: the model geometry.

    Returns:
        `[B, mu_size·K, C]` in unrolled order (`kept_token_ids`).
    """
    index = ops.expand_dims(kept_token_ids(keep_unit_ids, geometry), -1)  # [B, mu_size·K, 1]
    return ops.take_along_axis(tokens, index, axis=1)  # [B, mu_size·K, C]


def embed_kept_units(layers: EncoderLayers, geometry: Geometry, keypoints, keep_unit_ids):
    """The masked pass's first tokens: the kept units' patches, embedded and positioned.

    Equals `select_kept_units(unroll(position_embedding(patch_embedding(keypoints))))`,
    token for token, because both embeddings act on each token alone. Selecting first
    means the patch embedding runs on the K kept units only (30 % of the tokens at the
    published mask ratio), the unroll moves patches (pt·ph·pw values a token) instead of
    C0-wide tokens, and the backward pass needs no scatter of the kept tokens' gradients
    into a zero `[B, N0, C0]` tensor (on Shot7M2 at batch 32 that tensor is 59 MB; in one
    traced JAX step, reducing it over the batch for the position embedding's gradient
    took 0.17 s of 4.2 s). Train step A/B, Shot7M2 batch 32: torch 2.96 → 2.70 s,
    TensorFlow 3.42 → 3.31 s, JAX 3.83 → 3.78 s.

    Returns:
        `[B, mu_size·K, C0]` in unrolled order.
    """
    patches = layers.unroll(layers.patch_embedding.patches(keypoints))  # [B, N0, P]
    patches = select_kept_units(patches, keep_unit_ids, geometry)  # [B, mu_size·K, P]
    tokens = layers.patch_embedding.embed_patches(patches)  # [B, mu_size·K, C0]
    table = layers.unroll(layers.position_embedding.position_table())  # [1, N0, C0]
    table = ops.reshape(ops.cast(table, tokens.dtype), table.shape[1:])  # [N0, C0]
    return tokens + ops.take(table, kept_token_ids(keep_unit_ids, geometry), axis=0)


def run_encoder(layers: EncoderLayers, geometry: Geometry, keypoints, keep_unit_ids=None,
                training=None, block_outputs: list | None = None):
    """One encoder pass; returns the projected levels L_0 … L_{L−1}.

    Without `keep_unit_ids` (unmasked): level k is `[B, T_k, H_k, W_k, out_k]`.
    With them (masked, K units): level k is `[B, K, m_t, m_h, m_w, out_k]`.
    Raw block outputs (unrolled order) are appended to `block_outputs` when given.
    """
    if keep_unit_ids is None:
        tokens = layers.patch_embedding(keypoints)  # [B, T', H', W', C0]
        tokens = layers.position_embedding(tokens)
        tokens = layers.unroll(tokens)  # [B, N0, C0], unrolled order
    else:
        tokens = embed_kept_units(layers, geometry, keypoints, keep_unit_ids)
    levels = []
    for block_geometry, block in zip(geometry.blocks, layers.blocks, strict=True):
        tokens = block(tokens, training=training)
        if block_outputs is not None:
            block_outputs.append(tokens)
        if not block_geometry.is_stage_end:
            continue
        stage = block_geometry.stage
        if keep_unit_ids is None:
            level = layers.rerolls[stage](tokens)  # [B, T_k, H_k, W_k, D_k]
        else:
            permutation = geometry.reroll(stage, keep_unit_ids.shape[1])
            level = permute_tokens(  # [B, K, m_t, m_h, m_w, D_k]
                tokens, permutation.split_shape, permutation.order, permutation.output_shape)
        levels.append(layers.projections[stage](level))
    return levels


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class HBehaveMAEBackbone(keras.Model):
    """The hBehaveMAE encoder: keypoints `[B, T, H, W]` → per-level embeddings.

    Returns the list of unmasked level maps `[B, T_k, H_k, W_k, out_k]` (rerolled,
    projected, no LayerNorm), in natural grid order. Deterministic: no masking and no
    randomness. Input `[B, T, H·W]` is accepted too and reshaped. NaN, inf and huge
    keypoints are rejected (see `keras_hbehavemae.models.inputs`).

    Args: the encoder parameters of `HBehaveMAEConfig`, plus `dtype` (a Keras dtype policy
        such as "mixed_bfloat16") and Keras's `name` and `trainable`. Any other keyword
        raises a ValueError naming the closest parameter.
    """

    def __init__(self, input_size, patch_kernel, stages, q_strides, out_embed_dims,
                 init_embed_dim, init_num_heads=2, mask_unit_attn=None, dim_mul=2.0,
                 head_mul=2.0, mlp_ratio=4.0, layer_norm_eps=1e-6, sep_pos_embed=True,
                 non_hierarchical=False, drop_path_rate=0.0, dtype=None, **kwargs):
        check_known_keys(type(self).__name__, kwargs,
                         (*ENCODER_FIELDS, "dtype", *KERAS_KEYWORDS))
        dtype = checked_dtype(dtype)
        config = HBehaveMAEConfig(
            input_size=input_size, patch_kernel=patch_kernel, stages=stages,
            q_strides=q_strides, out_embed_dims=out_embed_dims, init_embed_dim=init_embed_dim,
            init_num_heads=init_num_heads, mask_unit_attn=mask_unit_attn, dim_mul=dim_mul,
            head_mul=head_mul, mlp_ratio=mlp_ratio, layer_norm_eps=layer_norm_eps,
            sep_pos_embed=sep_pos_embed, non_hierarchical=non_hierarchical,
            drop_path_rate=drop_path_rate)
        geometry = compute_geometry(config)

        # === Layers ===
        unroll = geometry.unroll
        drop_rates = np.linspace(0.0, config.drop_path_rate, geometry.depth).tolist()
        layers = EncoderLayers(
            patch_embedding=PatchEmbedding(config.init_embed_dim, config.patch_kernel,
                                           dtype=dtype, name="patch_embed"),
            position_embedding=PositionEmbedding(geometry.token_grid, config.sep_pos_embed,
                                                 dtype=dtype, name="pos_embed"),
            unroll=TokenPermute(unroll.split_shape, unroll.order, unroll.output_shape,
                                dtype=dtype, name="unroll"),
            blocks=[
                HieraBlock(
                    block.input_dim, block.dim, block.num_heads, block.query_stride,
                    block.window_size, block.use_mask_unit_attention, config.mlp_ratio,
                    config.layer_norm_eps, drop_path_rate=rate, dtype=dtype,
                    name=f"blocks_{block.index}")
                for block, rate in zip(geometry.blocks, drop_rates, strict=True)
            ],
            rerolls=[
                TokenPermute(*_permutation_args(geometry, level.stage), dtype=dtype,
                             name=f"reroll_{level.stage}")
                for level in geometry.levels
            ],
            # Plain Dense, not FusedBiasDense: a weights file names the layers of a list by
            # their class ("dense", "dense_1", ...), and every saved preset and checkpoint
            # holds these names.
            projections=[
                keras.layers.Dense(level.out_dim, kernel_initializer="glorot_uniform",
                                   dtype=dtype, name=f"projections_{level.stage}")
                for level in geometry.levels
            ],
        )

        # === Functional model ===
        inputs = keras.Input(shape=config.input_size, name="keypoints")
        levels = run_encoder(layers, geometry, inputs)
        super().__init__(inputs=inputs, outputs=levels, dtype=dtype, **kwargs)

        # === Config and attributes ===
        self.config_object = config
        self.geometry = geometry
        self.patch_embedding = layers.patch_embedding
        self.position_embedding = layers.position_embedding
        self.unroll = layers.unroll
        self.blocks = layers.blocks
        self.rerolls = layers.rerolls
        self.projections = layers.projections
        # `predict` before any `compile` takes the fastest measured path too.
        self.jit_compile = resolve_jit_compile("auto", self.geometry)

    def compile(self, *args, jit_compile="auto", **kwargs):
        """`keras.Model.compile`, with "auto" meaning the fastest measured path
        (`models.compilation.resolve_jit_compile`: for a large model, XLA under TensorFlow on a
        CPU too)."""
        super().compile(*args, jit_compile=resolve_jit_compile(jit_compile, self.geometry),
                        **kwargs)

    # ------------------------------------------------------------------ encoding

    def encoder_layers(self) -> EncoderLayers:
        return EncoderLayers(self.patch_embedding, self.position_embedding, self.unroll,
                             self.blocks, self.rerolls, self.projections)

    def encode(self, keypoints, keep_unit_ids=None, training=None, block_outputs=None):
        """Runs the encoder, masked when `keep_unit_ids` `[B, K]` is given (see `run_encoder`)."""
        if not keypoint_inputs.inputs_validated(self):
            keypoints = self.standardize_keypoints(keypoints)
        return run_encoder(self.encoder_layers(), self.geometry, keypoints, keep_unit_ids,
                           training, block_outputs)

    def standardize_keypoints(self, keypoints, check_values: bool = True):
        """The one check of keypoints at each public entry point (`models.inputs`).

        Checks dtype and shape, reshapes `[B, T, H·W]` to `[B, T, H, W]`, and with
        `check_values` rejects NaN, inf and huge values wherever they are known.
        """
        return keypoint_inputs.standardize_keypoints(keypoints, self.config_object.input_size,
                                                     check_values)

    def __call__(self, inputs, *args, **kwargs):
        if not keypoint_inputs.inputs_validated(self):
            inputs = self.standardize_keypoints(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`; arrays are checked once, here, before tracing."""
        if keypoint_inputs.inputs_validated(self):  # an entry point that checked x calls
            return super().predict(x, *args, **kwargs)
        checked = keypoint_inputs.is_array_input(x)
        x = self.standardize_keypoints(x) if checked else x
        with keypoint_inputs.validated_inputs(self, checked):
            return super().predict(x, *args, **kwargs)

    def predict_on_batch(self, x):
        """`keras.Model.predict_on_batch`, with the keypoints checked once, here."""
        if keypoint_inputs.inputs_validated(self):
            return super().predict_on_batch(x)
        x = self.standardize_keypoints(x)
        with keypoint_inputs.validated_inputs(self):
            return super().predict_on_batch(x)

    # ------------------------------------------------------------------ presets

    @classmethod
    def from_preset(cls, preset, load_weights: bool = True, allow_random_weights: bool = False):
        """Loads a backbone from a preset name or folder (see `keras_hbehavemae.presets`).

        Args:
            preset: a built-in preset name or a preset folder.
            load_weights: load the preset's weights; False builds the architecture with
                random initial weights.
            allow_random_weights: accept a preset that holds no trained weights (its
                `metadata.json` says `weights: none` or `initial`); otherwise that raises.
        """
        return preset_folder.load_backbone(preset, cls, load_weights=load_weights,
                                           allow_random_weights=allow_random_weights)

    def save_to_preset(self, directory, **kwargs):
        """Saves this backbone as a preset folder (see `presets.save_to_preset`)."""
        return preset_folder.save_to_preset(self, directory, **kwargs)

    # ------------------------------------------------------------------ serialization

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            **self.config_object.encoder_kwargs(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Before the call: a misspelled required parameter would be a TypeError there.
        check_known_keys(cls.__name__, config, (*ENCODER_FIELDS, "dtype", *KERAS_KEYWORDS))
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)


def _permutation_args(geometry: Geometry, level: int):
    permutation = geometry.reroll(level)
    return permutation.split_shape, permutation.order, permutation.output_shape
