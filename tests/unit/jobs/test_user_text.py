"""What a Slack user is told about a failure is chosen by its kind, never copied from the exception (issue 20, item
10): every kind the engine raises gets plain words, what to do included, and none of the operator's text."""

from __future__ import annotations

import inspect
import re

import pytest

import engine.exceptions as exceptions
from engine.exceptions import EngineError
from engine.sources.notices import told
from jobs.failures import for_user

# What operator text looks like: a URL, a path, a CLI command, a setting, code formatting, a Python exception name.
OPERATOR_TEXT = re.compile(r"https?://|/\w+/|forecaster |`|[A-Z]{3,}_[A-Z_]+|\w+(Error|Exception)\b|snapshot")
SECRET_DETAIL = ("snapshot /srv/data/snap has no prices for AXP; record it with `forecaster data snapshot AXP "
                 "--date 2024-03-15 --out /srv/data/snap` (cause: curl: (28) https://query2.finance.yahoo.com/v8/fi")

KINDS = [cls for _, cls in inspect.getmembers(exceptions, inspect.isclass) if issubclass(cls, EngineError)]


@pytest.mark.parametrize("kind", KINDS, ids=lambda cls: cls.__name__)
def test_every_engine_failure_is_told_in_plain_words_with_something_to_do(kind):
    words = for_user(kind(SECRET_DETAIL), job_id="forecast_AXP_2024-03-15")
    assert words.what and words.do.endswith(".") and words.do[0].isupper()
    for text in (words.what, words.do.replace("`forecast_AXP_2024-03-15`", "")):
        assert not OPERATOR_TEXT.search(text), (kind.__name__, text)
        assert "/srv" not in text and "curl" not in text


def test_the_most_specific_kind_decides():
    assert told(exceptions.SnapshotMissing("x")).what.startswith("this bot answers from recorded market data")
    assert told(exceptions.SourceUnavailable("x")).do == "Try again in a few minutes."
    assert told(exceptions.SourceAuthError("x")).do.startswith("Trying again will not help")
    assert told(exceptions.DataError("x")).what == "the market data for it came back unusable"


def test_a_failure_outside_the_data_names_the_job_for_the_team():
    words = for_user(exceptions.ModelServerError("The vLLM server at http://gpu:8000/v1 answered 503"), job_id="j1")
    assert words.what == "the model server did not answer, or refused the request"
    assert words.do == "If it keeps failing, tell an admin (the team can find it in the worker log under job `j1`)."
