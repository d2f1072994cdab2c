"""Every Redis key, job id and TTL the jobs layer uses, in one place, and the id of a ledger entry.

Job ids are the dedupe mechanism: the same request gets the same id, and RQ's unique enqueue (an atomic Lua
check) refuses a second job with an id that exists. A live forecast's id names the moment its dedupe window opened:
the first ask opens a window of LIVE_DEDUPE_WINDOW_S (`live_window_key`, held in Redis), and the same live request
asked while it is open gets the same id, so asking again a minute later returns the running job or its result,
wherever the clock's 10-minute marks fall, while asking next hour forecasts afresh; a dated forecast reads fixed
data, so its id has no window. Slack's own retries carry the same request, hence the same id.
What asking again does to a request that ended, and why delivery state is keyed by attempt: jobs/attempts.py.

The forecast ledger lives in SQL (`jobs.ledger`); `ledger_entry_id` is its entries' id. The `ledger_*_key` functions
name the ledger's old Redis layout, which nothing writes any more: only `forecaster ledger migrate` reads them
(`jobs.ledger.redis_layout`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
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
    """One id per (ticker, date, options, channel); a live request's names `now`, the moment its dedupe window
    opened (the job client reads the open window's id from `live_window_key`)."""
    when = as_of.isoformat() if as_of else f"live{int(now.timestamp() * 1000)}"
    options = f"{weeks}w{'f' if financials else 'nf'}"
    return "_".join(("forecast", _safe(ticker), _safe(when), options, _safe(channel)))


def live_window_key(*, ticker: str, weeks: int, financials: bool, channel: str) -> str:
    """Held LIVE_DEDUPE_WINDOW_S from a live request's first ask, holding the job id its asks get meanwhile."""
    options = f"{weeks}w{'f' if financials else 'nf'}"
    return f"{PREFIX}:live:" + "_".join((_safe(ticker), options, _safe(channel)))


def digest_job_id(*, channel: str, as_of: dt.date, symbols: list[str] | tuple[str, ...] | None = None) -> str:
    """One digest per channel and date; a watchlist's (`symbols`) is named by its names too, so a list changed
    since gets a new digest while the same list asked again is the same job."""
    parts = ["digest", as_of.isoformat(), _safe(channel)]
    if symbols:
        parts.append("w" + hashlib.sha256(",".join(symbols).encode()).hexdigest()[:10])
    return "_".join(parts)


def watch_job_id(*, channel: str, user: str, now: dt.datetime) -> str:
    """One `/watch add` (each ask is its own request: adding a name twice only says it is already there)."""
    return "_".join(("watch", _safe(channel), _safe(user), str(int(now.timestamp() * 1_000_000))))


def iso_week_tag(day: dt.date) -> str:
    """`2026-W09`: the ISO week a scheduled job belongs to (ids from it make a second scheduler harmless)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def summary_job_id(*, channel: str, week_ending: dt.date) -> str:
    """One evaluation summary per channel and closed week (the Saturday after the week's close names it)."""
    return "_".join(("summary", iso_week_tag(week_ending), _safe(channel)))


def retrain_job_id(*, now: dt.datetime) -> str:
    """A retrain per second at most (two clicks at once are one); a second `/retrain` while one runs is refused by
    the client, not by the id, so a retrain asked for after a dead trainer's, the same minute, is a new job."""
    return f"retrain_{now.strftime('%Y%m%dT%H%M%S')}"


def served_model_key() -> str:
    """Hash the workers write at start-up and on every adapter switch: model, adapter version, since."""
    return f"{PREFIX}:served"


def retrain_progress_key() -> str:
    """Hash the trainer rewrites while a retrain runs (job, phase, step, loss, ETA), for `/forecast-status`."""
    return f"{PREFIX}:retrain:progress"


def last_run_key(kind: str) -> str:
    """When the last `digest` / `summary` was posted (ISO timestamp), for `/status`."""
    return f"{PREFIX}:last:{kind}"


def home_chart_key() -> str:
    """The weekly summary's newest chart as Slack holds it (JSON: file id, title), shown in App Home."""
    return f"{PREFIX}:home-chart"


# -- an attempt's delivery state: keyed by the attempt (`jobs.attempts.attempt_of`), never by the request, so a
# new attempt of the same request starts with none of it (jobs/attempts.py has the state machine) -------------------


def progress_marker(attempt: str) -> str:
    """The ts of an attempt's progress message in its channel, so a retry of it edits the same message."""
    return f"{PREFIX}:progress:{attempt}"


def response_url_uses(attempt: str) -> str:
    """How many times an attempt used its request's response_url (Slack allows 5 within 30 minutes)."""
    return f"{PREFIX}:response-url:{attempt}"


def posted_marker(attempt: str, message: str) -> str:
    """Claimed before an attempt posts `message` and kept after, so a retry of it never posts it twice."""
    return f"{PREFIX}:posted:{attempt}:{message}"


def answer_key(attempt: str) -> str:
    """An attempt's generated answer, kept until it is posted, so a retry after a Slack failure posts it again
    instead of running the model again."""
    return f"{PREFIX}:answer:{attempt}"


def channel_pace_key(channel: str) -> str:
    """The shared sliding window that keeps posts to one channel at about one a second."""
    return f"{PREFIX}:pace:slack:{channel}"


# -- the bot's admission checks ------------------------------------------------------------------------------------

# A redelivered slash command (same trigger_id) is recognised for this long.
DELIVERY_TTL_S = 30 * 60


def delivery_key(trigger_id: str) -> str:
    """The job one slash-command delivery queued, so a redelivery is answered from it and enqueues nothing."""
    return f"{PREFIX}:delivery:{_safe(trigger_id)}"


def user_pending_key(user: str) -> str:
    """Sorted set of the job ids one person's requests run under, scored by when each was admitted (ms): what the
    per-person cap counts (`jobs.gates.admit`); ids whose job is no longer pending are dropped as it counts."""
    return f"{PREFIX}:pending:{_safe(user)}"


def on_demand_digest_key(channel: str) -> str:
    """Held (with a TTL) while a channel may not ask for another on-demand digest."""
    return f"{PREFIX}:digest-cooldown:{_safe(channel)}"


# -- the forecast ledger ----------------------------------------------------------------------------------------


def ledger_entry_id(*, job_id: str, ticker: str) -> str:
    """One ledger entry per (job, ticker): a retried job finds its entry instead of writing a second one."""
    return f"{job_id}:{ticker}"


# -- the ledger's old Redis layout (no TTL), from releases before the SQL ledger: nothing writes it any more; read
# only by `forecaster ledger migrate` (jobs.ledger.redis_layout, which holds that release's writer for the tests) ----


def ledger_entry_key(entry_id: str) -> str:
    """The hash holding one recorded forecast (and its outcome once its week has closed)."""
    return f"{PREFIX}:ledger:entry:{entry_id}"


def ledger_index_key() -> str:
    """Sorted set of every entry id, scored by when the forecast was requested (epoch seconds)."""
    return f"{PREFIX}:ledger:by-time"


def ledger_ticker_index_key(ticker: str) -> str:
    """Sorted set of one ticker's entry ids, scored by when the forecast was requested."""
    return f"{PREFIX}:ledger:ticker:{ticker}"


def ledger_pending_key() -> str:
    """Sorted set of entries still waiting for an outcome, scored by when their target week counts as closed."""
    return f"{PREFIX}:ledger:pending"


# The scheduler rewrites its heartbeat every SCHEDULER_HEARTBEAT_EVERY_S; the key lapses after the TTL, so a dead
# or hung scheduler is visible within two minutes (the healthcheck tests that the key exists).
SCHEDULER_HEARTBEAT_EVERY_S = 30
SCHEDULER_HEARTBEAT_TTL_S = 120


def scheduler_heartbeat_key() -> str:
    """When the scheduler last beat (ISO timestamp); absent when it is down or stopped cleanly."""
    return f"{PREFIX}:scheduler:hb"


# A worker's own heartbeat, written by a thread (RQ's SimpleWorker sends none while a job runs, and a retrain runs
# for hours): one key per worker process, lapsing when the process dies or hangs.
WORKER_HEARTBEAT_EVERY_S = 30
WORKER_HEARTBEAT_TTL_S = 120


def worker_heartbeat_key(host: str, pid: int | str = "*") -> str:
    """`*` for pid: the pattern matching every worker on that host."""
    return f"{PREFIX}:worker:hb:{host}:{pid}"


# A running job's booking in RQ's started-job registry (its execution) lapses this long after its worker's last
# beat, which a thread sends every EXECUTION_HEARTBEAT_EVERY_S while the job runs: three beats may be missed (a
# Redis hiccup) before a live job is taken for abandoned, and a dead worker's job is found within about half a
# minute (jobs.worker.KeptAliveWorker).
EXECUTION_HEARTBEAT_EVERY_S = 10
EXECUTION_HEARTBEAT_TTL_S = 30
