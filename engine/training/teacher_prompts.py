"""What the teacher is asked, and how its answer becomes a training answer: upstream's teacher side, exactly.

FinGPT's data pipeline told GPT-4 each week's realized move ("let's assume your prediction ... is {label}") and
rewrote its answer with one `re.sub` that inserts `Prediction: {Label}` and `Analysis:`. `hindsight_prompt` builds
that prompt from ours, `finish_answer` applies the rewrite and says why an answer is unfit for training
(FINGPT_FORMAT.md §6, "Hindsight answers"). Pure, no I/O.
"""

from __future__ import annotations

import re

from engine.data.prompts import PROMPT_END, SYSTEM_PROMPT, PromptParts, build_user_prompt
from engine.exceptions import EngineError
from engine.parsing import parse_answer
from engine.upstream_parser import upstream_parse

# The system prompt upstream sent to GPT-4. It asks for "[Prediction & Analysis]:" followed by free text; the
# training-side SYSTEM_PROMPT is this string after upstream's `.replace(':\n...', '\nPrediction: ...\nAnalysis: ...')`,
# and the answer rewrite below then supplies the Prediction/Analysis lines. Sending the training prompt instead
# makes teachers write their own "Prediction:" line, which the rewrite would then duplicate.
TEACHER_SYSTEM_PROMPT = "You are a seasoned stock market analyst. Your task is to list the positive developments and potential concerns for companies based on relevant news and basic financials from the past weeks, then provide an analysis and prediction for the companies' stock price movement for the upcoming week. Your answer format should be as follows:\n\n[Positive Developments]:\n1. ...\n\n[Potential Concerns]:\n1. ...\n\n[Prediction & Analysis]:\n...\n"  # noqa: E501
assert TEACHER_SYSTEM_PROMPT.replace(":\n...", "\nPrediction: ...\nAnalysis: ...") == SYSTEM_PROMPT

# Upstream's closing instruction for the teacher (FinGPT_Forecaster/data.py), word for word, "need to" included.
# `prediction` is the lower-case label, e.g. "up by 2-3%".
HINDSIGHT_END = "\n\nBased on all the information before {start}, let's first analyze the positive developments and potential concerns for {symbol}. Come up with 2-4 most important factors respectively and keep them concise. Most factors should be inferred from company related news. Then let's assume your prediction for next week ({start} to {end}) is {prediction}. Provide a summary analysis to support your prediction. The prediction result need to be inferred from your analysis at the end, and thus not appearing as a foundational factor of your analysis."  # noqa: E501

_PNA_HEADER = re.compile(r"\[Prediction & Analysis\]:\s*")  # upstream's pattern, exactly
_OWN_PREDICTION_LINE = re.compile(r"^\W*prediction\s*:", re.IGNORECASE | re.MULTILINE)


def hindsight_prompt(parts: PromptParts, label: str) -> str:
    """The user prompt the teacher sees: ours, with the closing instruction swapped for upstream's "let's assume
    your prediction ... is {label}" version. Raises EngineError if the prompt does not end as expected."""
    normal = build_user_prompt(parts)
    ending = PROMPT_END.replace("cryptocurrency", parts.wording).format(
        start=parts.target_start, end=parts.target_end, symbol=parts.symbol)
    if not normal.endswith(ending):
        raise EngineError(f"The {parts.symbol} prompt does not end with the standard closing instruction; "
                          "engine.data.prompts changed and HINDSIGHT_END must follow it.")
    return normal[: -len(ending)] + HINDSIGHT_END.format(
        start=parts.target_start, end=parts.target_end, symbol=parts.symbol, prediction=label)


def finish_answer(raw: str, label: str) -> tuple[str, str | None]:
    """Upstream's rewrite of a teacher answer, then our checks. Returns (answer, None) when it is fit for training,
    or (answer, reason) when it is not. `label` is lower case ("up by 2-3%")."""
    if not raw.strip():
        return raw, "the teacher returned an empty answer"
    # Exactly upstream's re.sub (all occurrences); subn only to count them.
    answer, headers = _PNA_HEADER.subn(
        f"[Prediction & Analysis]:\nPrediction: {label.capitalize()}\nAnalysis: ", raw)
    if headers != 1:
        return answer, f"the answer has {headers} '[Prediction & Analysis]:' headers, expected exactly one"
    forecast = parse_answer(answer)
    if not forecast.parsed:
        return answer, "the answer does not parse: " + "; ".join(forecast.problems)
    if upstream_parse(answer) is None:
        return answer, "upstream's parser drops the answer (it must start with '[Positive Developments]:')"
    if forecast.move_bin is None or forecast.move_bin.label != label:
        return answer, f"the prediction reads {forecast.prediction!r}, expected {label.capitalize()!r}"
    if _OWN_PREDICTION_LINE.search(forecast.analysis):
        return answer, "the teacher wrote its own 'Prediction:' line, which the rewrite duplicated"
    if not forecast.analysis.strip():
        return answer, "the answer has no analysis after the prediction"
    return answer, None
