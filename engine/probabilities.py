"""The model's own distribution over FinGPT's 12 weekly-move bins, and the figures derived from it.

Torch-free: the backends (engine.model, engine.remote_model) compute the probabilities; everything above them
(Slack layouts, the ledger, the track record, the evaluator) reads only this record.
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
