"""Training on real weights, through the product's own code: a few LoRA updates on real FinGPT rows
(engine.training.train, bf16 where the CPU has it), the registry, and the worker's own loading
(forecaster.cli.common.load_analyst) serving the promoted adapter unmerged; then, when `make first-adapter` has built
it, the first adapter answering held-out weeks in FinGPT's format with no grammar forcing it.

Minutes on a CPU (two ~2,000-token updates, one constrained answer, three free ones).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from engine.data.dataset import prepare_dataset
from engine.data.fingpt_rows import load_eval_rows, read_records
from engine.data.prompts import SYSTEM_PROMPT
from engine.parsing import parse_answer
from engine.provenance import base_model_name
from engine.training.registry import Registry
from engine.training.train import train
from engine.training.train_config import TrainConfig
from forecaster.cli.common import load_analyst
from forecaster.settings import Settings

MAX_NEW_TOKENS = int(os.environ.get("REAL_MAX_NEW_TOKENS", "160"))
# Where `make first-adapter` writes (FIRST_ADAPTER_DIR): beside the checkout, never inside it.
FIRST_ADAPTER_DIR = Path(os.environ.get("FIRST_ADAPTER_DIR")
                         or Path(__file__).resolve().parents[3] / "first-adapter")
FREE_ROWS = int(os.environ.get("REAL_FREE_ROWS", "3"))


def _conversation(row) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": row.user_prompt}]


def _split() -> str:
    split = os.environ.get("FINGPT_TEST_SPLIT")
    if not split or not Path(split).is_dir():
        pytest.skip("FINGPT_TEST_SPLIT is not set to the shared FinGPT test split (make test-real sets it)")
    return split


@pytest.fixture(scope="module")
def trained(real_dir, tmp_path_factory):
    """Two updates on two real rows, at the length they have (~2,000 tokens each), into a fresh registry."""
    root = tmp_path_factory.mktemp("real-training")
    rows = read_records(_split(), "test")[:2]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare_dataset(str(root / "rows.jsonl"), root / "dataset", tokenizer_path=str(real_dir), max_length=4096)
    cfg = TrainConfig(base=str(real_dir), max_steps=2, gradient_accumulation=1, learning_rate=2e-4, dropout=0.0,
                      warmup_steps=0)
    started = time.perf_counter()
    result = train(cfg, root / "dataset", root / "adapter")
    record = result.record
    print(f"\ntrained 2 updates in {time.perf_counter() - started:.0f}s ({record['placement']['dtype']}, "
          f"{record['tokens_per_s']} tokens/s, peak {record['peak_memory']}), losses {record['losses']}")
    registry = Registry(root / "models")
    version = registry.add(result.out_dir, note="make test-real", base_model=base_model_name(str(real_dir)),
                           base_path=str(real_dir))
    registry.promote(version, reason="make test-real")
    return root, registry, version, result


def test_a_few_updates_on_real_weights_train_and_save_an_adapter(trained):
    _, registry, version, result = trained
    record = result.record
    assert record["steps"] == 2 and all(torch.isfinite(torch.tensor(loss)) for _, loss in record["losses"])
    assert (registry.path(version) / "adapter_model.safetensors").is_file()
    assert registry.current_version() == version


def test_the_worker_serves_the_promoted_adapter_unmerged_and_its_answer_parses(trained, real_dir):
    root, registry, version, _ = trained
    settings = Settings(_env_file=None, model_base=str(real_dir), model_device="cpu", model_dir=root / "models")
    analyst = load_analyst(settings)  # what `forecaster worker` calls at start
    assert analyst.adapter == registry.path(version) and not analyst.merged
    assert any("lora_A" in name for name, _ in analyst.model.named_parameters())
    [row] = load_eval_rows(_split(), limit=1)
    started = time.perf_counter()
    [answer] = analyst.generate([_conversation(row)], max_new_tokens=MAX_NEW_TOKENS)
    print(f"\n{row.symbol} {row.period} with {version} in {time.perf_counter() - started:.0f}s:\n{answer.text}")
    parsed = parse_answer(answer.text)
    assert parsed.parsed and parsed.move_bin is not None and answer.bin_distribution is not None


def test_the_first_adapter_writes_fingpts_format_freely_on_weeks_it_never_saw(real_dir):
    """The adapter `make first-adapter` built (its newest gated version, promoted or refused: the gate decides
    on 60 rows), with no grammar: the format is learned, not forced."""
    registry = Registry(FIRST_ADAPTER_DIR / "models")
    gated = [v for v in registry.versions() if registry.read(v, "decision.json")] if registry.root.is_dir() else []
    if not gated:
        pytest.skip(f"no gated adapter in {FIRST_ADAPTER_DIR / 'models'}: run `make first-adapter` first")
    version = gated[-1]
    settings = Settings(_env_file=None, model_base=str(real_dir), model_device="cpu",
                        model_dir=FIRST_ADAPTER_DIR / "models", model_adapter=registry.path(version),
                        model_constrained=False)
    analyst = load_analyst(settings)  # as a worker serves it (MODEL_ADAPTER: whether promoted or not)
    assert analyst.grammar is None and analyst.adapter == registry.path(version) and not analyst.merged
    trained_on = registry.read(version, "training.json")
    held_out = load_eval_rows(str(FIRST_ADAPTER_DIR / "dataset"), "test")
    assert not {r.period for r in held_out} & _train_periods(FIRST_ADAPTER_DIR / "dataset")
    rows = held_out[:: max(1, len(held_out) // FREE_ROWS)][:FREE_ROWS]  # spread over tickers
    started = time.perf_counter()
    answers = analyst.generate([_conversation(r) for r in rows], max_new_tokens=700)
    print(f"\n{version} ({'served' if registry.current_version() == version else 'not promoted'}, "
          f"{trained_on['steps']} updates): {len(rows)} held-out rows, free generation, "
          f"{time.perf_counter() - started:.0f}s")
    for row, answer in zip(rows, answers, strict=True):
        print(f"--- {row.symbol} {row.period} (truth: {row.label})\n{answer.text}")
        parsed = parse_answer(answer.text)
        assert parsed.parsed, (row.symbol, parsed.problems)
        assert parsed.positives and parsed.concerns and parsed.move_bin is not None


def _train_periods(dataset: Path) -> set[str]:
    return {r.period for r in load_eval_rows(str(dataset), "train")}
