"""jobs.results: what a job returns survives RQ's JSON serializer as the same typed record, and a result this release
cannot read fails loudly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from rq.serializers import JSONSerializer

from engine.evaluation.track_report import Counts
from jobs.results import (
    RESULT_VERSION,
    DigestJobResult,
    ForecastJobResult,
    JobResult,
    RetrainJobResult,
    SummaryJobResult,
    WatchJobResult,
)

RESULTS = [
    ForecastJobResult(status="failed", error="No prices for ZZZZ"),
    ForecastJobResult(status="done", note="answer already posted by an earlier try"),
    DigestJobResult(status="done", forecasts=2, failed={"IBM": "no prices"}, summary_ts="1.2",
                    thread=("1.3", None)),
    RetrainJobResult(status="done", version="v0002", promoted=False, reason="accuracy 0.43 < momentum 0.73"),
    SummaryJobResult(status="done", week="2024-03-17 to 2024-03-24", newly_scored=7,
                     counts=Counts(scored=7, scored_this_week=2, pending=1, unparsed=1, superseded=0, late=1, weeks=3,
                                   tickers=2),
                     failures={"ZZZZ": "no prices"}, chart="F1"),
    WatchJobResult(status="done", added=("AXP",), already=("KO",), refused=("ZZZZ",), over_cap=(), size=2),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: f"{type(r).__name__}-{r.status}")
def test_each_result_reads_back_through_rqs_json_serializer_unchanged(result):
    kept = JSONSerializer.loads(JSONSerializer.dumps(result.to_json()))
    assert type(result).from_json(kept) == result
    assert kept["result_version"] == RESULT_VERSION and kept["status"] == result.status


def test_a_result_from_a_newer_release_or_with_a_misspelt_field_is_refused():
    with pytest.raises(ValidationError, match="newer release"):
        JobResult.from_json({"result_version": RESULT_VERSION + 1, "status": "done"})
    with pytest.raises(ValidationError, match="promotd"):
        RetrainJobResult.from_json({"status": "done", "promotd": True})
    with pytest.raises(ValidationError, match="status"):
        JobResult.from_json({"status": "ok"})
