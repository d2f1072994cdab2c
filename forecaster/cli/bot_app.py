"""`forecaster bot`: the Slack app. HTTP mode (production, waitress on BOT_HOST:BOT_PORT) unless SLACK_APP_TOKEN
is set, then Socket Mode (development, no public URL). Light: no torch, no model, starts in about a second."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.cli.common import app, err, fail, load_settings, wait_for_redis

if TYPE_CHECKING:
    pass

REDIS_WAIT_S = 30  # at start-up Redis may still be coming up (compose starts services together)


@app.command("bot")
def run_bot(
    check: Annotated[bool, typer.Option("--check", help="Check the configuration, Redis and the bot token "
                                                        "(auth.test), print the mode, and exit.")] = False,
) -> None:
    """Serve the slash commands (/forecast, /digest, /retrain, /forecast-status, /track): parse, queue, answer."""
    import logging

    from slack_bolt.error import BoltError

    from bot.app import build_app, config_problems, mode_of, socket_mode_handler
    from jobs.client import fast_connection

    settings = load_settings()
    problems = [*([] if settings.redis_url else ["REDIS_URL is not set: the bot queues every request in Redis"]),
                *config_problems(settings)]
    if problems:
        fail("the bot cannot start: " + "; ".join(problems))
    conn = wait_for_redis(fast_connection(settings.redis_url), settings.redis_url, wait_s=REDIS_WAIT_S)
    try:
        slack_app = build_app(settings, conn=conn)
    except BoltError as exc:  # auth.test refused the token, or Slack could not be reached
        fail(f"Slack did not accept SLACK_BOT_TOKEN ({exc}); copy the xoxb- token from the app's OAuth & "
             "Permissions page (reinstall the app if its scopes changed)")
    mode = mode_of(settings)
    if check:
        err.print(f"bot: configuration OK, Redis answers, token accepted; would run in {mode} mode",
                  highlight=False)
        return
    # A service's log: plain timestamped lines (cheap, and what a container log wants), INFO and up. Never
    # tokens or secrets: the handlers log user and channel ids, commands and outcomes.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # waitress warns once per request that waits for a free thread: a burst of 50 commands is normal here, and
    # 50 warnings would cost more than the requests themselves.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if mode == "socket":
        err.print("bot: Socket Mode (SLACK_APP_TOKEN is set): connecting to Slack…", highlight=False)
        socket_mode_handler(slack_app, settings).start()
        return
    from bot.server import BotServer, BotWsgi

    # One process, BOT_THREADS request threads: an ack costs about a millisecond of CPU, and one process answers 50
    # simultaneous commands well within Slack's 3 seconds (tests/bench/test_ack_latency.py).
    server = BotServer(BotWsgi(slack_app, conn=conn), host=settings.bot_host, port=settings.bot_port,
                       threads=settings.bot_threads)
    err.print(f"bot: HTTP mode on {server.url} — Slack request URL: https://<your host>/slack/events; health: "
              "/healthz", highlight=False)
    # `docker stop` sends SIGTERM: stop like Ctrl-C (waitress ends its loop on SystemExit), not mid-write.
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    err.print("bot: stopped", highlight=False)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)

