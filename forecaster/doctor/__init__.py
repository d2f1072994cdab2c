"""`forecaster doctor`: is this machine and this configuration ready to run the product? One check per concern.

Every check returns a `Check` (ok, warn or fail, what was found, and the fix); none raises. `cheap_checks` makes
no network call except to Redis and never imports torch, so `forecaster up` can run it before starting anything;
`all_checks` adds the calls to Slack, Finnhub, Yahoo (and the vLLM server when it serves the model) and the GPU
sizing. Secrets are scrubbed from every line (`scrub`), whatever a library put in an error message.

    check.py     Check and its helpers
    host.py      Python, packages, time zone
    services.py  Redis, Slack, Finnhub, Yahoo
    model.py     model files, adapter, memory on the device, the vLLM server
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from forecaster.doctor.check import Check, is_secret, secret_text
from forecaster.doctor.host import check_packages, check_python, check_time_zone
from forecaster.doctor.model import (
    Device,
    check_adapter,
    check_answer_budget,
    check_model_base,
    check_model_memory,
    check_vllm,
    memory_verdict,
    probe_device,
)
from forecaster.doctor.services import (
    MANIFEST,
    check_finnhub_call,
    check_finnhub_key,
    check_redis,
    check_slack_auth,
    check_slack_mode,
    check_slack_token,
    check_yahoo,
    required_scopes,
)

if TYPE_CHECKING:
    import requests

    from forecaster.settings import Settings

__all__ = [
    "Check", "Device", "all_checks", "cheap_checks", "check_adapter", "check_answer_budget", "check_finnhub_call",
    "check_finnhub_key",
    "check_model_base", "check_model_memory", "check_packages", "check_python", "check_redis", "check_slack_auth",
    "check_slack_mode", "check_slack_token", "check_time_zone", "check_vllm", "check_yahoo", "memory_verdict",
    "probe_device", "render", "required_scopes", "scrub", "summary",
]


def cheap_checks(settings: Settings, *, env: Mapping[str, str] | None = None) -> list[Check]:
    """What `forecaster up` checks before it starts: no network except Redis, no torch import."""
    env = os.environ if env is None else env
    checks = [
        check_python(),
        *check_packages(),
        *check_redis(settings),
        check_slack_token(settings),
        check_slack_mode(settings),
        check_finnhub_key(settings),
        check_model_base(settings, env=env),
        check_adapter(settings),
        check_answer_budget(settings),
        check_time_zone(),
    ]
    return scrub(checks, settings)


def all_checks(settings: Settings, *, env: Mapping[str, str] | None = None,
               yahoo_session: requests.Session | None = None, manifest: Path = MANIFEST) -> list[Check]:
    """Everything: the cheap checks, then Slack's auth.test and scopes, one Finnhub call, one Yahoo download, and
    whether the model fits this machine's GPU (or RAM)."""
    env = os.environ if env is None else env
    checks = cheap_checks(settings, env=env)
    if settings.slack_bot_token is not None and secret_text(settings.slack_bot_token):
        checks += check_slack_auth(settings, manifest=manifest)
    if settings.finnhub_api_key is not None:
        checks.append(check_finnhub_call(settings))
    checks.append(check_yahoo(settings, session=yahoo_session))
    checks.append(check_model_memory(settings, env=env))
    if settings.model_backend == "vllm":
        checks.append(check_vllm(settings))
    return scrub(checks, settings)


def render(check: Check) -> str:
    """One line: status, name, what was found, and the fix when there is one."""
    label = {"ok": "ok", "warn": "warn", "fail": "FAIL"}[check.status]
    line = f"{label:<5} {check.name:<18} {check.detail}"
    return f"{line} → fix: {check.fix}" if check.fix else line


def summary(checks: Iterable[Check]) -> str:
    counts = {status: 0 for status in ("ok", "warn", "fail")}
    for check in checks:
        counts[check.status] += 1
    return f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s)"


def scrub(checks: list[Check], settings: Settings) -> list[Check]:
    """Remove every secret the settings hold, and URL passwords, from each line (library errors quote URLs)."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    secrets = [secret_text(value) for value in values if is_secret(value)]
    if settings.redis_url:
        password = re.search(r"//[^:/@]*:([^@]+)@", settings.redis_url)
        secrets += [password.group(1)] if password else []
    secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def clean(text: str) -> str:
        text = re.sub(r"//([^:/@\s]*):[^@\s]*@", r"//\1:***@", text)  # as forecaster.cli.common.redact_url
        text = re.sub(r"(token|apikey|api_key)=[^&\s]+", r"\1=***", text, flags=re.IGNORECASE)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return [replace(c, detail=clean(c.detail), fix=clean(c.fix)) for c in checks]
