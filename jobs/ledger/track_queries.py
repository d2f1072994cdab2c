"""The track record's numbers, aggregated in SQL over `track_weeks`: one narrow row per counted ticker-week.

Which forecasts count (`engine.evaluation.track.select_counted`) and what each contributes (`jobs.ledger.track_rows`,
with `engine.evaluation.track_sums`' terms) are settled when a forecast is recorded or scored, so reading is plain
sums of stored columns:
- per ticker, every system's hit, parse, squared-error, confusion and direction counts (the inputs of
  `engine.evaluation.metrics`' per-system figures), plus the ticker's per-week hits packed into one string (the
  week-clustered bootstrap's input, without one row per forecast);
- per week, the hits and counts (the chart's series, the cumulative bootstrap); the latest week in full;
- per reliability bin of P(up): count, sum of P, ups, squared error and log loss;
- the forecasts that do not count, from the small `late OR superseded` index of `forecasts`.

These are `engine.evaluation.track_sums.TrackSums`, the sums `engine.evaluation.track.score_track` gathers in Python
from entries in memory; `engine.evaluation.track_scores.score_report` turns either into the report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Integer, Select, String, and_, cast, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from engine.evaluation.track_report import SYSTEMS
from engine.evaluation.track_sums import TrackSums
from engine.market.weeks import Week
from jobs.ledger.columns import standing
from jobs.ledger.database import Ledger
from jobs.ledger.models import Forecast, TrackWeek

_WEEK_CODE = len("2024-03-10") + 2  # week_start, then the week's hits as two digits (see _hit_code)


def _system_sums(t) -> list:
    """Every system's `engine.evaluation.track_sums.SUMS`, labelled `<system>_<sum>`, as `track_sums.system_sums`
    adds them up in Python. The constant baselines' follow from the count and the ups
    (they always answer, one way; their hit is the week's direction), and each confusion count from its
    direction count less the other: both databases compute each distinct aggregate once per query, so this
    halves the work per row."""
    n, ups = func.count(), func.sum(t.actual_up)
    zero = literal_column("0", Integer)
    columns = {"model": (t.model_parsed, t.model_correct, t.model_up, t.model_down, t.model_sq_error),
               "momentum": (t.momentum_parsed, t.momentum_correct, t.momentum_up, t.momentum_down,
                            t.momentum_sq_error)}
    sums: dict[str, dict[str, ColumnElement]] = {}
    for key, (parsed, correct, up, down, sq) in columns.items():
        tp, fn = func.sum(up * t.actual_up), func.sum(down * t.actual_up)
        sums[key] = {"parsed": func.sum(parsed), "correct": func.sum(correct), "sq": func.sum(sq),
                     "sq_n": func.count(sq), "tp": tp, "tn": func.sum(down) - fn, "fp": func.sum(up) - tp,
                     "fn": fn, "up": func.sum(up), "down": func.sum(down)}
    sums["down"] = {"parsed": n, "correct": n - ups, "sq": func.sum(t.down_sq_error), "sq_n": n, "tp": zero,
                    "tn": n - ups, "fp": zero, "fn": ups, "up": zero, "down": n}
    sums["up"] = {"parsed": n, "correct": ups, "sq": func.sum(t.up_sq_error), "sq_n": n, "tp": ups,
                  "tn": zero, "fp": n - ups, "fn": zero, "up": n, "down": zero}
    names = {"sq": "sq_error"}
    return [(func.coalesce(expression, 0.0) if name == "sq" else expression).label(f"{key}_{names.get(name, name)}")
            for key in SYSTEMS for name, expression in sums[key].items()]


def _hit_code(t) -> ColumnElement:
    """One ticker-week as fixed-width text: its week_start, then 10 + the four systems' hits as bits (model 1,
    down 2, up 4, momentum 8). Concatenated per ticker in any order; `ticker_hits` sorts them by week."""
    bits = t.model_correct + 2 * (1 - t.actual_up) + 4 * t.actual_up + 8 * t.momentum_correct + 10
    return t.week_start + cast(bits, String)


def ticker_hits(codes: str) -> np.ndarray:
    """The (weeks × systems) 0/1 hits of one ticker, oldest week first, from its concatenated `_hit_code`s."""
    raw = np.frombuffer(codes.encode("ascii"), dtype=np.uint8).reshape(-1, _WEEK_CODE)
    order = np.argsort(raw[:, :_WEEK_CODE - 2].copy().view(f"S{_WEEK_CODE - 2}").ravel(), kind="stable")
    digits = raw[order, _WEEK_CODE - 2:].astype(np.int64) - ord("0")
    bits = digits[:, 0] * 10 + digits[:, 1] - 10
    return ((bits[:, None] >> np.arange(len(SYSTEMS))) & 1).astype(float)


def _rows(conn, query: Select) -> list[dict]:
    result = conn.execute(query)
    names = list(result.keys())
    return [dict(zip(names, row, strict=True)) for row in result]


def excluded_entries(conn, *, ticker: str | None = None) -> dict[str, str]:
    """{entry id: why not counted} of every forecast (of `ticker`) that does not count."""
    f = Forecast
    query = select(f.id, f.late).where(or_(f.late, f.superseded))  # the partial index's own condition
    if ticker:
        query = query.where(f.ticker == ticker)
    return {entry_id: standing(late, True) for entry_id, late in conn.execute(query).all()}


def track_sums(ledger: Ledger, *, latest: Week, ticker: str | None = None) -> TrackSums:
    """Every aggregate of the track record up to and including the week `latest`, of `ticker` when given."""
    t = TrackWeek
    mine = [t.ticker == ticker] if ticker else []
    scored = and_(t.scored == 1, t.week_start <= latest.start.isoformat(), *mine)
    sums = _system_sums(t)
    correct = [column for column in sums if column.name.endswith("_correct")]
    n = func.count().label("n")
    p = t.p_up

    with ledger.connect() as conn:
        by_ticker = _rows(conn, select(t.ticker, n, *sums, func.aggregate_strings(_hit_code(t), "").label("hits"))
                          .where(scored).group_by(t.ticker).order_by(t.ticker))
        by_week = _rows(conn, select(t.week_start, t.week_end, t.target_week, n, *correct).where(scored)
                        .group_by(t.week_start, t.week_end, t.target_week).order_by(t.week_start))
        this_week = _rows(conn, select(n, *sums).where(scored, t.week_start == latest.start.isoformat()))
        calibration = _rows(conn, select(
            t.p_bin.label("bin"), n, func.sum(p).label("sum_p"), func.sum(t.actual_up).label("ups"),
            func.sum(t.p_sq_error).label("sq_error"), func.sum(t.p_log_loss).label("log_loss"),
        ).where(scored, p.is_not(None)).group_by(t.p_bin).order_by(t.p_bin))
        unparsed = [{"entry_id": i, "symbol": s, "period": w} for i, s, w in conn.execute(
            select(t.entry_id, t.ticker, t.target_week).where(scored, t.model_parsed == 0)
            .order_by(t.week_start, t.ticker)).all()]
        pending = conn.scalar(select(func.count()).select_from(t).where(t.scored == 0, *mine))
        excluded = excluded_entries(conn, ticker=ticker)
    for row in by_ticker:
        row["hits"] = ticker_hits(row["hits"])
    return TrackSums(excluded=excluded, pending=pending or 0, by_ticker=by_ticker, by_week=by_week,
                     this_week=this_week[0] if this_week and this_week[0]["n"] else None, unparsed=unparsed,
                     calibration=calibration)


def latest_scored_week(ledger: Ledger, *, ticker: str | None = None) -> str | None:
    """The `target_week` of the newest week any entry (counted or not) has an outcome for; None before any."""
    query = select(Forecast.target_week).where(Forecast.realized_return.is_not(None))
    if ticker:
        query = query.where(Forecast.ticker == ticker)
    with ledger.connect() as conn:
        return conn.scalar(query.order_by(Forecast.week_start.desc()).limit(1))


def statuses_of(ledger: Ledger, entry_ids: Sequence[str]) -> dict[str, str]:
    """{entry id: "counted", LATE or SUPERSEDED} for these entries."""
    if not entry_ids:
        return {}
    f = Forecast
    with ledger.connect() as conn:
        found = conn.execute(select(f.id, f.late, f.superseded).where(f.id.in_(list(entry_ids)))).all()
    return {i: standing(late, superseded) for i, late, superseded in found}
