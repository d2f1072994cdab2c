"""Every Redis key, job id and TTL the jobs layer uses, in one place.

Job ids are the dedupe mechanism: the same request gets the same id, and RQ's unique enqueue (an atomic Lua
check) refuses a second job with an id that exists. A live forecast's id carries a 10-minute bucket, so asking
again a minute later returns the running job or its result, while asking next hour forecasts afresh; a dated
forecast reads fixed data, so its id has no bucket. Slack's own retries carry the same request, hence the same id.
"""

from __future__ import annotations

import datetime as dt
import re

PREFIX = "fc"
LIVE_DEDUPE_WINDOW_S = 10 * 60
# Results and failures stay readable this long after a job ends (dedupe answers from them meanwhile).
RESULT_TTL_S = 24 * 3600
FAILURE_TTL_S = 7 * 24 * 3600

_UNSAFE = re.compile(r"[^A-Za-z0-9-]")  # RQ job ids: letters, digits, dashes, underscores


def _safe(part: str) -> str:
    return _UNSAFE.sub("-", part)


def forecast_job_id(*, ticker: str, as_of: dt.date | None, weeks: int, financials: bool, channel: str,
                    now: dt.datetime) -> str:
    """One id per (ticker, date or live 10-minute bucket, options, channel)."""
    when = as_of.isoformat() if as_of else f"live{int(now.timestamp()) // LIVE_DEDUPE_WINDOW_S}"
    options = f"{weeks}w{'f' if financials else 'nf'}"
    return "_".join(("forecast", _safe(ticker), _safe(when), options, _safe(channel)))


def digest_job_id(*, channel: str, as_of: dt.date) -> str:
    return "_".join(("digest", as_of.isoformat(), _safe(channel)))


def iso_week_tag(day: dt.date) -> str:
    """`2026-W09`: the ISO week a scheduled job belongs to (ids from it make a second scheduler harmless)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def summary_job_id(*, channel: str, week_ending: dt.date) -> str:
    """One evaluation summary per channel and closed week (the Saturday after the week's close names it)."""
    return "_".join(("summary", iso_week_tag(week_ending), _safe(channel)))


def retrain_job_id(*, now: dt.datetime) -> str:
    """A retrain per minute at most; a second `/retrain` while one runs is refused by the client, not by the id."""
    return f"retrain_{now.strftime('%Y%m%dT%H%M')}"


def served_model_key() -> str:
    """Hash the workers write at start-up and on every adapter switch: model, adapter version, since."""
    return f"{PREFIX}:served"


def last_run_key(kind: str) -> str:
    """When the last `digest` / `summary` was posted (ISO timestamp), for `/status`."""
    return f"{PREFIX}:last:{kind}"


def progress_marker(job_id: str) -> str:
    """The channel and ts of a job's progress message, so a retried job edits the same message."""
    return f"{PREFIX}:progress:{job_id}"


def response_url_uses(job_id: str) -> str:
    """How many times a request's response_url was used (Slack allows 5 within 30 minutes)."""
    return f"{PREFIX}:response-url:{job_id}"


def posted_marker(job_id: str, message: str) -> str:
    """Claimed before a job posts `message` and kept after, so a retried job never posts it twice."""
    return f"{PREFIX}:posted:{job_id}:{message}"


def channel_pace_key(channel: str) -> str:
    """The shared sliding window that keeps posts to one channel at about one a second."""
    return f"{PREFIX}:pace:slack:{channel}"
