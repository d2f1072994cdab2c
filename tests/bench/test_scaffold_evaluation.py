"""Benchmark on real weights: what the bare base's calls are worth, on every row of the test split, on a CPU.

`forecaster evaluate --mode scaffold` in code: each of the 300 rows is scored once (prompt + the fixed scaffold,
one prefill, nothing generated), then the report gives direction accuracy with its week-bootstrap interval next to
the constant and momentum baselines, and Brier / log loss / ECE of P(up) for raw, contextual, temperature and
both (temperature cross-fitted by week), and the accuracy/coverage of each "no clear signal" band.

Rows are scored in batches and each distribution is appended to SCAFFOLD_CACHE (JSONL, default
/tmp/scaffold-scores-<model folder>.jsonl), so a stopped run resumes where it was; the report is printed and
written to SCAFFOLD_REPORT (default /tmp/scaffold-report.json).

    REAL_MODEL_DIR=../real-qwen .venv/bin/python -m pytest tests/bench/test_scaffold_evaluation.py -s
    SCAFFOLD_LIMIT=60 ...   # the first N rows only

About 500k prompt tokens for the 300 rows: ~1 hour in bf16 on 2 cores with native bf16 (avx512_bf16 / AMX).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from engine.data.fingpt_rows import load_eval_rows
from engine.evaluation.eval_report import render_report
from engine.evaluation.evaluate import evaluate
from engine.generation.model import Analyst
from engine.generation.scaffold import SCAFFOLD, content_free_conversation
from engine.probabilities import BinDistribution
from tests.bench.test_stated_call import _dtype
from tests.real.weights import missing_reason, real_model_dir

LIMIT = int(os.environ["SCAFFOLD_LIMIT"]) if os.environ.get("SCAFFOLD_LIMIT") else None
BATCH = int(os.environ.get("SCAFFOLD_BATCH", "4"))


def test_scaffold_mode_on_every_row(fingpt_test_split_dir):
    folder = real_model_dir()
    if folder is None:
        pytest.skip(missing_reason())
    rows = load_eval_rows(str(fingpt_test_split_dir), limit=LIMIT)
    cache = Path(os.environ.get("SCAFFOLD_CACHE", f"/tmp/scaffold-scores-{folder.name}.jsonl"))
    done: dict[str, dict] = {}
    if cache.is_file():
        done = {r["key"]: r["bins"] for r in map(json.loads, cache.read_text().splitlines()) if r.get("bins")}
    dtype = _dtype()
    analyst = Analyst.load(str(folder), device="cpu", dtype=dtype)
    [content_free] = analyst.score_after([content_free_conversation()], SCAFFOLD)
    keys = {id(r): f"{r.symbol}|{r.period}" for r in rows}
    by_prompt = {r.user_prompt: keys[id(r)] for r in rows}
    scored_now = 0
    started = time.perf_counter()

    def score_bins(batch):
        nonlocal scored_now
        wanted = [by_prompt[m[1]["content"]] for m in batch]
        missing = [m for m, key in zip(batch, wanted, strict=True) if key not in done]
        if missing:
            fresh = analyst.score_after(missing, SCAFFOLD)
            with open(cache, "a", encoding="utf-8") as f:
                for m, d in zip(missing, fresh, strict=True):
                    key = by_prompt[m[1]["content"]]
                    done[key] = d.to_json()
                    f.write(json.dumps({"key": key, "bins": done[key]}) + "\n")
            scored_now += len(missing)
            print(f"  {len(done)}/{len(rows)} rows scored, {time.perf_counter() - started:.0f}s this run", flush=True)
        return [BinDistribution.from_codes(done[key]) for key in wanted]

    report = evaluate(rows, mode="scaffold", score_bins=score_bins, content_free=content_free,
                      batch_size=BATCH, bootstrap=2000, model=analyst.version)
    wall = time.perf_counter() - started
    print(f"\n{folder} ({dtype}): {len(rows)} rows, {scored_now} scored in this run in {wall:.0f}s "
          f"({wall / max(scored_now, 1):.1f} s/row)\n")
    print("\n".join(render_report(report, model_name="bare base (scaffold)")))
    out = Path(os.environ.get("SCAFFOLD_REPORT", "/tmp/scaffold-report.json"))
    out.write_text(json.dumps({k: v for k, v in report.items() if k not in ("predictions", "probabilities")},
                              indent=2))
    assert report["evidence"] == "scaffold" and report["calibration_fit"]["rows"] == len(rows)
