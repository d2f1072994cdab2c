"""`forecaster bot`: refusing an incomplete configuration all at once, `--check`, the mode chosen from the
settings (Socket Mode built but never connected here), and the real command serving HTTP until it is stopped."""

from __future__ import annotations

import signal

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from typer.testing import CliRunner

import forecaster.cli
from bot.app import build_app, mode_of, socket_mode_handler
from jobs.client import fast_connection, queue
from jobs.queues import INTERACTIVE
from tests.fakes.slack_commands import SECRET
from tests.scenarios.bot_harness import bot_env, bot_process, bot_settings, request, slash


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(forecaster.cli.app, ["bot", *args], env=env)
    return result.exit_code, result.stderr


def test_an_incomplete_configuration_is_refused_with_everything_missing_at_once():
    code, err = run()
    assert code == 2
    assert "REDIS_URL is not set" in err and "SLACK_BOT_TOKEN is not set" in err
    assert "SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request with it" in err
    code, err = run(env={"SLACK_APP_TOKEN": "xoxb-wrong-kind", "SLACK_ADMIN_USERS": "U0123ABCD,W0456EFGH"})
    assert code == 2 and "SLACK_APP_TOKEN must be an app-level token starting with xapp-" in err
    assert "SLACK_SIGNING_SECRET" not in err  # Socket Mode does not need it
    code, err = run(env={"SLACK_ADMIN_USERS": "U0123ABCD,alice"})
    assert code == 2 and "alice: not Slack user ids" in err


def test_check_connects_to_redis_and_slack_and_names_the_mode(slack, redis, redis_server):
    env = bot_env(slack, redis_server["url"])
    code, err = run("--check", env=env)
    assert code == 0, err
    assert "configuration OK, Redis answers, token accepted; would run in http mode" in err
    code, err = run("--check", env=env | {"SLACK_APP_TOKEN": "xapp-1-test", "SLACK_SIGNING_SECRET": ""})
    assert code == 0 and "would run in socket mode" in err, err
    assert [c.method for c in slack.calls] == ["auth.test", "auth.test"]


def test_a_token_slack_refuses_stops_the_bot_with_what_to_do(slack, redis, redis_server):
    slack.invalid_tokens.add("xoxb-revoked")
    code, err = run("--check", env=bot_env(slack, redis_server["url"], SLACK_BOT_TOKEN="xoxb-revoked"))
    assert code == 2
    assert "Slack did not accept SLACK_BOT_TOKEN" in err and "OAuth & Permissions" in err
    assert "xoxb-revoked" not in err  # secrets never printed


def test_socket_mode_is_chosen_by_the_app_token_and_built_without_connecting(slack, redis, redis_server):
    settings = bot_settings(slack, redis_server["url"], slack_app_token="xapp-1-test", slack_signing_secret=None)
    assert mode_of(settings) == "socket" and mode_of(bot_settings(slack, redis_server["url"])) == "http"
    app = build_app(settings, conn=fast_connection(redis_server["url"]))
    handler = socket_mode_handler(app, settings)
    assert isinstance(handler, SocketModeHandler) and handler.app is app
    assert handler.client.app_token == "xapp-1-test"
    assert handler.client.web_client.base_url == slack.api_url  # SLACK_API_URL applies to Socket Mode too
    assert [c.method for c in slack.calls] == ["auth.test"]  # apps.connections.open only on .start()
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET is required in HTTP mode"):
        build_app(bot_settings(slack, redis_server["url"], slack_signing_secret=None),
                  conn=fast_connection(redis_server["url"]))


def test_the_real_command_serves_until_stopped_and_never_logs_secrets(slack, redis, redis_server, tmp_path):
    with bot_process(bot_env(slack, redis_server["url"]), cwd=tmp_path) as bot:
        health = request(bot, "GET", "/healthz")
        reply = slash(bot, "/forecast", "AXP 2024-03-15")
        bot.process.send_signal(signal.SIGTERM)  # what `docker stop` sends
        stopped = bot.process.wait(timeout=10)
    print(f"forecaster bot listened {bot.started_s:.2f}s after launch")
    assert health.status == 200 and reply.status == 200 and "Queued *AXP*" in reply.text
    assert queue(redis, INTERACTIVE).count == 1
    assert stopped == 0
    log = bot.log_path.read_text(encoding="utf-8")
    assert "bot: stopped" in log
    assert SECRET not in log and "xoxb-test" not in log
