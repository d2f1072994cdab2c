"""`forecaster`: the single command-line entry point.

It lives at the top of the import graph (jobs → engine), builds Settings once per invocation and passes them
down. Heavy modules are imported inside the commands, so `forecaster --help` is instant and the bot's own
subcommand (later) never drags in the model stack.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

if TYPE_CHECKING:
    import redis

    from engine.inputs import ForecastInputs, Sources
    from engine.settings import Settings
    from engine.train_config import TrainConfig

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


@app.callback()
def _configure(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every data call.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
    )
    # urllib3 logs full request URLs at DEBUG, and Finnhub's key travels in the query string.
    logging.getLogger("urllib3").setLevel(logging.INFO)
    if not verbose:
        # yfinance logs every missing ticker at ERROR ("possibly delisted"); our own message says it better.
        # Not propagating (rather than raising its level) keeps the records visible to the Yahoo adapter.
        logging.getLogger("yfinance").propagate = False


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


# -- shared plumbing -------------------------------------------------------------------------------------------


def load_settings() -> Settings:
    from pydantic import ValidationError

    from engine.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        fail(f"configuration: {problems}")


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def connect_redis(settings: Settings) -> redis.Redis | None:
    """A connection when REDIS_URL is set (checked now, with a clear message), else None (memory cache)."""
    if not settings.redis_url:
        return None
    import redis

    conn = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        conn.ping()
    except redis.RedisError as exc:
        fail(f"Redis at {redact_url(settings.redis_url)} did not answer ({exc}). Start it, fix REDIS_URL, "
             "or unset REDIS_URL to cache in this process's memory.")
    return conn


def parse_tickers(raw: list[str]) -> list[str]:
    tickers = [t.strip().upper() for t in raw if t.strip()]
    bad = [t for t in tickers if not TICKER_RE.match(t)]
    if bad or not tickers:
        fail(f"not a ticker: {', '.join(bad) or '(none given)'}; give symbols like AXP MSFT BRK-B")
    return list(dict.fromkeys(tickers))


def resolve_cutoff(date: str | None, now: dt.datetime) -> dt.datetime:
    from engine.exceptions import BadDate
    from engine.market.weeks import NEW_YORK, cutoff_for_date, parse_day

    if date is None:
        return now
    try:
        return cutoff_for_date(parse_day(date, today=now.astimezone(NEW_YORK).date()))
    except BadDate as exc:
        fail(str(exc))


def ny_date(moment: dt.datetime) -> dt.date:
    from engine.market.weeks import NEW_YORK

    return moment.astimezone(NEW_YORK).date()


def snapshot_clock(settings: Settings, date: str | None) -> tuple[dt.datetime, dt.datetime] | None:
    """When replaying a snapshot with no --date, forecast as of the moment it was recorded."""
    if settings.data_snapshot_dir is None or date is not None:
        return None
    manifest = json.loads((settings.data_snapshot_dir / "manifest.json").read_text(encoding="utf-8"))
    return dt.datetime.fromisoformat(manifest["cutoff"]), dt.datetime.fromisoformat(manifest["recorded_now"])


def build_live_sources(settings: Settings) -> Sources:
    from engine.sources.factory import build_sources

    return build_sources(settings, conn=connect_redis(settings))


# -- commands --------------------------------------------------------------------------------------------------


def gather_inputs(settings: Settings, ticker: str, *, date: str | None, weeks: int, financials: bool,
                  wording: str = "stock", seed: int = 0) -> ForecastInputs:
    """One symbol's forecast inputs, or a one-line error and exit 2. With a snapshot and no --date, as of the
    moment the snapshot was recorded."""
    from engine.exceptions import EngineError
    from engine.inputs import gather

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


@app.command()
def prompt(
    ticker: Annotated[str, typer.Argument(help="Symbol, e.g. AXP.")],
    date: Annotated[str | None, typer.Option(help="Forecast as of the end of this day (YYYY-MM-DD). "
                                                  "Default: now (or the snapshot's moment).")] = None,
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks in the prompt.")] = 3,
    financials: Annotated[bool, typer.Option(help="Include the latest quarterly basic financials.")] = True,
    original_wording: Annotated[bool, typer.Option(
        help="Reproduce the dataset's 'cryptocurrency price movement' bug, for comparisons.")] = False,
    seed: Annotated[int, typer.Option(help="News sampling seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print chat messages and metadata as JSON.")] = False,
) -> None:
    """Print the FinGPT prompt the analyst would read for TICKER, built from fresh data."""
    from engine.prompts import build_messages

    result = gather_inputs(load_settings(), ticker, date=date, weeks=weeks, financials=financials,
                           wording="cryptocurrency" if original_wording else "stock", seed=seed)
    messages = build_messages(result.parts)
    if as_json:
        out.print_json(json.dumps({"messages": messages, **describe(result)}))
        return
    from jobs.terminal import inputs_summary

    sys.stdout.write(messages[1]["content"] + "\n\n")
    sys.stdout.flush()
    err.print(inputs_summary(result))

@app.command()
def forecast(
    ticker: Annotated[str, typer.Argument(help="Symbol, e.g. AXP.")],
    date: Annotated[str | None, typer.Option(help="Forecast as of the end of this day (YYYY-MM-DD). "
                                                  "Default: now (or the snapshot's moment).")] = None,
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks in the prompt.")] = 3,
    financials: Annotated[bool, typer.Option(help="Include the latest quarterly basic financials.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the structured forecast as JSON.")] = False,
) -> None:
    """Data → prompt → model → parsed forecast for TICKER, in the terminal."""
    from engine.exceptions import EngineError
    from engine.forecast import run_forecasts, to_json

    settings = load_settings()
    inputs = gather_inputs(settings, ticker, date=date, weeks=weeks, financials=financials)
    symbol = inputs.symbol
    try:
        with err.status(f"loading {settings.model_base}…"):
            analyst = load_analyst(settings)
        with err.status(f"{symbol}: generating…"):
            result = run_forecasts([inputs], analyst, context_tokens=settings.model_context_tokens,
                                   max_new_tokens=settings.model_max_new_tokens)[0]
    except EngineError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(to_json(result)))
        return
    from jobs.terminal import forecast_panel

    out.print(forecast_panel(result))


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Option(help="A save_to_disk split folder, DatasetDict folder, parquet or JSONL "
                                              "file, or a Hugging Face dataset id.")],
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    predictions: Annotated[Path | None, typer.Option(help="Score saved outputs (CSV or JSONL, rows in dataset "
                                                          "order) instead of generating.")] = None,
    column: Annotated[str, typer.Option(help="Column of --predictions holding the answers.")] = "prediction",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")] = None,
    fingpt_compat: Annotated[bool, typer.Option(
        "--fingpt-compat", help="Reproduce FinGPT's calc_metrics exactly, to compare with published numbers.")]
        = False,
    train_majority: Annotated[str | None, typer.Option(
        help="The training split's majority label (e.g. 'down by 0-1%'), for that baseline.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score forecasts against a FinGPT-format dataset, next to naive baselines."""
    from engine.evaluate import evaluate as run_evaluation
    from engine.evaluate import load_eval_rows, load_predictions, render_report
    from engine.exceptions import EngineError

    settings = load_settings()
    try:
        rows = load_eval_rows(dataset, split=split, limit=limit)
        saved = None
        generate = None
        model_name = "predictions"
        if predictions is not None:
            saved = load_predictions(predictions, column=column, expected=len(rows), allow_more=limit is not None)
            model_name = predictions.stem
        else:
            with err.status(f"loading {settings.model_base}…"):
                analyst = load_analyst(settings)
            model_name = analyst.version

            def generate(conversations):
                return analyst.generate(conversations, max_new_tokens=settings.model_max_new_tokens)

        with progress_bar(len(rows), enabled=saved is None and not as_json) as progress:
            report = run_evaluation(rows, predictions=saved, generate=generate, fingpt_compat=fingpt_compat,
                                    batch_size=settings.model_batch_size, progress=progress,
                                    train_majority=train_majority)
    except EngineError as exc:
        fail(str(exc))
    report["model"] = model_name
    if as_json:
        typer.echo(json.dumps({k: v for k, v in report.items() if k != "predictions"}))
        return
    typer.echo("\n".join(render_report(report, model_name=model_name)))


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

        def update(done: int, _total: int, tokens_per_s: float) -> None:
            bar.update(task, completed=done, rate=f"{tokens_per_s:.1f} tok/s")

        yield update


def served_adapter(settings: Settings) -> Path | None:
    """MODEL_ADAPTER when set, else the registry's current version (None: the bare base)."""
    from engine.registry import Registry

    return settings.model_adapter or Registry(settings.model_dir).current_path()


def load_analyst(settings: Settings):
    """The configured model, loaded once for this process."""
    from engine.model import Analyst

    return Analyst.load(settings.model_base, adapter=served_adapter(settings), device=settings.model_device,
                        dtype=settings.model_dtype, load_in_4bit=settings.model_load_in_4bit,
                        merge_adapter=settings.model_merge_adapter)


def describe(result: ForecastInputs) -> dict:
    return {
        "symbol": result.symbol,
        "target_week": result.target.period,
        "cutoff": result.cutoff.isoformat(),
        "data_as_of": result.data_as_of.isoformat(),
        "news": [{"week": w.week.period, "available": w.available, "used": w.used} for w in result.news],
        "empty_weeks": result.empty_weeks,
        "financials_period": result.parts.financials.period if result.parts.financials else None,
        "notes": list(result.notes),
    }


@data_app.command("snapshot")
def snapshot(
    tickers: Annotated[list[str], typer.Argument(help="Symbols to record, e.g. AXP MSFT (or 'dow30').")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write (created if needed).")],
    date: Annotated[str | None, typer.Option(help="Record as of the end of this day (YYYY-MM-DD). "
                                                  "Default: now.")] = None,
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks per forecast.")] = 4,
    financials: Annotated[bool, typer.Option(help="Record quarterly basic financials.")] = True,
) -> None:
    """Record everything forecasts for TICKERS need into plain JSON files, for offline runs with
    DATA_SNAPSHOT_DIR."""
    from engine.exceptions import EngineError
    from engine.inputs import Sources, gather
    from engine.market.dow30 import members
    from engine.sources.snapshot import RecordingSources, write_snapshot

    settings = load_settings()
    now = dt.datetime.now(dt.UTC)
    cutoff = resolve_cutoff(date, now)
    symbols = members(ny_date(cutoff)) if [t.lower() for t in tickers] == ["dow30"] else parse_tickers(tickers)
    try:
        live = build_live_sources(settings)
        recording = RecordingSources(news=live.news, fundamentals=live.fundamentals, prices=live.prices)
        results = gather(symbols, sources=Sources(recording, recording, recording), cutoff=cutoff, now=now,
                         weeks=weeks, with_financials=financials, financials_lag_days=settings.financials_lag_days)
    except EngineError as exc:
        fail(str(exc))
    written = write_snapshot(recording, out_dir, description={
        "cutoff": min(cutoff, now).isoformat(), "recorded_now": now.isoformat(), "weeks": weeks,
        "with_financials": financials, "requested": symbols,
    })
    failed = {s: r for s, r in results.items() if isinstance(r, EngineError)}
    err.print(f"wrote {len(written)} files for {len(symbols) - len(failed)} of {len(symbols)} symbols to {out_dir}")
    for symbol, error in failed.items():
        err.print(f"[red]{symbol}:[/] {error}", highlight=False)
    if failed:
        raise typer.Exit(1)


@data_app.command("dow30")
def dow30(date: Annotated[str | None, typer.Option(help="Members on this day (YYYY-MM-DD). Default: today.")]
          = None) -> None:
    """List the Dow Jones Industrial Average members on a date."""
    from engine.market.dow30 import members

    day = ny_date(resolve_cutoff(date, dt.datetime.now(dt.UTC)))
    typer.echo(" ".join(members(day)))


# -- training --------------------------------------------------------------------------------------------------


@dataset_app.command("prepare")
def dataset_prepare(
    source: Annotated[str, typer.Option(help="FinGPT rows: save_to_disk folder, DatasetDict folder, parquet, "
                                             "JSONL, or a Hugging Face id.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (train.jsonl, test.jsonl, manifest).")],
    base: Annotated[str | None, typer.Option(help="Model whose tokenizer and chat template count the tokens. "
                                                  "Default: MODEL_BASE.")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split (default: every split present).")] = None,
    max_length: Annotated[int, typer.Option(help="Prompt + answer tokens per row; longer prompts lose their "
                                                 "oldest news, never the answer.")] = 4096,
    test_weeks: Annotated[int, typer.Option(help="Re-split chronologically: the last N weeks of each ticker "
                                                 "become the test split.")] = 0,
) -> None:
    """Convert FinGPT's Llama-format rows into chat prompt/completion rows for training."""
    from engine.dataset import prepare_dataset, render_summary
    from engine.exceptions import EngineError

    settings = load_settings()
    try:
        manifest = prepare_dataset(source, out_dir, tokenizer_path=base or settings.model_base, split=split,
                                   max_length=max_length, test_weeks=test_weeks)
    except EngineError as exc:
        fail(str(exc))
    typer.echo("\n".join(render_summary(manifest)))


@dataset_app.command("build")
def dataset_build(
    tickers: Annotated[list[str], typer.Argument(help="Symbols, or 'dow30' for the members at --end.")],
    start: Annotated[str, typer.Option(help="First target week's Sunday on or after this date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last target week starts on or before this date (YYYY-MM-DD).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for rows.jsonl (resumable), failures, manifest.")],
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks per prompt.")] = 3,
) -> None:
    """The FinGPT pipeline on fresh data: prompts from our sources, labels from realized returns, answers from a
    teacher model behind an OpenAI-compatible endpoint (TEACHER_BASE_URL, TEACHER_MODEL, TEACHER_API_KEY)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from engine.exceptions import EngineError
    from engine.market.dow30 import members
    from engine.market.weeks import NEW_YORK, parse_day
    from engine.teacher import Teacher, build_dataset

    settings = load_settings()
    now = dt.datetime.now(dt.UTC)
    today = now.astimezone(NEW_YORK).date()
    try:
        first, last = parse_day(start, today=today), parse_day(end, today=today)
    except EngineError as exc:
        fail(str(exc))
    missing = [name for name, value in (("TEACHER_BASE_URL", settings.teacher_base_url),
                                        ("TEACHER_MODEL", settings.teacher_model),
                                        ("TEACHER_API_KEY", settings.teacher_api_key)) if not value]
    if missing:
        fail(f"set {', '.join(missing)}: the teacher model behind an OpenAI-compatible endpoint writes the answers")
    symbols = members(last) if [t.lower() for t in tickers] == ["dow30"] else parse_tickers(tickers)
    teacher = Teacher(base_url=settings.teacher_base_url, model=settings.teacher_model,
                      api_key=settings.teacher_api_key.get_secret_value())
    with Progress(TextColumn("building"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err) as bar:
        task = bar.add_task("build", total=None)
        try:
            summary = build_dataset(symbols, start=first, end=last, out=out_dir, sources=build_live_sources(settings),
                                    teacher=teacher, weeks=weeks, now=now,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        except EngineError as exc:
            fail(str(exc))
    err.print(f"{summary.rows_total} rows in {out_dir / 'rows.jsonl'} ({summary.written} new, {summary.skipped} "
              f"already there, {summary.failed} failed: see failures.jsonl); status {summary.status}",
              highlight=False)
    if summary.status != "complete":
        raise typer.Exit(1)


def _train_config(settings: Settings, base: str | None, **values) -> TrainConfig:
    from engine.train_config import TrainConfig

    try:
        return TrainConfig(base=base or settings.model_base, device=settings.model_device, **values)
    except ValueError as exc:
        fail(str(exc))


@contextlib.contextmanager
def training_bar(max_steps_hint: int | None = None):
    """A rich progress bar fed by the trainer's progress callback: step, loss, tokens/s, ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("train", total=max_steps_hint, info="")

        def update(p) -> None:
            info = f"loss {p.loss:.4f}" if p.loss is not None else ""
            if p.tokens_per_s:
                info += f"  {p.tokens_per_s:,.0f} tok/s"
            bar.update(task, completed=p.step, total=p.max_steps, info=info)

        yield update


@app.command("train")
def train_command(
    dataset: Annotated[Path, typer.Option(help="A folder written by `forecaster dataset prepare`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New folder for the adapter.")],
    base: Annotated[str | None, typer.Option(help="Base model (default MODEL_BASE).")] = None,
    qlora: Annotated[bool, typer.Option("--qlora", help="4-bit NF4 base (bitsandbytes) under the LoRA.")] = False,
    max_length: Annotated[int, typer.Option(help="Longest prompt + answer, in tokens.")] = 4096,
    epochs: Annotated[float, typer.Option(help="Passes over the training rows.")] = 1.0,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 5e-5,
    rank: Annotated[int, typer.Option(help="LoRA rank (alpha = 2 x rank).")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Rows per optimizer update (batch size is 1).")] = 8,
    max_steps: Annotated[int, typer.Option(help="Stop after this many updates (-1: the epochs).")] = -1,
) -> None:
    """LoRA/QLoRA fine-tuning on the answers only, memory-lean by construction."""
    from engine.exceptions import EngineError
    from engine.train import train

    settings = load_settings()
    cfg = _train_config(settings, base, qlora=qlora, max_length=max_length, epochs=epochs, learning_rate=lr,
                        rank=rank, alpha=2 * rank, gradient_accumulation=grad_accum, max_steps=max_steps)
    try:
        with training_bar() as progress:
            result = train(cfg, dataset, out_dir, progress=progress)
    except EngineError as exc:
        fail(str(exc))
    r = result.record
    err.print(f"adapter saved to {out_dir}: {r['steps']} steps, loss {r['loss_first']:.4f} → {r['loss_last']:.4f}, "
              f"{r['wall_s']:.0f}s, peak {r['peak_memory']}", highlight=False)


@app.command()
def retrain(
    dataset: Annotated[Path, typer.Option(help="A folder written by `forecaster dataset prepare`.")],
    eval_dataset: Annotated[str | None, typer.Option(help="FinGPT-format split the gate evaluates on "
                                                          "(default EVAL_DATASET).")] = None,
    eval_limit: Annotated[int | None, typer.Option(min=1, help="Evaluate on the first N rows only.")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the training rows.")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many updates (-1: the epochs).")] = -1,
    grad_accum: Annotated[int, typer.Option(help="Rows per optimizer update (batch size is 1).")] = 8,
    qlora: Annotated[bool, typer.Option("--qlora", help="4-bit NF4 base under the LoRA.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Promote even if it scores worse (admin override).")]
        = False,
) -> None:
    """Train a new adapter into MODEL_DIR, evaluate it against the served one, promote it only if not worse."""
    from engine.exceptions import EngineError
    from engine.registry import Registry
    from engine.retrain import retrain as run_retrain

    settings = load_settings()
    eval_dataset = eval_dataset or settings.eval_dataset
    if not eval_dataset:
        fail("give --eval-dataset or set EVAL_DATASET: a new adapter is served only after it is evaluated")
    cfg = _train_config(settings, None, qlora=qlora, epochs=epochs, max_steps=max_steps,
                        gradient_accumulation=grad_accum)
    try:
        with training_bar() as train_progress, progress_bar(eval_limit or 300, enabled=True) as eval_progress:
            outcome = run_retrain(
                cfg, dataset_dir=dataset, registry=Registry(settings.model_dir), eval_dataset=eval_dataset,
                load_analyst=lambda: _load_base(settings), metric=settings.model_gate_metric, force=force,
                eval_limit=eval_limit, max_new_tokens=settings.model_max_new_tokens,
                batch_size=settings.model_batch_size, train_progress=train_progress, eval_progress=eval_progress)
    except EngineError as exc:
        fail(str(exc))
    verdict = "promoted" if outcome.decision.promote else "kept the current adapter"
    typer.echo(f"{outcome.version}: {verdict} — {outcome.decision.reason}")


def _load_base(settings: Settings):
    from engine.model import Analyst

    return Analyst.load(settings.model_base, device=settings.model_device, dtype=settings.model_dtype,
                        load_in_4bit=settings.model_load_in_4bit, merge_adapter=settings.model_merge_adapter)


@model_app.command("list")
def model_list() -> None:
    """Every adapter version with its scores and the gate's verdict; * marks the one served."""
    from engine.registry import Registry

    registry = Registry(load_settings().model_dir)
    current = registry.current_version()
    if not registry.versions():
        typer.echo(f"no adapters in {registry.root}; the bare base model is served")
        return
    for version in registry.versions():
        scores = (registry.read(version, "evaluation.json") or {}).get("scores") or {}
        decision = registry.read(version, "decision.json") or {}
        acc = scores.get("binary_accuracy_all")
        verdict = ("promoted" if decision.get("promote") else "refused") if decision else "not evaluated"
        typer.echo(f"{'*' if version == current else ' '} {version}  acc(all) "
                   f"{'–' if acc is None else f'{acc:.3f}'}  {verdict}  {decision.get('reason', '')}".rstrip())


@model_app.command("promote")
def model_promote(version: Annotated[str, typer.Argument(help="e.g. v0003")]) -> None:
    """Serve VERSION from now on (workers pick it up between jobs)."""
    from engine.exceptions import EngineError
    from engine.registry import Registry

    try:
        Registry(load_settings().model_dir).promote(version, reason="promoted by hand")
    except EngineError as exc:
        fail(str(exc))
    typer.echo(f"{version} is now served")


@model_app.command("rollback")
def model_rollback() -> None:
    """Serve the version that was current before this one (or the bare base)."""
    from engine.exceptions import EngineError
    from engine.registry import Registry

    try:
        previous = Registry(load_settings().model_dir).rollback(reason="rolled back by hand")
    except EngineError as exc:
        fail(str(exc))
    typer.echo(f"now serving {previous or 'the bare base model'}")
