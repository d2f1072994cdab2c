"""What the bot reads from the ledger, as typed records: `/track`'s view and the App Home's record under it
(`TrackView`, from `jobs.track_reads.track_record`: the stored report, the newest forecasts as `RecentForecast`, the
`Feedback`), the 👍/👎 tally (`Feedback`, `jobs.ledger.votes.tally`, which the weekly summary shows too) and each
watched name's last call (`LastCall`, `jobs.ledger.watchlists.last_calls`: `/watch` and the App Home).

Pydantic and the standard library only, with the light `TrackReport` and `Direction`: the bot imports these and must
stay off the numeric stack (pyproject.toml's "light-bot" contract). Frozen, and unknown fields are refused: readers
use attributes, so a renamed field fails where it is built or read instead of reading as a missing key. One JSON
round trip (`to_json` / `from_json`), as the other records that cross a layer.

Not versioned, unlike a forecast record, a track report or a job result: none of these is stored. Each is read
fresh from SQL for one answer and dropped, so a process only ever reads the shape it built itself.
"""

from __future__ import annotations

from pydantic import Field

from engine.evaluation.track_report import TrackReport  # light: pydantic only
from engine.forecast_record import Direction  # light: pydantic only
from engine.typed_record import TypedRecord


class _View(TypedRecord):
    pass


class Feedback(_View):
    """The 👍 ("up": useful) and 👎 ("down": wrong) people gave on every forecast (of a ticker): the votes in all, how
    many people and forecasts they came from, and, per kind of vote, how many of the forecasts voted on are scored
    and how many of those hit."""

    up: int
    down: int
    voters: int
    forecasts: int
    up_scored: int
    up_hits: int
    down_scored: int
    down_hits: int

    @property
    def voted(self) -> bool:
        """Someone voted."""
        return bool(self.up or self.down)


class RecentForecast(_View):
    """One of the newest recorded forecasts as `/track` lists it: the call, its outcome once scored (None while
    pending), whether the track record counts it (and why not), and its votes."""

    id: str
    ticker: str
    target_week: str
    requested_at: str
    source: str  # jobs.ledger.columns.SOURCES: "forecast" or "digest"
    parsed: bool
    direction: Direction
    label: str | None
    as_written: str
    clear_signal: bool | None = Field(description="False: shown without an arrow, as 'no clear signal'; None: no "
                                                  "probabilities, or recorded before the flag.")
    actual_label: str | None
    realized_return: float | None
    hit: bool | None
    counted: bool
    why_not_counted: str | None  # the track report's LATE or SUPERSEDED; None when counted
    votes_up: int
    votes_down: int


class TrackView(_View):
    """What `/track [TICKER]` shows (and the App Home under the watchlists): the scope's stored report (None when
    nothing is scored yet, or the stored one is not readable), how many forecasts are recorded, the newest ones, and
    the feedback."""

    ticker: str | None  # None: all tickers
    recorded: int
    report: TrackReport | None
    recent: tuple[RecentForecast, ...]  # newest first
    feedback: Feedback


class LastCall(_View):
    """A ticker's newest recorded forecast (any channel, `/forecast` or a digest), as `/watch` and the App Home list
    it beside the name."""

    ticker: str
    requested_at: str
    target_week: str
    direction: Direction
    label: str | None
    parsed: bool
    p_up: float | None
    clear_signal: bool | None  # as RecentForecast's
    actual_label: str | None
    hit: bool | None
