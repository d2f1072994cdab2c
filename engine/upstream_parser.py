"""FinGPT-Forecaster's `utils.parse_answer`, bug for bug (FINGPT_FORMAT.md §5), for `--fingpt-compat` numbers.

Kept apart from our parser (`engine.parsing.parse_answer`) on purpose: numbers scored with it compare with
published ones, and nothing a user sees may ever go through it. Pure, standard library only.
"""

from __future__ import annotations

import re

# BUG-COMPATIBLE, NOT FOR PRODUCTION. These are FinGPT-Forecaster's regexes (FINGPT_FORMAT.md §5), kept exactly,
# traps included: "up" matches inside "support"/"upcoming"/"update", "10%" reads as 0.5, anything not starting with
# the literal "[Positive Developments]:" is dropped. Change nothing here to "fix" it; fixes belong in engine.parsing.

_UPSTREAM_SECTIONS = re.compile(
    r"^\s*\[Positive Developments\]:\s*(.*)\s*\[Potential Concerns\]:\s*(.*)\s*\[Prediction (&|and) Analysis\]:\s*(.*)\s*$",  # noqa: E501
    flags=re.DOTALL,
)
_UPSTREAM_PNA = re.compile(r"^Prediction:\s*(.*)\s*Analysis:\s*(.*)\s*$", flags=re.DOTALL)


def upstream_parse(text: str) -> tuple[str, str, int, float, str] | None:
    """FinGPT's `utils.parse_answer`, bug-compatible, for `--fingpt-compat` evaluation only (not for production).

    Returns (pros, cons, pred_direction, pred_margin, analysis) as upstream computes them: the direction is 1, -1
    or 0 by substring match, the margin is direction × (captured digit + 0.5) or 0.0 (so '10%' gives 0.5), and the
    texts keep upstream's untrimmed whitespace. Returns None exactly when upstream would drop the row.
    """
    match = _UPSTREAM_SECTIONS.match(text)
    if not match:
        return None
    pros, cons, pna = match.group(1), match.group(2), match.group(4)
    match = _UPSTREAM_PNA.match(pna)
    if not match:
        return None
    pred, analysis = match.group(1), match.group(2)
    if re.search(r"up|increase", pred.lower()):
        direction = 1
    elif re.search(r"down|decrease|decline", pred.lower()):
        direction = -1
    else:
        direction = 0
    match = re.search(r"(\d)-(\d)%", pred)
    if not match:
        match = re.search(r"(?:more than )?(\d)+?%", pred)
    margin = direction * (int(match.group(1)) + 0.5) if match else 0.0
    return pros, cons, direction, margin, analysis
