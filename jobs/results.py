"""What each job returns, as typed records: RQ keeps a job's return value (`Job.return_value()`), and operators, the
benchmarks and the tests read it. One JSON round trip per record (`to_json` / `from_json`), so what RQ stores is
plain JSON types, and `result_version` says which shape it is.

Every result says how the job ended (`status`): "done" (the user has the answer, or had it from an earlier try,
which `note` then says) or "failed" (the user was told why, in `error`'s words). A job that raises has no result: RQ
records the exception, and the job's own handlers tell the user (jobs.failures).
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from engine.evaluation.track_report import Counts
from engine.forecast_record import ForecastRecord
from engine.typed_record import TypedRecord, known_version

RESULT_VERSION = 1


class JobResult(TypedRecord):
    result_version: int = RESULT_VERSION
    status: Literal["done", "failed"]
    note: str = ""  # done without work: e.g. "answer already posted by an earlier try"
    error: str = ""  # failed: what the user was told

    @field_validator("result_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        return known_version("job result", version, RESULT_VERSION)


class ForecastJobResult(JobResult):
    """`/forecast`: the forecast posted, without its raw answer (long, and in the ledger), when this try made it."""

    forecast: ForecastRecord | None = None


class DigestJobResult(JobResult):
    """The digest: how many forecasts were posted, the tickers without one and why, and where the messages are."""

    forecasts: int = 0
    failed: dict[str, str] = {}
    summary_ts: str | None = None
    thread: tuple[str | None, ...] = ()  # each analysis's reply in the summary's thread, by ticker order


class RetrainJobResult(JobResult):
    """`/retrain`: the version trained, whether the gate promoted it, and why."""

    version: str | None = None
    promoted: bool | None = None
    reason: str = ""


class SummaryJobResult(JobResult):
    """The weekly evaluation summary: the week it covers, the outcomes it scored this run, the report's counts, the
    tickers whose prices failed, and the charts it posted (Slack file ids; None: not drawn or not posted)."""

    week: str
    newly_scored: int
    counts: Counts
    failures: dict[str, str] = {}
    chart: str | None = None
    reliability_chart: str | None = None


class WatchJobResult(JobResult):
    """`/watch add`: what was added, already there, refused, or left out by the channel's cap."""

    added: tuple[str, ...] = ()
    already: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    over_cap: tuple[str, ...] = ()
    size: int | None = None
