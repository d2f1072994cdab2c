"""The model's own distribution over FinGPT's 12 weekly-move bins, and the figures derived from it.

Torch-free: the backends (engine.generation.model, engine.generation.remote_model) compute the probabilities; everything
above them (Slack layouts, the ledger, the track record, the evaluator) reads only this record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.market.weeks import MoveBin

# Every bin, in a fixed order: Up 0-1% … Up >5%, then Down 0-1% … Down >5%.
ALL_BINS: tuple[MoveBin, ...] = tuple(MoveBin(d, k) for d in ("up", "down") for k in range(1, 7))


@dataclass(frozen=True)
class BinDistribution:
    """P(bin) for the 12 bins, keyed by `MoveBin.code` ('U1' … 'U5+', 'D1' … 'D5+'); sums to 1."""

    probabilities: Mapping[str, float]

    def __post_init__(self) -> None:
        codes = {b.code for b in ALL_BINS}
        if set(self.probabilities) != codes:
            raise ValueError(f"a bin distribution needs exactly the 12 bins {sorted(codes)}")
        total = sum(self.probabilities.values())
        if any(p < 0 for p in self.probabilities.values()) or abs(total - 1) > 1e-3:
            raise ValueError(f"bin probabilities must be non-negative and sum to 1 (sum {total:.6f})")

    @classmethod
    def from_codes(cls, values: Mapping[str, float]) -> BinDistribution:
        """From unnormalised non-negative weights per code (renormalised here)."""
        total = sum(values.values())
        if total <= 0:
            raise ValueError("bin weights sum to zero")
        return cls({code: float(values[code]) / total for code in (b.code for b in ALL_BINS)})

    def p(self, move: MoveBin) -> float:
        return self.probabilities[move.code]

    @property
    def p_up(self) -> float:
        return sum(self.probabilities[b.code] for b in ALL_BINS if b.direction == "up")

    @property
    def p_down(self) -> float:
        return 1.0 - self.p_up

    @property
    def most_likely(self) -> MoveBin:
        return max(ALL_BINS, key=lambda b: self.probabilities[b.code])

    @property
    def expected_move(self) -> float:
        """Expected weekly move in percent, from the bins' signed midpoints (±0.5 … ±5.5)."""
        return sum(self.probabilities[b.code] * b.midpoint for b in ALL_BINS)

    def to_json(self) -> dict[str, float]:
        return {code: round(p, 6) for code, p in self.probabilities.items()}


def choose_call(distribution: BinDistribution) -> MoveBin:
    """The bin an answer states, from the distribution the user is shown: the direction the model finds more
    likely (P(up) ≥ 0.5 → up), then that direction's most likely bin. One rule for every backend, so the call and
    the P(up) printed beside it never contradict each other. (Not `most_likely`: with P(up) = 0.6 spread over six
    up bins, the single likeliest bin can still be a down one.)"""
    direction = "up" if distribution.p_up >= 0.5 - 1e-9 else "down"  # 0.5 summed in floats can read 0.4999…
    return max((b for b in ALL_BINS if b.direction == direction), key=distribution.p)


def clear_signal(p_up: float, band: float) -> bool:
    """Whether P(up) is far enough from a coin flip to show an arrow: outside [0.5 - band, 0.5 + band].
    `band` 0 shows an arrow for every call."""
    return abs(p_up - 0.5) > band
