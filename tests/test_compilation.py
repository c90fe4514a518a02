"""The fastest measured compiled path is what a new user gets (`models.compilation`).

The measured fast path (docs/results.md): XLA under JAX always; under
TensorFlow on a CPU for a published-size model (Shot7M2), not for the small default
synthetic model, where XLA was slower; eager torch.
"""

import keras
import pytest
from helpers import parse_pretrain_flags

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig
from keras_hbehavemae.models.compilation import (
    parse_jit_compile_flag,
    resolve_jit_compile,
    window_gflop,
)
from keras_hbehavemae.models.geometry import compute_geometry

BACKEND = keras.config.backend()

#: (backend, model size) → the measured fastest setting on a CPU.
FAST_PATH = {
    ("tensorflow", "small"): False, ("tensorflow", "published"): True,
    ("jax", "small"): True, ("jax", "published"): True,
    ("torch", "small"): False, ("torch", "published"): False,
}


def _on_gpu() -> bool:
    if BACKEND != "tensorflow":
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


pytestmark = pytest.mark.skipif(_on_gpu(), reason="the CPU choice (Keras decides on a GPU)")


def _pretrain_config(*argv):
    from helpers import pretrain_script

    flag_values = parse_pretrain_flags(*argv)
    config = pretrain_script().model_config(flag_values)
    return config, parse_jit_compile_flag(flag_values.jit_compile)


def test_a_new_users_default_pretraining_takes_the_fast_path():
    config, jit_compile = _pretrain_config()  # `hbehavemae pretrain`, no flags
    assert jit_compile == "auto"
    assert resolve_jit_compile(jit_compile, compute_geometry(config)) is FAST_PATH[
        (BACKEND, "small")]
    config, jit_compile = _pretrain_config("--dataset", "shot7m2", "--path_to_data_dir", "x")
    assert resolve_jit_compile(jit_compile, compute_geometry(config)) is FAST_PATH[
        (BACKEND, "published")]


def test_a_new_users_default_pretraining_keeps_freed_memory_for_reuse():
    # `keras_hbehavemae.allocator`: the training and encoder steps fault no pages in anew
    # (tests/test_allocator.py checks the setting itself; the end-to-end test, the record
    # of a default run and extraction).
    assert parse_pretrain_flags().reuse_freed_memory is True
    assert parse_pretrain_flags("--noreuse_freed_memory").reuse_freed_memory is False


def test_models_compile_and_predict_on_the_fast_path_by_default():
    small = HBehaveMAEConfig(
        input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
        q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
        decoder_embed_dim=16)
    backbone = HBehaveMAEBackbone(**small.encoder_kwargs())
    model = HBehaveMAE(backbone, decoder_embed_dim=16)
    expected = FAST_PATH[(BACKEND, "small")]
    assert backbone.jit_compile is expected and model.jit_compile is expected  # no compile
    model.compile(optimizer="adam")
    backbone.compile()
    assert backbone.jit_compile is expected and model.jit_compile is expected
    model.compile(optimizer="adam", jit_compile=False)  # the user's choice stands
    assert model.jit_compile is False


def test_the_size_rule_and_explicit_values():
    published = compute_geometry(HBehaveMAEConfig.from_preset("hbehavemae_shot7m2"))
    assert window_gflop(published) == pytest.approx(9.62, abs=0.01)
    assert resolve_jit_compile("auto", published) is FAST_PATH[(BACKEND, "published")]
    assert resolve_jit_compile("auto", published, backend="tensorflow") is True
    assert resolve_jit_compile("auto", None, backend="tensorflow") is False  # as Keras
    for value in (True, False):
        assert resolve_jit_compile(value, published) is value
    with pytest.raises(ValueError, match="jit_compile: 'yes' is invalid"):
        resolve_jit_compile("yes")
    with pytest.raises(ValueError, match="jit_compile: 'yes' is invalid"):
        parse_jit_compile_flag("yes")
