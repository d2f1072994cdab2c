"""`forecaster ledger`: the recorded forecasts, shown in a table, exported for analysis, or migrated out of Redis."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.cli import common
from forecaster.cli.common import app, err, fail, load_settings, out

if TYPE_CHECKING:
    from jobs.ledger import Ledger

ledger_app = typer.Typer(help="The forecast ledger: every forecast made, with its outcome once its week closed.",
                         no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


def _ledger() -> Ledger:
    """The database the settings name (DATABASE_URL, else DATA_DIR's SQLite file); a clear failure if it cannot
    be reached."""
    from sqlalchemy.exc import SQLAlchemyError

    from jobs.ledger import open_ledger

    store = open_ledger(load_settings())
    try:
        store.engine  # noqa: B018 — connects and migrates now, so a wrong URL fails here with the fix
    except SQLAlchemyError as exc:
        fail(f"cannot open the ledger database {store!r}: {str(exc).splitlines()[0]}. Check DATABASE_URL "
             "(unset: a SQLite file under DATA_DIR).")
    return store


@ledger_app.command("export")
def export(
    out_file: Annotated[Path, typer.Option("--out", help="File to write: .csv or .parquet (format by extension).")],
) -> None:
    """Write every recorded forecast, oldest first, one row each (outcome columns empty until scored)."""
    from jobs import ledger
    from jobs.ledger import export as ledger_export

    if out_file.suffix.lower() not in ledger.EXPORT_FORMATS:
        fail(f"cannot export to {out_file.name!r}: --out must end in .csv or .parquet, e.g. --out ledger.parquet")
    if not out_file.parent.is_dir():
        fail(f"no such directory: {out_file.parent}; create it first or choose another --out")
    try:
        rows = ledger_export.export(_ledger(), out_file)
    except ValueError as exc:
        fail(str(exc))
    err.print(f"wrote {rows} forecast(s) to {out_file}", highlight=False)


@ledger_app.command("show")
def show(
    ticker: Annotated[str | None, typer.Option(help="Only this ticker, e.g. AXP.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 20,
) -> None:
    """The newest recorded forecasts with their outcomes."""
    from rich import box
    from rich.table import Table

    from jobs import ledger

    symbol = common.parse_tickers([ticker])[0] if ticker else None
    rows = ledger.entries(_ledger(), ticker=symbol, limit=limit)
    if not rows:
        err.print(f"no forecasts recorded{f' for {symbol}' if symbol else ''} yet", highlight=False)
        return
    table = Table(title=f"Forecast ledger{f': {symbol}' if symbol else ''} (newest first)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for name, justify in (("requested (UTC)", "left"), ("ticker", "left"), ("week of", "left"),
                          ("prediction", "left"), ("actual", "left"), ("return", "right"), ("hit", "center"),
                          ("source", "left"), ("user", "left"), ("latency", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("model", overflow="fold")  # the longest and least needed: wraps first
    for row in rows:
        prediction = row["label"] if row["parsed"] and row["label"] else "[yellow]unparsed[/]"
        hit = {True: "[green]✓[/]", False: "[red]✗[/]", None: "·"}[row["hit"]]
        table.add_row(row["requested_at"][:16].replace("T", " "), row["ticker"], row["week_start"], prediction,
                      row["actual_label"] or "pending",
                      "" if row["realized_return"] is None else f"{100 * row['realized_return']:+.2f}%", hit,
                      row["source"], row["user"] or "", f"{row['latency_s']:.1f}s", row["model"])
    out.print(table)


@ledger_app.command("migrate")
def migrate() -> None:
    """Copy the ledger that earlier releases kept in Redis (REDIS_URL) into the database, once: entries already
    there are left alone, so running it again copies nothing. The Redis keys stay until you delete them."""
    from jobs.ledger.migrate import copy_from_redis
    from jobs.track_record import rebuild_reports

    settings = load_settings()
    if not settings.redis_url:
        fail("the old ledger lives in Redis: set REDIS_URL (e.g. redis://localhost:6379/0) to the Redis that holds it")
    store = _ledger()
    copied = copy_from_redis(common.connect_redis(settings), store)
    err.print(f"{copied.found} forecast(s) in the Redis ledger: {copied.copied} copied into {store!r}, "
              f"{copied.present} already there", highlight=False)
    rebuilt = rebuild_reports(store)  # the stored /track reports, for a ledger from before they were kept
    err.print(f"{len(rebuilt)} track report(s) brought up to date", highlight=False)
