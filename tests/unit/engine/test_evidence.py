"""engine.evaluation.evidence: each claim of an answer matched against the news its prompt held, on the real FinGPT test
split and the real Qwen2.5-7B answers in shared/ (no dataset text is copied here: the tests read it)."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.data.prompt_parser import parse_user_prompt
from engine.data.prompts import NewsLine, PromptParts, WeekBlock, build_user_prompt, llama_to_messages, sample_news
from engine.evaluation.evidence import THRESHOLD, evidence_of, grounding, match, name_words
from engine.parsing import parse_answer
from engine.records import NewsItem
from tests.fakes.sources import synthetic_profile


@pytest.fixture(scope="module")
def prompts(fingpt_test_rows) -> list[PromptParts]:
    return [parse_user_prompt(llama_to_messages(r["prompt"])[1]["content"]) for r in fingpt_test_rows]


def _news(parts: PromptParts) -> list[NewsLine]:
    return [n for w in parts.weeks for n in w.news]


def _claims(answer: str) -> list[str]:
    forecast = parse_answer(answer)
    return [*forecast.positives, *forecast.concerns]


def _claim(model_outputs, row: int, words: str) -> str:
    [claim] = [c for c in _claims(model_outputs["lora"][row]["prediction"]) if words in c]
    return claim


def test_claims_the_news_reported_are_matched_to_the_headline_that_reported_them(model_outputs, prompts):
    # Row 154 (MCD, 2024-03-24): the LoRA answer's outage concern, and the two outage items of its prompt: one
    # headline it restates (0.6 x all of its words), one holding 5 of its 12 words.
    outage = _claim(model_outputs, 154, "system outage")
    found = match(outage, _news(prompts[154]), ignore=name_words(prompts[154]))
    assert [(m.news.headline, round(m.score, 3)) for m in found] == [
        ("McDonald's System Outage", 0.6), ("McDonald's tech outage disrupts service around the world", 0.417)]
    # Row 288 (DIS, 2024-04-21): Peltz's lost proxy fight, read in its prompt.
    proxy = _claim(model_outputs, 288, "unsuccessful proxy fight")
    [best, *_] = match(proxy, _news(prompts[288]), ignore=name_words(prompts[288]))
    assert best.news.headline == "Nelson Peltz Got Crushed by Disney. Can He Recover?" and best.score > 0.8


def test_claims_not_in_the_news_read_match_nothing(model_outputs, prompts):
    # A ratio from the basic financials is not news (row 0, AXP).
    ratio = _claim(model_outputs, 0, "total debt to equity ratio of 6.355")
    assert match(ratio, _news(prompts[0]), ignore=name_words(prompts[0])) == []
    # The MCD outage against McDonald's news of five weeks later, which that answer never read.
    outage = _claim(model_outputs, 154, "system outage")
    assert prompts[159].symbol == "MCD" and match(outage, _news(prompts[159]), ignore=name_words(prompts[159])) == []


def test_a_paraphrase_padded_with_commentary_can_fall_under_the_threshold(model_outputs, prompts):
    """The known miss (README): row 76's Archegos concern is in its news, but 9 of its 13 words are the model's
    own commentary ("could lead to financial losses and reputational damage"), so it scores 4/13."""
    archegos = _claim(model_outputs, 76, "Archegos")
    [best] = match(archegos, _news(prompts[76]), ignore=name_words(prompts[76]), threshold=0.0, limit=1)
    assert "Archegos" in best.news.headline and best.score == pytest.approx(4 / 13)
    assert match(archegos, _news(prompts[76]), ignore=name_words(prompts[76])) == []


def test_the_threshold_separates_the_news_read_from_news_never_read(model_outputs, prompts):
    """The calibration behind THRESHOLD, on all 300 LoRA answers: scored against their own prompt's news, 54% of
    the items are supported; against the same company's news five weeks away (never read), 2%."""
    by_symbol: dict[str, list[int]] = {}
    for i, parts in enumerate(prompts):
        by_symbol.setdefault(parts.symbol, []).append(i)
    far = {i: rows[(k + 5) % len(rows)] for rows in by_symbol.values() for k, i in enumerate(rows)}
    own, control = [], []
    for i, row in enumerate(model_outputs["lora"]):
        ignore = name_words(prompts[i])
        for claim in _claims(row["prediction"]):
            own.append((claim, _news(prompts[i]), ignore))
            control.append((claim, _news(prompts[far[i]]), ignore))
    read, never = grounding(own), grounding(control)
    print(f"\nLoRA items supported by the news read: {read['supported']}/{read['items']} = {read['rate']:.3f}; "
          f"by news never read: {never['supported']}/{never['items']} = {never['rate']:.3f}")
    assert read["items"] == never["items"] == 1742
    assert read["supported"] == 940  # 54.0%: README "Evidence under every claim"
    assert never["rate"] < 0.03


def test_news_items_carry_source_url_and_date_without_changing_the_prompt():
    items = [NewsItem(published=dt.datetime(2024, 3, d, 14, tzinfo=dt.UTC), headline=f"Orders grew {d}",
                      summary="A summary.", source="Reuters", url=f"https://example.com/{d}") for d in (4, 5)]
    lines = sample_news(items, symbol="AXP", week_start="2024-03-03")
    assert [(n.source, n.url, n.published[:10]) for n in lines] == [
        ("Reuters", "https://example.com/4", "2024-03-04"), ("Reuters", "https://example.com/5", "2024-03-05")]
    bare = tuple(NewsLine(n.headline, n.summary) for n in lines)
    assert bare == lines  # compared by what the prompt shows

    def parts(news) -> PromptParts:
        week = WeekBlock("AXP", "2024-03-03", "2024-03-10", 10.0, 11.0, news)
        return PromptParts("AXP", synthetic_profile("AXP"), (week,), None, "2024-03-10", "2024-03-17")

    assert build_user_prompt(parts(lines)) == build_user_prompt(parts(bare))
    evidence = evidence_of(["Orders grew."], ["A strike looms."], parts(lines)).model_dump(mode="json")
    assert evidence["read"] == [
        {"week": "2024-03-03 to 2024-03-10", "headline": "Orders grew 4", "source": "Reuters", "date": "2024-03-04",
         "url": "https://example.com/4"},
        {"week": "2024-03-03 to 2024-03-10", "headline": "Orders grew 5", "source": "Reuters", "date": "2024-03-05",
         "url": "https://example.com/5"}]
    [[first, second]] = evidence["positive_developments"]
    assert (first["headline"], first["url"], first["date"], first["score"]) == (
        "Orders grew 4", "https://example.com/4", "2024-03-04", 1.0)
    assert second["headline"] == "Orders grew 5"  # equal scores keep the prompt's order
    assert evidence["potential_concerns"] == [[]]  # not found in the news it read
    assert evidence["threshold"] == THRESHOLD
