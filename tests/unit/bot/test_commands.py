"""Slash-command text → arguments: what is accepted, and the one-line reason for what is not."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.commands import (
    DIGEST_WORDS,
    HELP_WORDS,
    TICKER_RE,
    DigestArgs,
    ForecastArgs,
    Help,
    RetrainArgs,
    TrackArgs,
    UsageError,
    parse_digest,
    parse_forecast,
    parse_retrain,
    parse_status,
    parse_track,
    quote,
)

TODAY = dt.date(2026, 11, 25)


def forecast(text: str):
    return parse_forecast(text, today=TODAY)


def refused(parse, text: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse(text)
    return str(caught.value)


def test_a_ticker_alone_is_a_live_forecast_with_the_defaults():
    assert forecast("AXP") == ForecastArgs("AXP", as_of=None, weeks=3, financials=True, dow30=True)


def test_options_come_in_any_order_and_any_case():
    expected = ForecastArgs("AXP", as_of=dt.date(2024, 3, 15), weeks=2, financials=False, dow30=True)
    assert forecast("axp 2024-03-15 weeks=2 no-financials") == expected
    assert forecast("  $AXP   NO-FINANCIALS  Weeks=2 2024-03-15 ") == expected
    assert forecast("AXP financials").financials is True


def test_share_classes_and_former_dow_members_are_known_tickers():
    assert forecast("brk.b").ticker == "BRK.B" and forecast("BRK.B").dow30 is False
    assert forecast("BF-B").ticker == "BF-B"
    assert forecast("WBA").dow30 is True  # left the index in 2024, still a symbol the table knows
    assert forecast("ZZZZ") == ForecastArgs("ZZZZ", dow30=False)  # unknown: the worker will say so


def test_dow30_and_digest_ask_for_the_digest():
    assert forecast("dow30") == forecast("DOW30") == forecast("digest") == DigestArgs(as_of=None)
    assert forecast("Digest 2024-03-15") == DigestArgs(as_of=dt.date(2024, 3, 15))
    assert "is not an option of /forecast dow30" in refused(forecast, "dow30 weeks=2")
    assert "is not an option of /forecast digest" in refused(forecast, "digest AXP")


# Every word the /forecast and /track parsers treat as a keyword when it comes first, and whether a real listed
# symbol is spelled that way (1-5 letters: what a ticker looks like). Options (weeks=, financials, dates) only
# come after the ticker, so they cannot shadow one.
KEYWORDS_VS_TICKERS = {
    "dow30": False, "digest": False,  # a digit; six letters: no ticker looks like these
    "-h": False, "--help": False, "?": False,
    "help": True,  # could be a ticker: `$HELP` asks for it
}


def test_keywords_are_only_words_no_ticker_looks_like_except_help():
    assert set(KEYWORDS_VS_TICKERS) == DIGEST_WORDS | HELP_WORDS  # a new keyword must be checked here
    for word, ticker_shaped in KEYWORDS_VS_TICKERS.items():
        assert bool(TICKER_RE.match(word.upper())) is ticker_shaped, word


@pytest.mark.parametrize(("text", "ticker", "dow30"), [
    ("DOW", "DOW", True),  # Dow Inc., a Dow30 member 2019-2024: not the digest
    ("dow", "DOW", True),
    ("Dow 2024-03-15", "DOW", True),
    ("DJIA", "DJIA", False),  # Global X Dow 30 Covered Call ETF: not the digest
    ("usage", "USAGE", False),  # no longer a help word: ticker-shaped
    ("$HELP", "HELP", False),  # the way to ask for a ticker spelled like the help keyword
    ("$help weeks=2", "HELP", False),
])
def test_tickers_spelled_like_keywords_are_forecast_as_tickers(text, ticker, dow30):
    args = forecast(text)
    assert isinstance(args, ForecastArgs) and (args.ticker, args.dow30) == (ticker, dow30)
    assert parse_track(text.split()[0]) == TrackArgs(ticker)


def test_help_in_any_spelling():
    for text in ("help", "HELP", "-h", "--help", "?", "help me please"):
        assert forecast(text) == Help()
    assert parse_digest("help", today=TODAY) == Help() and parse_retrain("?") == Help()
    assert parse_status("help") == Help() and parse_track("help") == Help() and parse_track("Help") == Help()
    assert forecast("dow30 help") == Help()


@pytest.mark.parametrize(("text", "message"), [
    ("", "which stock? Give a ticker, e.g. `/forecast AXP`"),
    ("   ", "which stock? Give a ticker, e.g. `/forecast AXP`"),
    ("A1", "'A1' is not a ticker: use 1-5 letters, with an optional class suffix (AXP, MSFT, BRK.B)"),
    ("TOOLONG", "'TOOLONG' is not a ticker: use 1-5 letters, with an optional class suffix (AXP, MSFT, BRK.B)"),
    ("AXP 2024-02-30", "'2024-02-30' is not a date; write it as YYYY-MM-DD, e.g. 2026-11-25"),
    ("AXP 15/03/2024", "'15/03/2024' is not a date; write it as YYYY-MM-DD, e.g. 2026-11-25"),
    ("AXP 2026-11-26", "2026-11-26 is in the future; give today (2026-11-25) or an earlier date"),
    ("AXP weeks=0", "'weeks=0': weeks must be between 1 and 4 (past weeks of news in the prompt)"),
    ("AXP weeks=1.5", "'weeks=1.5' is not valid: weeks takes a whole number"),
    ("AXP weeks", "'weeks' is not an option of /forecast (it takes YYYY-MM-DD, financials / no-financials, "
                  "weeks=1-4)"),
    ("AXP financials=no", "'financials=no' is not an option of /forecast"),
    ("AXP epochs=2", "'epochs=2' is not an option of /forecast"),
    ("AXP weeks=2 weeks=3", "weeks given twice"),
    ("AXP financials no-financials", "financials given twice"),
    ("AXP 2024-03-15 2024-03-08", "two dates given (2024-03-15 and '2024-03-08'); give one YYYY-MM-DD"),
])
def test_each_mistake_gets_a_message_that_says_what_to_do(text, message):
    assert refused(forecast, text).startswith(message)


def test_the_users_text_is_echoed_short_and_without_markup():
    assert quote("<!channel>") == "'&lt;!channel&gt;'"
    assert quote("`x` & y") == "''x' &amp; y'"
    long = "X" * 500
    assert quote(long) == "'" + "X" * 23 + "…'"
    assert len(refused(forecast, "AXP " + "9" * 5000)) < 200
    assert "<@U1>" not in refused(forecast, "<@U1>")


def test_digest_takes_only_a_date():
    assert parse_digest("", today=TODAY) == DigestArgs()
    assert parse_digest("2024-03-15", today=TODAY) == DigestArgs(dt.date(2024, 3, 15))
    assert "is not an option of /digest (it takes YYYY-MM-DD)" in refused(
        lambda t: parse_digest(t, today=TODAY), "AXP")


def test_retrain_takes_epochs_and_force():
    assert parse_retrain("") == RetrainArgs()
    assert parse_retrain("epochs=2.5 force") == RetrainArgs(epochs=2.5, force=True)
    assert refused(parse_retrain, "epochs=0").startswith("epochs=0: epochs must be more than 0 and at most 20")
    assert refused(parse_retrain, "epochs=21").startswith("epochs=21: epochs must be more than 0")
    assert refused(parse_retrain, "epochs=nan") == "epochs must be a finite number"
    assert refused(parse_retrain, "epochs=inf") == "epochs must be a finite number"
    assert "'2024-03-15' is not an option of /retrain" in refused(parse_retrain, "2024-03-15")


def test_status_takes_nothing_and_track_one_ticker_at_most():
    assert parse_status("") is None
    assert refused(parse_status, "now") == "'now' is not an option of /forecast-status (it takes none)"
    assert parse_track("") == TrackArgs(None) and parse_track("axp") == TrackArgs("AXP")
    assert refused(parse_track, "AXP KO") == "one ticker at most (got 2 words)"
