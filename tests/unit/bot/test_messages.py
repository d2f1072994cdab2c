"""The bot's immediate answers: exact wording where users read it (snapshots), and Slack's limits however large
the input."""

from __future__ import annotations

import datetime as dt
import json

from bot import messages
from bot.listeners import Commands, answer
from forecaster.settings import Settings
from tests.slack_limits import within_slack_limits

NOW = dt.datetime(2026, 11, 25, 18, 30, tzinfo=dt.UTC)


def test_forecast_acks_say_where_the_request_stands():
    queued = messages.forecast_ack("AXP", week="2026-11-29 to 2026-12-06", as_of=None, status="queued",
                                   job_status="queued", ahead=2, workers=1, dow30=True)
    assert queued == {"response_type": "ephemeral", "text": (
        ":hourglass_flowing_sand: Queued *AXP* for the week 2026-11-29 to 2026-12-06 (live data): 2 ahead of you. "
        "The analysis will be posted in this channel; this note shows its progress.")}
    running = messages.forecast_ack("KO", week="2024-03-17 to 2024-03-24", as_of=dt.date(2024, 3, 15),
                                    status="duplicate", job_status="started", ahead=0, workers=1, dow30=True)
    assert running["text"] == (":brain: *KO* for the week 2024-03-17 to 2024-03-24 (as of 2024-03-15) is being "
                               "written right now; the answer will be posted in this channel.")
    lonely = messages.forecast_ack("ZZZZ", week="w", as_of=None, status="queued", job_status="queued", ahead=0,
                                   workers=0, dow30=False)
    assert "next in line" in lonely["text"] and "ZZZZ is not a Dow30 stock" in lonely["text"]
    assert lonely["text"].endswith("No worker is running right now: the job waits until one starts "
                                   "(`/forecast-status` shows them).")


def test_a_forecast_of_dow_points_at_the_digest_for_those_who_meant_the_index():
    dow = messages.forecast_ack("DOW", week="w", as_of=None, status="queued", job_status="queued", ahead=0,
                                workers=1, dow30=True, index_lookalike=True)
    assert dow["text"].startswith(":hourglass_flowing_sand: Queued *DOW* for the week w (live data): next in line.")
    assert "(DOW is forecast as a ticker; for all 30 Dow members, `/forecast dow30` or `/digest`.)" in dow["text"]


def test_redis_failures_say_what_is_known():
    refused = messages.queue_unreachable()["text"]
    assert refused == (":x: Could not queue your request: the job queue (Redis) is not answering. Nothing was "
                       "queued: try again in a minute; if it keeps failing, tell the operator.")
    what = messages.forecast_what("AXP", week="2026-11-29 to 2026-12-06", as_of=None)
    unknown = messages.queueing_unconfirmed(what)
    assert unknown == {"response_type": "ephemeral", "text": (
        ":grey_question: I could not confirm that *AXP* for the week 2026-11-29 to 2026-12-06 (live data) was "
        "queued: the job queue (Redis) did not answer in time. It may still run and be posted here. Check "
        "`/forecast-status` (your pending jobs) before asking again: if it is listed there, it will be answered.")}
    assert "Could not queue" not in unknown["text"] and "nothing was queued" not in unknown["text"].lower()
    assert messages.redis_unreachable()["text"].startswith(":x: The job queue (Redis) is not answering, so this "
                                                           "could not be done; nothing was queued.")
    # Queued, but Redis did not answer the reads after the enqueue: no made-up place in line or worker count.
    partial = messages.forecast_ack("AXP", week="w", as_of=None, status="queued", job_status="queued", ahead=None,
                                    workers=None, dow30=True)["text"]
    assert partial == (":hourglass_flowing_sand: Queued *AXP* for the week w (live data): its place in line is "
                       "not known yet (`/forecast-status` shows it). The analysis will be posted in this channel; "
                       "this note shows its progress.")
    dup = messages.forecast_ack("AXP", week="w", as_of=None, status="duplicate", job_status="unknown", ahead=None,
                                workers=None, dow30=True)["text"]
    assert dup.startswith(":hourglass_flowing_sand: *AXP* for the week w (live data) was already asked for in this "
                          "channel")


def test_usage_errors_are_one_line_with_the_usage():
    answer = messages.usage_error("/retrain", "epochs must be a finite number")
    assert answer["text"] == (":warning: Epochs must be a finite number. Usage: `/retrain [epochs=N] [force]` "
                              "(`/retrain help` explains)")


def test_help_exists_for_every_command_and_names_the_others():
    for command in messages.USAGE:
        text = messages.help_for(command)["text"]
        assert text.startswith(f"*{command}*")
        assert all(f"`{other}`" in text for other in messages.USAGE if other != command)


def test_cooldown_says_when_the_next_digest_is_allowed():
    answer = messages.digest_cooling_down(wait_s=125, cooldown_s=3600, now=NOW)
    assert answer["text"] == (":no_entry: One on-demand digest per channel every 60 min: the next one is allowed "
                              "in 3 min (at 18:32 UTC). The weekly digest comes on schedule anyway.")


def status(**changes) -> dict:
    base = {
        "queues": [{"name": "interactive", "queued": 2, "running": 1, "failed": 0},
                   {"name": "batch", "queued": 0, "running": 0, "failed": 1},
                   {"name": "training", "queued": 0, "running": 0, "failed": 0}],
        "workers": [{"name": "gpu-0.123", "state": "busy", "current_job": "forecast_AXP_live1_3wf_C123",
                     "last_heartbeat": "2026-11-25T18:29:50+00:00"}],
        "served": {"model": "Qwen2.5-1.5B-Instruct", "adapter": "v0003", "since": "2026-11-25T08:00:00+00:00"},
        "last_digest": "2026-11-23T13:00:04+00:00", "last_summary": None,
        "mine": [{"job_id": "forecast_KO", "what": "forecast KO as of 2024-03-15", "status": "queued",
                  "position": 1}],
        "scanned_everything": True,
    }
    return base | changes


def test_status_report_snapshot():
    answer = messages.status_report(status(), now=NOW)
    within_slack_limits(answer)
    assert answer["text"] == "Forecaster status: 2 jobs waiting, 1 workers (1 busy)"
    assert [b["text"]["text"] for b in answer["blocks"][1:6]] == [
        "*Queues*\n• `interactive`: 2 waiting, 1 running, 0 failed (kept 7 days)\n"
        "• `batch`: 0 waiting, 0 running, 1 failed (kept 7 days)\n"
        "• `training`: 0 waiting, 0 running, 0 failed (kept 7 days)",
        "*Workers: 1 alive, 1 busy*\n• `gpu-0.123`: busy (job `forecast_AXP_live1_3wf_C123`), last heartbeat "
        "2026-11-25 18:29 UTC",
        "*Model*\n`Qwen2.5-1.5B-Instruct` with adapter `v0003`, since 2026-11-25 08:00 UTC",
        "*Scheduled posts*\n• last digest: 2026-11-23 13:00 UTC\n• last evaluation summary: never",
        "*Your pending jobs*\n• forecast KO as of 2024-03-15: queued, 1 ahead of you",
    ]
    assert answer["blocks"][-1]["elements"][0]["text"] == "As of 2026-11-25 18:30:00 UTC"


def test_status_before_any_worker_started_says_so():
    answer = messages.status_report(status(workers=[], served=None, mine=[]), now=NOW)
    sections = json.dumps(answer["blocks"])
    assert "unknown (no worker has started)" in sections and "_none running" in sections
    assert "*Your pending jobs*\\nnone" in sections


def test_status_stays_within_limits_however_much_there_is():
    many = status(
        workers=[{"name": "w" * 500, "state": "busy", "current_job": "j" * 500, "last_heartbeat": "garbage" * 50}
                 for _ in range(300)],
        served={"model": "m" * 5000, "adapter": "a" * 5000, "since": "s" * 5000},
        mine=[{"job_id": "x", "what": "forecast " + "Q" * 5000, "status": "started", "position": None}] * 400,
        scanned_everything=False,
    )
    answer = messages.status_report(many, now=NOW)
    within_slack_limits(answer)
    workers, model, _, mine = (b["text"]["text"] for b in answer["blocks"][2:6])
    shown = workers.count("\n• ")
    assert 1 < shown < messages.LIST_LIMIT and workers.endswith(f"\n… and {300 - shown} more")  # as many as fit
    assert len(model) < 600 and mine.endswith(" more")


def test_an_unexpected_error_is_answered_to_the_user_alone_with_a_reference_and_no_server_path(redis, caplog):
    commands = Commands(conn=redis, settings=Settings(_env_file=None))
    where = "/home/forecaster/.cache/adapters/v7/adapter_config.json"

    def broken(_inv):
        raise FileNotFoundError(2, "No such file or directory", where)

    reply = answer(commands, broken, {"command": "/forecast", "text": "AXP", "user_id": "U1", "channel_id": "C1"})
    assert reply["response_type"] == "ephemeral"
    assert reply["text"].startswith(":x: Something went wrong on our side and nothing was queued.")
    assert where not in json.dumps(reply) and "/home" not in reply["text"] and "No such file" not in reply["text"]
    [record] = [r for r in caplog.records if r.exc_info]
    reference = reply["text"].split("reference `")[1].split("`")[0]
    assert reference in record.getMessage() and where in str(record.exc_info[1])  # the operator's log has it
