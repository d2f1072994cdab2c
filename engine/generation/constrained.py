"""Constrained generation in process: the answer grammar compiled by xgrammar, and the line budget beside it.

A constrained answer is generated in two phases (engine.generation.model): the lists up to "Prediction:" under
engine.generation.grammar's LISTS_REGEX, then, after the chosen call is written, the analysis under ANALYSIS_REGEX.
`AnswerGrammar.compile` turns both into xgrammar's token masks for one tokenizer (once per Analyst);
`lists_processors` / `analysis_processors` give each `generate` call its mask and a line budget that keeps the
phase whole within its max_new_tokens. Imported by engine.generation.model only: torch, transformers and xgrammar are
the worker's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from engine.exceptions import ModelError
from engine.generation.base import STRUCTURE_RESERVE
from engine.generation.grammar import ANALYSIS_REGEX, LISTS_REGEX

log = logging.getLogger(__name__)

# A list item or header line longer than this many tokens is ended at the next token the grammar allows with a
# newline. The longest item in the 300 shared 7B answers is 418 characters (about 90 Qwen tokens).
LINE_TOKENS = 128
# In the last tokens of the budget the analysis closes its sentence, then the answer stops.
ANALYSIS_CLOSE = 4


@dataclass
class AnswerGrammar:
    """The two phases' regexes compiled by xgrammar for one tokenizer (once per Analyst), and the token classes
    the line budget needs."""

    lists: Any  # xgrammar.CompiledGrammar of LISTS_REGEX
    analysis: Any  # xgrammar.CompiledGrammar of ANALYSIS_REGEX
    token_bytes: list[bytes]
    newline: torch.Tensor  # bool per token: its text holds a newline
    sentence_end: torch.Tensor  # bool per token: its text ends with . ! or ? (spaces aside)
    stop: torch.Tensor  # bool per token: a stop token
    compile_seconds: float

    @classmethod
    def compile(cls, tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_ids: list[int]) -> AnswerGrammar:
        try:
            import xgrammar
        except ImportError:
            raise ModelError("constrained generation needs xgrammar (pip install xgrammar==0.2.8); or set "
                             "MODEL_CONSTRAINED=false") from None
        started = time.perf_counter()
        # vocab_size: the model's logits width, which pads past the tokenizer's vocabulary (Qwen2.5: 151936).
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        compiler = xgrammar.GrammarCompiler(info)
        lists, analysis = compiler.compile_regex(LISTS_REGEX), compiler.compile_regex(ANALYSIS_REGEX)
        seconds = time.perf_counter() - started
        log.info("compiled the answer grammar for %d tokens in %.2fs", vocab_size, seconds)
        vocab = list(info.decoded_vocab) + [b""] * (vocab_size - len(info.decoded_vocab))
        stop = torch.zeros(vocab_size, dtype=torch.bool)
        stop[stop_ids] = True
        return cls(
            lists=lists,
            analysis=analysis,
            token_bytes=vocab,
            newline=torch.tensor([b"\n" in piece for piece in vocab]),
            sentence_end=torch.tensor([piece.rstrip(b" ").endswith((b".", b"!", b"?")) for piece in vocab]),
            stop=stop,
            compile_seconds=seconds,
        )

    def lists_processors(self, rows: int, *, prompt_width: int, max_new_tokens: int) -> list[LogitsProcessor]:
        """Phase 1, fresh for each generate call (they hold each row's state): the mask, then the line budget."""
        from xgrammar.contrib.hf import LogitsProcessor as GrammarMask

        return [GrammarMask(self.lists),
                _LineBudget(self, rows, prompt_width=prompt_width, max_new_tokens=max_new_tokens)]

    def analysis_processors(self, rows: int, *, prompt_width: int, max_new_tokens: int) -> list[LogitsProcessor]:
        """Phase 2: the analysis mask, and the budget that closes its last sentence in time."""
        from xgrammar.contrib.hf import LogitsProcessor as GrammarMask

        return [GrammarMask(self.analysis),
                _LineBudget(self, rows, prompt_width=prompt_width, max_new_tokens=max_new_tokens, analysis=True)]


class _LineBudget(LogitsProcessor):
    """Keeps a constrained answer whole within max_new_tokens, which the regex cannot do alone (its lines have no
    length bound: bounded repeats are what makes such a regex slow to compile). Runs after the grammar mask and
    only narrows it: a structure line past LINE_TOKENS, or any structure line once STRUCTURE_RESERVE tokens are
    left, takes the model's best allowed token that ends the line; in the last ANALYSIS_CLOSE tokens the analysis
    takes a sentence end, then a stop token. Where the grammar allows none of those, nothing changes."""

    def __init__(self, grammar: AnswerGrammar, rows: int, *, prompt_width: int, max_new_tokens: int,
                 analysis: bool = False) -> None:
        self.grammar = grammar
        self.prompt_width = prompt_width
        self.max_new_tokens = max_new_tokens
        self.line = [0] * rows  # tokens since the last newline
        self.tail = [b""] * rows  # the answer's last bytes, to see "Analysis:" begin
        self.in_analysis = [analysis] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        made = input_ids.shape[1] - self.prompt_width
        left = self.max_new_tokens - made
        for row in range(scores.shape[0]):
            if made:
                piece = self.grammar.token_bytes[int(input_ids[row, -1])]
                self.line[row] = 0 if b"\n" in piece else self.line[row] + 1
                self.tail[row] = (self.tail[row] + piece)[-16:]
                self.in_analysis[row] = self.in_analysis[row] or b"\nAnalysis:" in self.tail[row]
            if self.in_analysis[row]:
                if left <= ANALYSIS_CLOSE and not _prefer(scores, row, self.grammar.stop):
                    _prefer(scores, row, self.grammar.sentence_end)
            elif self.line[row] >= LINE_TOKENS or left <= STRUCTURE_RESERVE:
                _prefer(scores, row, self.grammar.newline)
        return scores


def _prefer(scores: torch.Tensor, row: int, wanted: torch.Tensor) -> bool:
    """Keep only the allowed tokens of `wanted` in this row, when there are any; True when it narrowed."""
    keep = torch.isfinite(scores[row]) & wanted.to(scores.device)
    if not bool(keep.any()):
        return False
    scores[row] = scores[row].masked_fill(~keep, float("-inf"))
    return True
