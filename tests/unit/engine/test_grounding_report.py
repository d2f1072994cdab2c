"""`forecaster evaluate`'s grounding rate: the share of the answers' items that the news in their prompts supports,
reported beside accuracy, on the real test split and the real Qwen2.5-7B LoRA answers."""

from __future__ import annotations

from engine.data.fingpt_rows import EvalRow, load_eval_rows
from engine.evaluation.eval_report import render_report
from engine.evaluation.evaluate import evaluate


def test_the_report_gives_the_grounding_rate_beside_accuracy(fingpt_test_split_dir, model_outputs):
    rows = load_eval_rows(str(fingpt_test_split_dir), limit=20)
    answers = [r["prediction"] for r in model_outputs["lora"][:20]]
    report = evaluate(rows, predictions=answers, bootstrap=0, rouge=False)
    grounding = report["grounding"]
    assert (grounding["rows"], grounding["items"], grounding["supported"]) == (20, 112, 57)
    assert grounding["rate"] == 57 / 112 and grounding["threshold"] == 0.35
    lines = render_report(report, model_name="lora")
    at = next(i for i, line in enumerate(lines) if line.startswith("grounding: "))
    assert lines[at] == ("grounding: 50.9% of lora's items supported by the news its prompt held (57 of 112 "
                         "Positive Developments and Concerns, 20 rows with news; match score >= 0.35)")
    assert lines[at - 1].startswith("last-week momentum")  # right under the accuracy table


def test_without_news_in_the_prompts_there_is_no_rate():
    answer = ("[Positive Developments]:\n1. Orders grew.\n\n[Potential Concerns]:\n1. Costs rose.\n\n"
              "[Prediction & Analysis]:\nPrediction: Up by 1-2%\nAnalysis: Steady.")
    rows = [EvalRow("S1", "2024-03-03 to 2024-03-10", "not a FinGPT prompt", answer, "up by 1-2%")]
    report = evaluate(rows, predictions=[answer], bootstrap=0, rouge=False, baselines=False)
    assert report["grounding"] is None
    assert not any(line.startswith("grounding") for line in render_report(report))
