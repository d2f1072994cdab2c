"""One forecast as it crosses the layers: what the worker posts, keeps in Redis for a retry, returns to RQ and
writes to the ledger, and what the bot's layouts read. Pure data: pydantic and the standard library only, so the
bot can read it without the model stack.

One JSON round trip: `ForecastRecord.to_json()` and `ForecastRecord.from_json()`. Readers use attributes, so a
renamed field fails where it is read, not as a silently missing key. Unknown keys are refused for the same reason.

Versioned because it is stored (a generated answer waits in Redis for a retry, `jobs.tasks.ANSWER_TTL_S`; a job's
result stays in RQ). A record written before `record_version` existed has exactly version 1's shape, with
`evidence`, `probabilities.clear_signal` and `probabilities.signal_band` possibly absent (forecasts made before
those were added): they read as None, and the layouts show such a forecast as it was always shown. A record from a
newer version than this process knows is refused with what to do, rather than half read.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from engine.typed_record import TypedRecord, known_version

RECORD_VERSION = 1

Direction = Literal["up", "down", "none"]
Section = Literal["positive_developments", "potential_concerns"]  # the two lists of claims, by their field names


class _Part(TypedRecord):
    pass


class Prediction(_Part):
    direction: Direction
    magnitude: str | None = Field(description="One of engine.parsing.MAGNITUDES, None when the answer gives none.")
    label: str | None = Field(description='The bin as FinGPT writes it ("up by 1-2%"); None without a bin.')
    as_written: str = Field(description="The prediction line exactly as the model wrote it.")


class BinProbability(_Part):
    code: str = Field(description="engine.market.weeks.MoveBin.code: 'U1' … 'U5+', 'D1' … 'D5+'.")
    p: float


class LikelyBin(BinProbability):
    label: str


class Probabilities(_Part):
    """The model's own distribution over the 12 bins and what follows from it (`engine.forecast.probabilities`)."""

    clear_signal: bool | None = Field(default=None, description="P(up) outside 0.5 ± signal_band; None: older.")
    signal_band: float | None = None
    bins: dict[str, float]
    p_up: float
    p_down: float
    most_likely: LikelyBin
    stated: BinProbability | None = Field(description="The stated bin's probability; None when no bin is stated.")
    expected_move: float = Field(description="Expected weekly move in percent, from the bins' midpoints.")


class NewsRead(_Part):
    """One news item the prompt held (the "Sources" reply lists them)."""

    week: str
    headline: str
    source: str
    date: str
    url: str


class NewsMatch(_Part):
    """One news item that supports a claim, and how well (`engine.evaluation.evidence.Match`)."""

    headline: str
    source: str
    date: str
    url: str
    score: float


class Evidence(_Part):
    """The news read and, for each Positive Development and Concern in order, the items that support it."""

    method: str
    threshold: float
    read: tuple[NewsRead, ...]
    positive_developments: tuple[tuple[NewsMatch, ...], ...]
    potential_concerns: tuple[tuple[NewsMatch, ...], ...]


class NewsWeek(_Part):
    week: str
    available: int
    used: int


class DroppedHeadline(_Part):
    week: str
    headline: str


class ForecastRecord(_Part):
    """One forecast: the model's call and sections, the model's probabilities, and what it was made from."""

    record_version: int = 1  # absent from records written before it: those are version 1
    symbol: str
    target_week: str = Field(description='"2024-03-10 to 2024-03-17": Sunday to Sunday, as FinGPT writes weeks.')
    prediction: Prediction
    probabilities: Probabilities | None = Field(description="None when the backend computed no distribution.")
    positive_developments: tuple[str, ...]
    potential_concerns: tuple[str, ...]
    analysis: str
    parsed: bool
    problems: tuple[str, ...]
    raw: str = Field(default="", description="The answer as written; left out of RQ's job result (it is long).")
    model: str
    cutoff: str
    data_as_of: str
    news: tuple[NewsWeek, ...]
    dropped_news: tuple[DroppedHeadline, ...]
    notes: tuple[str, ...]
    prompt_tokens: int
    new_tokens: int
    seconds: float
    prompt_sha256: str = ""
    evidence: Evidence | None = None

    @field_validator("record_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        return known_version("forecast record", version, RECORD_VERSION)

    @property
    def direction(self) -> Direction:
        return self.prediction.direction

    def claims(self, section: Section) -> tuple[str, ...]:
        return self.positive_developments if section == "positive_developments" else self.potential_concerns

    def claim_evidence(self, section: Section) -> tuple[tuple[NewsMatch, ...], ...] | None:
        """The supporting news of each item of `section`, or None when the record has no evidence for it (stored
        before evidence, or lists and evidence that do not pair up)."""
        if self.evidence is None:
            return None
        matched = getattr(self.evidence, section)
        return matched if len(matched) == len(self.claims(section)) else None
