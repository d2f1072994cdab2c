"""FinGPT-Forecaster's answer format as one regular expression, for constrained generation. Pure, standard library.

Both backends constrain decoding with `ANSWER_REGEX`: in process through xgrammar's logits processor
(engine.generation.constrained), behind vLLM as `structured_outputs: {"regex": ...}` (engine.generation.remote_model).
The layout is FINGPT_FORMAT.md §4, with the variants real answers show (a blank line after a header, trailing spaces,
one to four analysis paragraphs):

    [Positive Developments]:
    1. ...            2 to 4 numbered items, one line each
    2. ...

    [Potential Concerns]:
    1. ...            1 to 4

    [Prediction & Analysis]:
    Prediction: Up by 2-3%          (Up|Down) by one of the 12 bins
    Analysis: ...     1 to 4 paragraphs; the answer may end after any paragraph's closing punctuation

What the free text may hold is chosen so that everything the regex accepts parses with both `parse_answer` and
FinGPT's `upstream_parse` (tests/unit/engine/test_grammar.py generates strings from it to check that):
- no brackets anywhere, so the three bracketed headers occur once (upstream splits on them greedily);
- no colon in the analysis, so "Analysis:" occurs once (upstream's prediction runs to its last occurrence) and no
  analysis line can read as a section label (our labels need a colon, brackets, or nothing else on the line);
- no '<', so no text can open or close a `<think>` block;
- no control characters or Unicode line separators, which `str.splitlines` would treat as line breaks;
- every item and paragraph starts with a visible character that is not markdown emphasis, so none is empty once
  the parser strips markup; an item does not start with a dot or a colon (no "1. ..." placeholders copied from the
  prompt, no "1. :").

Repeats are unrolled (`a b (c (d)?)?`), never bounded (`{2,4}`): xgrammar compiles bounded repeats of a large
character class in seconds, the unrolled form in a fraction of one. Lengths are not bounded here for the same
reason: engine.generation.constrained's line budget keeps lines finite in process (see `_LineBudget` there).
"""

from __future__ import annotations

import re

from engine.market.weeks import MoveBin
from engine.parsing import MAGNITUDES

# Characters no free text may hold (see the module docstring). \u0085, \u2028 and \u2029 are line breaks to
# str.splitlines; the rest of C0/C1 are control characters.
_NEVER = r"\x00-\x1f\x7f-\x9f\u2028\u2029\[\]<"
# Unicode spaces that str.split() collapses: a text starting with one could be blank to the parser.
_SPACES = r" \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
# Nor a dot: base models copy the system prompt's "1. ..." placeholder, which parses but says nothing. Nor a colon:
# real Qwen2.5 weights on a short prompt wrote "1. :" for every item (make test-real, 2026-12-05).
_ITEM_FIRST = rf"[^{_NEVER}{_SPACES}*_.\u2026:]"
_ITEM_REST = rf"[^{_NEVER}]*"
_PARA_FIRST = rf"[^{_NEVER}{_SPACES}*_:]"
_PARA_REST = rf"[^{_NEVER}:]*"
# A paragraph ends on a sentence's closing punctuation, optionally a closing quote or bracket, then spaces.
_PARA_END = r"[.!?][\"')\u2019\u201d]?[ ]*"

POSITIVES_HEADER = "[Positive Developments]:"
CONCERNS_HEADER = "[Potential Concerns]:"
PNA_HEADER = "[Prediction & Analysis]:"
PREDICTION_LABEL = "Prediction:"


def _literal(text: str) -> str:
    """`text` matched literally. Not `re.escape`: it also escapes spaces and '&', which xgrammar warns about."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)


def _item(number: int) -> str:
    return rf"{number}\. {_ITEM_FIRST}{_ITEM_REST}\n"


def _items(least: int, most: int) -> str:
    """`least` required items then optional ones, nested so the numbering stays in order: 1 2 (3 (4)?)?."""
    pattern = ""
    for number in range(most, least, -1):
        pattern = f"(?:{_item(number)}{pattern})?"
    return "".join(_item(n) for n in range(1, least + 1)) + pattern


def _header(text: str) -> str:
    return _literal(text) + r"\n\n?"  # a blank line after a header is common in the reference answers


_PARAGRAPH = rf"{_PARA_FIRST}{_PARA_REST}{_PARA_END}"


def _paragraphs(most: int) -> str:
    pattern = ""
    for _ in range(most - 1):
        pattern = rf"(?:\n\n?{_PARAGRAPH}{pattern})?"
    return _PARAGRAPH + pattern


# "Up by 0-1%" ... "Down by more than 5%": the 12 bins, as the references capitalise them.
BIN_TEXT: dict[str, str] = {
    MoveBin(direction, k).code: f"{direction.capitalize()} by {MAGNITUDES[k - 1]}"
    for direction in ("up", "down") for k in range(1, 7)
}
_BINS = "(?:Up|Down) by (?:" + "|".join(_literal(m) for m in MAGNITUDES) + ")"

ANALYSIS_LABEL = "Analysis:"

LISTS_REGEX = (
    _header(POSITIVES_HEADER) + _items(2, 4) + r"\n?"
    + _header(CONCERNS_HEADER) + _items(1, 4) + r"\n?"
    + _header(PNA_HEADER)
    + _literal(PREDICTION_LABEL)
)
"""Phase 1 of a constrained answer: the two lists, up to and including "Prediction:". Then the bin is chosen from
the model's probabilities (engine.probabilities.choose_call) and written as `call_text`, not generated."""

ANALYSIS_REGEX = " " + _paragraphs(4)
"""Phase 2: what follows the written call's "Analysis:". It starts with the space, so the model writes " The" as
it naturally would; forcing "Analysis: " with its space would leave it a token sequence it never saw."""

ANSWER_REGEX = LISTS_REGEX + " " + _BINS + r"\n" + ANALYSIS_LABEL + ANALYSIS_REGEX
"""The whole answer, anchored at both ends by the constraining engines (use `re.fullmatch` to test a string):
phase 1, a call, phase 2."""


def call_text(code: str) -> str:
    """What is written after phase 1's "Prediction:" for the chosen bin, up to phase 2: " Up by 1-2%\nAnalysis:".
    Tokenized as a whole by the tokenizer (its canonical encoding), never token by token under a mask."""
    return f" {BIN_TEXT[code]}\n{ANALYSIS_LABEL}"

# Where the bin is chosen: "Prediction:" at the start of a line, as the format (and the grammar) writes it.
_PREDICTION_LINE = re.compile(r"(?m)^" + _literal(PREDICTION_LABEL))


def prediction_prefix_end(text: str) -> int | None:
    """The index just after the first line-initial "Prediction:" in `text`, or None: where the 12 bins branch."""
    m = _PREDICTION_LINE.search(text)
    return m.end() if m else None


def bin_continuations() -> dict[str, str]:
    """What follows "Prediction:" for each bin, cut before the '%': the scored text ends on a digit, a token
    boundary for every continuation, because BPE tokenizers merge '%' with the newline after it ('%\\n')."""
    return {code: " " + text.removesuffix("%") for code, text in BIN_TEXT.items()}
