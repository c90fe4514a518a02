"""`HBehaveMAE`: the masked-autoencoder pretrainer around `HBehaveMAEBackbone`.

Example:

>>> import numpy as np, keras
>>> from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone
>>> backbone = HBehaveMAEBackbone(
...     input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
...     q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16)
>>> model = HBehaveMAE(backbone, decoder_embed_dim=16, mask_ratio=0.75, seed=0)
>>> outputs = model(np.zeros((2, 32, 4, 12), "float32"))
>>> tuple(outputs["pred"].shape), tuple(outputs["mask"].shape)
((2, 16, 48), (2, 16))
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_hbehavemae.errors import check_known_keys, invalid
from keras_hbehavemae.models import decoding
from keras_hbehavemae.models import inputs as keypoint_inputs
from keras_hbehavemae.models.backbone import HBehaveMAEBackbone, checked_dtype, run_encoder
from keras_hbehavemae.models.compilation import resolve_jit_compile
from keras_hbehavemae.models.config import KERAS_KEYWORDS, PRETRAINER_FIELDS, HBehaveMAEConfig
from keras_hbehavemae.models.geometry import compute_geometry
from keras_hbehavemae.models.layers import MAEDecoder, MultiScaleFusionHead
from keras_hbehavemae.models.losses import masked_reconstruction_loss, time_strided_targets
from keras_hbehavemae.models.masking import check_unit_mask, kept_unit_ids, random_unit_mask
from keras_hbehavemae.models.train_steps import PretrainingSteps, StepMean
from keras_hbehavemae.presets import folder as preset_folder
from keras_hbehavemae.presets.registry import serialized_config


@keras.saving.register_keras_serializable(package="keras_hbehavemae")
class HBehaveMAE(PretrainingSteps, keras.Model):
    """hBehaveMAE pretraining: mask units, encode the kept ones, fuse levels, decode.

    `call(keypoints, mask=None)` returns `{"pred": [B, U, P], "mask": [B, U]}` (True =
    kept). Without `mask`, K = int(U·(1 − mask_ratio)) units per sample are kept at random
    with the model's `keras.random.SeedGenerator`. `model.fit` on batches of keypoints
    `[B, T, H, W]` (no targets: they are computed from the keypoints) trains it with its
    own `train_step`, which logs `loss`, `grad_norm` (before clipping), `skipped_steps` and
    `learning_rate`. NaN, inf and huge keypoints are rejected wherever their values are
    known; a compiled step on such a batch is skipped and counted in `skipped_steps` (see
    `keras_hbehavemae.models.inputs`). Any keyword other than the arguments below and
    Keras's `name`, `trainable` and `dtype` raises a ValueError naming the closest one.

    Args:
        backbone: the `HBehaveMAEBackbone` (its weights are shared, not copied).
        decoder_embed_dim: decoder width Cd.
        decoder_depth: number of decoder blocks.
        decoder_num_heads: decoder attention heads.
        decoding_strategy: "multi" (sum fused levels) or "single" (last level only; the
            fusion heads are then frozen, as they receive no gradient).
        norm_loss: standardise every target token.
        mask_ratio: fraction of mask units removed.
        seed: seed of the masking (and stochastic-depth) random draws.
    """

    def __init__(self, backbone: HBehaveMAEBackbone, decoder_embed_dim: int = 128,
                 decoder_depth: int = 1, decoder_num_heads: int = 1,
                 decoding_strategy: str = "multi", norm_loss: bool = False,
                 mask_ratio: float = 0.75, seed: int | None = None, dtype=None, **kwargs):
        check_known_keys(type(self).__name__, kwargs, (
            *PRETRAINER_FIELDS, "backbone", "seed", "dtype", *KERAS_KEYWORDS))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise invalid("seed", seed, "must be an integer or None")
        dtype = checked_dtype(dtype)
        super().__init__(dtype=backbone.dtype_policy if dtype is None else dtype, **kwargs)
        config = HBehaveMAEConfig(
            **backbone.config_object.encoder_kwargs(), decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads,
            decoding_strategy=decoding_strategy, norm_loss=norm_loss, mask_ratio=mask_ratio)
        config.validate_for_training()
        geometry = compute_geometry(config)
        self.backbone = backbone
        self.config_object = config
        self.geometry = geometry
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        policy = self.dtype_policy
        self.decoding = decoding.strategy(config.decoding_strategy)
        if not self.decoding.trains_lower_projections:
            # No gradient reaches them; frozen so that weight decay leaves them alone too
            # (see `decoding`).
            for projection in backbone.projections[:-1]:
                projection.trainable = False
        self.fusion_heads = [
            MultiScaleFusionHead(geometry.out_embed_dims[-1],
                                 trainable=self.decoding.trains_fusion_heads, dtype=policy,
                                 name=f"multi_scale_fusion_heads_{level}")
            for level in geometry.fused_levels
        ]
        self.encoder_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype=policy, name="encoder_norm")
        self.decoder = MAEDecoder(
            geometry.num_mask_units, config.decoder_embed_dim, config.decoder_depth,
            config.decoder_num_heads, geometry.pred_stride, config.mlp_ratio,
            config.layer_norm_eps, dtype=policy, name="decoder")
        self.loss_tracker = StepMean(name="loss")
        self.grad_norm_tracker = StepMean(name="grad_norm")
        self.skipped_steps_tracker = keras.metrics.Sum(name="skipped_steps")
        self._build_heads()
        # `predict` before any `compile` takes the fastest measured path too.
        self.jit_compile = resolve_jit_compile("auto", self.geometry)

    def compile(self, *args, jit_compile="auto", **kwargs):
        """`keras.Model.compile`, with "auto" meaning the fastest measured path
        (`models.compilation.resolve_jit_compile`: for a large model, XLA under TensorFlow on a
        CPU too)."""
        super().compile(*args, jit_compile=resolve_jit_compile(jit_compile, self.geometry),
                        **kwargs)

    def _build_heads(self):
        kept, last = self.geometry.num_kept_units, self.geometry.out_embed_dims[-1]
        for level, head in zip(self.geometry.fused_levels, self.fusion_heads, strict=True):
            window = self.geometry.levels[level].window
            head.build((None, kept, *window, self.geometry.out_embed_dims[level]))
        self.encoder_norm.build((None, kept, last))
        self.decoder.build((None, kept, last), (None, self.geometry.num_mask_units))
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.grad_norm_tracker, self.skipped_steps_tracker]

    # ------------------------------------------------------------------ inputs

    def standardize_inputs(self, inputs, unit_mask=None, check_values: bool = True):
        """The one check of an entry point's inputs: `(keypoints [B, T, H, W], mask or None)`.

        `inputs` is keypoints or a dict `{"keypoints", "mask"}`; the keypoints are checked by
        `HBehaveMAEBackbone.standardize_keypoints` (with `check_values`, NaN, inf and huge
        values are rejected wherever they are known), an explicit mask by `check_unit_mask`
        against the geometry and the keypoints' batch.
        """
        keypoints, mask = self._unpack(inputs, unit_mask)
        keypoints = self.backbone.standardize_keypoints(keypoints, check_values)
        if mask is not None:
            checked = check_unit_mask(mask, self.geometry.num_mask_units,
                                      self.geometry.num_kept_units,
                                      batch_size=keypoints.shape[0])
            mask = np.asarray(mask).astype(bool) if isinstance(mask, np.ndarray | list) \
                else checked
        return keypoints, mask

    def _unpack(self, inputs, mask):
        if isinstance(inputs, dict):
            unknown = set(inputs) - {"keypoints", "mask"}
            if unknown or "keypoints" not in inputs:
                raise ValueError(
                    f"inputs: a dict must hold 'keypoints' and optionally 'mask'; got keys "
                    f"{sorted(inputs)}")
            inputs, mask = inputs["keypoints"], inputs.get("mask", mask)
        return inputs, mask

    def _checked_entry(self, x):
        """`x` of `predict`/`fit`/`evaluate` checked once (arrays only) and standardized."""
        keypoints, mask = self.standardize_inputs(x)
        return keypoints if mask is None else {"keypoints": keypoints, "mask": mask}

    def __call__(self, inputs, *args, **kwargs):
        if keypoint_inputs.inputs_validated(self):  # called back by predict, fit, ...
            return super().__call__(inputs, *args, **kwargs)
        # Check the keypoints and an explicit mask before Keras converts them to tensors:
        # string arrays would otherwise fail in (or, under JAX, pass) that conversion.
        keypoints, mask = self.standardize_inputs(
            inputs, args[0] if args else kwargs.pop("unit_mask", None))
        return super().__call__(keypoints, mask, *args[1:], **kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`; arrays (and a dict's explicit mask) are checked once, here,
        before tracing (inside the traced predict function their values are unknown)."""
        if keypoint_inputs.inputs_validated(self):  # an entry point that checked x calls
            return super().predict(x, *args, **kwargs)
        checked = keypoint_inputs.is_array_input(x)
        x = self._checked_entry(x) if checked else x
        with keypoint_inputs.validated_inputs(self, checked):
            return super().predict(x, *args, **kwargs)

    def predict_on_batch(self, x):
        """`keras.Model.predict_on_batch`, with the inputs checked once, here."""
        if keypoint_inputs.inputs_validated(self):
            return super().predict_on_batch(x)
        x = self._checked_entry(x)
        with keypoint_inputs.validated_inputs(self):
            return super().predict_on_batch(x)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`. Arrays are checked here, once: NaN, inf or huge keypoints raise
        (naming the sample and frame). A `tf.data.Dataset` or generator cannot be checked
        ahead; its batches go through `train_step`, which skips non-finite updates and
        counts them in `skipped_steps` (see `keras_hbehavemae.models.inputs`)."""
        checked = keypoint_inputs.is_array_input(x)
        x = self._checked_entry(x) if checked else x
        with keypoint_inputs.validated_inputs(self, checked):
            return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`, with arrays checked once, here, as in `fit`."""
        checked = keypoint_inputs.is_array_input(x)
        x = self._checked_entry(x) if checked else x
        with keypoint_inputs.validated_inputs(self, checked):
            return super().evaluate(x, *args, **kwargs)

    def batch_inputs(self, data):
        """A training or test batch's `(keypoints, mask or None)`: checked once per trace
        (shape and dtype; the values are handled by the step), unless an entry point checked
        them already."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if keypoint_inputs.inputs_validated(self):
            return self._unpack(x, None)
        return self.standardize_inputs(x, check_values=False)

    # ------------------------------------------------------------------ forward pass

    def fuse_levels(self, levels):
        """Masked levels → the decoder input `[B, K, C_last]` (before `encoder_norm`)."""
        return self.decoding.fuse(levels, self.fusion_heads, self.geometry.fused_levels)

    def checked_forward(self, keypoints, unit_mask=None, training=None):
        """The forward pass of inputs an entry point has checked (`standardize_inputs`)."""
        return super().__call__(keypoints, unit_mask, training=training)

    def call(self, inputs, unit_mask=None, training=None, return_intermediates=False):
        keypoints, mask = self._unpack(inputs, unit_mask)
        geometry = self.geometry
        if mask is None:
            batch = ops.shape(keypoints)[0]
            mask = random_unit_mask(batch, geometry.num_mask_units, geometry.num_kept_units,
                                    self.seed_generator)
        else:
            mask = ops.cast(mask, "bool")
        keep_ids = kept_unit_ids(mask, geometry.num_kept_units)
        block_outputs = [] if return_intermediates else None
        levels = run_encoder(self.backbone.encoder_layers(), geometry, keypoints, keep_ids,
                             training, block_outputs)
        latent_prenorm = self.fuse_levels(levels)
        latent = self.encoder_norm(latent_prenorm)
        pred = self.decoder(latent, mask, return_intermediates=return_intermediates)
        if not return_intermediates:
            return {"pred": pred, "mask": mask}
        pred, decoder_intermediates = pred
        intermediates = {f"block/{i}": tokens for i, tokens in enumerate(block_outputs)}
        intermediates.update({f"intermediate/{k}": level for k, level in enumerate(levels)})
        intermediates.update(latent_prenorm=latent_prenorm, latent=latent,
                             **decoder_intermediates)
        return {"pred": pred, "mask": mask, "intermediates": intermediates}

    # ------------------------------------------------------------------ loss

    def compute_targets(self, keypoints):
        """Time-strided targets `[B, U, P]` (normalised when `norm_loss`)."""
        keypoints, _ = self.standardize_inputs(keypoints)
        return self.targets(keypoints)

    def targets(self, keypoints):
        """`compute_targets` of keypoints an entry point has checked."""
        return time_strided_targets(keypoints, self.geometry, self.config_object.norm_loss)

    def compute_pretraining_loss(self, keypoints, outputs):
        """The masked reconstruction loss (float32) of `outputs` from `call`."""
        keypoints, _ = self.standardize_inputs(keypoints)
        return self.pretraining_loss(keypoints, outputs)

    def pretraining_loss(self, keypoints, outputs):
        """`compute_pretraining_loss` of keypoints an entry point has checked.

        NaN when any keypoint of the batch is NaN or inf. The masked pass embeds only the
        kept units, so a bad value in a discarded frame that the loss does not target would
        otherwise leave the loss finite, and `evaluate` on a `tf.data` pipeline (whose
        values no entry point sees) would report a NaN batch as a normal one.
        """
        loss = masked_reconstruction_loss(outputs["pred"], self.targets(keypoints),
                                          outputs["mask"])
        return ops.where(ops.all(ops.isfinite(keypoints)), loss, float("nan"))

    def update_pretraining_metrics(self, loss, grad_norm=None, learning_rate=None,
                                   applied=None):
        """Updates the metrics; returns the logs.

        With `applied` (a training step: False when its update was skipped), `loss` and
        `grad_norm` average the applied steps only and `skipped_steps` counts the others.
        """
        logs = {}
        if applied is None:
            self.loss_tracker.update_state(loss)
        else:
            weight = ops.cast(applied, "float32")
            self.loss_tracker.update_state(ops.where(applied, loss, 0.0), sample_weight=weight)
            self.skipped_steps_tracker.update_state(1.0 - weight)
        logs["loss"] = self.loss_tracker.result()
        if grad_norm is not None:
            weight = 1.0 if applied is None else ops.cast(applied, "float32")
            finite_norm = grad_norm if applied is None else ops.where(applied, grad_norm, 0.0)
            self.grad_norm_tracker.update_state(finite_norm, sample_weight=weight)
            logs["grad_norm"] = self.grad_norm_tracker.result()
        if applied is not None:
            logs["skipped_steps"] = self.skipped_steps_tracker.result()
        if learning_rate is not None:
            logs["learning_rate"] = learning_rate
        return logs

    # ------------------------------------------------------------------ presets

    @classmethod
    def from_preset(cls, preset, load_weights: bool = True, allow_random_weights: bool = False,
                    **overrides):
        """Loads a pretrainer from a preset name or folder (see `keras_hbehavemae.presets`).

        Without saved task files a fresh decoder is built from `overrides` (decoder and
        masking arguments). `load_weights` and `allow_random_weights` are as in
        `HBehaveMAEBackbone.from_preset`.
        """
        return preset_folder.load_pretrainer(preset, cls, load_weights=load_weights,
                                             allow_random_weights=allow_random_weights,
                                             **overrides)

    def save_to_preset(self, directory, **kwargs):
        """Saves backbone and pretrainer as a preset folder (see `presets.save_to_preset`)."""
        return preset_folder.save_to_preset(self, directory, **kwargs)

    # ------------------------------------------------------------------ serialization

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "seed": self.seed,
            **self.config_object.pretrainer_kwargs(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        check_known_keys(cls.__name__, config, (
            *PRETRAINER_FIELDS, "backbone", "seed", "dtype", *KERAS_KEYWORDS))
        serialized_config(config.get("backbone"), "backbone")  # checks the top-level keys
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
