"""Fixed answer openings, for scoring the 12 bins without generating the lists. Pure, standard library.

- `SCAFFOLD`: the lists written as a neutral placeholder, ending in "Prediction:". `forecaster evaluate --mode
  scaffold` scores the bins right after it (one prefill per row, no generation), so a model's directional skill
  and calibration can be measured on hundreds of rows on a CPU. It is an approximation of the product's path (the
  lists a model writes can move its call), and the evaluator labels its figures so.
- `content_free_conversation`: the FinGPT prompt with every slot "N/A", the content-free input of contextual
  calibration (engine.generation.bin_calibration): what the bins score when there is no news to read.
"""

from __future__ import annotations

from engine.data.prompts import NO_BASICS, PROMPT_END_TEMPLATE, SYSTEM_PROMPT
from engine.generation.grammar import CONCERNS_HEADER, PNA_HEADER, POSITIVES_HEADER, PREDICTION_LABEL

_PLACEHOLDER = "As reported in the news above."

SCAFFOLD = (f"{POSITIVES_HEADER}\n1. {_PLACEHOLDER}\n2. {_PLACEHOLDER}\n\n"
            f"{CONCERNS_HEADER}\n1. {_PLACEHOLDER}\n\n"
            f"{PNA_HEADER}\n{PREDICTION_LABEL}")

CONTENT_FREE = "N/A"


def content_free_conversation() -> list[dict[str, str]]:
    """System prompt and a user prompt in the FinGPT layout with no company, prices or news in it."""
    user = (f"[Company Introduction]:\n\n{CONTENT_FREE}\n\n{CONTENT_FREE}\n\n{NO_BASICS}"
            + PROMPT_END_TEMPLATE.format(start=CONTENT_FREE, end=CONTENT_FREE, symbol=CONTENT_FREE,
                                         wording="stock"))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
