"""`forecaster scheduler`: the weekly digest and evaluation summary, enqueued on time (New York)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.cli.common import app, err, fail, load_settings, out, wait_for_redis

if TYPE_CHECKING:
    import redis

    from forecaster.settings import Settings

REDIS_WAIT_S = 30  # at start-up Redis may still be coming up (compose starts services together)


@app.command()
def scheduler(
    next_: Annotated[int | None, typer.Option("--next", min=1, max=52, metavar="N",
                                              help="Print the next N fire times of each schedule and exit "
                                                   "(needs no Redis).")] = None,
    after: Annotated[str | None, typer.Option(help="With --next: list from this New York date (YYYY-MM-DD) "
                                                   "instead of now.")] = None,
    fire: Annotated[str | None, typer.Option(metavar="digest|summary",
                                             help="Enqueue this kind's jobs for its latest slot now and exit "
                                                  "(a missed post; already-enqueued channels are left alone).")]
        = None,
    check: Annotated[bool, typer.Option("--check", help="Healthcheck: exit 0 when a scheduler beat in the last "
                                                        "two minutes, 1 otherwise.")] = False,
) -> None:
    """Enqueue the Dow30 digest (DIGEST_SCHEDULE, default Monday 08:00 New York) and the evaluation summary
    (SUMMARY_SCHEDULE, default Saturday 10:00) for every DIGEST_CHANNELS channel; runs until Ctrl-C or SIGTERM.
    Run exactly one; a second one by mistake cannot post twice (the job ids dedupe)."""
    from jobs.scheduler import KINDS, Plan, heartbeat_age, next_fire_times

    settings = load_settings()
    plan = Plan.from_settings(settings)
    if next_ is not None:
        start = _parse_after(after)
        for kind in KINDS:
            out.print(f"{kind}: {plan.schedule(kind)} New York → {', '.join(plan.channels) or '(no DIGEST_CHANNELS)'}",
                      highlight=False, markup=False)
            for moment in next_fire_times(plan.schedule(kind), after=start, n=next_):
                out.print(f"  {moment:%a %Y-%m-%d %H:%M %Z}   {moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC",
                          highlight=False, markup=False)
        return
    if after is not None:
        fail("--after goes with --next")
    if check:
        age = heartbeat_age(_connect(settings, wait_s=0))
        if age is None:
            err.print("scheduler: no heartbeat (not running, or stopped)", highlight=False)
            raise typer.Exit(1)
        out.print(f"scheduler: last beat {age:.0f}s ago", highlight=False)
        return
    problems = []
    if not settings.redis_url:
        problems.append("REDIS_URL is unset (the scheduler enqueues jobs in Redis), e.g. redis://localhost:6379/0")
    if not plan.channels:
        problems.append("DIGEST_CHANNELS is empty: give the Slack channel ids that get the digest and the summary, "
                        "comma-separated, e.g. DIGEST_CHANNELS=C0123ABCD")
    if fire is not None and fire not in KINDS:
        problems.append(f"--fire {fire!r}: give one of {', '.join(KINDS)}")
    if problems:
        fail("; ".join(problems))
    logging.getLogger("jobs.scheduler").setLevel(logging.INFO)  # each enqueue and its outcome, without -v
    if fire is not None:
        from jobs.scheduler import fire as fire_now

        outcomes = fire_now(_connect(settings, wait_s=0), fire, plan=plan)
        for channel, outcome in outcomes.items():
            status = f"{outcome.status} (job {outcome.job_id})" if outcome else "NOT enqueued (Redis failed)"
            out.print(f"{fire} for {channel}: {status}", highlight=False, markup=False)
        if any(outcome is None for outcome in outcomes.values()):
            raise typer.Exit(1)
        return
    from jobs.scheduler import run

    run(plan, _connect(settings, wait_s=REDIS_WAIT_S))


def _parse_after(text: str | None) -> dt.datetime:
    from engine.market.weeks import NEW_YORK

    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        fail(f"--after {text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-03-01")
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=NEW_YORK)


def _connect(settings: Settings, *, wait_s: float) -> redis.Redis:
    """A Redis connection that answers, waiting up to `wait_s` for it (`wait_for_redis`)."""
    import redis

    if not settings.redis_url:
        fail("REDIS_URL is unset (the scheduler enqueues jobs in Redis), e.g. redis://localhost:6379/0")
    conn = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    return wait_for_redis(conn, settings.redis_url, wait_s=wait_s)
