"""The ledger's one table, as a typed SQLAlchemy model. The schema itself is made by the Alembic migrations in
`jobs/ledger/migrations` (a test keeps the two in step); this model is what the code reads and writes through.

Besides every `jobs.ledger.fields.FIELDS` column (typed, so SQL can sum and compare), three instants are kept as
seconds since the epoch, because the reads compare and sort on them: when the forecast was requested (newest-first
order, the "late" rule), when its target week opened (Monday 09:30 New York) and when it counts as closed for
scoring (`engine.evaluation.track.closed_at`). And whether it counts (`engine.evaluation.track.select_counted`), decided
when it is recorded: `late` never changes, `superseded` is set on the earlier ones when a later one arrives.

`TrackWeek` is the track record's own table: one narrow row per (ticker, target week) that has a counted forecast,
holding that forecast's scoring numbers (`jobs.ledger.track_rows`), kept in step by the writers in the same
transaction. The summary and the stored reports sum its columns; they never read `forecasts` row by row.

`TrackReport` is what `/track` reads: the finished report of each scope (all tickers, or one), computed by the
writer after every write that changes it (`jobs.ledger.report_builder`), so the bot's read is one row.

`WatchlistEntry` is one ticker on one channel's watchlist (`/watch`, `jobs.ledger.watchlists`): the names that
channel's digest covers instead of the Dow30.

`Vote` is one person's 👍 or 👎 on one forecast (the buttons under each answer, `jobs.ledger.votes`): at most one per
user and forecast, replaced when they click the other, gone when they click theirs again.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Double, ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Forecast(Base):
    """One recorded forecast, with its outcome once its week has closed and been scored."""

    __tablename__ = "forecasts"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "<job id>:<TICKER>"
    job_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))  # "forecast" or "digest"
    user: Mapped[str | None] = mapped_column(String(64))  # the Slack user who asked; None for the digest
    channel: Mapped[str] = mapped_column(String(64))
    ticker: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[str] = mapped_column(String(16))  # "live" or the date of a dated forecast
    requested_at: Mapped[str] = mapped_column(String(40))  # ISO 8601, UTC, as exported
    cutoff: Mapped[str] = mapped_column(String(40))
    data_as_of: Mapped[str] = mapped_column(String(40))
    target_week: Mapped[str] = mapped_column(String(32))  # "2024-03-10 to 2024-03-17"
    week_start: Mapped[str] = mapped_column(String(10))
    week_end: Mapped[str] = mapped_column(String(10))
    direction: Mapped[str] = mapped_column(String(8))  # "up", "down" or "none"
    magnitude: Mapped[str | None] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(32))
    as_written: Mapped[str] = mapped_column(Text)
    parsed: Mapped[bool] = mapped_column(Boolean)
    problems: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    prompt_hash: Mapped[str] = mapped_column(String(64))
    prompt_hash_of: Mapped[str] = mapped_column(String(8))
    latency_s: Mapped[float] = mapped_column(Double)
    generation_s: Mapped[float | None] = mapped_column(Double)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    new_tokens: Mapped[int | None] = mapped_column(Integer)
    p_up: Mapped[float | None] = mapped_column(Double)
    p_stated: Mapped[float | None] = mapped_column(Double)
    expected_move: Mapped[float | None] = mapped_column(Double)
    bin_probabilities: Mapped[str | None] = mapped_column(Text)  # JSON, {bin code: probability}
    # P(up) outside 0.5 ± SIGNAL_BAND: shown with an arrow (False: "no clear signal"); None without probabilities
    # or from before the flag (migration 0003)
    clear_signal: Mapped[bool | None] = mapped_column(Boolean)
    scored_at: Mapped[str | None] = mapped_column(String(40))
    realized_return: Mapped[float | None] = mapped_column(Double)
    actual_label: Mapped[str | None] = mapped_column(String(32))
    hit: Mapped[bool | None] = mapped_column(Boolean)
    start_close_date: Mapped[str | None] = mapped_column(String(10))
    start_close: Mapped[float | None] = mapped_column(Double)
    end_close_date: Mapped[str | None] = mapped_column(String(10))
    end_close: Mapped[float | None] = mapped_column(Double)
    previous_return: Mapped[float | None] = mapped_column(Double)
    momentum_label: Mapped[str | None] = mapped_column(String(32))
    raw: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text)  # JSON: the analysis sections, news, notes
    requested_epoch: Mapped[float] = mapped_column(Double)
    week_opens_epoch: Mapped[float] = mapped_column(Double)
    week_closes_epoch: Mapped[float] = mapped_column(Double)
    late: Mapped[bool] = mapped_column(Boolean)  # requested at or after its week's Monday open: never counted
    superseded: Mapped[bool] = mapped_column(Boolean, server_default=false())  # a later one counts instead

    __table_args__ = (
        # The reads: newest first (all, or one ticker's: `/track AXP`, `ledger show`), one week's (the summary,
        # the late/superseded rule), one requester's, and what still waits for an outcome.
        Index("ix_forecasts_requested", "requested_epoch"),
        Index("ix_forecasts_ticker_requested", "ticker", "requested_epoch"),
        Index("ix_forecasts_target_week", "week_start", "ticker"),
        Index("ix_forecasts_user", "user", "requested_epoch"),
        Index("ix_forecasts_pending", "week_closes_epoch", postgresql_where=text("scored_at IS NULL"),
              sqlite_where=text("scored_at IS NULL")),
        # The few entries that do not count, listed by the track record without a scan of the ledger.
        # The condition is written as each dialect renders `late OR superseded`, so the planner sees it is this one.
        Index("ix_forecasts_excluded", "ticker", postgresql_where=text("late OR superseded"),
              sqlite_where=text("late = 1 OR superseded = 1")),
    )


class TrackWeek(Base):
    """The counted forecast of one ticker and target week, reduced to the numbers the track record sums.

    Integers 0/1 rather than booleans, so every figure is a plain SUM on both databases. The four systems are the
    model, the constant-down and constant-up baselines and last-week momentum (`engine.evaluation.track`); the constant
    baselines' direction and hit follow from `actual_up`, so only their squared bin errors are stored."""

    __tablename__ = "track_weeks"

    ticker: Mapped[str] = mapped_column(String(16), primary_key=True)
    week_start: Mapped[str] = mapped_column(String(10), primary_key=True)
    week_end: Mapped[str] = mapped_column(String(10))
    target_week: Mapped[str] = mapped_column(String(32))
    # the counted forecast; its row goes with it (PostgreSQL enforces this; SQLite runs without foreign keys)
    entry_id: Mapped[str] = mapped_column(String(200), ForeignKey("forecasts.id", ondelete="CASCADE"))
    requested_epoch: Mapped[float] = mapped_column(Double)  # with entry_id, decides which forecast stands
    scored: Mapped[int] = mapped_column(Integer)  # 1 once its outcome is stored
    actual_up: Mapped[int | None] = mapped_column(Integer)  # the week went up (else down); None until scored
    model_parsed: Mapped[int] = mapped_column(Integer)
    model_up: Mapped[int] = mapped_column(Integer)  # the model said "up" (parsed or not, as the evaluator counts)
    model_down: Mapped[int] = mapped_column(Integer)
    model_correct: Mapped[int | None] = mapped_column(Integer)  # parsed and right about the direction
    model_sq_error: Mapped[float | None] = mapped_column(Double)  # squared bin-midpoint error; None without a bin
    momentum_parsed: Mapped[int | None] = mapped_column(Integer)  # the week before had prices
    momentum_up: Mapped[int | None] = mapped_column(Integer)
    momentum_down: Mapped[int | None] = mapped_column(Integer)
    momentum_correct: Mapped[int | None] = mapped_column(Integer)
    momentum_sq_error: Mapped[float | None] = mapped_column(Double)
    down_sq_error: Mapped[float | None] = mapped_column(Double)
    up_sq_error: Mapped[float | None] = mapped_column(Double)
    p_up: Mapped[float | None] = mapped_column(Double)
    p_bin: Mapped[int | None] = mapped_column(Integer)  # reliability bin of p_up, 0 .. ECE_BINS - 1
    p_sq_error: Mapped[float | None] = mapped_column(Double)  # Brier term, once scored
    p_log_loss: Mapped[float | None] = mapped_column(Double)  # clipped log-loss term, once scored

    __table_args__ = (
        Index("ix_track_weeks_week", "week_start"),  # one week's figures (the summary's "this week")
        Index("ix_track_weeks_entry", "entry_id", unique=True),  # storing an outcome finds its row
    )


class TrackReport(Base):
    """The stored track record of one scope: "*" (all tickers) or a ticker, as `/track [TICKER]` shows it.

    Each write that changes what a scope's report counts bumps its `generation` in the write's own transaction; the
    report computed afterwards records the generation it read (`computed_generation`). So a report left behind by a
    crash between the two is detectably stale (the generations differ), and so is one computed by an older release
    (`version`); `jobs.track_record.rebuild_reports` recomputes those."""

    __tablename__ = "track_reports"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    computed_generation: Mapped[int | None] = mapped_column(Integer)  # None: never computed
    version: Mapped[int | None] = mapped_column(Integer)  # the computing code's REPORT_VERSION
    latest_week: Mapped[str | None] = mapped_column(String(32))  # the newest scored week; None before any
    recorded: Mapped[int | None] = mapped_column(Integer)  # the scope's entries, counted with the report
    report: Mapped[str | None] = mapped_column(Text)  # `TrackReport.to_json`; empty before anything scored
    computed_at: Mapped[str | None] = mapped_column(String(40))  # ISO 8601, UTC


class WatchlistEntry(Base):
    """One ticker on one channel's watchlist, as its data sources spell it in our canonical form (BRK.B)."""

    __tablename__ = "watchlists"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)  # the Slack channel id (C0123ABCD)
    ticker: Mapped[str] = mapped_column(String(16), primary_key=True)
    added_by: Mapped[str | None] = mapped_column(String(64))  # the Slack user who added it
    added_at: Mapped[str] = mapped_column(String(40))  # ISO 8601, UTC: the list is shown in the order added


class Vote(Base):
    """One user's feedback on one recorded forecast: "up" (👍, useful) or "down" (👎, wrong)."""

    __tablename__ = "votes"

    # the forecast voted on; its votes go with it (PostgreSQL enforces this; SQLite runs without foreign keys)
    forecast_id: Mapped[str] = mapped_column(String(200), ForeignKey("forecasts.id", ondelete="CASCADE"),
                                             primary_key=True)
    user: Mapped[str] = mapped_column(String(64), primary_key=True)  # the Slack user who clicked
    vote: Mapped[str] = mapped_column(String(8))  # "up" or "down"
    channel: Mapped[str | None] = mapped_column(String(64))  # where the button was clicked
    voted_at: Mapped[str] = mapped_column(String(40))  # ISO 8601, UTC: the latest click that set it
