"""Evidence under every claim: which of the news items a prompt held support each Positive Development and Concern.

Pure, no model: a claim is reduced to its content words (lower case, stop words, the company's own name and ticker
taken out) and scored against each news item: the share of the claim's words the item (headline and summary)
holds, or, when higher, HEADLINE_WEIGHT times the share of the headline's words the claim holds (a claim that
restates a headline but pads it with the model's own commentary, "... which could lead to reputational damage").
A word counts as held when rapidfuzz finds one at least `SAME_WORD` alike ("earning" ~ "earnings"). An item
scoring `THRESHOLD` or more, with at least `MIN_WORDS` of the claim's words in it, supports the claim; the best
`MAX_MATCHES` are kept, best first. A claim with no such item is "not found in the news it read" (a claim drawn
from the basic financials or the price moves is honestly that: it is not news).

THRESHOLD 0.35 (and HEADLINE_WEIGHT 0.6) were chosen on the real FinGPT test split (300 prompts, 2,997 news items)
with the answers of Qwen2.5-7B-Instruct with and without its LoRA and GPT-4's reference answers: each answer's
items scored against its own prompt's news and, as a control, against the news of the same company five weeks
away (news it never read). At 0.35 the control supports about 2% of the items (at 0.30: 5-6%), while the own news
supports 52-61%. README "Evidence under every claim" has the figures, examples of both sides and the known misses;
tests/unit/engine/test_evidence.py reproduces them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from engine.data.prompts import NewsLine, PromptParts
from engine.forecast_record import Evidence, NewsMatch, NewsRead

METHOD = "word-cover-v1"  # names the scoring below: bump it when the words, the scorer or the threshold change
THRESHOLD = 0.35
MIN_WORDS = 2
HEADLINE_WEIGHT = 0.6  # a claim that restates a headline (holds 59% of its words or more) reaches THRESHOLD
SAME_WORD = 80  # rapidfuzz ratio (0-100) for two words to count as one
MAX_MATCHES = 3

_STOP = frozenset("""
a an the and or nor of to in on for with by at from as is are was were be been being it its this that these those
which who whom whose what has have had having will would can could may might should shall must than then there
their they them his her he she we our you your not no but if into over under about after before during amid while
also more most less such other same very so just up down out its it's company company's companies stock stocks
share shares price prices market markets investor investors inc corp corporation co ltd plc week weeks year
""".split())
_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")


@dataclass(frozen=True)
class Match:
    """One news item that supports a claim, and how well (the share of the claim's words it holds)."""

    news: NewsLine
    score: float

    def as_record(self) -> NewsMatch:
        return NewsMatch(headline=self.news.headline, source=self.news.source, date=self.news.published[:10],
                         url=self.news.url, score=round(self.score, 3))


def content_words(text: str, ignore: Iterable[str] = ()) -> list[str]:
    """The words of `text` that carry its meaning, once each, in order: lower case, no stop words, no one-letter
    words, none of `ignore` (the company's own name and ticker, which every item about it shares)."""
    skip = _STOP | set(ignore)
    return list(dict.fromkeys(w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in skip))


def name_words(parts: PromptParts) -> frozenset[str]:
    """The words of the company's name and its ticker: shared by every item, they prove nothing."""
    return frozenset(content_words(f"{parts.profile.name} {parts.symbol}"))


def _held(words: Sequence[str], item: frozenset[str]) -> int:
    held = 0
    for word in words:
        if word in item or process.extractOne(word, item, scorer=fuzz.ratio, score_cutoff=SAME_WORD) is not None:
            held += 1
    return held


def match(claim: str, news: Sequence[NewsLine], *, ignore: Iterable[str] = (), threshold: float = THRESHOLD,
          limit: int = MAX_MATCHES) -> list[Match]:
    """The news items that support `claim`, best first (at most `limit`); [] when none reaches `threshold`."""
    words = content_words(claim, ignore)
    if not words:
        return []
    claim, found = frozenset(words), []
    for item in news:
        text = frozenset(content_words(f"{item.headline} {item.summary}", ignore))
        held = _held(words, text) if text else 0
        headline = content_words(item.headline, ignore)
        restated = _held(headline, claim) / len(headline) if headline else 0.0
        score = max(held / len(words), HEADLINE_WEIGHT * restated)
        if held >= MIN_WORDS and score >= threshold:
            found.append(Match(item, score))
    found.sort(key=lambda m: -m.score)  # stable: equal scores keep the prompt's order
    return found[:limit]


def news_read(parts: PromptParts) -> tuple[NewsRead, ...]:
    """Every news item the prompt held, in prompt order: what the "Sources" reply lists."""
    return tuple(NewsRead(week=f"{w.start} to {w.end}", headline=n.headline, source=n.source,
                          date=n.published[:10], url=n.url) for w in parts.weeks for n in w.news)


def evidence_of(positives: Sequence[str], concerns: Sequence[str], parts: PromptParts) -> Evidence:
    """What a forecast record carries as its `evidence`: the method and threshold, the news read, and for each
    Positive Development and Concern, in order, its matches (each a headline, source, date, URL and score; none
    when the claim was not found in the news)."""
    news = [n for w in parts.weeks for n in w.news]
    ignore = name_words(parts)

    def each(claims: Sequence[str]) -> tuple[tuple[NewsMatch, ...], ...]:
        return tuple(tuple(m.as_record() for m in match(c, news, ignore=ignore)) for c in claims)

    return Evidence(method=METHOD, threshold=THRESHOLD, read=news_read(parts),
                    positive_developments=each(positives), potential_concerns=each(concerns))


def grounding(claims: Iterable[tuple[str, Sequence[NewsLine], Iterable[str]]]) -> dict:
    """The grounding rate of (claim, news read, words to ignore) triples: how many claims, how many at least one
    item supports, and their share (None when there were no claims)."""
    total = supported = 0
    for claim, news, ignore in claims:
        total += 1
        supported += bool(match(claim, news, ignore=ignore, limit=1))
    return {"items": total, "supported": supported, "rate": supported / total if total else None,
            "threshold": THRESHOLD, "method": METHOD}
