"""`forecaster up`: the whole stack on one machine — the bot, a serving worker, a trainer and the scheduler as child
processes — with an embedded Redis when REDIS_URL is unset. What the README's run command calls."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from forecaster.cli.common import app, err, fail, load_settings

WORKER_ONLY_CHECKS = {"model base", "adapter"}
TRAINER_STOP_GRACE_S = 30


def child_argv(command: str, *args: str) -> list[str]:
    """Children run the same CLI with the same interpreter (a venv need not be on PATH)."""
    return [sys.executable, "-m", "forecaster.cli", command, *args]


def migrate_ledger(settings) -> None:
    """Bring the ledger's schema to this release's before the bot starts: the bot never migrates, and the worker
    does only after loading its model. A database that cannot be reached is said, not fatal: the worker tries again
    when it starts, and /track says the track record is not set up until then."""
    from sqlalchemy.exc import SQLAlchemyError

    from jobs.ledger import open_ledger

    store = open_ledger(settings)
    try:
        store.migrate()
    except SQLAlchemyError as exc:
        err.print(f"up: could not migrate the ledger {store!r} ({str(exc).splitlines()[0]}); the worker tries again "
                  "when it starts", highlight=False, markup=False)
        return
    finally:
        store.dispose()  # the children open their own
    err.print(f"up: ledger {store!r} at the newest schema", highlight=False, markup=False)


@app.command()
def up(
    with_worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Run a worker here (the GPU host). "
                                              "--no-worker when workers run elsewhere against the same Redis.")]
        = True,
    with_trainer: Annotated[bool, typer.Option("--trainer/--no-trainer", help="Run a trainer here for /retrain "
                                               "(its own process, beside the worker). --no-trainer on a machine "
                                               "without memory for a second model: /retrain then waits in the "
                                               "queue until a trainer runs somewhere.")] = True,
    with_scheduler: Annotated[bool, typer.Option("--scheduler/--no-scheduler", help="Run the scheduler here "
                                                 "(exactly one per deployment).")] = True,
    skip_checks: Annotated[bool, typer.Option("--skip-checks", help="Start even if the quick checks fail.")]
        = False,
) -> None:
    """Start the bot, a worker, a trainer and the scheduler; restart any that crash; Ctrl-C stops them all."""
    from forecaster.doctor import cheap_checks, render
    from forecaster.supervisor import Child, Supervisor
    from jobs.embedded_redis import EmbeddedRedis
    from jobs.queues import INTERACTIVE

    settings = load_settings()
    embedded = None
    env = dict(os.environ)
    if not settings.redis_url:
        # Started once here for the checks below, then stopped and handed to the supervisor, which restarts it
        # like any other child if it dies (its append-only file keeps the queue and the ledger).
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        try:
            env["REDIS_URL"] = embedded.start()
        except Exception as exc:  # noqa: BLE001 — a clear line, not a traceback
            fail(str(exc))
        err.print(f"up: embedded Redis (append-only, no eviction) at {embedded.url}", highlight=False)
        settings = settings.model_copy(update={"redis_url": env["REDIS_URL"]})
    try:
        checks = cheap_checks(settings)
        if not with_worker and not with_trainer:  # the model lives on the GPU hosts: not this machine's concern
            checks = [c for c in checks if c.name not in WORKER_ONLY_CHECKS]
        failed = [c for c in checks if c.failed]
        for check in checks:
            err.print(render(check), highlight=False, markup=False)
        if failed and not skip_checks:
            fail(f"not starting: {len(failed)} check(s) failed (fix them, or --skip-checks). "
                 "`forecaster doctor` runs every check, including the network ones.")

        migrate_ledger(settings)
        children = [Child("bot", child_argv("bot"), stop_grace_s=10)]
        if with_scheduler and not settings.digest_channels:
            err.print("up: no DIGEST_CHANNELS, so no scheduler (no weekly digest or summary); set it to post them",
                      highlight=False)
        elif with_scheduler:
            children.append(Child("scheduler", child_argv("scheduler"), stop_grace_s=10))
        if with_worker:
            # A job in flight gets its whole timeout to finish; a second Ctrl-C is not needed to get the prompt
            # back for short jobs, since SIGTERM makes RQ stop after the current job.
            children.append(Child("worker", child_argv("worker"), stop_grace_s=INTERACTIVE.timeout_s))
        if with_trainer:
            # Not a retrain's 12 hours: a stop cuts a running retrain off, and its requester is told it failed
            # (the served adapter is untouched: only a finished, gated retrain promotes).
            children.append(Child("trainer", child_argv("trainer"), stop_grace_s=TRAINER_STOP_GRACE_S))
        else:
            err.print("up: no trainer (--no-trainer): /retrain waits in the queue until `forecaster trainer` runs "
                      "against this Redis", highlight=False)
        if embedded is not None:
            embedded.stop()  # from here on the supervisor runs it: started first, restarted if it dies, stopped last
            children.append(Child("redis", embedded.argv(), stop_grace_s=10, ready=embedded.ready,
                                  before_start=embedded.prepare))
        supervisor = Supervisor(children, env=env)
        signal.signal(signal.SIGINT, supervisor.request_stop)
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        code = supervisor.run()
        if code:
            raise typer.Exit(code)
    finally:
        if embedded is not None:
            embedded.stop()
            err.print("up: embedded Redis stopped (data kept in its append-only file)", highlight=False)
