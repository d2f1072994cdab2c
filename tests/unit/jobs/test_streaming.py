"""The progress message shows each section once it is complete, and not more often than Slack should be edited."""

from __future__ import annotations

from bot.mrkdwn import inline
from jobs.streaming import SectionProgress, written_status

ANSWER = """[Positive Developments]:
1. Strong <iPhone> sales & *services*.
2. Services revenue grew.

[Potential Concerns]:
1. Demand in China is weak.

[Prediction & Analysis]:
Prediction: Down by 2-3%
Analysis: The concerns weigh more. The stock may slip."""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_edit_per_completed_section_in_order():
    shown = []
    progress = SectionProgress(shown.append, min_interval_s=3.0, clock=(clock := Clock()))
    for cut in range(0, len(ANSWER) + 1, 5):
        clock.now += 1.0  # the model reports about every second
        progress(0, ANSWER[:cut])
    progress(0, ANSWER)
    assert [w.sections for w in shown] == [1, 2, 3]
    assert shown[-1].call == "Down by 2-3%"


def test_sections_finished_within_the_interval_wait_for_the_next_report():
    shown = []
    progress = SectionProgress(shown.append, min_interval_s=3.0, clock=(clock := Clock()))
    progress(0, ANSWER.split("[Prediction")[0] + "[Prediction & Analysis]:\n")  # both lists at once
    assert [w.sections for w in shown] == [2]
    clock.now += 1.0
    progress(0, ANSWER)
    assert len(shown) == 1  # 1 s after the last edit: not yet
    clock.now += 2.5
    progress(0, ANSWER)
    assert [w.sections for w in shown] == [2, 3]


def test_the_status_escapes_the_models_words():
    from engine.generation.streaming import written_so_far

    status = written_status(":brain: *AXP*: writing…", written_so_far(ANSWER), escape=inline)
    assert "&lt;iPhone&gt;" in status and "<iPhone>" not in status
    assert "*Positive Developments*" in status and "• Demand in China is weak." in status
    assert "*Prediction:* Down by 2-3%" in status
