"""Parse a FinGPT-Forecaster user prompt back into the `PromptParts` it was built from.

The regexes are derived from the very template constants `engine.data.prompts` formats, and a parse is accepted only
when `build_user_prompt` rebuilds the text byte for byte, so building and parsing cannot drift apart. The dataset
preparation (to drop news from an over-long row) and the momentum baseline (last week's move) read prompts here.
"""

from __future__ import annotations

import math
import re
import string

from engine.data.prompts import (
    BASICS_HEAD,
    COMPANY_INTRO,
    NO_BASICS,
    NO_NEWS,
    PROMPT_END_TEMPLATE,
    WEEK_HEAD,
    NewsLine,
    PromptParts,
    WeekBlock,
    build_user_prompt,
    first_difference,
)
from engine.exceptions import PromptError
from engine.records import BasicFinancials, CompanyProfile, MetricValue

_DATE = r"\d{4}-\d{2}-\d{2}"
_PRICE = r"-?\d+\.\d{2}"  # what ":.2f" writes


def _template_regex(template: str, patterns: dict[str, str]) -> re.Pattern[str]:
    """A regex matching `template` exactly, each field a named group (a back-reference when it repeats).

    Deriving the regex from the same constant the builder formats keeps the two from drifting apart.
    """
    out, seen = [], set()
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if field is None:
            continue
        out.append(f"(?P={field})" if field in seen else f"(?P<{field}>{patterns.get(field, '.*?')})")
        seen.add(field)
    return re.compile("".join(out), re.DOTALL)


_INTRO_RE = _template_regex(COMPANY_INTRO, {"marketCapitalization": _PRICE, "shareOutstanding": _PRICE})
_WEEK_HEAD_RE = _template_regex(
    "\n" + WEEK_HEAD,
    {"start": _DATE, "end": _DATE, "direction": "increased|decreased", "start_price": _PRICE, "end_price": _PRICE},
)
_END_RE = _template_regex(PROMPT_END_TEMPLATE, {"start": _DATE, "end": _DATE, "wording": "stock|cryptocurrency"})
_BASICS_RE = _template_regex("\n" + BASICS_HEAD, {"period": r"[^\n]*?"})


def _metric_value(text: str) -> MetricValue:
    """A number only when it prints back as the same text, so the rebuilt prompt is byte-exact."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if str(value) == text:
            return value
    return text


def _parse_news(text: str, where: str) -> tuple[NewsLine, ...]:
    if text == NO_NEWS:
        return ()
    first = "[Headline]: "
    if not text.startswith(first) or not text.endswith("\n"):
        raise PromptError(f"{where}: the news should be {NO_NEWS!r} or '[Headline]: ...' items ending in a newline.")
    # Items are "[Headline]: h\n[Summary]: s\n" joined with "\n": each boundary is "\n\n[Headline]: ".
    lines = []
    for chunk in text[len(first):-1].split("\n\n" + first):
        headline, sep, summary = chunk.partition("\n[Summary]: ")
        if not sep:
            raise PromptError(f"{where}: a news item has no '[Summary]: ' line: {chunk[:60]!r}.")
        lines.append(NewsLine(headline=headline, summary=summary))
    return tuple(lines)


def _week_prices(head: re.Match[str]) -> tuple[float, float]:
    start, end = float(head["start_price"]), float(head["end_price"])
    if head["direction"] == "increased" and end <= start:
        # Both true prices rounded to the same cents: nudge the end up by one ulp, which still prints the same
        # but keeps the "increased" that was computed from the unrounded prices.
        end = math.nextafter(end, math.inf)
    elif head["direction"] == "decreased" and end > start:
        raise PromptError(f"Week {head['start']}: reads 'decreased' although {end:.2f} > {start:.2f}.")
    return start, end


def _parse_weeks(text: str, symbol: str) -> tuple[WeekBlock, ...]:
    heads = [m for m in _WEEK_HEAD_RE.finditer(text) if m["symbol"] == symbol]
    first_at = heads[0].start() if heads else len(text)
    if first_at != 0:
        raise PromptError(f"Unexpected text where the first week should start: {text[:60]!r}.")
    weeks = []
    for i, head in enumerate(heads):
        body_end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        start_price, end_price = _week_prices(head)
        news = _parse_news(text[head.end():body_end], f"Week {head['start']}")
        weeks.append(WeekBlock(symbol, head["start"], head["end"], start_price, end_price, news))
    return tuple(weeks)


def _parse_basics(text: str, symbol: str) -> tuple[str, BasicFinancials | None]:
    """Split the basics block and the newline before it off the end of `text`; return the rest and the financials."""
    if text.endswith("\n" + NO_BASICS):
        return text[: -len(NO_BASICS) - 1], None
    # The basics block is last and its lines are plain `key: value`, so its head is the last match.
    heads = [m for m in _BASICS_RE.finditer(text) if m["symbol"] == symbol]
    if not heads:
        raise PromptError(f"No basic financials block for {symbol} (neither {NO_BASICS!r} nor its head).")
    head = heads[-1]
    metrics: dict[str, MetricValue] = {}
    body = text[head.end():]
    for line in body.split("\n") if body else []:
        key, sep, value = line.partition(": ")
        if not sep or key in metrics:
            raise PromptError(f"Bad basic financials line {line!r}: expected a new 'key: value'.")
        metrics[key] = _metric_value(value)
    return text[: head.start()], BasicFinancials(period=head["period"], metrics=metrics)


def parse_user_prompt(user: str) -> PromptParts:
    """Parse a dataset user prompt back into the records it was built from.

    Raises PromptError when the text is not in the format, or when it parses but would not rebuild byte for
    byte (an ambiguity such as news text that imitates a section head): the parts are then not trustworthy.
    """
    end_at = user.rfind(PROMPT_END_TEMPLATE.split("{", 1)[0])
    end = _END_RE.fullmatch(user, end_at) if end_at >= 0 else None
    if end is None:
        raise PromptError("The user prompt does not end with FinGPT's closing instruction (PROMPT_END).")
    symbol = end["symbol"]
    intro = _INTRO_RE.match(user)
    if intro is None:
        raise PromptError("The user prompt does not start with FinGPT's company introduction (COMPANY_INTRO).")
    fields = intro.groupdict()
    fields["marketCapitalization"] = float(fields["marketCapitalization"])
    fields["shareOutstanding"] = float(fields["shareOutstanding"])
    profile = CompanyProfile(**fields)

    middle = user[intro.end(): end_at]
    if not middle.startswith("\n"):
        raise PromptError("Expected a newline after the company introduction.")
    weeks_text, financials = _parse_basics(middle[1:], symbol)
    parts = PromptParts(
        symbol=symbol, profile=profile, weeks=_parse_weeks(weeks_text, symbol), financials=financials,
        target_start=end["start"], target_end=end["end"], wording=end["wording"],
    )
    rebuilt = build_user_prompt(parts)
    if rebuilt != user:
        raise PromptError(
            f"The prompt for {symbol} ({end['start']}) parses but does not rebuild byte for byte "
            f"({first_difference(user, rebuilt)})."
        )
    return parts
