"""The base of every record that crosses a layer (a forecast, a track report, a job result, the ledger's views):
frozen, unknown fields refused, and one JSON round trip. Pydantic only, so the bot can read them.

Readers use attributes, so a renamed field fails where it is read; `from_json` raises pydantic's ValidationError,
naming the field. A stored record also carries its version; `known_version` refuses one from a newer release.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict


class TypedRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict:
        """The record as plain JSON types: what is stored, returned to RQ or printed."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: dict) -> Self:
        """A record from `to_json`'s dict. Raises pydantic's ValidationError, naming the field, for anything else."""
        return cls.model_validate(data)


def known_version(kind: str, version: int, newest: int) -> int:
    """`version` when this release can read it; a ValueError saying what to do when a newer release wrote it."""
    if version > newest:
        raise ValueError(f"{kind} version {version} was written by a newer release than this one (which reads up to "
                         f"{newest}): update this process")
    return version
