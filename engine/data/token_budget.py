"""Token counts of a chat row exactly as TRL's prompt/completion path makes them, and fitting rows to a budget.

`TokenCounter` counts with the target model's tokenizer and chat template: the prompt is the chat rendered with
the generation prompt, the completion is the rest of the full rendered chat (the answer, the end-of-turn token and
whatever the template puts after it). Only the short completion tail is tokenized on its own. `fit_rows` makes a
row longer than `max_length` fit by dropping whole news items from its oldest weeks, never any of the answer,
re-tokenizing only the over-budget rows, in batches. The tokenizer is passed in: nothing here imports transformers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.data.prompt_parser import parse_user_prompt
from engine.data.prompts import (
    NEWS_ITEM,
    PromptParts,
    build_user_prompt,
    drop_oldest_news,  # the order fit_to_budget drops in, so a pre-drop cannot disagree with it
    fit_to_budget,
)
from engine.exceptions import EngineError, PromptError, PromptTooLong

_REFIT_ROUNDS = 4  # fit_to_budget counts the user text alone; a token merging across its edge needs a re-fit


class ChatRow(Protocol):
    """What counting and fitting read and set on a row (`engine.data.dataset`'s rows)."""

    system: str
    user: str
    answer: str
    prompt_tokens: int
    completion_tokens: int
    dropped_news: int

    @property
    def total(self) -> int: ...

    def where(self) -> str: ...


class TokenCounter:
    """Token counts exactly as TRL's prompt/completion path makes them, with as little tokenizing as possible."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        # Every added token (special or not) is split out before the model's pre-tokenizer sees the text.
        specials = sorted({t for t in tokenizer.all_special_tokens if t} | set(_added_tokens(tokenizer)),
                          key=len, reverse=True)
        self._special = re.compile("|".join(re.escape(t) for t in specials)) if specials else None

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []

    def count(self, text: str) -> int:
        return len(self.ids([text])[0])

    def render(self, system: str, user: str, answer: str | None = None) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if answer is None:
            return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append({"role": "assistant", "content": answer})
        return self.tok.apply_chat_template(messages, tokenize=False)

    def measure(self, rows: Sequence[ChatRow]) -> None:
        """Set each row's prompt and completion token counts. The prompts are tokenized in one batch; the
        completion is counted from the prompt's last special token on (special tokens split the text, so this
        is exact) and the long prompt is never tokenized twice."""
        prompts, heads, tails = [], [], []
        for row in rows:
            prompt = self.render(row.system, row.user)
            full = self.render(row.system, row.user, row.answer)
            if not full.startswith(prompt):
                raise EngineError(
                    "The tokenizer's chat template renders the prompt differently once the answer is appended "
                    f"(at {row.where()}), so prompt/completion training cannot mask the prompt. Use the target "
                    "model's own tokenizer and chat template."
                )
            last = self._last_special_end(prompt)
            prompts.append(prompt)
            heads.append(prompt[last:])
            tails.append(full[last:])
        counts = zip(self.ids(prompts), self.ids(heads), self.ids(tails), strict=True)
        for row, (prompt_ids, head_ids, tail_ids) in zip(rows, counts, strict=True):
            row.prompt_tokens = len(prompt_ids)
            row.completion_tokens = len(tail_ids) - len(head_ids)

    def _last_special_end(self, text: str) -> int:
        if self._special is None:
            return 0
        ends = [m.end() for m in self._special.finditer(text)]
        return ends[-1] if ends else 0


def _added_tokens(tokenizer: Any) -> list[str]:
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return [str(t) for t in decoder.values()]


def _news_texts(parts: PromptParts) -> list[str]:
    """Every news item of a prompt as it is rendered, in the order `fit_to_budget` drops them."""
    return [NEWS_ITEM.format(headline=n.headline, summary=n.summary) for w in parts.weeks for n in w.news]


def _predrop(parts: PromptParts, costs: list[int], excess: int) -> tuple[PromptParts, int]:
    """Drop, oldest first, as many news items as surely still leave the prompt over budget, so that
    `fit_to_budget` (which re-tokenizes the whole prompt after every single drop) has only a step or two left.

    `costs` are the items' tokens counted one by one; a margin covers tokens merging across their edges. If the
    estimate ever went too far, `fit_to_budget` finds the prompt already fits and the caller starts over.
    """
    removed = k = 0
    for cost in costs:
        if removed + cost + 2 * (k + 1) + 8 >= excess:
            break
        removed, k = removed + cost, k + 1
    for _ in range(k):
        parts = drop_oldest_news(parts)[0]  # type: ignore[index]  # k <= the number of items
    return parts, k


@dataclass
class _Fitting:
    row: ChatRow
    original: PromptParts
    user_tokens: int  # of the original user message, counted alone
    budget: int  # for the user message alone
    parts: PromptParts | None = None
    dropped: int = 0


def fit_rows(rows: Sequence[ChatRow], counter: TokenCounter, max_length: int) -> dict[int, str]:
    """Drop news from over-budget rows until prompt + completion fit; {id(row): reason} for those that cannot.

    Each row ends as dropping one item at a time (`fit_to_budget` alone) leaves it: the fewest, oldest items.
    Everything that can be is tokenized in batches across rows; `fit_to_budget` only makes the last step or two.
    """
    reasons: dict[int, str] = {}

    def too_long(row: ChatRow) -> str:
        return f"{row.total} tokens (prompt {row.prompt_tokens} + answer {row.completion_tokens}) > {max_length}"

    todo = []
    for row, ids in zip(rows, counter.ids([r.user for r in rows]), strict=True):
        overhead = row.prompt_tokens - len(ids)  # system prompt and chat template around the user message
        budget = max_length - row.completion_tokens - overhead
        if budget <= 0:
            reasons[id(row)] = (f"{too_long(row)}: the answer and the chat template alone take "
                                f"{row.completion_tokens + overhead} tokens; the answer is never cut")
            continue
        try:
            todo.append(_Fitting(row, parse_user_prompt(row.user), len(ids), budget))
        except PromptError as e:
            reasons[id(row)] = f"{too_long(row)}, and the prompt could not be parsed to drop news: {e}"

    for _ in range(_REFIT_ROUNDS):
        texts = [_news_texts(f.original) for f in todo]
        costs = iter(counter.ids([t for row_texts in texts for t in row_texts]))
        fitted = []
        for f, row_texts in zip(todo, texts, strict=True):
            parts, skipped = _predrop(f.original, [len(next(costs)) for _ in row_texts], f.user_tokens - f.budget)
            try:
                parts, gone = fit_to_budget(parts, count_tokens=counter.count, max_tokens=f.budget)
                if skipped and not gone:  # the estimate went too far (never seen): one item at a time
                    parts, gone = fit_to_budget(f.original, count_tokens=counter.count, max_tokens=f.budget)
                    skipped = 0
            except PromptTooLong:
                reasons[id(f.row)] = f"{too_long(f.row)}, and still over with every news item dropped; the " \
                    "answer is never cut"
                continue
            f.parts, f.dropped = parts, skipped + len(gone)
            fitted.append(f)
        users = [build_user_prompt(f.parts) for f in fitted]
        prompts = counter.ids([counter.render(f.row.system, user) for f, user in zip(fitted, users, strict=True)])
        todo = []
        for f, user, ids in zip(fitted, users, prompts, strict=True):
            excess = len(ids) + f.row.completion_tokens - max_length
            if excess <= 0:
                f.row.user, f.row.prompt_tokens, f.row.dropped_news = user, len(ids), f.dropped
            else:
                todo.append((f, user, len(ids), excess))
        if not todo:
            break
        # The user message counted alone disagreed with the chat (a token merging across its edge): measure the
        # overhead again on the fitted text, with the count fit_to_budget uses, and fit again to a smaller budget.
        for f, user, prompt_tokens, excess in todo:
            recalibrated = max_length - f.row.completion_tokens - (prompt_tokens - counter.count(user))
            f.budget = recalibrated if recalibrated < f.budget else f.budget - excess
        todo = [f for f, _, _, _ in todo]
    for f in todo:
        reasons[id(f.row)] = f"{too_long(f.row)}, and the counts would not settle after {_REFIT_ROUNDS} re-fits"
    return reasons
