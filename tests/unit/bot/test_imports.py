"""The bot process stays light: importing every bot module must not pull in the model stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "peft", "trl")

PROBE = """
import importlib, pkgutil, sys
import bot
for m in pkgutil.walk_packages(bot.__path__, 'bot.'):
    importlib.import_module(m.name)
print(",".join(n for n in {heavy!r} if n in sys.modules))
"""


def test_bot_never_imports_torch_transformers_peft_or_trl():
    # A fresh interpreter: this test process may have imported anything.
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == ""


def test_the_cli_module_imports_nothing_heavy_until_a_command_runs():
    names = HEAVY + ("yfinance", "finnhub", "pandas")
    probe = f"import sys, forecaster.cli; print(','.join(n for n in {names!r} if n in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""


SERVING_PROBE = """
import json, sys
from slack_bolt.request import BoltRequest
from bot.app import build_app
from forecaster.settings import Settings
from jobs.client import fast_connection
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_commands import SECRET, command_body, signed_headers

redis_url = sys.argv[1]
with FakeSlack() as slack:
    settings = Settings(_env_file=None, slack_bot_token="xoxb-test", slack_signing_secret=SECRET,
                        slack_api_url=slack.api_url, redis_url=redis_url, slack_admin_users="U111")
    app = build_app(settings, conn=fast_connection(redis_url))
    answers = []
    for command, text in [("/forecast", "AXP"), ("/forecast", "dow30"), ("/retrain", ""), ("/forecast-status", ""),
                          ("/track", "AXP"), ("/forecast", "help")]:
        body = command_body(command, text)
        response = app.dispatch(BoltRequest(body=body, headers=signed_headers(body)))
        answers.append([response.status, json.loads(response.body)["text"][:40]])
print(json.dumps({"heavy": [n for n in HEAVY_NAMES if n in sys.modules], "answers": answers}))
"""


def test_building_the_app_and_handling_every_command_imports_nothing_heavy(redis, redis_server):
    root = Path(__file__).resolve().parents[3]
    probe = SERVING_PROBE.replace("HEAVY_NAMES", repr(HEAVY))
    done = subprocess.run([sys.executable, "-c", probe, redis_server["url"]], capture_output=True, text=True,
                          timeout=60, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["heavy"] == []
    assert [status for status, _ in report["answers"]] == [200] * 6
    assert report["answers"][0][1].startswith(":hourglass_flowing_sand: Queued *AXP*")
