"""The geometry's parameter counts against the built Keras models: the one test that ties the
analytic counts (`Geometry.parameter_counts`, a second description of the architecture used
by the report, the model cards and the FLOP counts) to the layers that really exist.

The published totals themselves are pinned in `tests/test_geometry.py`.
"""

from __future__ import annotations

import pytest

from keras_hbehavemae import HBehaveMAE, HBehaveMAEBackbone, HBehaveMAEConfig

TINY = dict(input_size=(32, 4, 12), patch_kernel=(2, 1, 3), stages=(1, 2, 1),
            q_strides="2,1,2;2,2,1", out_embed_dims=(8, 12, 16), init_embed_dim=16,
            decoder_embed_dim=16)
CONFIGURATIONS = {
    "tiny_multi": HBehaveMAEConfig(**TINY, decoding_strategy="multi", norm_loss=True),
    "tiny_single": HBehaveMAEConfig(**TINY, decoding_strategy="single"),
    "non_hierarchical": HBehaveMAEConfig(**dict(TINY, q_strides=((1, 1, 1),) * 3,
                                                out_embed_dims=(8, 8, 8)),
                                         non_hierarchical=True),
    "synthetic_preset": HBehaveMAEConfig.from_preset("hbehavemae_synthetic_mice"),
}


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_geometry_counts_equal_the_built_model(name):
    config = CONFIGURATIONS[name]
    backbone = HBehaveMAEBackbone(**config.encoder_kwargs())
    model = HBehaveMAE(backbone, **config.pretrainer_kwargs())
    counts = model.geometry.parameter_counts
    assert backbone.count_params() == counts["encoder"]
    assert model.count_params() == counts["total"]
