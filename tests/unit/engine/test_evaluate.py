"""engine.evaluation.evaluate: loading rows and predictions, the generation loop with a fake model, and the report
table.

Dataset files for the loader tests are written from the shared test split (read-only) into tmp_path; the
generation tests use invented rows and canned answers, so they run everywhere.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.data.fingpt_rows import EvalRow, load_eval_rows
from engine.data.prompts import SYSTEM_PROMPT, llama_to_messages
from engine.evaluation.baselines import BASELINE_DOWN, BASELINE_MOMENTUM, BASELINE_UP
from engine.evaluation.eval_report import render_report
from engine.evaluation.evaluate import evaluate, messages_for, training_rates
from engine.evaluation.predictions import load_predictions, load_probabilities, save_predictions
from engine.exceptions import EngineError, PromptError
from engine.probabilities import BinDistribution
from tests.fakes.forecasts import distribution

BUG, FIXED = "cryptocurrency price movement", "stock price movement"


@pytest.fixture(scope="module")
def split_folder(fingpt_test_split_dir) -> Path:
    return fingpt_test_split_dir


# ---- load_eval_rows -----------------------------------------------------------------------------------------


def test_loads_the_real_split_folder_in_order_with_wording_fixed_once(split_folder, fingpt_test_rows):
    rows = load_eval_rows(str(split_folder))
    assert len(rows) == 300
    for row, record in zip(rows, fingpt_test_rows, strict=True):
        original = llama_to_messages(record["prompt"])[1]["content"]
        assert (row.symbol, row.period, row.label, row.reference) == (
            record["symbol"], record["period"], record["label"], record["answer"]
        )
        assert BUG not in row.user_prompt
        assert row.user_prompt.count(FIXED) == original.count(FIXED) + 1
        assert row.user_prompt == original.replace(BUG, FIXED)


def test_limit_takes_the_first_rows(split_folder, fingpt_test_rows):
    rows = load_eval_rows(str(split_folder), limit=5)
    assert [(r.symbol, r.period) for r in rows] == [(r["symbol"], r["period"]) for r in fingpt_test_rows[:5]]
    with pytest.raises(EngineError, match="at least 1"):
        load_eval_rows(str(split_folder), limit=0)


def test_a_dataset_dict_folder_uses_the_split_subfolder(split_folder, tmp_path):
    shutil.copytree(split_folder, tmp_path / "test")
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["test"]}))
    assert len(load_eval_rows(str(tmp_path), split="test", limit=3)) == 3
    with pytest.raises(EngineError, match="without a 'train' split"):
        load_eval_rows(str(tmp_path), split="train")


def test_parquet_and_jsonl_files_load_like_the_folder(fingpt_test_rows, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet

    records = fingpt_test_rows[:4]
    pyarrow.parquet.write_table(pa.Table.from_pylist(records), tmp_path / "rows.parquet")
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    from_parquet = load_eval_rows(str(tmp_path / "rows.parquet"))
    from_jsonl = load_eval_rows(str(tmp_path / "rows.jsonl"))
    assert from_parquet == from_jsonl
    assert [r.symbol for r in from_jsonl] == [r["symbol"] for r in records]


def _record(**changes) -> dict:
    prompt = (
        "[INST]<<SYS>>\n" + SYSTEM_PROMPT + "\n<</SYS>>\n\n"
        + "Then make your prediction of the ZZZ cryptocurrency price movement for next week.[/INST]"
    )
    record = {"prompt": prompt, "answer": "An answer.", "period": "2024-03-03 to 2024-03-10",
              "label": "up by 1-2%", "symbol": "ZZZ"}
    return {**record, **changes}


def _write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_missing_columns_are_named(tmp_path):
    record = _record()
    del record["label"]
    with pytest.raises(EngineError, match=r"lacks the columns \['label'\]"):
        load_eval_rows(_write_jsonl(tmp_path / "rows.jsonl", [record]))


def test_a_prompt_not_in_the_llama_wrapper_or_without_the_bug_phrase_is_rejected_with_its_row(tmp_path):
    good = _record()
    loaded = load_eval_rows(_write_jsonl(tmp_path / "ok.jsonl", [good]))
    assert loaded[0].user_prompt.endswith(FIXED + " for next week.")
    with pytest.raises(PromptError, match=r"row 1 \(ZZZ"):
        load_eval_rows(_write_jsonl(tmp_path / "a.jsonl", [good, _record(prompt="Tell me about ZZZ.")]))
    already_fixed = _record(prompt=good["prompt"].replace(BUG, FIXED))
    with pytest.raises(PromptError, match="exactly once"):
        load_eval_rows(_write_jsonl(tmp_path / "b.jsonl", [already_fixed]))


def test_an_unknown_label_fails_at_load_time(tmp_path):
    with pytest.raises(EngineError, match="Unknown label 'sideways'"):
        load_eval_rows(_write_jsonl(tmp_path / "rows.jsonl", [_record(label="sideways")]))


def test_unknown_paths_and_file_types_are_errors(tmp_path):
    with pytest.raises(EngineError, match="not found"):
        load_eval_rows(str(tmp_path / "missing" / "test"))
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(EngineError, match="unsupported file type"):
        load_eval_rows(str(tmp_path / "rows.txt"))
    with pytest.raises(EngineError, match="no data-"):
        load_eval_rows(str(tmp_path))


def test_a_hub_id_without_the_datasets_package_says_how_to_fix_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # so the id cannot name a local folder
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(EngineError, match="pip install datasets") as info:
        load_eval_rows("FinGPT/fingpt-forecaster-dow30-202305-202405")
    assert "save_to_disk" in str(info.value)


# ---- load_predictions ---------------------------------------------------------------------------------------


def _write_csv(path: Path, column: str, values: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", column])
        writer.writeheader()
        writer.writerows({"id": i, column: v} for i, v in enumerate(values))
    return path


def test_predictions_load_from_csv_and_jsonl(tmp_path):
    values = ["first, with a comma\nand a newline", "", "third"]
    path = _write_csv(tmp_path / "p.csv", "prediction", values)
    assert load_predictions(path, expected=3) == values
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps({"output": v or None}) + "\n" for v in values))
    assert load_predictions(jsonl, column="output", expected=3) == values  # null reads as ""


def test_a_count_mismatch_explains_itself(tmp_path):
    path = _write_csv(tmp_path / "p.csv", "prediction", ["a", "b", "c"])
    with pytest.raises(EngineError, match="holds 3 predictions but 4 rows are evaluated"):
        load_predictions(path, expected=4)
    with pytest.raises(EngineError, match="holds 3 predictions but 2 rows.*--limit"):
        load_predictions(path, expected=2)
    assert load_predictions(path, expected=2, allow_more=True) == ["a", "b"]  # a --limit 2 run
    with pytest.raises(EngineError, match="holds 3 predictions but 4"):
        load_predictions(path, expected=4, allow_more=True)  # more is fine, fewer never
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prediction": "a"}) + "\n")
    with pytest.raises(EngineError, match="holds 1 predictions but 2"):
        load_predictions(jsonl, expected=2)


def test_a_missing_column_or_file_is_an_error(tmp_path):
    path = _write_csv(tmp_path / "p.csv", "output", ["a"])
    with pytest.raises(EngineError, match="no 'prediction' column"):
        load_predictions(path, expected=1)
    with pytest.raises(EngineError, match="not found"):
        load_predictions(tmp_path / "nope.csv", expected=1)


# ---- evaluate -----------------------------------------------------------------------------------------------


def _answer(prediction: str) -> str:
    return (
        "[Positive Developments]:\n1. Orders grew.\n2. Margins widened.\n\n"
        "[Potential Concerns]:\n1. Costs rose.\n2. A lawsuit is pending.\n\n"
        f"[Prediction & Analysis]:\nPrediction: {prediction}\nAnalysis: Demand looks steady."
    )


def _rows(n: int) -> list[EvalRow]:
    labels = ["up by 1-2%", "down by 0-1%"]
    return [
        EvalRow(f"S{i}", f"2024-03-{3 + 7 * (i % 3):02d} to 2024-03-{10 + 7 * (i % 3):02d}", f"user prompt {i}",
                _answer(labels[i % 2].capitalize()), labels[i % 2])
        for i in range(n)
    ]


@dataclass
class FakeGeneration:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    bin_distribution: object = None


class FakeModel:
    """Answers "Up by 1-2%" to everything; each batch costs 2 s on a fake clock and 50 new tokens per prompt."""

    def __init__(self) -> None:
        self.now = 0.0
        self.batches: list[list[list[dict]]] = []

    def clock(self) -> float:
        return self.now

    def generate(self, batch: list[list[dict]]) -> list[FakeGeneration]:
        self.batches.append(batch)
        self.now += 2.0
        return [FakeGeneration(_answer("Up by 1-2%"), 100, 50, 2.0 / len(batch)) for _ in batch]


def test_evaluate_generates_in_batches_and_reports_latency_and_tokens_per_second():
    rows, model, calls = _rows(10), FakeModel(), []
    report = evaluate(
        rows, generate=model.generate, batch_size=4, clock=model.clock,
        progress=lambda done, total, tps: calls.append((done, total, round(tps, 3))), rouge=False,
    )
    assert [len(b) for b in model.batches] == [4, 4, 2]
    assert model.batches[0][0] == [{"role": "system", "content": SYSTEM_PROMPT},
                                   {"role": "user", "content": "user prompt 0"}]
    assert calls == [(4, 10, 100.0), (8, 10, 100.0), (10, 10, round(500 / 6, 3))]
    assert report["latency_s"] == pytest.approx(0.6)  # 6 s of batches over 10 rows
    assert report["tokens_per_s"] == pytest.approx(500 / 6)
    assert (report["new_tokens"], report["prompt_tokens"], report["generation_s"]) == (500, 1000, 6.0)
    assert report["predictions"] == [_answer("Up by 1-2%")] * 10
    assert (report["mode"], report["parsed"], report["binary_accuracy"]) == ("ours", 10, 0.5)
    assert set(report["baselines"]) == {BASELINE_DOWN, BASELINE_UP, BASELINE_MOMENTUM}


def test_evaluate_scores_given_predictions_in_either_mode_without_timing():
    rows = _rows(4)
    predictions = [r.reference for r in rows]
    ours = evaluate(rows, predictions=predictions, rouge=False)
    assert (ours["binary_accuracy_all"], ours["latency_s"], ours["tokens_per_s"]) == (1.0, None, None)
    compat = evaluate(rows, predictions=predictions, fingpt_compat=True)
    assert (compat["mode"], compat["parsed"], compat["binary_accuracy"]) == ("fingpt_compat", 4, 1.0)
    assert compat["rouge"]["analysis"]["rougeL"] == pytest.approx(1.0)


def test_evaluate_rejects_missing_inputs_mismatched_counts_and_short_batches():
    rows = _rows(3)
    with pytest.raises(EngineError, match="either predictions"):
        evaluate(rows)
    with pytest.raises(EngineError, match="2 predictions for 3 rows"):
        evaluate(rows, predictions=["a", "b"])
    with pytest.raises(EngineError, match="2 results for a batch of 3"):
        evaluate(rows, generate=lambda batch: [FakeGeneration("x", 1, 1, 0.1)] * 2, batch_size=8)


def test_messages_for_a_row_use_the_fixed_user_prompt():
    row = _rows(1)[0]
    assert messages_for(row) == [
        {"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": row.user_prompt}
    ]


# ---- render_report ------------------------------------------------------------------------------------------


def test_the_table_puts_the_model_first_and_baselines_below_with_the_same_columns():
    rows = _rows(6)
    report = evaluate(rows, predictions=[_answer("Up by 1-2%")] * 5 + ["garbled"], bootstrap=100)
    before = json.dumps(report, sort_keys=True)
    lines = render_report(report, model_name="qwen+lora")
    assert json.dumps(report, sort_keys=True) == before  # pure
    header, rule, model_line, *rest = lines[1:]
    assert header.split()[:3] == ["system", "n", "parsed"] and "MCC" in header
    assert set(rule) <= {"-", " "}
    assert model_line.startswith("qwen+lora") and model_line.split()[1:3] == ["6", "5"]
    assert [line.split("  ")[0] for line in rest[:3]] == [BASELINE_DOWN, BASELINE_UP, BASELINE_MOMENTUM]
    assert "[" in model_line  # the 95% interval
    assert any(line.startswith("ROUGE F1") for line in lines)
    assert "parse failures: 1 of 6" in lines


def test_the_compat_table_says_which_mode_and_how_many_rows_were_dropped():
    rows = _rows(3)
    lines = render_report(evaluate(rows, predictions=["junk"] * 3, fingpt_compat=True, bootstrap=0))
    assert lines[0].startswith("FinGPT-compatible")
    assert "ROUGE: – (nothing to score)" in lines
    assert "rows dropped (answer or reference unparseable): 3 of 3" in lines


def test_importing_evaluate_loads_no_model_stack():
    import subprocess

    code = (
        "import sys, engine.evaluation.evaluate, engine.evaluation.metrics; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'sklearn', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"


# ---- probabilities ------------------------------------------------------------------------------------------


def test_saved_predictions_may_carry_p_up_and_the_12_bin_distribution(tmp_path):
    bins = distribution(0.7, top="U1", p_top=0.3)
    path = tmp_path / "p.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prediction", "p_up", "bin_probabilities"])
        writer.writeheader()
        writer.writerow({"prediction": "a", "p_up": "0.25", "bin_probabilities": ""})
        writer.writerow({"prediction": "b", "p_up": "", "bin_probabilities": json.dumps(bins.to_json())})
        writer.writerow({"prediction": "c", "p_up": "", "bin_probabilities": ""})
    loaded = load_probabilities(path, expected=3)
    assert loaded[0] == 0.25 and loaded[1].p_up == pytest.approx(0.7) and loaded[2] is None
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prediction": "a", "bin_probabilities": bins.to_json(), "p_up": 0.7}) + "\n")
    assert load_probabilities(jsonl, expected=1)[0].probabilities["U1"] == pytest.approx(0.3)  # an object
    assert load_probabilities(_write_csv(tmp_path / "plain.csv", "prediction", ["a"]), expected=1) is None


def test_bad_probability_cells_name_the_row_and_the_format(tmp_path):
    cases = [({"p_up": "likely"}, "p_up must be a number"), ({"p_up": 1.5}, "between 0 and 1"),
             ({"bin_probabilities": {"U1": 1.0}}, "the 12 bins"),
             ({"p_up": 0.2, "bin_probabilities": distribution(0.7, top="U1", p_top=0.3).to_json()}, "disagrees")]
    for i, (cells, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text(json.dumps({"prediction": "x", **cells}) + "\n")
        with pytest.raises(EngineError, match=message) as info:
            load_probabilities(path, expected=1)
        assert "row 1" in str(info.value)


class ProbabilityModel(FakeModel):
    """FakeModel with a bin distribution on every answer: P(up) 0.8 on even rows, 0.4 on odd ones."""

    def generate(self, batch):
        results = super().generate(batch)
        for result, messages in zip(results, batch, strict=True):
            i = int(messages[1]["content"].split()[-1])
            result.bin_distribution = distribution(0.8 if i % 2 == 0 else 0.4, top="U2", p_top=0.4)
        return results


def test_generation_mode_scores_the_distributions_and_stores_them_for_a_rescore(tmp_path):
    rows = _rows(6)  # labels alternate up (even rows), down (odd rows); the model always says "Up by 1-2%"
    report = evaluate(rows, generate=ProbabilityModel().generate, batch_size=4, bootstrap=0, rouge=False)
    model = report["calibration"]["model"]
    # P(up) 0.8 on the 3 up rows, 0.4 on the 3 down rows: (3·0.2² + 3·0.4²) / 6 = (0.12 + 0.48) / 6 = 0.1
    assert model["n"] == 6 and model["brier"] == pytest.approx(0.1)
    # ECE: bin [0.8, 0.9) all up (|1 - 0.8| = 0.2), bin [0.4, 0.5) none up (0.4), each weight 1/2: 0.3
    assert model["ece"] == pytest.approx(0.3)
    assert report["probabilities"][0]["p_up"] == pytest.approx(0.8)
    assert set(report["probabilities"][0]["bin_probabilities"]) == {
        "U1", "U2", "U3", "U4", "U5", "U5+", "D1", "D2", "D3", "D4", "D5", "D5+"}
    saved = tmp_path / "answers.jsonl"
    save_predictions(saved, rows, report)
    texts = load_predictions(saved, expected=6)
    again = evaluate(rows, predictions=texts, probabilities=load_probabilities(saved, expected=6), bootstrap=0,
                     rouge=False)
    assert again["calibration"]["model"] == model and again["abstain"] == report["abstain"]


def test_without_probabilities_calibration_is_none_for_the_model_and_compat_mode_has_none():
    rows = _rows(4)
    plain = evaluate(rows, generate=FakeModel().generate, bootstrap=0, rouge=False)  # a backend without them
    assert plain["calibration"]["model"] is None and plain["probabilities"] is None
    assert plain["calibration"]["baselines"][BASELINE_UP]["brier"] == pytest.approx(0.25)  # in-sample rate 0.5
    compat = evaluate(rows, predictions=[r.reference for r in rows], probabilities=[0.9] * 4, fingpt_compat=True,
                      bootstrap=0, rouge=False)
    assert compat["calibration"] is None and compat["abstain"] is None
    assert render_report(compat)[0].startswith("FinGPT-compatible")
    with pytest.raises(EngineError, match="3 probabilities for 4 rows"):
        evaluate(rows, predictions=[r.reference for r in rows], probabilities=[0.5] * 3)


def test_the_report_shows_calibration_the_rates_source_and_the_abstention_table():
    rows = _rows(6)
    report = evaluate(rows, generate=ProbabilityModel().generate, bootstrap=0, rouge=False)
    lines = render_report(report, model_name="qwen+lora")
    start = next(i for i, line in enumerate(lines) if line.startswith("Calibration of P(up)"))
    assert lines[start + 1].split() == ["system", "n", "Brier", "log", "loss", "ECE"]
    log_loss = report["calibration"]["model"]["log_loss"]
    assert lines[start + 3].split()[:4] == ["qwen+lora", "6", "0.100", f"{log_loss:.3f}"]
    assert any("IN-SAMPLE" in line for line in lines)  # no training rates were given
    table = lines[lines.index("Abstaining ('no clear signal') when max(P(up), P(down)) < threshold:") + 3:]
    # Confidence 0.8 on the 3 even (up, right) rows, 0.6 on the 3 odd (down, wrong) rows.
    assert table[0].split() == ["0.50", "6", "100%", "0.500"]
    assert table[3].split() == ["0.65", "3", "50%", "1.000"]
    no_p = render_report(evaluate(rows, predictions=[r.reference for r in rows], bootstrap=0, rouge=False))
    assert "  model: the predictions carry no probabilities" in no_p


def test_training_rates_come_from_the_named_split(tmp_path, fingpt_test_split_dir):
    shutil.copytree(fingpt_test_split_dir, tmp_path / "train")
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    rates = training_rates(str(tmp_path), "train")
    rows = load_eval_rows(str(fingpt_test_split_dir))
    assert rates.up == pytest.approx(sum(r.label.startswith("up") for r in rows) / 300)
    assert rates.in_sample is False and "split 'train' of" in rates.source and "300 rows" in rates.source
    with pytest.raises(EngineError, match="evaluated rows themselves"):
        training_rates(str(fingpt_test_split_dir), "train", evaluated=(str(fingpt_test_split_dir), "test"))
    with pytest.raises(EngineError, match="evaluated rows themselves"):
        training_rates(str(tmp_path), "train", evaluated=(str(tmp_path), "train"))


# ---- the stated call, scaffold mode and calibration ---------------------------------------------------------


def test_a_stated_call_that_does_not_follow_the_rule_is_reported_by_row():
    """ProbabilityModel always states "Up by 1-2%" (U2) while its distributions make U2 the likeliest up bin on
    even rows (P(up) 0.8: the rule agrees) and put P(up) at 0.4 on odd rows (the rule says down): the report names
    the odd rows."""
    rows = _rows(4)
    report = evaluate(rows, generate=ProbabilityModel().generate, batch_size=4, bootstrap=0, rouge=False)
    assert report["consistency"] == {"checked": 4, "agree": 2, "disagree": [1, 3]}
    assert "Stated call = rule on its served distribution: 2/4 (rows [1, 3] do NOT)" in "\n".join(
        render_report(report))


class RuleFollowingModel(FakeModel):
    """States exactly what the rule takes from its distribution: P(up) 0.8 with U2 likeliest on even rows, 0.3 with
    D1 likeliest on odd rows."""

    def generate(self, batch):
        results = super().generate(batch)
        for result, messages in zip(results, batch, strict=True):
            i = int(messages[1]["content"].split()[-1])
            result.bin_distribution = (distribution(0.8, top="U2", p_top=0.5) if i % 2 == 0
                                       else distribution(0.3, top="D1", p_top=0.5))
            result.text = _answer("Up by 1-2%" if i % 2 == 0 else "Down by 0-1%")
        return results


def test_every_stated_call_following_the_rule_reads_so_and_the_calibration_fit_is_out_of_sample():
    rows = _rows(6)
    report = evaluate(rows, generate=RuleFollowingModel().generate, batch_size=4, bootstrap=0, rouge=False)
    assert report["consistency"] == {"checked": 6, "agree": 6, "disagree": []}
    assert "6/6 (every one)" in "\n".join(render_report(report))
    fit = report["calibration_fit"]
    assert fit["rows"] == 6 and fit["weeks"] == 3 and fit["folds"] == 3
    assert set(fit["variants"]) == {"raw", "temperature"}  # no content-free prompt given: no contextual variants
    assert fit["variants"]["raw"]["accuracy"] == 1.0 and fit["chosen"] == "temperature"
    assert [b["band"] for b in fit["bands"]][:3] == [0.0, 0.02, 0.05]
    assert report["evidence"] == "generated"


def test_scaffold_mode_scores_each_row_once_and_states_the_rules_call_from_the_served_calibration():
    from engine.generation.bin_calibration import BinCalibration
    from engine.parsing import parse_answer
    from engine.probabilities import ALL_BINS, choose_call

    rows, asked = _rows(6), []

    def score_bins(batch):
        asked.append(len(batch))
        return [distribution(0.7 if int(m[1]["content"].split()[-1]) % 2 == 0 else 0.45, top="U3", p_top=0.3)
                if int(m[1]["content"].split()[-1]) % 2 == 0 else distribution(0.45, top="D2", p_top=0.3)
                for m in batch]

    # Served with a bias that halves every up bin's odds: 0.45 up becomes ~0.29, 0.7 becomes ~0.54.
    served = BinCalibration(bias={b.code: (math.log(2) if b.direction == "up" else 0.0) for b in ALL_BINS})
    report = evaluate(rows, mode="scaffold", score_bins=score_bins, calibration=served, batch_size=4, bootstrap=0)
    assert asked == [4, 2] and report["evidence"] == "scaffold" and report["rouge"] is None
    assert "consistency" not in report  # nothing was written: the calls are the rule's by construction
    for text, stored in zip(report["predictions"], report["probabilities"], strict=True):
        shown = BinDistribution(stored["bin_probabilities"])
        assert parse_answer(text).move_bin == choose_call(shown)
    assert [parse_answer(t).direction for t in report["predictions"]] == ["up", "down"] * 3
    assert "SCAFFOLD mode" in "\n".join(render_report(report))
    with pytest.raises(EngineError, match="score_bins"):
        evaluate(rows, mode="scaffold")
    with pytest.raises(EngineError, match="Unknown evaluation mode"):
        evaluate(rows, mode="cheap", score_bins=score_bins)
