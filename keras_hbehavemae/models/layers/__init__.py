"""Keras layers of hBehaveMAE."""

from keras_hbehavemae.models.layers.attention import MaskUnitAttention
from keras_hbehavemae.models.layers.decoder import MAEDecoder
from keras_hbehavemae.models.layers.dense_rows import FusedBiasDense
from keras_hbehavemae.models.layers.fusion import MultiScaleFusionHead
from keras_hbehavemae.models.layers.hiera_block import HieraBlock
from keras_hbehavemae.models.layers.patch_embedding import PatchEmbedding, PositionEmbedding
from keras_hbehavemae.models.layers.token_order import TokenPermute, permute_tokens

__all__ = [
    "FusedBiasDense",
    "HieraBlock",
    "MAEDecoder",
    "MaskUnitAttention",
    "MultiScaleFusionHead",
    "PatchEmbedding",
    "PositionEmbedding",
    "TokenPermute",
    "permute_tokens",
]
