"""The bot process stays light: importing every bot module must not pull in the model stack."""

from __future__ import annotations

import subprocess
import sys

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
    probe = f"import sys, jobs.cli; print(','.join(n for n in {names!r} if n in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""
