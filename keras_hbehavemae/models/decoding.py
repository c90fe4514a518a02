"""Decoding strategies: how the decoder's input is formed from the encoder's levels.

The published model has two (the paper's multi-scale fusion, Sec. 3.2):

- "multi": every level below the last passes its kept-unit windows through a fusion head
  (a Dense over the flattened window) and the results are added to the last level;
- "single": the last level alone. The fusion heads and the lower levels' projections then
  get no gradient. PyTorch's AdamW leaves such parameters alone, but Keras under JAX would
  hand the optimizer zeros and weight decay would shrink them, so they are frozen.

A strategy is behaviour: the pretrainer, the data-flow report and the FLOP counts ask it
what it does instead of comparing names. A new strategy is one new entry in `STRATEGIES`.

Example:

>>> strategy("single").trains_fusion_heads
False
>>> sorted(STRATEGIES)
['multi', 'single']
"""

from __future__ import annotations

import dataclasses

from keras import ops


@dataclasses.dataclass(frozen=True)
class DecodingStrategy:
    """One way of forming the decoder input.

    Attributes:
        name: the configuration value (`decoding_strategy`).
        uses_fusion_heads: the fusion heads contribute to the decoder input (and are
            trained); otherwise they and the lower levels' projections are frozen.
        description: one line for reports.
    """

    name: str
    uses_fusion_heads: bool
    description: str

    @property
    def trains_fusion_heads(self) -> bool:
        return self.uses_fusion_heads

    @property
    def trains_lower_projections(self) -> bool:
        return self.uses_fusion_heads

    def fuse(self, levels, fusion_heads, fused_levels):
        """Masked levels → the decoder input `[B, K, C_last]` before its LayerNorm.

        Args:
            levels: masked level maps, level k `[B, K, m_t, m_h, m_w, C_k]`.
            fusion_heads: one head per entry of `fused_levels`.
            fused_levels: the indices of the levels that have a fusion head.
        """
        last = levels[-1]
        kept, channels = last.shape[1], last.shape[-1]
        latent = ops.reshape(last, (-1, kept, channels))  # [B, K, 1, 1, 1, C] -> [B, K, C]
        if not self.uses_fusion_heads:
            return latent
        fused = None
        for level, head in zip(fused_levels, fusion_heads, strict=True):
            contribution = head(levels[level])  # [B, K, C]
            fused = contribution if fused is None else fused + contribution
        return latent if fused is None else fused + latent


STRATEGIES = {
    strategy.name: strategy for strategy in (
        DecodingStrategy("multi", True, "fusion heads of every lower level added to the last"),
        DecodingStrategy("single", False, "the last level only; fusion heads frozen"),
    )
}


def strategy(name: str) -> DecodingStrategy:
    """The strategy called `name` (one of `STRATEGIES`)."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"decoding_strategy: {name!r} is invalid: must be one of "
                         f"{tuple(STRATEGIES)}") from None
