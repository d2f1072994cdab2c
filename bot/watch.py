"""`/watch` (each channel's watchlist) and the App Home tab, as the bot runs them.

`/watch` and `/watch remove` read or write the ledger within `bot.ledger_reads`' 2 s deadline and answer at once.
`/watch add` refuses at once what needs no data source (a malformed ticker, a name already there, a list that
would pass WATCHLIST_MAX), then queues the check of the new names (`jobs.watch`: the worker asks the same market
data sources a forecast does) and acks "checking…"; the worker's answer replaces that note. The bot itself never
calls a data source: a provider's latency is not Slack's 3 s to spend.

The Home tab is published (views.publish) after the event is acknowledged, by a Bolt lazy listener: its reads
may take up to the ledger deadline, and Slack wants the event's 200 within 3 s.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import redis
from slack_bolt import App
from slack_sdk.errors import SlackApiError

from bot import messages
from bot.commands import WatchArgs
from bot.ledger_reads import LedgerUnavailable
from bot.watch_blocks import (
    home_view,
    watch_checking,
    watch_list_message,
    watch_nothing_new,
    watch_over_cap,
    watch_removed,
)
from jobs.client import REFUSALS
from jobs.keys import home_chart_key
from jobs.ledger import LedgerNotReady

if TYPE_CHECKING:
    from bot.listeners import Commands, Invocation

log = logging.getLogger(__name__)

DEFAULT_CAP = 50


def _cap(commands: Commands) -> int:
    return int(getattr(commands.settings, "watchlist_max", DEFAULT_CAP))


def not_set_up() -> dict:
    return messages.payload(":hourglass_flowing_sand: Watchlists are not set up yet: their database has not been "
                            "prepared. Ask an admin to run `forecaster ledger migrate` (starting a worker, or "
                            "`forecaster up`, does it too), then try again.")


def change_unconfirmed() -> dict:
    return messages.payload(":grey_question: I could not confirm the change: the watchlist's database did not answer "
                            "in time. `/watch` shows the list as it is.")


def watch_command(commands: Commands, inv: Invocation, args: WatchArgs) -> dict:
    """The ack of `/watch …` (parsed); never raises for a database that is missing or slow."""
    cap = _cap(commands)
    try:
        if args.action == "list":
            tickers, calls = commands.ledger_reads.watchlist(inv.channel)
            scheduled = inv.channel in (getattr(commands.settings, "digest_channels", None) or ())
            return messages.payload(*watch_list_message(inv.channel, tickers, calls, cap=cap, scheduled=scheduled))
        if args.action == "remove":
            try:
                removed, missing, left = commands.ledger_reads.unwatch(inv.channel, list(args.tickers))
            except LedgerUnavailable as exc:
                log.warning("/watch remove by %s: %s", inv.user, exc)
                return change_unconfirmed()
            log.info("/watch remove in %s by %s: removed %s, not on it %s", inv.channel, inv.user, removed, missing)
            return messages.payload(watch_removed(removed, missing, left))
        present = commands.ledger_reads.watchlist_names(inv.channel)
    except LedgerNotReady as exc:
        log.warning("/watch by %s: the ledger is not ready: %s", inv.user, exc)
        return not_set_up()
    except LedgerUnavailable as exc:
        log.warning("/watch by %s: the ledger's database is unavailable: %s", inv.user, exc)
        return messages.watchlist_unavailable()
    new = [t for t in args.tickers if t not in present]
    if not new:
        return messages.payload(watch_nothing_new(list(args.tickers)))
    if len(present) + len(new) > cap:
        log.info("/watch add in %s by %s refused: %d + %d names > %d", inv.channel, inv.user, len(present),
                 len(new), cap)
        return messages.payload(watch_over_cap(size=len(present), new=new, cap=cap))
    try:
        commands._jobs().watch_add(channel=inv.channel, user=inv.user, tickers=new, response_url=inv.response_url,
                                   delivery=inv.trigger_id)
    except REFUSALS as exc:
        return commands._refused(inv, exc, queue="forecast", what="the check of those names")
    return messages.payload(watch_checking(new) + messages._no_workers(commands._workers_alive()))


def _home_chart(commands: Commands) -> dict | None:
    """The summary's newest chart (jobs.summary stores its Slack file id); None when there is none or Redis is down:
    the tab opens without it."""
    try:
        raw = commands.conn.get(home_chart_key())
        return json.loads(raw) if raw else None
    except (redis.RedisError, ValueError) as exc:
        log.warning("App Home: the chart could not be read: %s", exc)
        return None


def register_home(app: App, commands: Commands) -> None:
    """The Home tab, published when a user opens it (`app_home_opened`, tab "home")."""

    def acknowledge(ack: Any) -> None:
        ack()

    def publish(event: dict, client: Any) -> None:
        if event.get("tab") != "home" or not event.get("user"):
            return
        user = event["user"]
        try:
            lists, calls, record = commands.ledger_reads.home()
        except (LedgerNotReady, LedgerUnavailable) as exc:
            log.warning("App Home for %s: the ledger could not be read: %s", user, exc)
            lists, calls, record = {}, {}, None
        except Exception:  # noqa: BLE001 — the tab still opens, saying the record is unavailable
            log.exception("App Home for %s: reading the ledger failed", user)
            lists, calls, record = {}, {}, None
        try:
            client.views_publish(user_id=user, view=home_view(lists, calls, record, cap=_cap(commands),
                                                              chart=_home_chart(commands)))
        except SlackApiError as exc:
            log.warning("App Home for %s: views.publish refused: %s", user, exc.response.get("error"))

    app.event("app_home_opened")(ack=acknowledge, lazy=[publish])
