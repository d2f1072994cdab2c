"""engine.data.prompts: the golden round trip over the published test split, plus hand-made records.

Hand-made records use invented companies and news; no dataset text is copied into fixtures.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data.prompt_parser import parse_user_prompt
from engine.data.prompts import (
    NO_BASICS,
    NO_NEWS,
    PROMO_SUMMARY_PREFIX,
    SYSTEM_PROMPT,
    TEMPLATE_ID,
    DroppedNews,
    NewsLine,
    PromptParts,
    WeekBlock,
    build_messages,
    build_user_prompt,
    first_difference,
    fit_to_budget,
    fix_wording,
    llama_to_messages,
    messages_to_llama,
    sample_news,
)
from engine.exceptions import PromptError, PromptTooLong
from engine.records import BasicFinancials, CompanyProfile, NewsItem

REPO_ROOT = Path(__file__).resolve().parents[3]


def _user(row: dict) -> str:
    return llama_to_messages(row["prompt"])[1]["content"]


def _first_failure(rows: list[dict], check) -> str | None:
    """Run `check(user) -> str | None` on every row; describe the first failing row, or None."""
    for i, row in enumerate(rows):
        try:
            problem = check(_user(row))
        except PromptError as e:
            problem = f"PromptError: {e}"
        if problem:
            return f"row {i} ({row['symbol']}, {row['period']}): {problem}"
    return None


# ---- Golden: the published test split -----------------------------------------------------------------------


def test_every_test_split_prompt_rebuilds_byte_for_byte(fingpt_test_rows):
    assert len(fingpt_test_rows) == 300

    def check(user: str) -> str | None:
        rebuilt = build_user_prompt(parse_user_prompt(user))
        return None if rebuilt == user else first_difference(user, rebuilt)

    assert _first_failure(fingpt_test_rows, check) is None


def test_every_test_split_prompt_rebuilds_with_stock_wording_after_fix(fingpt_test_rows):
    def check(user: str) -> str | None:
        fixed = fix_wording(user)
        parts = parse_user_prompt(user)
        if parts.wording != "cryptocurrency" or parse_user_prompt(fixed).wording != "stock":
            return f"wording detected as {parts.wording!r} before the fix"
        rebuilt = build_user_prompt(dataclasses.replace(parts, wording="stock"))
        return None if rebuilt == fixed else first_difference(fixed, rebuilt)

    assert _first_failure(fingpt_test_rows, check) is None


def test_llama_wrapper_round_trips_for_every_row(fingpt_test_rows):
    for i, row in enumerate(fingpt_test_rows):
        messages = llama_to_messages(row["prompt"])
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[0]["content"] == SYSTEM_PROMPT
        assert messages_to_llama(messages) == row["prompt"], f"row {i} ({row['symbol']}, {row['period']})"


def test_parsed_target_week_equals_period_column_for_every_row(fingpt_test_rows):
    for i, row in enumerate(fingpt_test_rows):
        parts = parse_user_prompt(_user(row))
        where = f"row {i} ({row['symbol']}, {row['period']})"
        assert f"{parts.target_start} to {parts.target_end}" == row["period"], where
        assert parts.symbol == row["symbol"] == parts.profile.ticker, where
        # The last past week ends where the predicted week starts (FINGPT_FORMAT.md §2).
        assert parts.weeks[-1].end == parts.target_start, where


def test_past_week_counts_match_the_reference_distribution(fingpt_test_rows):
    counts = collections.Counter(len(parse_user_prompt(_user(row)).weeks) for row in fingpt_test_rows)
    assert counts == {1: 96, 2: 105, 3: 99}


def test_test_split_news_and_basics_are_as_documented(fingpt_test_rows):
    parts = [parse_user_prompt(_user(row)) for row in fingpt_test_rows]
    weeks = [w for p in parts for w in p.weeks]
    assert len(weeks) == 603
    assert sum(len(w.news) == 5 for w in weeks) == 595
    assert all(p.financials is not None and 10 <= len(p.financials.metrics) <= 38 for p in parts)


# ---- The Llama wrapper and the wording fix ------------------------------------------------------------------

_GOOD_LLAMA = "[INST]<<SYS>>\n" + SYSTEM_PROMPT + "\n<</SYS>>\n\n" + "user text" + "[/INST]"


def test_llama_to_messages_splits_a_well_formed_prompt():
    assert llama_to_messages(_GOOD_LLAMA) == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "user text"},
    ]
    assert messages_to_llama(llama_to_messages(_GOOD_LLAMA)) == _GOOD_LLAMA


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        (_GOOD_LLAMA.replace("[INST]<<SYS>>\n", "[INST] <<SYS>>\n", 1), "start with"),
        (_GOOD_LLAMA.replace("seasoned stock market analyst", "seasoned analyst", 1), "SYSTEM_PROMPT"),
        (_GOOD_LLAMA.replace("[Prediction & Analysis]\n", "[Prediction & Analysis]:\n", 1), "SYSTEM_PROMPT"),
        (_GOOD_LLAMA[: -len("[/INST]")], "end with"),
        (_GOOD_LLAMA + "\n", "end with"),
        ("<|im_start|>user\nhello<|im_end|>", "start with"),
    ],
    ids=["prefix-space", "other-system", "system-with-colon", "no-suffix", "text-after-suffix", "chatml"],
)
def test_llama_to_messages_rejects_a_wrong_prefix_system_or_suffix(prompt, says):
    with pytest.raises(PromptError, match=says):
        llama_to_messages(prompt)


def test_messages_to_llama_requires_exactly_system_then_user():
    with pytest.raises(PromptError, match="roles"):
        messages_to_llama([{"role": "user", "content": "hi"}])


def test_fix_wording_replaces_the_phrase_exactly_once():
    text = "Then make your prediction of the ZZZ cryptocurrency price movement for next week."
    assert fix_wording(text) == "Then make your prediction of the ZZZ stock price movement for next week."


@pytest.mark.parametrize("count", [0, 2])
def test_fix_wording_raises_unless_the_phrase_occurs_exactly_once(count):
    text = "prefix " + " and ".join(["cryptocurrency price movement"] * count) + " suffix"
    with pytest.raises(PromptError, match=f"found it {count} times"):
        fix_wording(text)


# ---- Building from hand-made records ------------------------------------------------------------------------

PROFILE = CompanyProfile(
    ticker="ZZZ", name="Zeta Widgets Corp", finnhubIndustry="Widgets", ipo="1999-01-04",
    marketCapitalization=1234.5, shareOutstanding=67.891, currency="USD", country="US",
    exchange="NEW YORK STOCK EXCHANGE, INC.",
)


# The prompt shows market cap and shares to the cent, so only a profile with 2-decimal values parses back equal.
PROFILE_2DP = PROFILE.model_copy(update={"shareOutstanding": 67.89})


def _parts(weeks, financials=None, *, profile=PROFILE, **kw) -> PromptParts:
    return PromptParts(
        symbol="ZZZ", profile=profile, weeks=tuple(weeks), financials=financials,
        target_start="2030-01-20", target_end="2030-01-27", **kw,
    )


def test_build_user_prompt_matches_the_format_exactly():
    parts = _parts(
        [
            WeekBlock("ZZZ", "2030-01-06", "2030-01-13", 10.0, 10.0, (NewsLine("Zeta opens a plant", "A new plant."),)),
            WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 10.0, 11.5, ()),
        ],
        BasicFinancials(period="2029-12-31", metrics={"eps": 1.5, "pe": 20}),
    )
    assert build_user_prompt(parts) == (
        "[Company Introduction]:\n\nZeta Widgets Corp is a leading entity in the Widgets sector. Incorporated and "
        "publicly traded since 1999-01-04, the company has established its reputation as one of the key players in "
        "the market. As of today, Zeta Widgets Corp has a market capitalization of 1234.50 in USD, with 67.89 shares "
        "outstanding.\n\nZeta Widgets Corp operates primarily in the US, trading under the ticker ZZZ on the NEW YORK "
        "STOCK EXCHANGE, INC.. As a dominant force in the Widgets space, the company continues to innovate and drive "
        "progress within the industry.\n\n"
        "From 2030-01-06 to 2030-01-13, ZZZ's stock price decreased from 10.00 to 10.00. News during this period "
        "are listed below:\n\n[Headline]: Zeta opens a plant\n[Summary]: A new plant.\n\n"
        "From 2030-01-13 to 2030-01-20, ZZZ's stock price increased from 10.00 to 11.50. News during this period "
        "are listed below:\n\nNo relative news reported.\n"
        "Some recent basic financials of ZZZ, reported at 2029-12-31, are presented below:\n\n[Basic Financials]:"
        "\n\neps: 1.5\npe: 20\n\n"
        "Based on all the information before 2030-01-20, let's first analyze the positive developments and "
        "potential concerns for ZZZ. Come up with 2-4 most important factors respectively and keep them concise. "
        "Most factors should be inferred from company related news. Then make your prediction of the ZZZ stock "
        "price movement for next week (2030-01-20 to 2030-01-27). Provide a summary analysis to support your "
        "prediction."
    )


def test_a_flat_week_reads_decreased_as_upstream():
    week = WeekBlock("ZZZ", "2030-01-06", "2030-01-13", 42.0, 42.0, ())
    assert week.direction == "decreased"
    assert "stock price decreased from 42.00 to 42.00." in build_user_prompt(_parts([week]))


def test_a_week_without_news_reads_no_news():
    text = build_user_prompt(_parts([WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 1.0, 2.0, ())]))
    assert "News during this period are listed below:\n\n" + NO_NEWS + "\n" in text
    assert "[Headline]" not in text


def test_missing_financials_read_no_basics():
    text = build_user_prompt(_parts([WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 1.0, 2.0, ())], None))
    assert "\n" + NO_BASICS + "\n\nBased on all the information before 2030-01-20" in text
    assert "Some recent basic financials" not in text


def test_default_wording_is_stock_and_cryptocurrency_reproduces_upstream():
    parts = _parts([WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 1.0, 2.0, ())])
    assert parts.wording == "stock"
    assert "of the ZZZ stock price movement for next week" in build_user_prompt(parts)
    upstream = build_user_prompt(dataclasses.replace(parts, wording="cryptocurrency"))
    assert "of the ZZZ cryptocurrency price movement for next week" in upstream
    assert fix_wording(upstream) == build_user_prompt(parts)


def test_an_unknown_wording_is_rejected():
    with pytest.raises(PromptError, match="wording"):
        _parts([], wording="crypto")


def test_build_messages_puts_the_system_prompt_before_the_user_prompt():
    parts = _parts([WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 1.0, 2.0, ())])
    assert build_messages(parts) == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": build_user_prompt(parts)},
    ]


def test_template_constants_are_the_published_ones():
    assert TEMPLATE_ID == "fingpt-dow30-v1"
    assert len(SYSTEM_PROMPT) == 452
    assert "[Prediction & Analysis]\nPrediction:" in SYSTEM_PROMPT  # no colon, as upstream


# ---- Parsing hand-made prompts --------------------------------------------------------------------------------


def test_parse_round_trips_odd_news_and_metric_values():
    news = (
        NewsLine("", ""),
        NewsLine("Zeta’s ‘big’ day: 50% off [sic] ", " leading space\xa0and trailing space "),
        NewsLine("Plain headline", ""),
    )
    metrics = {"a": 1, "b": 0.25, "c": "1.50", "d": "None", "e": "-0", "f": "", "g": 1e-05, "h": "1_000"}
    parts = _parts(
        [
            WeekBlock("ZZZ", "2030-01-06", "2030-01-13", 3.0, 2.0, ()),
            WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 2.0, 3.0, news),
        ],
        BasicFinancials(period="2029-12-31", metrics=metrics),
        profile=PROFILE_2DP,
    )
    back = parse_user_prompt(build_user_prompt(parts))
    assert back == parts
    # Values that would not print back as the same text stay strings.
    assert [type(v) for v in back.financials.metrics.values()] == [int, float, str, str, str, str, float, str]


def test_parse_keeps_increased_when_both_prices_round_to_the_same_cents():
    week = WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 10.001, 10.004, ())
    text = build_user_prompt(_parts([week]))
    assert "increased from 10.00 to 10.00" in text
    back = parse_user_prompt(text)
    assert back.weeks[0].direction == "increased"
    assert build_user_prompt(back) == text


def test_parse_without_basics_or_weeks_gives_none_and_no_weeks():
    parts = _parts([], None, profile=PROFILE_2DP)
    assert parse_user_prompt(build_user_prompt(parts)) == parts


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("[Company Introduction]", "[Company]", 1),
        lambda t: t.replace("Provide a summary analysis", "Provide an analysis", 1),
        lambda t: t.replace("[Summary]: ", "[Summ]: ", 1),
        lambda t: t.replace("eps: 1.5", "eps 1.5", 1),
        lambda t: t.replace("News during this period", "Company news during this period", 1),  # app.py's
    ],
    ids=["intro", "closing", "news-item", "metric-line", "week-head"],
)
def test_parse_rejects_text_that_is_not_in_the_format(mangle):
    parts = _parts(
        [WeekBlock("ZZZ", "2030-01-13", "2030-01-20", 1.0, 2.0, (NewsLine("Invented headline", "Invented."),))],
        BasicFinancials(period="2029-12-31", metrics={"eps": 1.5}),
    )
    with pytest.raises(PromptError):
        parse_user_prompt(mangle(build_user_prompt(parts)))


# ---- News sampling ------------------------------------------------------------------------------------------


def _news(n: int, *, day0: int = 1) -> list[NewsItem]:
    base = dt.datetime(2030, 1, day0, tzinfo=dt.UTC)
    return [
        NewsItem(published=base + dt.timedelta(hours=7 * i), headline=f"Invented story {i:02d}", summary=f"S{i}")
        for i in range(n)
    ]


def test_sample_news_is_reproducible_and_independent_of_input_order():
    items = _news(20)
    first = sample_news(items, symbol="ZZZ", week_start="2030-01-06")
    assert len(first) == 5
    assert sample_news(items, symbol="ZZZ", week_start="2030-01-06") == first
    assert sample_news(list(reversed(items)), symbol="ZZZ", week_start="2030-01-06") == first


def test_sample_news_keeps_date_order():
    items = _news(20)
    chosen = sample_news(list(reversed(items)), symbol="ZZZ", week_start="2030-01-06", k=8)
    headlines = [n.headline for n in chosen]
    assert headlines == sorted(headlines)  # "Invented story NN" sorts like the dates


def test_sample_news_differs_for_another_week_symbol_or_seed():
    items = _news(20)
    base = sample_news(items, symbol="ZZZ", week_start="2030-01-06")
    assert sample_news(items, symbol="ZZZ", week_start="2030-01-13") != base
    assert sample_news(items, symbol="YYY", week_start="2030-01-06") != base
    assert sample_news(items, symbol="ZZZ", week_start="2030-01-06", seed=1) != base


def test_sample_news_keeps_all_items_when_there_are_few_and_drops_promotions():
    items = _news(4)
    promo = NewsItem(published=items[0].published, headline="Ad", summary=PROMO_SUMMARY_PREFIX + " Click here.")
    chosen = sample_news([*items, promo], symbol="ZZZ", week_start="2030-01-06")
    assert chosen == tuple(NewsLine(n.headline, n.summary) for n in items)
    assert sample_news([], symbol="ZZZ", week_start="2030-01-06") == ()


def test_sample_news_is_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import datetime as dt;from engine.records import NewsItem;from engine.data.prompts import sample_news;"
        "b=dt.datetime(2030,1,1,tzinfo=dt.UTC);"
        "items=[NewsItem(published=b+dt.timedelta(hours=7*i),headline=f'Invented story {i:02d}',summary=f'S{i}')"
        " for i in range(20)];"
        "print([n.headline for n in sample_news(items,symbol='ZZZ',week_start='2030-01-06')])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    here = [n.headline for n in sample_news(_news(20), symbol="ZZZ", week_start="2030-01-06")]
    assert out.strip() == repr(here)


# ---- Token budget -------------------------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def _budget_parts() -> PromptParts:
    def week(start: str, end: str, tag: str) -> WeekBlock:
        news = tuple(NewsLine(f"{tag} headline {i}", f"{tag} summary {i} " + "word " * 10) for i in range(3))
        return WeekBlock("ZZZ", start, end, 1.0, 2.0, news)

    return _parts(
        [week("2029-12-30", "2030-01-06", "old"), week("2030-01-06", "2030-01-13", "mid"),
         week("2030-01-13", "2030-01-20", "new")],
        BasicFinancials(period="2029-12-31", metrics={"eps": 1.5}),
    )


def test_fit_to_budget_leaves_a_fitting_prompt_unchanged():
    parts = _budget_parts()
    tokens = _words(build_user_prompt(parts))
    assert fit_to_budget(parts, count_tokens=_words, max_tokens=tokens) == (parts, [])


def test_fit_to_budget_drops_the_oldest_weeks_earliest_items_first_and_reports_them():
    parts = _budget_parts()
    full = _words(build_user_prompt(parts))
    item = _words("[Headline]: old headline 0\n[Summary]: old summary 0 " + "word " * 10)
    fitted, dropped = fit_to_budget(parts, count_tokens=_words, max_tokens=full - 3 * item - 1)
    # Three items only free 3 * item words (NO_NEWS adds 4 back), so the fourth goes from the next week.
    assert dropped == [
        DroppedNews("2029-12-30", "old headline 0"),
        DroppedNews("2029-12-30", "old headline 1"),
        DroppedNews("2029-12-30", "old headline 2"),
        DroppedNews("2030-01-06", "mid headline 0"),
    ]
    assert fitted.weeks[0].news == ()
    assert fitted.weeks[1].news == parts.weeks[1].news[1:]
    assert fitted.weeks[2] == parts.weeks[2]
    # Nothing but news changed.
    assert dataclasses.replace(fitted, weeks=parts.weeks) == parts
    assert [dataclasses.replace(w, news=()) for w in fitted.weeks] == [
        dataclasses.replace(w, news=()) for w in parts.weeks
    ]
    text = build_user_prompt(fitted)
    assert _words(text) <= full - 3 * item - 1
    assert "are listed below:\n\n" + NO_NEWS + "\nFrom 2030-01-06" in text


def test_fit_to_budget_raises_prompt_too_long_when_no_news_is_left_to_drop():
    parts = _budget_parts()
    bare = _words(build_user_prompt(_parts([dataclasses.replace(w, news=()) for w in parts.weeks],
                                           parts.financials)))
    with pytest.raises(PromptTooLong, match=rf"{bare} tokens.*budget of {bare - 1}.*fewer past weeks"):
        fit_to_budget(parts, count_tokens=_words, max_tokens=bare - 1)


def test_fit_to_budget_on_a_real_prompt_drops_only_the_first_item_of_the_oldest_week(fingpt_test_rows):
    def quarter(text: str) -> int:
        return len(text) // 4

    parts = parse_user_prompt(_user(fingpt_test_rows[0]))
    fitted, dropped = fit_to_budget(parts, count_tokens=quarter, max_tokens=quarter(build_user_prompt(parts)) - 1)
    assert dropped == [DroppedNews(parts.weeks[0].start, parts.weeks[0].news[0].headline)]
    assert fitted.weeks[0].news == parts.weeks[0].news[1:]
    assert fitted.weeks[1:] == parts.weeks[1:]
