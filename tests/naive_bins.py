"""The reference the product's 12-bin scoring is checked against: each bin scored from scratch, one full forward
pass per bin, no KV cache, no tree mask. Slow on purpose (tests only)."""

from __future__ import annotations

import torch

from engine.generation.bin_scoring import bin_continuations
from engine.probabilities import ALL_BINS


def naive_bin_probabilities(analyst, prompt: list[int], generated: list[int]) -> dict[str, float]:
    """P(bin) for each bin code, renormalised over the 12: the prompt's tokens, the shortest run of generated
    tokens whose text ends with "Prediction:", then the bin's own tokens."""
    cut = next(k for k in range(len(generated) + 1)
               if analyst.tokenizer.decode(generated[:k]).endswith("\nPrediction:"))
    continuations = bin_continuations()
    logp = {}
    for move in ALL_BINS:
        tail = analyst.tokenizer(continuations[move.code], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + generated[:cut] + tail])
        with torch.inference_mode():
            logprobs = torch.log_softmax(analyst.model(input_ids=ids).logits[0].float(), dim=-1)
        start = len(prompt) + cut
        logp[move.code] = sum(float(logprobs[start + i - 1, token]) for i, token in enumerate(tail))
    top = max(logp.values())
    weights = {code: float(torch.tensor(v - top).exp()) for code, v in logp.items()}
    total = sum(weights.values())
    return {code: weight / total for code, weight in weights.items()}
