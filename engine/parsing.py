"""Turn the analyst's text into a structured forecast. Pure functions, no I/O, standard library only.

`parse_answer(text) -> Forecast` is ours, for production and for our own evaluation. It tolerates what real
models write (markdown headers, bold labels, bullets, `<think>` blocks, preambles), reads the direction by whole
words, accepts only FinGPT's twelve bins, and never drops an answer: `raw` always keeps the text and `problems`
says what was missing. FinGPT's own parser, bug for bug, is kept apart on purpose in `engine.upstream_parser`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from engine.market.weeks import MoveBin

Direction = Literal["up", "down", "none"]
MAGNITUDES = ("0-1%", "1-2%", "2-3%", "3-4%", "4-5%", "more than 5%")


@dataclass(frozen=True)
class Forecast:
    """One answer, parsed. Never loses the text: `raw` is always the answer exactly as written."""

    raw: str
    positives: tuple[str, ...]  # "Positive Developments" items, numbering/bullets stripped
    concerns: tuple[str, ...]  # "Potential Concerns" items
    direction: Direction
    magnitude: str | None  # one of MAGNITUDES, or None when the prediction gives none
    prediction: str  # the prediction line as written (after "Prediction:"), "" when missing
    analysis: str  # the text after "Analysis:" (else the rest of the prediction section, with a problem noted)
    parsed: bool  # every section found and the prediction has a direction and a magnitude
    problems: tuple[str, ...] = ()  # why `parsed` is False (or softer issues), human-readable

    @property
    def move_bin(self) -> MoveBin | None:
        """The predicted bin, when direction and magnitude are both known."""
        if self.direction == "none" or self.magnitude is None:
            return None
        return MoveBin(self.direction, MAGNITUDES.index(self.magnitude) + 1)


# --- labels and headers -------------------------------------------------------------------------------------
# One shape covers "[Positive Developments]:", "**Positive Developments:**", "### [Positive Developments]",
# "## Potential Concerns:" and "**Prediction**: Up by 1-2%": optional heading hashes, emphasis, brackets, the name,
# closing brackets/emphasis, an optional colon, and whatever follows on the same line.

_EMPHASIS = r"(?:\*{1,3}+|_{1,3}+)"
# Blanks only ever follow the token they belong to, and possessively, so a long run of them is never re-split
# between neighbouring optional groups (that backtracking is cubic in the run's length).
_WS = r"[ \t]*+"


def _label(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^[ \t>]*+(?P<hash>\#{{1,6}}{_WS})?(?:{_EMPHASIS}{_WS})?(?P<lb>\[{_WS})?(?:{name}){_WS}(?P<rb>\]{_WS})?"
        rf"(?:{_EMPHASIS}{_WS})?(?P<colon>:{_WS})?(?:{_EMPHASIS}{_WS})?(?P<rest>[^\n]*)$",
        re.IGNORECASE | re.MULTILINE,
    )


_POSITIVES = "[Positive Developments]"
_CONCERNS = "[Potential Concerns]"
_PNA = "[Prediction & Analysis]"
_SECTIONS = {
    _POSITIVES: _label(r"positive[ \t]+developments?"),
    _CONCERNS: _label(r"potential[ \t]+concerns?"),
    _PNA: _label(r"prediction[ \t]*(?:&amp;|&|\band\b|\+|/)[ \t]*analysis|analysis[ \t]*(?:&|\band\b)[ \t]*prediction"),
}
# "Prediction:", "**Stock Price Prediction**:", "**Prediction for the upcoming week (…)**:" (seen in base-model text).
_PREDICTION = _label(r"(?:[a-z]+[ \t]+){0,3}?prediction(?:[ \t]+for\b[^\n:*]{0,80})?")
# "Analysis:", "**Summary Analysis**:", "### Analysis".
_ANALYSIS = _label(r"(?:[a-z]+[ \t]+){0,2}?analysis")


@dataclass(frozen=True)
class _Hit:
    start: int  # where the label's line begins
    rest_start: int  # where the text after the label begins (same line)
    end: int  # end of the label's line


def _find_label(pattern: re.Pattern[str], text: str, start: int = 0, end: int | None = None) -> _Hit | None:
    """The first line in text[start:end] that is this label (text[start:] counts as starting a line). A bare
    name with text after it and no colon or brackets ("Positive developments include...") is prose, not a label."""
    for m in pattern.finditer(text[start:end]):
        marked = m["colon"] or (m["lb"] and m["rb"])
        if marked or not m["rest"].strip():
            return _Hit(start + m.start(), start + m.start("rest"), start + m.end())
    return None


# --- text helpers -------------------------------------------------------------------------------------------

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


def _strip_thinking(text: str) -> tuple[str, str | None]:
    """The answer without reasoning blocks, and a problem when nothing but reasoning is there.

    str.find rather than a lazy regex: `<think>` repeated without a close would make `<think>.*?</think>` quadratic.
    """
    lower = text.lower()
    kept: list[str] = []
    pos = 0
    while (opened := lower.find(_THINK_OPEN, pos)) >= 0:
        kept.append(text[pos:opened])
        closed = lower.find(_THINK_CLOSE, opened)
        if closed < 0:  # unclosed: reasoning to the end
            if not "".join(kept).strip():
                return "", "the answer is an unclosed <think> block (thinking only, no answer)"
            pos = len(text)
            break
        pos = closed + len(_THINK_CLOSE)
    kept.append(text[pos:])
    body = "".join(kept)
    # A closing tag with no opening one: the chat template opened <think> in the prompt, so what precedes the
    # (last) closing tag is reasoning.
    stray = body.lower().rfind(_THINK_CLOSE)
    return (body[stray + len(_THINK_CLOSE) :] if stray >= 0 else body), None


_BOLD = re.compile(r"\*\*|__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")


def _plain(text: str) -> str:
    """Markdown emphasis removed, whitespace collapsed: '**Strong cash**: text' -> 'Strong cash: text'."""
    text = _ITALIC.sub(r"\1", _BOLD.sub("", text))
    return " ".join(text.split())


# --- lists --------------------------------------------------------------------------------------------------

_ITEM = re.compile(
    r"^(?P<indent>[ \t]*)(?:(?P<number>\(?\d{1,2}[.)])|(?P<bullet>[-*•●▪‣+]))(?:[ \t]+(?P<text>.*)|[ \t]*$)"
)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$")  # a markdown horizontal rule: ---, ***, ___


def _indent(text: str) -> int:
    return len(text.expandtabs(4))


def _items(section: str) -> tuple[str, ...]:
    """List items of a section, markers stripped, wrapped lines joined, empty items dropped.

    The first marker sets the list's kind (numbered or bulleted) and indentation: markers of the other kind or
    indented deeper are sub-points and join their item. After a blank line, an unindented line that is not a
    marker is closing prose ("Overall, ...") and is not part of any item. A section with no markers at all gives
    one item per paragraph.
    """
    items: list[list[str]] = []
    paragraphs: list[list[str]] = [[]]
    kind: str | None = None
    top = 0
    after_blank = closed = False
    for line in section.splitlines():
        if not line.strip() or _RULE.match(line):
            after_blank = True
            if paragraphs[-1]:
                paragraphs.append([])
            continue
        paragraphs[-1].append(line)
        m = _ITEM.match(line)
        this_kind = None if m is None else ("number" if m["number"] else "bullet")
        if m and (kind is None or (this_kind == kind and _indent(m["indent"]) <= top + 1)):
            kind, top, closed = this_kind, _indent(m["indent"]), False
            items.append([m["text"] or ""])
        elif items and not closed:
            if after_blank and m is None and not line[:1].isspace():
                closed = True
            else:
                items[-1].append((m["text"] or "") if m else line)
        after_blank = False
    if kind is None:
        items = paragraphs
    return tuple(text for text in (_plain(" ".join(parts)) for parts in items) if text)


# --- the prediction line ------------------------------------------------------------------------------------

_UP_WORDS = (
    r"up|upward|upwards|increase|increases|increased|increasing|rise|rises|risen|rising|rose|higher"
    r"|gain|gains|gained|gaining|uptick"
)
_DOWN_WORDS = (
    r"down|downward|downwards|decrease|decreases|decreased|decreasing|decline|declines|declined|declining"
    r"|fall|falls|fallen|falling|fell|lower|drop|drops|dropped|dropping|downtick"
)
# Whole words only: "support", "upcoming", "update" and "downgrade" are not directions (upstream's trap).
_UP = re.compile(rf"\b(?:{_UP_WORDS})\b", re.IGNORECASE)
_DOWN = re.compile(rf"\b(?:{_DOWN_WORDS})\b", re.IGNORECASE)
_LEADING_DIRECTION = re.compile(rf"^\W*(?:{_UP_WORDS}|{_DOWN_WORDS})\b", re.IGNORECASE)

_NUMBER = r"(?<![\d.])(?P<{}>\d+(?:\.\d+)?)"
# One pass, leftmost first, so "more than 5%" is never also read as a bare "5%": a range ("1-2%", "1 to 2 %",
# "1%–2%"), a floor ("more than 5%", "over 5%", ">5%", "5%+"), or any other percentage.
_AMOUNT = re.compile(
    rf"{_NUMBER.format('low')}{_WS}(?:%{_WS})?(?:-|–|—|−|\bto\b){_WS}{_NUMBER.format('high')}{_WS}%"
    rf"|(?:\b(?:more[ \t]+than|over|above|greater[ \t]+than|in[ \t]+excess[ \t]+of)[ \t]++|>{_WS})"
    rf"{_NUMBER.format('over')}{_WS}%"
    rf"|{_NUMBER.format('plus')}{_WS}%{_WS}\+"
    rf"|{_NUMBER.format('bare')}{_WS}%",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def _direction(line: str) -> tuple[Direction, str | None]:
    """Up, down or none, by whole words. A line naming both directions is settled by its first sentence when
    that sentence names one ("Up by 1-2%. Weak guidance could pull it lower." is up); otherwise it is none."""
    up, down = bool(_UP.search(line)), bool(_DOWN.search(line))
    if up and down:
        first = _SENTENCE_END.split(line, maxsplit=1)[0]
        up, down = bool(_UP.search(first)), bool(_DOWN.search(first))
        if up != down:
            return ("up" if up else "down"), None
        return "none", "prediction mentions both up and down"
    if up or down:
        return ("up" if up else "down"), None
    return "none", "prediction has no direction"


def _range_bin(low: str, high: str) -> str | None:
    a, b = float(low), float(high)
    if a.is_integer() and b == a + 1 and 0 <= a <= 4:
        return MAGNITUDES[int(a)]
    return None


def _magnitude(line: str) -> tuple[str | None, str | None]:
    """The FinGPT bin a prediction line states, or None and why. Only the twelve bins count: '2-4%' and '10%'
    are someone's guess, not a bin, and guessing one for them would invent a forecast."""
    found: list[str] = []
    other: list[str] = []
    for m in _AMOUNT.finditer(line):
        if m["low"] is not None:
            magnitude = _range_bin(m["low"], m["high"])
        elif (floor := m["over"] or m["plus"]) is not None:
            magnitude = MAGNITUDES[-1] if float(floor) >= 5 else None  # "more than 7%" is still the top bin
        else:
            magnitude = None
        if magnitude:
            found.append(magnitude)
        else:
            other.append(m[0].strip())
    distinct = list(dict.fromkeys(found))
    if len(distinct) == 1:
        return distinct[0], None
    if distinct:
        return None, "prediction gives several magnitudes (" + ", ".join(distinct) + ")"
    if other:
        return None, f"magnitude '{other[0]}' is not a FinGPT bin"
    return None, "prediction has no magnitude"


# --- the answer ---------------------------------------------------------------------------------------------


_LINE = re.compile(r"[^\n]*")


def _next_line(text: str, start: int, end: int, *, skip_subheadings: bool = False) -> tuple[str, int]:
    """The first non-blank line in text[start:end] and where it ends. With `skip_subheadings`, a short line that
    only names what follows ("**Short-Term Outlook (2024-04-07 to 2024-04-14):**") is passed over."""
    for m in _LINE.finditer(text, start, end):
        plain = _plain(m[0])
        if plain and not (skip_subheadings and plain.endswith(":") and len(plain) <= 80):
            return m[0], m.end()
    return "", end


def _prediction_text(line: str) -> str:
    """The prediction line without emphasis or a list marker ("- **Short-term**: up ..." -> "Short-term: up ...")."""
    m = _ITEM.match(line)
    return _plain((m["text"] or "") if m else line)


_INLINE_ANALYSIS = re.compile(r"(?:\*\*|__)?\banalysis\b(?:\*\*|__)?[ \t]*:(?:\*\*|__)?", re.IGNORECASE)


def _reads_like_prediction(line: str) -> bool:
    """'Up by 1-2%', 'Down by more than 5%': a direction word first, and short or with a percentage."""
    return bool(_LEADING_DIRECTION.match(line)) and (len(line) <= 60 or _AMOUNT.search(line) is not None)


def parse_answer(text: str) -> Forecast:
    """Parse an answer in FinGPT-Forecaster's format (FINGPT_FORMAT.md §4), tolerating what real models write.

    `parsed` is True only when both lists have items and the prediction states a direction and one of the twelve
    bins; otherwise `problems` says what is missing. Softer issues (no "Analysis:" label, a missing section
    header) are noted in `problems` too. Never raises on a string, whatever it holds.
    """
    problems: list[str] = []
    body, thinking = _strip_thinking(text)
    if thinking:
        return Forecast(text, (), (), "none", None, prediction="", analysis="", parsed=False, problems=(thinking,))

    hits = {name: _find_label(pattern, body) for name, pattern in _SECTIONS.items()}
    if hits[_PNA] is None:  # "### Prediction:" straight after the concerns: the label starts the section
        after = max((hit.end for hit in hits.values() if hit is not None), default=0)
        label = _find_label(_PREDICTION, body, after)
        if label is not None:
            hits[_PNA] = _Hit(label.start, label.start, label.end)  # the label stays inside the section
            problems.append(f"no {_PNA} header; the section starts at the 'Prediction' label")
    starts = sorted(hit.start for hit in hits.values() if hit is not None)

    def section(name: str) -> tuple[int, int] | None:
        """Where a section's text begins and ends: from its header to the next header, whatever the order."""
        hit = hits[name]
        return None if hit is None else (hit.rest_start, next((s for s in starts if s > hit.start), len(body)))

    lists: dict[str, tuple[str, ...]] = {}
    for name in (_POSITIVES, _CONCERNS):
        span = section(name)
        lists[name] = () if span is None else _items(body[span[0] : span[1]])
        if span is None:
            problems.append(f"no {name} section")
        elif not lists[name]:
            problems.append(f"{name} section has no items")

    prediction, analysis, direction, magnitude = "", "", "none", None
    span = section(_PNA)
    if span is None:
        problems.append(f"no {_PNA} section")
    else:
        start, end = span
        label = _find_label(_PREDICTION, body, start, end)
        if label is not None:
            line, line_end = body[label.rest_start : label.end], label.end
            if not _plain(line):  # "**Prediction**:" alone, the prediction on the next line
                line, line_end = _next_line(body, label.end, end, skip_subheadings=True)
                if _find_label(_ANALYSIS, line):
                    line, line_end = "", label.end
        else:
            line, line_end = _next_line(body, start, end)
            if _reads_like_prediction(_prediction_text(line)) and not _find_label(_ANALYSIS, line):
                problems.append("no 'Prediction:' label; the section's first line reads as the prediction")
            else:
                line, line_end = "", start
                problems.append("no 'Prediction:' line")
        inline = _INLINE_ANALYSIS.search(line)  # "Prediction: Up by 1-2%. Analysis: ..." on one line
        if inline:
            line, analysis = line[: inline.start()], (line[inline.end() :] + body[line_end:end]).strip()
        prediction = _prediction_text(line)
        if prediction:
            direction, why = _direction(prediction)
            problems += [why] if why else []
            magnitude, why = _magnitude(prediction)
            problems += [why] if why else []
        elif label is not None:
            problems.append("the 'Prediction:' line is empty")

        analysis_label = None if inline else _find_label(_ANALYSIS, body, line_end, end)
        if analysis_label is not None:
            analysis = body[analysis_label.rest_start : end].strip()
        elif not inline:
            analysis = body[line_end:end].strip()
            problems.append("no 'Analysis:' label; the rest of the prediction section is the analysis")

    parsed = bool(lists[_POSITIVES] and lists[_CONCERNS]) and direction != "none" and magnitude is not None
    return Forecast(
        raw=text,
        positives=lists[_POSITIVES],
        concerns=lists[_CONCERNS],
        direction=direction,
        magnitude=magnitude,
        prediction=prediction,
        analysis=analysis,
        parsed=parsed,
        problems=tuple(problems),
    )
