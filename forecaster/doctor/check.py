"""What every doctor check returns, and the helpers the checks share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]
MODEL_STACK = ("install torch for this machine's hardware, then `pip install -e '.[model]'` "
               "(README: Installing the model stack); bot- and scheduler-only hosts do not need it")


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, the verdict, what was found, and how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def warn(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, "warn", detail, fix)


def fail(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, "fail", detail, fix)


def is_secret(value: Any) -> bool:
    from pydantic import SecretStr

    return isinstance(value, SecretStr)


def secret_text(value: Any) -> str:
    """The secret's text, stripped ('' when unset)."""
    return value.get_secret_value().strip() if value is not None else ""
