"""Everything the bot says at once (the ack of a slash command), as pure functions returning the ack payload.

Acks are ephemeral: only the person who typed the command sees them, errors included. The answers themselves
(forecasts, digests, retrain progress) are posted by the worker. No exception's text is ever put in an ack (it may
name a server path or a host): errors say what happened and what to do, and the log has the rest. Every payload
stays within Slack's limits: text at most 3,000 characters, at most 50 blocks, section texts at most 3,000, header
texts at most 150.
"""

from __future__ import annotations

import datetime as dt
import re

from bot.mrkdwn import code, inline

TEXT_LIMIT = 3000
SECTION_LIMIT = 2900
LIST_LIMIT = 15  # lines of a list (workers, your jobs) before "… and N more"
USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")  # a Slack user id, shown as a mention; anything else as text

USAGE = {
    "/forecast": "/forecast TICKER [YYYY-MM-DD] [weeks=1-4] [no-financials]  ·  /forecast dow30 [YYYY-MM-DD]",
    "/digest": "/digest [YYYY-MM-DD]",
    "/retrain": "/retrain [epochs=N] [force]",
    "/forecast-status": "/forecast-status",
    "/track": "/track [TICKER]",
    "/watch": "/watch [add|remove TICKER…]",
}

HELP = {
    "/forecast": (
        "*/forecast* — the model's outlook for one stock's coming week, posted in this channel.\n"
        "`/forecast TICKER [YYYY-MM-DD] [weeks=1-4] [no-financials]`\n"
        "• `TICKER`: a symbol such as AXP, MSFT, BRK.B or DOW (Dow Inc.); `$HELP` for a ticker spelled like "
        "`help`\n"
        "• `YYYY-MM-DD`: forecast as of the end of that day, for the week after it (default: now)\n"
        "• `weeks=N`: past weeks of news and prices the model reads (default 3)\n"
        "• `no-financials`: leave the latest quarterly financials out (`financials`, the default, keeps them)\n"
        "`/forecast dow30 [YYYY-MM-DD]` (or `/forecast digest`, `/digest`): all 30 Dow members in one digest, "
        "analyses in its thread."
    ),
    "/digest": (
        "*/digest* — the Dow30 digest on demand: one line per member here, each full analysis in its thread.\n"
        "`/digest [YYYY-MM-DD]` (default: as of today). One on-demand digest per channel per cooldown."
    ),
    "/retrain": (
        "*/retrain* — admins only: fine-tune a new adapter, evaluate it against the served one, and promote it "
        "only if it is not worse. Progress and the decision are posted in this channel.\n"
        "`/retrain [epochs=N] [force]`: `epochs` overrides TRAIN_EPOCHS; `force` promotes even if the gate fails."
    ),
    "/forecast-status": (
        "*/forecast-status* — queue depths, workers alive and busy, the served model and adapter, the last "
        "scheduled posts, and your own pending jobs."
    ),
    "/track": (
        "*/track* — the track record: how past forecasts did against what the market did, next to naive "
        "baselines.\n`/track [TICKER]` (default: every ticker)."
    ),
    "/watch": (
        "*/watch* — this channel's watchlist: the names its weekly digest and `/digest` cover instead of the Dow30.\n"
        "• `/watch`: the list, each name with its last call\n"
        "• `/watch add NVDA AMD BRK.B`: checked with the market data sources, then added (unknown ones are refused "
        "with the reason)\n"
        "• `/watch remove NVDA`: taken off; an empty list means the Dow30 again"
    ),
}


def payload(text: str, blocks: list[dict] | None = None) -> dict:
    """An ephemeral ack: `ack(**payload(...))`."""
    answer: dict = {"response_type": "ephemeral", "text": _clip(text, TEXT_LIMIT)}
    if blocks:
        answer["blocks"] = blocks[:50]
    return answer


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _sentence(problem: str) -> str:
    problem = problem.strip().rstrip(".")
    return problem[:1].upper() + problem[1:] + "."


def usage_error(command: str, problem: str) -> dict:
    """One line: what is wrong, then the command's usage."""
    return payload(f":warning: {_sentence(problem)} Usage: `{USAGE[command]}` (`{command} help` explains)")


def help_for(command: str) -> dict:
    others = ", ".join(f"`{c}`" for c in USAGE if c != command)
    return payload(f"{HELP[command]}\nOther commands: {others}.")


def _ahead(ahead: int | None) -> str:
    if ahead is None:  # Redis answered the enqueue, not the question after it
        return "its place in line is not known yet (`/forecast-status` shows it)"
    return "next in line" if ahead == 0 else f"{ahead} ahead of you"


def _no_workers(workers: int | None) -> str:
    return (" No worker is running right now: the job waits until one starts (`/forecast-status` shows them)."
            if workers == 0 else "")


def forecast_what(ticker: str, *, week: str, as_of: dt.date | None) -> str:
    """How an ack names a forecast request."""
    return f"*{ticker}* for the week {week} ({f'as of {as_of}' if as_of else 'live data'})"


def digest_what(*, week: str, as_of: dt.date, watchlist: list[str] | None = None) -> str:
    """How an ack names a digest request: of the channel's `watchlist`, else the Dow30."""
    n = len(watchlist or ())
    covers = f"the watchlist digest ({n} name{'s' if n != 1 else ''})" if watchlist else "the Dow30 digest"
    return f"{covers} for the week {week} (as of {as_of})"


def forecast_ack(ticker: str, *, week: str, as_of: dt.date | None, status: str, job_status: str,
                 ahead: int | None, workers: int | None, dow30: bool, index_lookalike: bool = False) -> dict:
    """The answer to a queued (or already queued) forecast. `week`: the target week's period. `job_status`
    "unknown" and `ahead`/`workers` None: Redis did not answer those reads (the job itself is known to exist).
    `index_lookalike`: the ticker is one someone may type meaning the index (DOW, DJIA)."""
    what = forecast_what(ticker, week=week, as_of=as_of)
    if status == "queued":
        text = (f":hourglass_flowing_sand: Queued {what}: {_ahead(ahead)}. The analysis will be posted in this "
                "channel; this note shows its progress.")
    elif job_status in ("queued", "scheduled", "deferred"):
        text = (f":hourglass_flowing_sand: {what} is already queued in this channel ({_ahead(ahead)}); the "
                "answer will be posted here.")
    elif job_status == "started":
        text = f":brain: {what} is being written right now; the answer will be posted in this channel."
    elif job_status == "finished":
        text = (f":white_check_mark: {what} was answered in this channel a few minutes ago: scroll up. "
                "A live forecast can be asked again after about 10 minutes.")
    elif job_status == "unknown":
        text = (f":hourglass_flowing_sand: {what} was already asked for in this channel; its answer will be "
                "posted here (`/forecast-status` shows where it stands).")
    else:
        text = f":hourglass_flowing_sand: {what} was already asked for ({job_status}); watch this channel."
    if index_lookalike:
        text += f" ({ticker} is forecast as a ticker; for all 30 Dow members, `/forecast dow30` or `/digest`.)"
    if not dow30:
        text += (f" {ticker} is not a Dow30 stock: if the data sources do not know it either, the answer will "
                 "say so.")
    return payload(text + _no_workers(workers))


def digest_ack(*, week: str, as_of: dt.date, status: str, job_status: str, ahead: int | None,
               workers: int | None, watchlist: list[str] | None = None) -> dict:
    what = digest_what(week=week, as_of=as_of, watchlist=watchlist)
    every = f"All {len(watchlist)} names" if watchlist else "All 30 members"
    if status == "queued":
        text = (f":hourglass_flowing_sand: Queued {what}: {_ahead(ahead)}. {every} run in one batch; the "
                "summary will be posted in this channel, each analysis in its thread.")
    elif job_status == "finished":
        text = f":white_check_mark: This channel already got {what}: scroll up (analyses in its thread)."
    elif job_status == "started":
        text = f":brain: {what[:1].upper() + what[1:]} is being written right now for this channel."
    else:
        text = f":hourglass_flowing_sand: {what[:1].upper() + what[1:]} is already queued for this channel."
    return payload(text + _no_workers(workers))


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    minutes = -(-seconds // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def digest_cooling_down(*, wait_s: int, cooldown_s: int, now: dt.datetime) -> dict:
    at = (now + dt.timedelta(seconds=wait_s)).astimezone(dt.UTC).strftime("%H:%M UTC")
    return payload(f":no_entry: One on-demand digest per channel every {_duration(cooldown_s)}: the next one is "
                   f"allowed in {_duration(wait_s)} (at {at}). The weekly digest comes on schedule anyway.")


def _no_trainer(trainers: int | None) -> str:
    return (" No trainer is running right now, so training is not available yet: the retrain waits in the queue "
            "until one starts (`forecaster trainer`, or `forecaster up` without `--no-trainer`)."
            if trainers == 0 else "")


def retrain_ack(*, job_id: str, status: str, job_status: str, epochs: float | None, force: bool,
                trainers: int | None = None) -> dict:
    """`trainers`: trainer processes alive (None: not known). Forecasts go on being served while a retrain runs."""
    if status == "queued":
        options = "".join([f", epochs={epochs:g}" if epochs else "", ", force" if force else ""])
        return payload(f":gear: Retrain queued (job `{job_id}`{options}). Progress and the decision (promote the "
                       "new adapter or keep the current one) will be posted in this channel; forecasts are served "
                       "as usual meanwhile." + _no_trainer(trainers))
    state = "running" if job_status == "started" else "queued"
    return payload(f":gear: A retrain is already {state} (job `{job_id}`); its progress is posted where it was "
                   "started. Run `/retrain` again after it finishes." + (_no_trainer(trainers) if state == "queued"
                                                                         else ""))


def admins_only(*, admins_configured: bool) -> dict:
    if not admins_configured:
        return payload(":lock: Nobody may retrain yet: the operator must set SLACK_ADMIN_USERS to the Slack user "
                       "ids of the admins.")
    return payload(":lock: Only admins can retrain (the users listed in SLACK_ADMIN_USERS). Ask one of them.")


def queue_full(*, queue: str, limit: int) -> dict:
    jobs = "1 job" if limit == 1 else f"{limit} jobs"
    return payload(f":no_entry: The {queue} queue is full ({jobs} waiting), so nothing was queued. Try again "
                   "in a few minutes; `/forecast-status` shows the queues.")


def too_many_pending(*, pending: int, limit: int) -> dict:
    """The requester already has their share of forecasts pending (BOT_USER_MAX_PENDING): nothing was queued."""
    return payload(f":no_entry: You already have {pending} forecasts waiting or being written (one person can have "
                   f"{limit} at a time), so nothing was queued. Ask again once one of them is answered; "
                   "`/forecast-status` lists yours.")


def queue_unreachable() -> dict:
    """Redis failed before anything that could queue the job was sent: nothing was queued, for sure."""
    return payload(":x: Could not queue your request: the job queue (Redis) is not answering. Nothing was "
                   "queued: try again in a minute; if it keeps failing, tell the operator.")


def queueing_unconfirmed(what: str) -> dict:
    """The enqueue was sent and Redis did not answer in time: the job may exist, and may run. `what`: as
    `forecast_what` / `digest_what` name it, or e.g. "a retrain"."""
    return payload(f":grey_question: I could not confirm that {what} was queued: the job queue (Redis) did not "
                   "answer in time. It may still run and be posted here. Check `/forecast-status` (your pending "
                   "jobs) before asking again: if it is listed there, it will be answered.")


def redis_unreachable() -> dict:
    """A command that only reads (status, track) found Redis not answering."""
    return payload(":x: The job queue (Redis) is not answering, so this could not be done; nothing was queued. Try "
                   "again in a minute; if it keeps failing, tell the operator.")


def track_not_ready() -> dict:
    """/track found no ledger schema (or an older one): nothing has set the database up yet."""
    return payload(":hourglass_flowing_sand: The track record is not set up yet: its database has not been prepared. "
                   "Ask an admin to run `forecaster ledger migrate` (starting a worker, or `forecaster up`, does it "
                   "too), then try again.")


def watchlist_unavailable() -> dict:
    """The channel's watchlist could not be read in time: nothing was run or changed."""
    return payload(":x: This channel's watchlist is unavailable right now: its database is not answering. Nothing "
                   "was queued or changed; try again in a minute. If it keeps failing, tell the operator.")


def track_unavailable() -> dict:
    """/track's read of the ledger did not answer in time, or the database refused the connection."""
    return payload(":x: The track record is unavailable right now: its database is not answering. Try again in a "
                   "minute; if it keeps failing, tell the operator.")


def internal_error(reference: str) -> dict:
    return payload(f":x: Something went wrong on our side and nothing was queued. Try again; if it keeps failing, "
                   f"tell the operator (reference `{reference}` in the bot log).")


def already_received(*, job_status: str, ahead: int) -> dict:
    """A redelivered command whose first delivery queued a job: nothing new is queued."""
    where = {"queued": f"queued, {_ahead(ahead)}", "started": "running now", "finished": "done: see the channel",
             "failed": "failed: see the channel"}.get(job_status, job_status)
    return payload(f":hourglass_flowing_sand: This command was already received; its job is {where}.")


# -- /forecast-status ---------------------------------------------------------------------------------------------


def _when(iso: str | None) -> str:
    if not iso:
        return "never"
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return inline(_clip(iso, 40))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _section(title: str, lines: list[str], *, max_lines: int = LIST_LIMIT) -> dict:
    """A titled list, as many lines as fit one section (and `max_lines`), then "… and N more"."""
    shown, budget = [], SECTION_LIMIT - len(title) - 40
    for n, line in enumerate(lines):
        line = _clip(line, 600)
        if n == max_lines or len(line) + 1 > budget:
            shown.append(f"… and {len(lines) - n} more")
            break
        shown.append(line)
        budget -= len(line) + 1
    return {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n" + "\n".join(shown)}}


def status_report(status: dict, *, now: dt.datetime) -> dict:
    """`jobs.status.Status.to_json()` as blocks."""
    queues = [f"• `{q['name']}`: {q['queued']} waiting, {q['running']} running, {q['failed']} failed (kept 7 days)"
              for q in status["queues"]]
    workers = status["workers"]
    busy = sum(1 for w in workers if w["state"] == "busy")
    worker_lines = [f"• {code(_clip(w['name'], 80))}: {inline(w['state'])}"
                    + (f" (job {code(_clip(w['current_job'], 80))})" if w["current_job"] else "")
                    + (f", last heartbeat {_when(w['last_heartbeat'])}" if w["last_heartbeat"] else "")
                    for w in workers]
    served = status["served"]
    if served:
        model = (f"{code(_clip(served.get('model', '?'), 200))} with adapter "
                 f"{code(_clip(served.get('adapter', '?'), 200))}, since {_when(served.get('since'))}")
    else:
        model = "unknown (no worker has started)"
    mine = [f"• {inline(_clip(j['what'], 120))}: "
            + ("running now" if j["status"] == "started" else
               f"queued, {_ahead(j['position']) if j['position'] is not None else 'waiting'}")
            for j in status["mine"]]
    if not status["scanned_everything"]:
        mine.append("_(a queue is long: only its first jobs were searched for yours)_")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Forecaster status"}},
        _section("Queues", queues),
        _section(f"Workers: {len(workers)} alive, {busy} busy",
                 worker_lines or ["_none running: queued jobs wait until a worker starts_"]),
        _section("Model", [model]),
        _section("Scheduled posts", [f"• last digest: {_when(status['last_digest'])}",
                                     f"• last evaluation summary: {_when(status['last_summary'])}"]),
        _section("Your pending jobs", mine or ["none"]),
        *([_training_section(status["trainers"], status.get("retrain"))] if "trainers" in status else []),
        {"type": "context", "elements": [{"type": "mrkdwn",
                                          "text": f"As of {now.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"}]},
    ]
    waiting = sum(q["queued"] for q in status["queues"])
    text = f"Forecaster status: {waiting} jobs waiting, {len(workers)} workers ({busy} busy)"
    return payload(text, blocks)


def _retrain_line(progress: dict) -> str:
    """The running retrain as its trainer last published it (jobs.retrain_progress): phase, step, loss, ETA."""
    def field(name: str) -> str:
        return inline(_clip(progress.get(name) or "?", 12))

    user = progress.get("requested_by", "")
    who = f"<@{user}>" if USER_ID.fullmatch(user) else inline(_clip(user, 40))
    phase = progress.get("phase")
    if phase == "training":
        eta = progress.get("eta_s")
        where = (f"training step {field('step')}/{field('max_steps')} (epoch {field('epoch')}) · loss "
                 f"{field('loss') if progress.get('loss') else '–'} · about "
                 f"{_duration(int(float(eta))) if _number(eta) else '?'} left")
    elif phase == "evaluating":
        where = f"training done; evaluating on the test split, {field('done')}/{field('total')} answers"
    else:
        where = "loading the model for training"
    return (f"• retrain {code(_clip(progress.get('job_id', '?'), 80))} requested by {who}: {where} "
            f"(updated {_when(progress.get('updated'))})")


def _training_section(trainers: list[dict], progress: dict | None) -> dict:
    lines = [_retrain_line(progress)] if progress else []
    lines += [f"• trainer {code(_clip(t['name'], 80))}: {inline(t['state'])}"
              + (f", last heartbeat {_when(t['last_heartbeat'])}" if t["last_heartbeat"] else "") for t in trainers]
    if not trainers:
        lines.append("_no trainer running: a `/retrain` waits in the queue until one starts (`forecaster trainer`)_")
    return _section(f"Training: {len(trainers)} trainer{'s' if len(trainers) != 1 else ''} alive"
                    + (", a retrain running" if progress else ""), lines)


def _number(text: str | None) -> bool:
    """A finite, non-negative number of seconds (what the trainer writes; anything else shows as "?")."""
    try:
        return text is not None and 0 <= float(text) < 10**9
    except ValueError:
        return False
