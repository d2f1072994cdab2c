"""What an answer being written already says, section by section, for showing it before it is finished. Pure.

The model writes FinGPT's sections in order (engine.generation.grammar): the Positive Developments, the Potential
Concerns, the call, then the analysis. A section counts as written once the next one has begun, so what is shown never
changes afterwards; the analysis is shown as far as it goes. The worker's progress message (jobs.streaming) edits
itself each time one more section is complete.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.generation.grammar import ANALYSIS_LABEL, CONCERNS_HEADER, PNA_HEADER
from engine.parsing import parse_answer


@dataclass(frozen=True)
class WrittenSoFar:
    positives: tuple[str, ...] = ()  # complete once the concerns have begun
    concerns: tuple[str, ...] = ()  # complete once the prediction section has begun
    call: str | None = None  # "Up by 1-2%", once the analysis has begun
    analysis: str = ""  # as far as written

    @property
    def sections(self) -> int:
        """How many sections are complete: 0 (nothing yet) to 3 (the lists and the call; the analysis follows)."""
        return sum((bool(self.positives), bool(self.concerns), self.call is not None))


def written_so_far(text: str) -> WrittenSoFar:
    """The complete sections of a partly written answer. Free (unconstrained) text that strays from the format
    simply shows less: a section is reported only when the parser finds it and the one after it has begun."""
    concerns_at = text.find(CONCERNS_HEADER)
    if concerns_at < 0:
        return WrittenSoFar()
    prediction_at = text.find(PNA_HEADER, concerns_at)
    analysis_at = text.find(ANALYSIS_LABEL, max(prediction_at, 0)) if prediction_at >= 0 else -1
    parsed = parse_answer(text[:prediction_at] if prediction_at >= 0 else text[:concerns_at])
    written = WrittenSoFar(positives=parsed.positives,
                           concerns=parsed.concerns if prediction_at >= 0 else ())
    if analysis_at < 0:
        return written
    whole = parse_answer(text)
    call = whole.move_bin
    return WrittenSoFar(written.positives, written.concerns, call.prediction_text if call else None,
                        whole.analysis if call else "")
