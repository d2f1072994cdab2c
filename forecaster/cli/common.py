"""The `forecaster` app, its consoles and the plumbing every command shares.

Commands live in `forecaster.cli.data`, `forecaster.cli.analyst`, `forecaster.cli.training` and the other modules of
`forecaster.cli`; each registers itself on `app`.
Settings are built once per invocation and passed down; heavy modules are imported inside functions, so
`forecaster --help` is instant and nothing here reads the environment at import time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

if TYPE_CHECKING:
    import redis

    from engine.data.inputs import ForecastInputs, Sources
    from forecaster.settings import Settings

app = typer.Typer(help="FinGPT-style weekly stock analyst for Slack.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Market data: snapshots for offline runs, Dow30 membership.", no_args_is_help=True)
app.add_typer(data_app, name="data")
dataset_app = typer.Typer(help="Training data: prepare the FinGPT set, or build one on fresh data.",
                          no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
model_app = typer.Typer(help="The adapter registry (MODEL_DIR): list, promote, roll back.", no_args_is_help=True)
app.add_typer(model_app, name="model")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line: greppable, copyable
log = logging.getLogger("forecaster")

TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


def main() -> None:
    app()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (a test runner swaps it per command)."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


@app.callback()
def _configure(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every data call.")] = False) -> None:
    if err.is_terminal:
        handler: logging.Handler = RichHandler(console=err, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        # A service under `forecaster up`, compose or systemd: one plain line per record (rich would wrap at 80
        # columns), greppable, with the time and the logger.
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])
    # urllib3 logs full request URLs at DEBUG, and Finnhub's key travels in the query string.
    logging.getLogger("urllib3").setLevel(logging.INFO)
    if not verbose:
        # yfinance logs every missing ticker at ERROR ("possibly delisted"); our own message says it better.
        # Not propagating (rather than raising its level) keeps the records visible to the Yahoo adapter.
        logging.getLogger("yfinance").propagate = False


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


# -- shared plumbing ---------------------------------------------------------------------------------------------------


def load_settings() -> Settings:
    from pydantic import ValidationError

    from forecaster.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        fail(f"configuration: {problems}")


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def connect_redis(settings: Settings, *, socket_timeout_s: float = 5) -> redis.Redis | None:
    """A connection when REDIS_URL is set (checked now, with a clear message), else None (memory cache).
    `socket_timeout_s`: how long one command may wait for its answer; a few seconds, except for RQ's own client
    in a worker, whose wait for work blocks for minutes (`connect_queue_redis`)."""
    if not settings.redis_url:
        return None
    import redis

    conn = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=socket_timeout_s)
    try:
        conn.ping()
    except redis.RedisError as exc:
        fail(f"Redis at {redact_url(settings.redis_url)} did not answer ({exc}). Start it, fix REDIS_URL, "
             "or unset REDIS_URL to cache in this process's memory.")
    return conn


def wait_for_redis(conn: redis.Redis, url: str, *, wait_s: float) -> redis.Redis:
    """`conn` once it answers a PING, trying every second for up to `wait_s` (at start-up Redis may still be coming
    up: compose starts services together); then a clear failure (bounded, so a wrong URL still fails soon enough to
    read the message)."""
    import time

    import redis

    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.ping()
            return conn
        except redis.RedisError as exc:
            if time.monotonic() >= deadline:
                waited = f" for {wait_s:g} s" if wait_s else ""
                fail(f"Redis at {redact_url(url)} did not answer{waited} ({type(exc).__name__}: {exc}). Start it or "
                     "fix REDIS_URL.")
            time.sleep(1)


def connect_queue_redis(settings: Settings) -> redis.Redis | None:
    """RQ's own client in a worker: its socket timeout outlasts RQ's blocking wait for work (as RQ's CLI arranges),
    so an idle worker keeps listening instead of timing out every 5 s and backing off for up to a minute."""
    from jobs.worker import QUEUE_SOCKET_TIMEOUT_S

    return connect_redis(settings, socket_timeout_s=QUEUE_SOCKET_TIMEOUT_S)


def parse_tickers(raw: list[str]) -> list[str]:
    tickers = [t.strip().upper() for t in raw if t.strip()]
    bad = [t for t in tickers if not TICKER_RE.match(t)]
    if bad or not tickers:
        fail(f"not a ticker: {', '.join(bad) or '(none given)'}; give symbols like AXP MSFT BRK-B")
    return list(dict.fromkeys(tickers))


def resolve_cutoff(date: str | None, now: dt.datetime) -> dt.datetime:
    from engine.exceptions import BadDate
    from engine.market.weeks import NEW_YORK, parse_day, request_cutoff

    if date is None:
        return now
    try:
        return request_cutoff(parse_day(date, today=now.astimezone(NEW_YORK).date()), now)
    except BadDate as exc:
        fail(str(exc))


def ny_date(moment: dt.datetime) -> dt.date:
    from engine.market.weeks import NEW_YORK

    return moment.astimezone(NEW_YORK).date()


def snapshot_clock(settings: Settings, date: str | None) -> tuple[dt.datetime, dt.datetime] | None:
    """When replaying a snapshot with no --date, forecast as of the moment it was recorded."""
    from engine.sources.snapshot import recorded_clock

    if settings.data_snapshot_dir is None or date is not None:
        return None
    return recorded_clock(settings.data_snapshot_dir)


def build_live_sources(settings: Settings) -> Sources:
    from engine.sources.factory import build_sources

    return build_sources(settings, conn=connect_redis(settings))


def gather_inputs(settings: Settings, ticker: str, *, date: str | None, weeks: int, financials: bool,
                  wording: str = "stock", seed: int = 0) -> ForecastInputs:
    """One symbol's forecast inputs, or a one-line error and exit 2. With a snapshot and no --date, as of the
    moment the snapshot was recorded."""
    from engine.data.inputs import gather
    from engine.exceptions import EngineError

    symbol = parse_tickers([ticker])[0]
    now = dt.datetime.now(dt.UTC)
    cutoff = resolve_cutoff(date, now)
    if (replay := snapshot_clock(settings, date)) is not None:
        cutoff, now = replay
    try:
        result = gather([symbol], sources=build_live_sources(settings), cutoff=cutoff, now=now, weeks=weeks,
                        with_financials=financials, financials_lag_days=settings.financials_lag_days,
                        wording=wording, seed=seed)[symbol]
    except EngineError as exc:
        fail(str(exc))
    if isinstance(result, EngineError):
        fail(str(result))
    return result


@contextlib.contextmanager
def progress_bar(total: int, *, enabled: bool):
    """A rich progress bar with tokens/s, fed by `evaluate`'s progress callback; a no-op when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("generate", total=total, rate="")

        mark = {"at": time.perf_counter(), "done": 0, "last": 0}

        def update(done: int, rows: int, tokens_per_s: float) -> None:
            # `rows` is what is really being generated (`total` is only a guess made before the rows were read).
            bar.update(task, completed=done, total=rows, rate=f"{tokens_per_s:.1f} tok/s")
            now = time.perf_counter()
            if done <= mark["last"]:  # a second evaluation on this bar (the retrain gate scores two models)
                mark.update(at=now, done=done)
            mark["last"] = done
            if not err.is_terminal and done:  # a log file gets a line per batch instead of a live bar
                eta = (f"  ETA {(now - mark['at']) / (done - mark['done']) * (rows - done):.0f}s"
                       if done > mark["done"] else "")
                err.print(f"generated {done}/{rows}  {tokens_per_s:.1f} tok/s{eta}", highlight=False)

        yield update


def served_adapter(settings: Settings) -> Path | None:
    """MODEL_ADAPTER when set, else the registry's current version (None: the bare base)."""
    from engine.training.registry import Registry

    return settings.model_adapter or Registry(settings.model_dir).current_path()


def load_analyst(settings: Settings):
    """The configured model, loaded once for this process: in it (transformers), or behind a vLLM server. The
    adapter is read once (MODEL_ADAPTER, else the registry) and that one is loaded: the model's `adapter` says which,
    and a worker records exactly that (jobs.runtime), whatever the registry says by the time the load ends."""
    adapter = served_adapter(settings)
    if settings.model_backend == "vllm":
        from engine.generation.remote_model import RemoteAnalyst

        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        remote = RemoteAnalyst.connect(
            settings.model_base, base_url=settings.vllm_base_url, api_key=key, served_model=settings.vllm_model,
            adapter=adapter, timeout_s=settings.vllm_timeout_s, wait_s=settings.vllm_wait_s,
            context_tokens=settings.model_context_tokens, concurrency=settings.model_batch_size,
            model_dir=settings.model_dir, server_model_dir=settings.vllm_model_dir,
            constrained=settings.model_constrained)
        remote.name = settings.model_name
        return remote
    from engine.generation.model import Analyst

    analyst = Analyst.load(settings.model_base, adapter=adapter, device=settings.model_device,
                           dtype=settings.model_dtype, load_in_4bit=settings.model_load_in_4bit,
                           quantize=settings.model_quantize, threads=settings.model_threads,
                           merge_adapter=settings.model_merge_adapter, constrained=settings.model_constrained,
                           calibration_dir=settings.model_dir)
    analyst.name = settings.model_name
    return analyst
