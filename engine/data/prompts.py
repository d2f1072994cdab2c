"""FinGPT-Forecaster prompts: build them from records, wrap them as the dataset stores them, fit them to a budget.

Pure functions, no I/O. The same `build_user_prompt` makes training rows and inference prompts, so the model
is always fed the text it was tuned on. The string pieces are exact copies of upstream's (see
shared/reference/FINGPT_FORMAT.md §2); a golden test rebuilds all 300 prompts of the published test split byte
for byte from records parsed by `engine.data.prompt_parser`, so any edit here that changes one byte fails it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.exceptions import PromptError, PromptTooLong
from engine.records import BasicFinancials, CompanyProfile, NewsItem

# Names the exact layout below. Training artifacts record it (together with the wording) so an adapter is
# never served prompts in a layout it was not tuned on. Bump it for any change to the strings or the assembly.
TEMPLATE_ID = "fingpt-dow30-v1"

Wording = Literal["stock", "cryptocurrency"]

# ---- The exact pieces (FINGPT_FORMAT.md §2) ------------------------------------------------------------------

# "[Prediction & Analysis]" has no colon here although answers use one: an upstream str.replace artefact that
# the tuned model has seen thousands of times, so it stays.
SYSTEM_PROMPT = "You are a seasoned stock market analyst. Your task is to list the positive developments and potential concerns for companies based on relevant news and basic financials from the past weeks, then provide an analysis and prediction for the companies' stock price movement for the upcoming week. Your answer format should be as follows:\n\n[Positive Developments]:\n1. ...\n\n[Potential Concerns]:\n1. ...\n\n[Prediction & Analysis]\nPrediction: ...\nAnalysis: ...\n"  # noqa: E501

# `exchange` is used verbatim, so NYSE names read "...EXCHANGE, INC.. As a dominant..." (two dots).
COMPANY_INTRO = (
    "[Company Introduction]:\n\n{name} is a leading entity in the {finnhubIndustry} sector. Incorporated and publicly traded since {ipo}, the company has established its reputation as one of the key players in the market. As of today, {name} has a market capitalization of {marketCapitalization:.2f} in {currency}, with {shareOutstanding:.2f} shares outstanding."  # noqa: E501
    "\n\n{name} operates primarily in the {country}, trading under the ticker {ticker} on the {exchange}. As a dominant force in the {finnhubIndustry} space, the company continues to innovate and drive progress within the industry."  # noqa: E501
)

WEEK_HEAD = "From {start} to {end}, {symbol}'s stock price {direction} from {start_price:.2f} to {end_price:.2f}. News during this period are listed below:\n\n"  # noqa: E501

NEWS_ITEM = "[Headline]: {headline}\n[Summary]: {summary}\n"
NO_NEWS = "No relative news reported."

BASICS_HEAD = "Some recent basic financials of {symbol}, reported at {period}, are presented below:\n\n[Basic Financials]:\n\n"  # noqa: E501
NO_BASICS = "[Basic Financials]:\n\nNo basic financial reported."

# As in the dataset, wording bug included. Render through `_prompt_end`, which picks the wording.
PROMPT_END = "\n\nBased on all the information before {start}, let's first analyze the positive developments and potential concerns for {symbol}. Come up with 2-4 most important factors respectively and keep them concise. Most factors should be inferred from company related news. Then make your prediction of the {symbol} cryptocurrency price movement for next week ({start} to {end}). Provide a summary analysis to support your prediction."  # noqa: E501

# Upstream drops news whose summary starts with this promotion before sampling (FINGPT_FORMAT.md §2).
PROMO_SUMMARY_PREFIX = "Looking for stock market analysis and research with proves results?"

# The Llama-2 wrapper around every stored dataset prompt.
LLAMA_PREFIX = "[INST]<<SYS>>\n"
LLAMA_SYS_END = "\n<</SYS>>\n\n"
LLAMA_SUFFIX = "[/INST]"

_BUG_PHRASE = "cryptocurrency price movement"
_FIXED_PHRASE = "stock price movement"
# The closing instruction with its wording as a field, so building and parsing share one template.
PROMPT_END_TEMPLATE = PROMPT_END.replace(_BUG_PHRASE, "{wording} price movement")
assert PROMPT_END_TEMPLATE.count("{wording}") == 1


# ---- Records -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewsLine:
    """One news item as the prompt shows it: `headline` and `summary` are rendered; `source`, `url` and `published`
    (ISO time) ride along for the evidence under each claim (engine.evaluation.evidence) and are never rendered or
    compared."""

    headline: str
    summary: str
    source: str = field(default="", compare=False)
    url: str = field(default="", compare=False)
    published: str = field(default="", compare=False)


@dataclass(frozen=True)
class WeekBlock:
    """One past week: its prices and the news shown for it, in date order."""

    symbol: str
    start: str  # "YYYY-MM-DD", a Sunday as the dataset writes it
    end: str  # "YYYY-MM-DD", the next Sunday
    start_price: float
    end_price: float
    news: tuple[NewsLine, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "news", tuple(self.news))

    @property
    def direction(self) -> str:
        """Upstream's word: a flat week reads "decreased"."""
        return "increased" if self.end_price > self.start_price else "decreased"


@dataclass(frozen=True)
class PromptParts:
    """Everything one user prompt is built from."""

    symbol: str
    profile: CompanyProfile
    weeks: tuple[WeekBlock, ...]  # oldest first
    financials: BasicFinancials | None
    target_start: str  # the predicted week, "YYYY-MM-DD"
    target_end: str
    wording: Wording = "stock"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weeks", tuple(self.weeks))
        if self.wording not in ("stock", "cryptocurrency"):
            raise PromptError(f"wording must be 'stock' or 'cryptocurrency', not {self.wording!r}.")


@dataclass(frozen=True)
class DroppedNews:
    """A news item `fit_to_budget` removed to make the prompt fit."""

    week_start: str
    headline: str


# ---- Building ------------------------------------------------------------------------------------------------


def _week_block(week: WeekBlock) -> str:
    news = "\n".join(NEWS_ITEM.format(headline=n.headline, summary=n.summary) for n in week.news) or NO_NEWS
    head = WEEK_HEAD.format(
        start=week.start, end=week.end, symbol=week.symbol, direction=week.direction,
        start_price=week.start_price, end_price=week.end_price,
    )
    return "\n" + head + news


def _basics(symbol: str, financials: BasicFinancials | None) -> str:
    if financials is None:
        return NO_BASICS
    lines = "\n".join(f"{k}: {v}" for k, v in financials.metrics.items())
    return BASICS_HEAD.format(symbol=symbol, period=financials.period) + lines


def _prompt_end(start: str, end: str, symbol: str, wording: Wording) -> str:
    return PROMPT_END_TEMPLATE.format(start=start, end=end, symbol=symbol, wording=wording)


def build_user_prompt(parts: PromptParts) -> str:
    """The user message, byte for byte in the dataset's format (FINGPT_FORMAT.md §2, "Assembly")."""
    intro = COMPANY_INTRO.format(**parts.profile.model_dump())
    weeks = "".join(_week_block(w) for w in parts.weeks)
    end = _prompt_end(parts.target_start, parts.target_end, parts.symbol, parts.wording)
    return (intro + "\n" + weeks + "\n" + _basics(parts.symbol, parts.financials) + end).strip()


def build_messages(parts: PromptParts) -> list[dict]:
    """System and user chat messages, ready for a chat template."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": build_user_prompt(parts)},
    ]


# ---- News sampling -------------------------------------------------------------------------------------------


def sample_news(
    items: Sequence[NewsItem], *, symbol: str, week_start: str, k: int = 5, seed: int = 0
) -> tuple[NewsLine, ...]:
    """Up to `k` of a week's news items, chosen uniformly, shown in date order.

    Upstream samples unseeded, so its prompts cannot be reproduced. Here the choice is seeded by
    (symbol, week, seed) as a string: `random.Random` hashes str seeds with SHA-512, so the result is the same
    in every process, whatever PYTHONHASHSEED. Promotional boilerplate is dropped first, as upstream does.
    """
    # Ties in time are broken by the text, so the result does not depend on the order the source returned.
    kept = sorted(
        (n for n in items if not n.summary.startswith(PROMO_SUMMARY_PREFIX)),
        key=lambda n: (n.published, n.headline, n.summary, n.url),
    )
    rng = random.Random(f"{symbol}|{week_start}|{seed}")
    chosen = sorted(rng.sample(range(len(kept)), min(k, len(kept))))
    return tuple(NewsLine(headline=kept[i].headline, summary=kept[i].summary, source=kept[i].source,
                          url=kept[i].url, published=kept[i].published.isoformat()) for i in chosen)


def first_difference(expected: str, actual: str, context: int = 40) -> str:
    """Where two texts first differ, with a little context from each: for error messages and test failures."""
    pairs = enumerate(zip(expected, actual, strict=False))
    at = next((i for i, (a, b) in pairs if a != b), min(len(expected), len(actual)))
    if at == len(expected) == len(actual):
        return "no difference"
    lo = max(0, at - context)
    return (
        f"first difference at character {at}: expected {expected[lo:at + context]!r}, "
        f"got {actual[lo:at + context]!r}"
    )


# ---- The Llama-2 wrapper and the wording bug -----------------------------------------------------------------


def llama_to_messages(prompt: str) -> list[dict]:
    """Split a stored dataset prompt into system and user messages; raise PromptError if it is not one."""
    head = LLAMA_PREFIX + SYSTEM_PROMPT + LLAMA_SYS_END
    if not prompt.startswith(LLAMA_PREFIX):
        raise PromptError(f"Not a Llama-2 prompt: it should start with {LLAMA_PREFIX!r}, starts with {prompt[:20]!r}.")
    if not prompt.startswith(head):
        raise PromptError(
            f"The prompt's system part is not FinGPT's SYSTEM_PROMPT ({first_difference(prompt, head)}). "
            "This row was built with another template; do not mix it in."
        )
    if not prompt.endswith(LLAMA_SUFFIX):
        raise PromptError(f"Not a Llama-2 prompt: it should end with {LLAMA_SUFFIX!r}, ends with {prompt[-20:]!r}.")
    user = prompt[len(head): len(prompt) - len(LLAMA_SUFFIX)]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def messages_to_llama(messages: Sequence[dict]) -> str:
    """The inverse of `llama_to_messages`: wrap [system, user] messages the way the dataset stores them."""
    roles = [m.get("role") for m in messages]
    if roles != ["system", "user"]:
        raise PromptError(f"Expected exactly a system and a user message, got roles {roles}.")
    return LLAMA_PREFIX + messages[0]["content"] + LLAMA_SYS_END + messages[1]["content"] + LLAMA_SUFFIX


def fix_wording(user: str) -> str:
    """Replace upstream's "cryptocurrency price movement" with "stock price movement", exactly once."""
    found = user.count(_BUG_PHRASE)
    if found != 1:
        raise PromptError(
            f"Expected {_BUG_PHRASE!r} exactly once in the user prompt, found it {found} times; "
            "this is not an unmodified FinGPT dataset prompt."
        )
    return user.replace(_BUG_PHRASE, _FIXED_PHRASE)


# ---- Token budget --------------------------------------------------------------------------------------------


def drop_oldest_news(parts: PromptParts) -> tuple[PromptParts, DroppedNews] | None:
    """Remove the earliest news item of the oldest week that still has news; None when none is left."""
    for i, week in enumerate(parts.weeks):
        if week.news:
            dropped = DroppedNews(week_start=week.start, headline=week.news[0].headline)
            weeks = parts.weeks[:i] + (dataclasses.replace(week, news=week.news[1:]),) + parts.weeks[i + 1:]
            return dataclasses.replace(parts, weeks=weeks), dropped
    return None


def fit_to_budget(
    parts: PromptParts, *, count_tokens: Callable[[str], int], max_tokens: int
) -> tuple[PromptParts, list[DroppedNews]]:
    """Drop whole news items, oldest first, until the user prompt fits `max_tokens`.

    `max_tokens` is the budget for the user prompt alone: the caller has already subtracted the answer's
    reservation and the chat template's overhead. Upstream instead drops whole training rows that are too long;
    we keep the row and lose the least recent news, which matters least for next week. Nothing but news is
    touched, and an item is never cut in half. A week left without news renders as NO_NEWS.
    """
    dropped: list[DroppedNews] = []
    first = tokens = count_tokens(build_user_prompt(parts))
    while tokens > max_tokens:
        step = drop_oldest_news(parts)
        if step is None:
            raise PromptTooLong(
                f"The prompt for {parts.symbol} is {tokens} tokens even with all {len(dropped)} news items dropped "
                f"({first} with them), over the budget of {max_tokens}. Use fewer past weeks or a model with a "
                "larger context."
            )
        parts, item = step
        dropped.append(item)
        tokens = count_tokens(build_user_prompt(parts))
    return parts, dropped
