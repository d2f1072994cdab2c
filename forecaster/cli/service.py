"""Long-running services: `worker` (serves forecasts and digests, model loaded once) and `trainer` (runs
`/retrain` in its own process and CUDA context, beside the workers). The scheduler and the bot have their own
modules."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from forecaster.cli import common
from forecaster.cli.common import app, err, fail, load_analyst, load_settings
from jobs.queues import SERVING, TRAINING

SERVING_QUEUES = ",".join(spec.name for spec in SERVING)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated, highest priority first (training is "
                                             "`forecaster trainer`'s).")]
        = SERVING_QUEUES,
    burst: Annotated[bool, typer.Option("--burst", help="Exit when the queues are empty.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Healthcheck: exit 0 when a worker on this host beat in "
                                                        "the last two minutes, 1 otherwise; loads nothing.")]
        = False,
) -> None:
    """Load the model once, then serve queued jobs in this process (forecasts first, then batch), never releasing
    the model; a newly promoted adapter is applied between jobs."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if TRAINING.name in names:
        fail("a serving worker does not train (a retrain would hold its forecasts up for hours): run "
             "`forecaster trainer` for the training queue, beside the worker or on another host")
    settings = load_settings()
    if not settings.redis_url:
        fail("the worker needs REDIS_URL (the queue lives in Redis)")
    if check:
        _check(settings)
        return
    err.print(f"worker: loading {settings.model_base}…", highlight=False)
    _work(settings, names=names, burst=burst, serves=True)


@app.command()
def trainer(
    burst: Annotated[bool, typer.Option("--burst", help="Exit when the training queue is empty.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Healthcheck: exit 0 when a trainer on this host beat in "
                                                        "the last two minutes, 1 otherwise; loads nothing.")]
        = False,
) -> None:
    """Run `/retrain` jobs (the training queue) in this process: train, evaluate, gate, write the adapter registry.
    Its own process and CUDA context; it loads a model only while a retrain runs, and serving workers pick a
    promoted adapter up between their jobs."""
    settings = load_settings()
    if not settings.redis_url:
        fail("the trainer needs REDIS_URL (the queue lives in Redis)")
    if check:
        _check(settings, queue_name=TRAINING.name, what="trainer")
        return
    err.print(f"trainer: waiting for retrains (base {settings.model_base}, registry {settings.model_dir})…",
              highlight=False)
    _work(settings, names=[TRAINING.name], burst=burst, serves=False)


def _work(settings, *, names: list[str], burst: bool, serves: bool) -> None:
    from bot.outbox import SlackOutbox
    from bot.slack_ops import build_client
    from jobs import runtime
    from jobs.worker import run

    who = "worker" if serves else "trainer"
    if settings.slack_bot_token is None:
        fail(f"the {who} needs SLACK_BOT_TOKEN to post results (install the Slack app, copy its xoxb- token)")
    conn = common.connect_redis(settings)  # the jobs' client: a stalled Redis fails a step in seconds
    context = runtime.WorkerContext(
        settings=settings, conn=conn, sources=common.build_live_sources(settings),
        slack=SlackOutbox(build_client(settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)),
        load_model=lambda: load_analyst(settings),
        # Between jobs: MODEL_ADAPTER when pinned, else whatever the registry serves now (promote/rollback). A
        # trainer's evaluation picks its adapters itself.
        adapter_for=(lambda: common.served_adapter(settings)) if serves else None,
        serves=serves,
    )
    # RQ forks a small scheduler process (retries with backoff); a forked tokenizer pool would warn and may hang.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run(context, queue_names=names, burst=burst, queue_conn=common.connect_queue_redis(settings))
    except ValueError as exc:
        fail(str(exc))


def _check(settings, *, queue_name: str | None = None, what: str = "worker") -> None:
    """`queue_name`: count only processes registered for that queue (a trainer's); None: any beating worker."""
    import socket

    from jobs.status import workers_alive
    from jobs.worker import alive_on

    host = socket.gethostname()
    conn = common.connect_redis(settings)
    alive = alive_on(conn, host) if queue_name is None else workers_alive(conn, queue_name=queue_name, host=host)
    if not alive:
        err.print(f"{what}: no {what} on {host} has beaten in the last two minutes", highlight=False)
        raise typer.Exit(1)
    err.print(f"{what}: {alive} {what} process(es) alive on {host}", highlight=False)
