"""engine.forecast_record: one JSON round trip for a forecast, what older stored records read as, and loud failures
for a record this release cannot read (a newer version, a renamed or unknown field)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from engine.data.inputs import Sources
from engine.forecast_record import RECORD_VERSION, ForecastRecord
from engine.market.weeks import NEW_YORK
from tests.fakes.forecasts import canned_forecast, distribution, stepped_market

AT = dt.datetime(2024, 3, 8, 18, 0, tzinfo=NEW_YORK)  # forecasts the week of Mar 10


@pytest.fixture(scope="module")
def sources() -> Sources:
    market = stepped_market(("AXP",))
    return Sources(market, market, market)


@pytest.fixture(scope="module")
def record(sources) -> ForecastRecord:
    return canned_forecast(sources, "AXP", at=AT, prediction="Up by 1-2%",
                           distribution=distribution(0.61, top="U2", p_top=0.34), signal_band=0.05)


def _through_storage(record: ForecastRecord) -> dict:
    """As Redis or RQ keep it: JSON text, read back."""
    return json.loads(json.dumps(record.to_json()))


def test_a_record_survives_its_json_round_trip_field_for_field(record):
    assert record.evidence is not None and record.probabilities is not None  # the round trip carries every part
    assert ForecastRecord.from_json(_through_storage(record)) == record
    stored = _through_storage(record)
    assert stored["record_version"] == RECORD_VERSION
    assert stored["prediction"] == {"direction": "up", "magnitude": "1-2%", "label": "up by 1-2%",
                                    "as_written": "Up by 1-2%"}
    assert stored["probabilities"]["stated"] == {"code": "U2", "p": pytest.approx(0.34)}


def test_a_record_stored_before_versions_evidence_and_the_signal_flag_reads_as_version_one(record):
    old = _through_storage(record)
    for key in ("record_version", "evidence", "prompt_sha256"):
        del old[key]
    for key in ("clear_signal", "signal_band"):
        del old["probabilities"][key]
    read = ForecastRecord.from_json(old)
    assert read.record_version == 1 and read.evidence is None and read.prompt_sha256 == ""
    assert read.probabilities.clear_signal is None and read.probabilities.signal_band is None
    assert read.claim_evidence("positive_developments") is None  # the plain lists, as such a forecast always showed


def test_the_job_result_without_the_raw_answer_still_reads(record):
    short = record.model_copy(update={"raw": ""}).to_json()
    del short["raw"]
    assert ForecastRecord.from_json(short).raw == ""


def test_a_record_from_a_newer_release_is_refused_with_what_to_do(record):
    newer = _through_storage(record) | {"record_version": RECORD_VERSION + 1}
    with pytest.raises(ValidationError, match="newer release.*update this process"):
        ForecastRecord.from_json(newer)


@pytest.mark.parametrize("change", ["renamed", "unknown", "wrong type"])
def test_a_renamed_unknown_or_mistyped_field_fails_naming_it(record, change):
    stored = _through_storage(record)
    if change == "renamed":
        stored["positives"] = stored.pop("positive_developments")
        named = "positive_developments"
    elif change == "unknown":
        stored["prediction"]["confidence"] = 0.9
        named = "prediction.confidence"
    else:
        stored["new_tokens"] = "many"
        named = "new_tokens"
    with pytest.raises(ValidationError, match=named.replace(".", r"\.")):
        ForecastRecord.from_json(stored)


def test_claims_pair_with_their_evidence_only_when_the_counts_agree(record):
    assert len(record.claim_evidence("positive_developments")) == len(record.positive_developments)
    stored = _through_storage(record)
    stored["evidence"]["potential_concerns"].append([])  # one more than there are concerns
    assert ForecastRecord.from_json(stored).claim_evidence("potential_concerns") is None


def test_the_record_reads_without_numpy_or_the_model_stack():
    """The bot reads records: importing the type must not pull in what the bot process never loads."""
    code = ("import sys; import engine.forecast_record; "
            "print(sorted(m for m in ('numpy', 'torch', 'transformers', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
