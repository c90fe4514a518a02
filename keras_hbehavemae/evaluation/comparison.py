"""Paired comparisons of probe results across seeds: is a cell better than its control?

Two results of one task probed with the same seeds (every column of a `ProbeTable` is)
were fitted and scored on the same splits, so their seed scores pair up. The gain is
the mean over seeds of (cell − control), signed so that positive is better (for MSE,
control − cell). A cell differs from its control when the gain exceeds `margin` (2)
times the largest of three seed standard deviations: of the per-seed gains, of the
cell's scores and of the control's scores. Taking the largest keeps a mark honest both
when the pairing removes the shared split noise and when it does not.

Example:

>>> from keras_hbehavemae.evaluation.protocol import ProbeResult
>>> def result(scores):
...     return ProbeResult("t", "discrete", "macro_f1", 1.0, "kfold", 4,
...                        {1.0: dict(zip((1, 2, 3), scores))}, {1.0: {}}, {1.0: 0.0}, 9,
...                        {}, 0.25)
>>> comparison = compare(result([0.50, 0.52, 0.51]), result([0.40, 0.41, 0.39]))
>>> round(comparison.gain, 3), comparison.verdict
(0.11, 'better')
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_hbehavemae.evaluation.protocol import ProbeResult, sample_std

#: A difference counts when it exceeds this many seed standard deviations.
MARGIN = 2.0
#: Table marks of `PairedComparison.verdict`.
MARKS = {"better": "▲", "worse": "▼", "same": ""}


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """A cell against its control, paired by seed.

    Attributes:
        gain: mean over seeds of the improvement over the control (positive = better).
        gain_spread: sample standard deviation of the per-seed gains.
        threshold: `margin` × the largest of `gain_spread` and the two seed spreads.
        per_seed: seed → gain.
    """

    gain: float
    gain_spread: float
    threshold: float
    per_seed: dict[int, float]

    @property
    def verdict(self) -> str:
        """"better" or "worse" beyond `threshold`, else "same" (also when undecidable)."""
        if not (np.isfinite(self.gain) and np.isfinite(self.threshold)):
            return "same"
        if self.gain > self.threshold:
            return "better"
        return "worse" if self.gain < -self.threshold else "same"

    def to_dict(self) -> dict:
        return {"gain": self.gain, "gain_spread": self.gain_spread, "threshold": self.threshold,
                "verdict": self.verdict, "per_seed": {str(k): v for k, v in self.per_seed.items()}}


def compare(result: ProbeResult, control: ProbeResult, margin: float = MARGIN
            ) -> PairedComparison:
    """`result` against `control` (same task and seeds), paired by seed (see the module)."""
    if result.seeds != control.seeds:
        raise ValueError(f"cannot pair results of different seeds: {result.seeds} and "
                         f"{control.seeds}")
    if result.metric != control.metric:
        raise ValueError(f"cannot compare {result.metric} with {control.metric}")
    sign = 1.0 if result.higher_is_better else -1.0
    gains = sign * (result.seed_values() - control.seed_values())
    finite = gains[np.isfinite(gains)]
    gain = float(np.mean(finite)) if len(finite) else float("nan")
    gain_spread = sample_std(gains)
    threshold = margin * max(gain_spread, result.spread, control.spread)
    return PairedComparison(gain, gain_spread, float(threshold),
                            dict(zip(result.seeds, gains.tolist(), strict=True)))
