"""The model's distribution over the 12 bins at the `Prediction:` position: what to score, and how the scores
become a `BinDistribution`. Torch-free; both backends use it (engine.generation.model runs the scoring pass in process,
engine.generation.remote_model asks vLLM for prompt logprobs).

Definition (the same in both backends): P(bin) ∝ P_model(bin's tokens | prompt, answer up to "Prediction:"),
renormalised over the 12 bins. Each bin's text is " Up by 1-2" … " Down by more than 5", cut before the '%'
(BPE merges '%' with the newline after it, so the '%' token differs by what follows; the digit is a token boundary
for all twelve). The tokens are the tokenizer's own encoding of that text, scored after the answer's tokens as
generated. The model is scored without the grammar mask: once the lists are written, the grammar allows exactly
these 12 texts, and a tuned model puts almost all its mass on their canonical tokenizations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.generation.grammar import bin_continuations, prediction_prefix_end
from engine.probabilities import BinDistribution


@dataclass(frozen=True)
class ScoringPlan:
    """What to score for one answer: its first `prefix_tokens` generated tokens (which end at or just before
    "Prediction:"), then each bin's `continuations[code]` token ids."""

    prefix_tokens: int
    continuations: Mapping[str, tuple[int, ...]]


def plan_from_tokens(tokenizer: Any, generated: Sequence[int]) -> ScoringPlan | None:
    """The plan for an answer given as the generated token ids, or None when it has no "Prediction:" line.

    The prefix ends at the last token boundary at or before the end of "Prediction:"; any characters of the label
    that share a token with what follows are re-encoded at the head of every continuation.
    """
    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=False)

    text = decode(generated)
    end = prediction_prefix_end(text)
    if end is None:
        return None
    # The longest token prefix whose text is a prefix of text[:end]. Decoded lengths grow with the token count
    # (a partial UTF-8 character decodes to one replacement character), so bisect, then step back past any
    # token whose bytes do not end on a character boundary.
    low, high = 0, len(generated)
    while low < high:
        mid = (low + high + 1) // 2
        if len(decode(generated[:mid])) <= end:
            low = mid
        else:
            high = mid - 1
    while low > 0 and not text.startswith(decode(generated[:low])):
        low -= 1
    tail = text[len(decode(generated[:low])) : end]
    return _plan(tokenizer, low, tail)


def plan_from_text(tokenizer: Any, answer: str) -> tuple[str, ScoringPlan] | None:
    """For a backend that returns text only (vLLM): the answer's text up to "Prediction:" and the plan after it
    (`prefix_tokens` is then the token count of that text on its own), or None without a "Prediction:" line."""
    end = prediction_prefix_end(answer)
    if end is None:
        return None
    prefix = answer[:end]
    return prefix, _plan(tokenizer, len(_encode(tokenizer, prefix)), "")


def _plan(tokenizer: Any, prefix_tokens: int, tail: str) -> ScoringPlan:
    continuations = {code: tuple(_encode(tokenizer, tail + text)) for code, text in bin_continuations().items()}
    return ScoringPlan(prefix_tokens, continuations)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def distribution(logprobs: Mapping[str, float]) -> BinDistribution:
    """From each bin's summed token log-probability to the renormalised distribution (a stable softmax)."""
    top = max(logprobs.values())
    return BinDistribution.from_codes({code: math.exp(value - top) for code, value in logprobs.items()})


@dataclass(frozen=True)
class PackedQueries:
    """All 12 continuations of one answer packed into one query sequence that shares the answer's KV cache.

    Query 0 is the prefix's last token (its logits give every continuation's first token); then each
    continuation's tokens but its last. `parent[i]` is the query that query i follows (-1: the cache),
    `depth[i]` its offset after query 0, and `targets[code]` the (query index, token id) pairs whose
    log-probabilities sum to that bin's score.
    """

    tokens: tuple[int, ...]
    parent: tuple[int, ...]
    depth: tuple[int, ...]
    targets: Mapping[str, tuple[tuple[int, int], ...]]


def pack(last_prefix_token: int, plan: ScoringPlan) -> PackedQueries:
    tokens, parent, depth = [last_prefix_token], [-1], [0]
    targets: dict[str, tuple[tuple[int, int], ...]] = {}
    for code, ids in plan.continuations.items():
        previous, pairs = 0, []
        for position, token in enumerate(ids):
            pairs.append((previous, token))
            if position < len(ids) - 1:  # the last token is a target only
                tokens.append(token)
                parent.append(previous)
                depth.append(position + 1)
                previous = len(tokens) - 1
        targets[code] = tuple(pairs)
    return PackedQueries(tuple(tokens), tuple(parent), tuple(depth), targets)


def visible(packed: PackedQueries) -> list[list[int]]:
    """For each query, the queries it may attend to: itself and its ancestors (a tree-shaped causal mask)."""
    seen: list[list[int]] = []
    for i, up in enumerate(packed.parent):
        seen.append(([*seen[up]] if up >= 0 else []) + [i])
    return seen
