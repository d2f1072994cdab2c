"""Long-running services: `worker` (the scheduler and the bot come with their issues)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from jobs.cli import common
from jobs.cli.common import app, err, fail, load_analyst, load_settings


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated, highest priority first.")]
        = "interactive,batch,training",
    burst: Annotated[bool, typer.Option("--burst", help="Exit when the queues are empty.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Healthcheck: exit 0 when a worker on this host beat in "
                                                        "the last two minutes, 1 otherwise; loads nothing.")]
        = False,
) -> None:
    """Load the model once, then run queued jobs in this process (forecasts first, then batch, then training)."""
    settings = load_settings()
    if not settings.redis_url:
        fail("the worker needs REDIS_URL (the queue lives in Redis)")
    if check:
        _check(settings)
        return
    from bot.slack_ops import build_client
    from jobs import runtime
    from jobs.worker import run

    if settings.slack_bot_token is None:
        fail("the worker needs SLACK_BOT_TOKEN to post results (install the Slack app, copy its xoxb- token)")
    conn = common.connect_redis(settings)  # the jobs' client: a stalled Redis fails a step in seconds
    context = runtime.WorkerContext(
        settings=settings, conn=conn, sources=common.build_live_sources(settings),
        slack=build_client(settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url),
        load_model=lambda: load_analyst(settings),
        # Between jobs: MODEL_ADAPTER when pinned, else whatever the registry serves now (promote/rollback).
        adapter_for=lambda: common.served_adapter(settings),
    )
    # RQ forks a small scheduler process (retries with backoff); a forked tokenizer pool would warn and may hang.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    err.print(f"worker: loading {settings.model_base}…", highlight=False)
    try:
        run(context, queue_names=[q.strip() for q in queues.split(",") if q.strip()], burst=burst,
            queue_conn=common.connect_queue_redis(settings))
    except ValueError as exc:
        fail(str(exc))


def _check(settings) -> None:
    import socket

    from jobs.worker import alive_on

    host = socket.gethostname()
    alive = alive_on(common.connect_redis(settings), host)
    if not alive:
        err.print(f"worker: no worker on {host} has beaten in the last two minutes", highlight=False)
        raise typer.Exit(1)
    err.print(f"worker: {alive} worker process(es) alive on {host}", highlight=False)
