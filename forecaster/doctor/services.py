"""The services the product talks to: Redis, Slack, Finnhub and Yahoo Finance."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.doctor.check import Check, fail, ok, secret_text, warn

if TYPE_CHECKING:
    import redis
    import requests

    from forecaster.settings import Settings

MANIFEST = Path(__file__).resolve().parents[2] / "bot" / "manifest.json"
# What the worker and the bot cannot do without when the manifest is not at hand.
DEFAULT_SCOPES = frozenset({"commands", "chat:write"})
CREATE_APP = ("create the Slack app from bot/manifest.json (api.slack.com/apps → Create New App → From a manifest), "
              "install it to the workspace, and copy its Bot User OAuth Token (xoxb-…) into SLACK_BOT_TOKEN")


# -- Redis ---------------------------------------------------------------------------------------------------------


def check_redis(settings: Settings, *, conn: redis.Redis | None = None) -> list[Check]:
    """Reachable, persistent (a queued job must survive a restart) and never evicting (a queue must not lose keys)."""
    if not settings.redis_url:
        return [warn("redis", "REDIS_URL is not set: `forecaster up` starts an embedded Redis; the worker, bot and "
                              "scheduler started on their own need one",
                     "set REDIS_URL=redis://HOST:6379/0 when the services run apart (docker/compose.yaml does)")]
    import redis as redis_lib

    own = conn is None
    conn = conn or redis_lib.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    where = settings.redis_url
    try:
        info = conn.info("server")
    except redis_lib.RedisError as exc:
        return [fail("redis", f"{where} does not answer ({exc})",
                     "start Redis (docker compose up -d redis), fix REDIS_URL, or unset it to let `forecaster up` "
                     "start an embedded one")]
    try:
        checks = [ok("redis", f"Redis {info.get('redis_version', '?')} at {where}"), *_redis_config(conn)]
    finally:
        if own:
            conn.close()
    return checks


def _redis_config(conn: redis.Redis) -> list[Check]:
    import redis as redis_lib

    try:
        config = {}
        for name in ("appendonly", "appendfsync", "save", "maxmemory", "maxmemory-policy"):
            config.update({_text(k): _text(v) for k, v in conn.config_get(name).items()})
    except redis_lib.ResponseError as exc:
        # Managed services (ElastiCache, Memorystore) often disable or rename CONFIG.
        return [warn("redis persistence", f"cannot read the configuration ({exc})",
                     "make sure the server runs with appendonly yes and maxmemory-policy noeviction")]
    aof = config.get("appendonly") == "yes"
    snapshots = config.get("save", "").strip()
    if aof:
        persistence = ok("redis persistence", f"AOF on (appendfsync {config.get('appendfsync', '?')})")
    elif snapshots:
        persistence = warn("redis persistence", f"RDB snapshots only (save {snapshots}): jobs queued since the last "
                                                "snapshot are lost if Redis stops",
                           "run redis-server with --appendonly yes --appendfsync everysec (docker/compose.yaml does)")
    else:
        persistence = warn("redis persistence", "none (no AOF, no snapshots): every queued job and the track "
                                                "record are lost when Redis restarts",
                           "run redis-server with --appendonly yes --appendfsync everysec (docker/compose.yaml does)")
    policy, limit = config.get("maxmemory-policy", "?"), int(config.get("maxmemory") or 0)
    if policy == "noeviction":
        eviction = ok("redis eviction", "maxmemory-policy noeviction")
    elif limit == 0:
        eviction = warn("redis eviction", f"maxmemory-policy {policy}, harmless while maxmemory is 0 (no limit)",
                        "set maxmemory-policy noeviction before setting a memory limit")
    else:
        eviction = fail("redis eviction", f"maxmemory-policy {policy} with maxmemory {limit}: Redis may delete "
                                          "queued jobs and ledger entries when full",
                        "CONFIG SET maxmemory-policy noeviction (and in redis.conf)")
    return [persistence, eviction]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- Slack ---------------------------------------------------------------------------------------------------------


def check_slack_token(settings: Settings) -> Check:
    token = secret_text(settings.slack_bot_token)
    if not token:
        return fail("slack token", "SLACK_BOT_TOKEN is not set", CREATE_APP)
    if not token.startswith("xoxb-"):
        kinds = {"xoxp-": "a user token (xoxp-)", "xapp-": "an app-level token (xapp-)"}
        kind = next((name for prefix, name in kinds.items() if token.startswith(prefix)), "not a bot token (xoxb-)")
        return fail("slack token", f"SLACK_BOT_TOKEN is {kind}",
                    "use the app's Bot User OAuth Token (xoxb-…, OAuth & Permissions page)")
    return ok("slack token", "SLACK_BOT_TOKEN is a bot token (xoxb-)")


def check_slack_mode(settings: Settings) -> Check:
    """Socket Mode (SLACK_APP_TOKEN) or HTTP mode (SLACK_SIGNING_SECRET): the bot needs one of the two."""
    app_token = secret_text(settings.slack_app_token)
    signing_secret = secret_text(settings.slack_signing_secret)
    if app_token:
        if not app_token.startswith("xapp-"):
            return fail("slack mode", "SLACK_APP_TOKEN is not an app-level token (xapp-)",
                        "Basic Information → App-Level Tokens → generate one with connections:write")
        return ok("slack mode", "Socket Mode (SLACK_APP_TOKEN set): no public URL needed")
    if signing_secret:
        return ok("slack mode", "HTTP mode (SLACK_SIGNING_SECRET set): Slack must reach https://HOST/slack/events")
    return fail("slack mode", "neither SLACK_APP_TOKEN nor SLACK_SIGNING_SECRET is set",
                "for development set SLACK_APP_TOKEN (Socket Mode: Basic Information → App-Level Tokens, scope "
                "connections:write); for production set SLACK_SIGNING_SECRET (Basic Information → Signing Secret)")


def required_scopes(manifest: Path = MANIFEST) -> tuple[frozenset[str], str]:
    """The bot scopes the app manifest declares, and where they came from."""
    try:
        declared = json.loads(manifest.read_text(encoding="utf-8"))["oauth_config"]["scopes"]["bot"]
        return frozenset(declared), str(manifest.name)
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_SCOPES, "the minimum (no readable bot/manifest.json)"


def check_slack_auth(settings: Settings, *, manifest: Path = MANIFEST, timeout_s: int = 10) -> list[Check]:
    """`auth.test` with the bot token (at SLACK_API_URL), then the granted scopes (its x-oauth-scopes header)
    against the manifest's."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    kwargs = {"base_url": _with_slash(settings.slack_api_url)} if settings.slack_api_url else {}
    # The client logs a failed request at ERROR; doctor reports it once, on its own line.
    quiet = logging.getLogger("forecaster.doctor.slack_sdk")
    quiet.setLevel(logging.CRITICAL)
    client = WebClient(token=secret_text(settings.slack_bot_token), timeout=timeout_s, logger=quiet, **kwargs)
    try:
        response = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown error") if exc.response is not None else str(exc)
        fixes = {
            "invalid_auth": "the token is wrong or was regenerated: copy the current Bot User OAuth Token",
            "token_revoked": "the app was uninstalled or the token revoked: reinstall the app, copy the new token",
            "account_inactive": "the bot user or workspace is deactivated: reinstall the app",
            "not_authed": "SLACK_BOT_TOKEN is empty",
        }
        return [fail("slack auth", f"auth.test refused the token: {error}", fixes.get(error, CREATE_APP))]
    except Exception as exc:  # urllib errors, timeouts: whatever stops us reaching Slack
        return [fail("slack auth", f"cannot reach Slack at {client.base_url} ({type(exc).__name__}: {exc})",
                     "check the network or proxy, or SLACK_API_URL")]
    who = f"bot @{response.get('user', '?')} in workspace {response.get('team', '?')} ({response.get('team_id', '?')})"
    checks = [ok("slack auth", f"auth.test ok: {who}")]

    granted_header = next((v for k, v in (response.headers or {}).items() if k.lower() == "x-oauth-scopes"), None)
    wanted, source = required_scopes(manifest)
    if granted_header is None:
        checks.append(warn("slack scopes", "Slack did not report the token's scopes (no x-oauth-scopes header)",
                           f"check OAuth & Permissions has {', '.join(sorted(wanted))}"))
        return checks
    if isinstance(granted_header, list):  # some HTTP stacks hand repeated headers back as a list
        granted_header = ",".join(granted_header)
    granted = {s.strip() for s in granted_header.split(",") if s.strip()}
    missing = sorted(wanted - granted)
    if missing:
        checks.append(fail("slack scopes", f"missing {', '.join(missing)} (required by {source})",
                           "add them under OAuth & Permissions → Bot Token Scopes (or recreate the app from "
                           "bot/manifest.json), then reinstall the app to the workspace"))
    else:
        checks.append(ok("slack scopes", f"{', '.join(sorted(wanted))} granted (required by {source})"))
    return checks


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


# -- market data ---------------------------------------------------------------------------------------------------


def check_finnhub_key(settings: Settings) -> Check:
    if settings.finnhub_api_key is None:
        return warn("finnhub", "FINNHUB_API_KEY is not set: news and profiles come from Yahoo (recent articles only) "
                               "and forecasts carry no basic financials",
                    "get a free key at finnhub.io/register and set FINNHUB_API_KEY")
    return ok("finnhub", "FINNHUB_API_KEY is set")


def check_finnhub_call(settings: Settings) -> Check:
    """One company-profile call through the real client (one unit of the 60/min budget)."""
    import requests
    from finnhub.exceptions import FinnhubAPIException, FinnhubRequestException

    from engine.sources.finnhub import build_client

    url = str(settings.finnhub_api_url) if settings.finnhub_api_url else None
    client = build_client(secret_text(settings.finnhub_api_key), api_url=url, timeout_s=settings.http_timeout_s)
    try:
        client.company_profile2(symbol="AAPL")
    except FinnhubAPIException as exc:
        if exc.status_code in (401, 403):
            return fail("finnhub", f"Finnhub refused the key (HTTP {exc.status_code}: {exc.message})",
                        "copy the key again from finnhub.io/dashboard, or unset FINNHUB_API_KEY to use Yahoo's news")
        if exc.status_code == 429:
            return warn("finnhub", "the key works but is rate-limited right now (HTTP 429)",
                        "another process is using the 60 calls/min budget; FINNHUB_CALLS_PER_MINUTE shares it")
        return fail("finnhub", f"Finnhub answered HTTP {exc.status_code} ({exc.message})", "try again later")
    except (requests.RequestException, FinnhubRequestException) as exc:
        return fail("finnhub", f"cannot reach Finnhub at {client.API_URL} ({type(exc).__name__}: {exc})",
                    "check the network or proxy, or FINNHUB_API_URL")
    return ok("finnhub", "key accepted (one profile call)")


def check_yahoo(settings: Settings, *, session: requests.Session | None = None,
                today: Any = None) -> Check:
    """One daily-closes download for SPY through the product's Yahoo source (no retries: a quick yes or no)."""
    import datetime as dt

    from engine.exceptions import EngineError
    from engine.sources.yahoo import YahooSource

    if settings.data_snapshot_dir is not None:
        return ok("yahoo", f"not used: DATA_SNAPSHOT_DIR={settings.data_snapshot_dir} serves all market data")
    today = today or dt.date.today()
    try:
        closes = YahooSource(session=session, retries=0).daily_closes(["SPY"], today - dt.timedelta(days=10), today)
    except EngineError as exc:
        return fail("yahoo", f"Yahoo Finance did not serve SPY prices: {exc}",
                    "check the network (Yahoo blocks some cloud IP ranges); forecasts need daily closes")
    except Exception as exc:  # yfinance raises whatever its HTTP stack raises
        return fail("yahoo", f"Yahoo Finance unreachable ({type(exc).__name__}: {exc})",
                    "check the network or proxy; forecasts need daily closes")
    last = closes["SPY"][-1]
    return ok("yahoo", f"reachable: SPY closed at {last.close:.2f} on {last.date}")
