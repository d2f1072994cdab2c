"""`forecaster bot`: the Slack app. HTTP mode (production, waitress on BOT_HOST:BOT_PORT) unless SLACK_APP_TOKEN
is set, then Socket Mode (development, no public URL). Light: no torch, no model, starts in about a second."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Annotated

import typer

from jobs.cli.common import app, err, fail, load_settings, redact_url

if TYPE_CHECKING:
    import redis

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
    problems = config_problems(settings)
    if problems:
        fail("the bot cannot start: " + "; ".join(problems))
    conn = _wait_for_redis(fast_connection(settings.redis_url), settings.redis_url)
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
        if settings.bot_pin_cpu and (cpu := _pin_to_cpu(0)) is not None:
            logging.getLogger("bot").info("pinned to CPU %d (BOT_PIN_CPU)", cpu)
        err.print("bot: Socket Mode (SLACK_APP_TOKEN is set): connecting to Slack…", highlight=False)
        socket_mode_handler(slack_app, settings).start()
        return
    from bot.server import BotWsgi, listening_socket

    # One listening socket, BOT_PROCESSES processes accepting on it. A Python process runs one thread at a time
    # and an ack costs about a millisecond of CPU, so a burst of commands queues behind one core; a second process
    # serves the other half on another core. Children fork before they open any connection or start a thread, and
    # each builds its own Redis client and Bolt app.
    sock = listening_socket(settings.bot_host, settings.bot_port)
    host, port = sock.getsockname()[:2]
    children = [pid for index in range(1, settings.bot_processes) if (pid := _fork_server(settings, sock, index))]
    err.print(f"bot: HTTP mode on http://{host}:{port} ({settings.bot_processes} process"
              f"{'es' if settings.bot_processes > 1 else ''}) — Slack request URL: "
              f"https://<your host>/slack/events; health: /healthz", highlight=False)
    # `docker stop` sends SIGTERM: stop like Ctrl-C (waitress ends its loop on SystemExit), not mid-write.
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        _serve(settings, sock, 0, wsgi=BotWsgi(slack_app, conn=conn))
    finally:
        for pid in children:
            _stop_child(pid)
    err.print("bot: stopped", highlight=False)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _pin_to_cpu(index: int) -> int | None:
    """Pin this process to one of its allowed CPUs (Linux): serving process `index` gets the index-th, so the
    processes spread over the cores. None where that is not possible or not needed."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    cpu = allowed[index % len(allowed)]
    os.sched_setaffinity(0, {cpu})
    return cpu


def _serve(settings, sock, index: int, *, wsgi=None) -> None:
    """Serve on the shared socket until SIGTERM/SIGINT. `wsgi`: the app already built (the first process)."""
    import logging

    from bot.app import build_app
    from bot.server import BotServer, BotWsgi
    from jobs.client import fast_connection

    if settings.bot_pin_cpu and (cpu := _pin_to_cpu(index)) is not None:
        # Before the serving threads start: they inherit the main thread's CPU set.
        logging.getLogger("bot").info("process %d pinned to CPU %d (BOT_PIN_CPU)", index, cpu)
    if wsgi is None:
        conn = fast_connection(settings.redis_url)
        wsgi = BotWsgi(build_app(settings, conn=conn), conn=conn)
    server = BotServer(wsgi, sock=sock, threads=settings.bot_threads)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _fork_server(settings, sock, index: int) -> int:
    """Start serving process `index` (a fork: it shares the listening socket); returns its pid in the parent."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, _exit_quietly)
        signal.signal(signal.SIGINT, _exit_quietly)  # a terminal's Ctrl-C reaches the whole group
        _serve(settings, sock, index)
    except SystemExit:
        pass
    except BaseException:  # noqa: BLE001 — say why, then leave without running the parent's cleanup
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _stop_child(pid: int, timeout_s: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _wait_for_redis(conn: redis.Redis, url: str) -> redis.Redis:
    import redis as redis_lib

    deadline = time.monotonic() + REDIS_WAIT_S
    while True:
        try:
            conn.ping()
            return conn
        except redis_lib.RedisError as exc:
            if time.monotonic() >= deadline:
                fail(f"Redis at {redact_url(url)} did not answer for {REDIS_WAIT_S}s ({type(exc).__name__}); start "
                     "it or fix REDIS_URL")
            time.sleep(1)
