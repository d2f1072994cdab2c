"""GPU: peak CUDA memory of a ~4096-token training step at the Qwen2.5-1.5B shape, against docs/MEMORY.md.

Needs a CUDA GPU; skipped (with the reason shown) everywhere else. Not in the default test run (pyproject's
testpaths are tests/unit and tests/scenarios):

    python -m pytest tests/gpu -s        # or: make gpu-test

What it does, without downloading anything:
- builds a model with the exact Qwen2.5-1.5B shape from `Qwen2Config` (hidden 1536, 28 layers, 12 heads / 2 KV
  heads, intermediate 8960, vocabulary 151,936, tied embeddings; 1,543,714,304 parameters) with random bf16
  weights, saved next to the tiny test tokenizer (the model's vocabulary stays the real one);
- prepares one row of ~4096 tokens with `prepare_dataset` (a real FinGPT test-split row when the shared split is
  on the machine, FINGPT_TEST_SPLIT or the default path; else a synthetic FinGPT-shaped row);
- runs our recipe (`engine.train.build_trainer`: LoRA r=8, and QLoRA NF4 when bitsandbytes imports) for two
  optimizer steps, each in a fresh process, and records `torch.cuda.max_memory_allocated` / `max_memory_reserved`
  over the steps (the weights stay resident, so this is the whole training peak), the memory before the first step,
  and the second step's time (the first compiles kernels);
- asserts the reserved peak is below the docs/MEMORY.md estimate x 1.4 (the estimates run 10-40 % low,
  shared/reference/LLM_NOTES.md §5);
- runs the naive Colab recipe (PEFT + plain `Trainer`, `labels = input_ids`, full-vocabulary logits) at the same
  shape when the card has room, and prints the activation ratio ours/naive (goal <= 0.25; 0.61-0.63 on CPU,
  where TRL's fused head has no Triton kernel, see tests/bench/test_training_memory.py).

Memory figures are in GB = 1e9 bytes, as in docs/MEMORY.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (torch.cuda.is_available() is False): measures torch.cuda.max_memory_allocated/"
           "reserved of a 4096-token training step at the Qwen2.5-1.5B shape; run `python -m pytest tests/gpu -s` "
           "on a GPU machine",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GB = 1e9
SHAPE = {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
         "intermediate_size": 8960, "vocab_size": 151_936, "tie_word_embeddings": True,
         "max_position_embeddings": 32768}
PARAMETERS = 1_543_714_304  # LLM_NOTES §1
MAX_LENGTH = 4096
STEPS = 2
# docs/MEMORY.md, "5. Totals at 4096 tokens, worked" (1.5B rows): estimated peaks in GB, 0.8 GB of overhead
# included. Ours uses the fused LM head; naive materialises the full logits. Update both together.
ESTIMATE_GB = {"lora": 5.3, "qlora": 3.3, "naive": 11.2}
TOLERANCE = 1.4  # LLM_NOTES §5: real peaks run 10-40 % above these estimates
GOAL = 0.25  # activation memory (peak - memory before the step), ours / naive
CHILD_TIMEOUT_S = 1200
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# -- the child: one recipe, two steps, CUDA peaks --------------------------------------------------------------


def _probe(figures: dict):
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """on_step_begin comes after the batch is fetched; on_step_end after the optimizer step."""

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (transformers' signature)
            torch.cuda.synchronize()
            if "before_step_allocated" not in figures:
                figures["before_step_allocated"] = torch.cuda.memory_allocated()
                figures["before_step_reserved"] = torch.cuda.memory_reserved()
                figures["load_peak_allocated"] = torch.cuda.max_memory_allocated()
                figures["load_peak_reserved"] = torch.cuda.max_memory_reserved()
                torch.cuda.reset_peak_memory_stats()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            torch.cuda.synchronize()
            figures.setdefault("step_s", []).append(time.perf_counter() - self.started)
            figures["peak_allocated"] = torch.cuda.max_memory_allocated()
            figures["peak_reserved"] = torch.cuda.max_memory_reserved()

    return Probe()


def _run_ours(spec: dict, figures: dict) -> dict:
    from engine.train import build_trainer
    from engine.train_config import TrainConfig

    cfg = TrainConfig(base=spec["base"], qlora=spec["mode"] == "qlora", max_steps=STEPS, gradient_accumulation=1,
                      max_length=MAX_LENGTH, warmup_steps=0, seed=0)  # device and dtype: auto, as the product runs
    run = build_trainer(cfg, Path(spec["dataset"]), Path(spec["out"]))
    run.trainer.add_callback(_probe(figures))
    output = run.trainer.train()
    return {"tokens": run.lengths["tokens"], "loss_tokens": run.lengths["answer_tokens"],
            "loss": output.training_loss, "dtype": run.placement.dtype, "optim": run.trainer.args.optim}


def _run_naive(spec: dict, figures: dict) -> dict:
    """The Colab recipe: PEFT LoRA, a plain Trainer, labels = input_ids over the whole sequence (full logits, upcast
    to fp32 by transformers' loss), AdamW, the same checkpointing as ours."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments

    from engine.placement import choose_placement, torch_dtype
    from engine.prepared import load_prepared

    placement = choose_placement(cuda_available=True, cuda_capability=torch.cuda.get_device_capability())
    dtype = torch_dtype(placement.dtype)
    tokenizer = AutoTokenizer.from_pretrained(spec["base"])
    row = load_prepared(Path(spec["dataset"]), "train")[0]
    ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)["input_ids"]
    data = Dataset.from_list([{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}])
    model = AutoModelForCausalLM.from_pretrained(spec["base"], dtype=dtype, attn_implementation="sdpa").to("cuda")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=LORA_TARGETS,
                                             task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=1, gradient_accumulation_steps=1, max_steps=STEPS,
        learning_rate=5e-5, warmup_steps=0, lr_scheduler_type="cosine", optim="adamw_torch",
        activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, logging_steps=1, save_strategy="no",
        report_to=[], seed=0, dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[_probe(figures)])
    trainer.remove_callback(PrinterCallback)
    output = trainer.train()
    return {"tokens": len(ids), "loss_tokens": len(ids) - 1, "loss": output.training_loss,
            "dtype": placement.dtype, "optim": "adamw_torch"}


def _child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    figures: dict = {}
    result = (_run_naive if spec["mode"] == "naive" else _run_ours)(spec, figures)
    Path(spec["result"]).write_text(json.dumps({**figures, **result}))


# -- the parent: model, row, children --------------------------------------------------------------------------


def _synthetic_records() -> list[dict]:
    """FinGPT-shaped rows (Llama-2 prompt, answer, label) long enough to be fitted to 4096 tokens."""
    from engine.prompts import SYSTEM_PROMPT, NewsLine, PromptParts, WeekBlock, build_user_prompt, messages_to_llama
    from engine.records import BasicFinancials, CompanyProfile

    records = []
    for i, symbol in enumerate(["AXP", "KO", "MSFT"]):
        profile = CompanyProfile(ticker=symbol, name=f"{symbol} Synthetic Inc", finnhubIndustry="Synthetic Goods",
                                 ipo="1980-01-02", marketCapitalization=1000.0 * (i + 1),
                                 shareOutstanding=10.0 * (i + 1), currency="USD", country="US",
                                 exchange="NEW YORK STOCK EXCHANGE, INC.")
        start = dt.date(2024, 2, 4)
        weeks = tuple(
            WeekBlock(symbol=symbol, start=str(start + dt.timedelta(days=7 * w)),
                      end=str(start + dt.timedelta(days=7 * w + 7)), start_price=100.0 + w, end_price=99.0 + 2 * w,
                      news=tuple(NewsLine(f"{symbol} reports invented result {w}.{n} on orders and margins",
                                          f"Synthetic summary {w}.{n}: orders, margins, guidance, demand, pricing, "
                                          "supply chain, analyst revisions and competitive moves all shifted this "
                                          "week, according to people familiar with the matter.")
                                 for n in range(20)))
            for w in range(4)
        )
        parts = PromptParts(symbol=symbol, profile=profile, weeks=weeks,
                            financials=BasicFinancials(period="2023-12-31", metrics={"eps": 1.5, "roeTTM": 0.2}),
                            target_start=str(start + dt.timedelta(days=28)),
                            target_end=str(start + dt.timedelta(days=35)), wording="cryptocurrency")
        prompt = messages_to_llama([{"role": "system", "content": SYSTEM_PROMPT},
                                    {"role": "user", "content": build_user_prompt(parts)}])
        answer = ("[Positive Developments]:\n" + "".join(f"{k}. Orders grew in segment {k}, with margins wider and "
                                                         "guidance raised.\n" for k in range(1, 5))
                  + "\n[Potential Concerns]:\n" + "".join(f"{k}. Costs rose in region {k}; demand may slow as "
                                                          "pricing normalises.\n" for k in range(1, 5))
                  + "\n[Prediction & Analysis]:\nPrediction: Up by 1-2%\nAnalysis: "
                  + "Invented reasoning about the coming week, support levels, momentum and sentiment. " * 12)
        records.append({"prompt": prompt, "answer": answer, "period": f"{parts.target_start} to {parts.target_end}",
                        "label": "up by 1-2%", "symbol": symbol})
    return records


def _records() -> tuple[list[dict], str]:
    from tests.conftest import _ARROW_FILE, DEFAULT_TEST_SPLIT

    folder = Path(os.environ.get("FINGPT_TEST_SPLIT") or DEFAULT_TEST_SPLIT)
    if (folder / _ARROW_FILE).is_file():
        import pyarrow.ipc

        with open(folder / _ARROW_FILE, "rb") as f:
            return pyarrow.ipc.open_stream(f).read_all().to_pylist(), "FinGPT test split"
    return _synthetic_records(), f"synthetic FinGPT-shaped row (no test split at {folder})"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu-peak")


@pytest.fixture(scope="module")
def base_dir(workdir) -> Path:
    """The Qwen2.5-1.5B shape with random bf16 weights (built on the CPU, so this process never holds CUDA memory),
    saved next to the tiny tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.fakes.tiny_model import build_tokenizer

    out = workdir / "qwen2.5-1.5b-shaped"
    out.mkdir()
    tokenizer = build_tokenizer(out)
    config = Qwen2Config(**SHAPE, bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS
    model.save_pretrained(out)
    del model
    return out


@pytest.fixture(scope="module")
def row(workdir, base_dir) -> dict:
    from tests.bench.test_training_memory import prepare_row

    records, where = _records()
    line = prepare_row(records, base_dir, workdir / "data")
    return {**line, "dataset": str(workdir / "data" / "dataset"), "source": where}


_RESULTS: dict[str, dict] = {}


def _measure(mode: str, base_dir: Path, row: dict, workdir: Path) -> dict:
    if mode in _RESULTS:
        return _RESULTS[mode]
    work = workdir / mode
    work.mkdir()
    spec = {"mode": mode, "base": str(base_dir), "dataset": row["dataset"], "out": str(work / "out"),
            "result": str(work / "result.json")}
    (work / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "tests.gpu.test_training_peak", str(work / "spec.json")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if done.returncode != 0 or not (work / "result.json").is_file():
        pytest.fail(f"the {mode} run failed (exit code {done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads((work / "result.json").read_text())
    _RESULTS[mode] = result
    _report(mode, result, row)
    return result


def _report(mode: str, r: dict, row: dict) -> None:
    from transformers.utils import is_triton_available

    props = torch.cuda.get_device_properties(0)
    activation = (r["peak_allocated"] - r["before_step_allocated"]) / GB
    last = r["step_s"][-1]
    print()
    print(f"{mode}: {props.name} ({props.total_memory / GB:.1f} GB, compute capability {props.major}.{props.minor}), "
          f"{r['dtype']}, optimizer {r['optim']}, PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF')}, "
          f"Triton {'available' if is_triton_available() else 'MISSING (TRL fused head falls back to full tiles)'}")
    print(f"  Qwen2.5-1.5B shape, random weights; row: {row['source']} {row['symbol']} {row['period']}: prompt "
          f"{row['prompt_tokens']} + answer {row['completion_tokens']} = {r['tokens']} tokens (tiny tokenizer); "
          f"loss over {r['loss_tokens']} tokens = {r['loss']:.3f}")
    print(f"  before the first step: allocated {r['before_step_allocated'] / GB:.2f} GB, reserved "
          f"{r['before_step_reserved'] / GB:.2f} GB (loading peaked at {r['load_peak_allocated'] / GB:.2f} / "
          f"{r['load_peak_reserved'] / GB:.2f} GB)")
    print(f"  over {len(r['step_s'])} steps: max_memory_allocated {r['peak_allocated'] / GB:.2f} GB, "
          f"max_memory_reserved {r['peak_reserved'] / GB:.2f} GB; activation memory (peak - before) "
          f"{activation:.2f} GB")
    print(f"  estimate (docs/MEMORY.md) {ESTIMATE_GB[mode]:.1f} GB, limit x{TOLERANCE}: "
          f"{ESTIMATE_GB[mode] * TOLERANCE:.1f} GB; steps {', '.join(f'{s:.2f} s' for s in r['step_s'])} "
          f"(the first compiles kernels); {r['tokens'] / last:,.0f} tok/s on the last")


@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_our_recipe_peak_is_within_the_documented_estimate(mode, base_dir, row, workdir):
    pytest.importorskip("bitsandbytes", reason="our recipe uses bitsandbytes on GPU (paged 8-bit AdamW; NF4 for "
                                               "QLoRA): pip install -e '.[model,gpu]'")
    r = _measure(mode, base_dir, row, workdir)
    assert r["tokens"] <= MAX_LENGTH
    assert r["loss"] == r["loss"], "the loss is NaN"
    limit = ESTIMATE_GB[mode] * TOLERANCE
    assert r["peak_reserved"] / GB <= limit, (
        f"{mode}: max_memory_reserved {r['peak_reserved'] / GB:.2f} GB is above the docs/MEMORY.md estimate "
        f"{ESTIMATE_GB[mode]} GB x {TOLERANCE}; update the estimate (and the doc) or find the regression"
    )


def test_naive_full_logits_comparison(base_dir, row, workdir):
    pytest.importorskip("bitsandbytes", reason="our recipe, the comparison's other side, needs bitsandbytes on GPU")
    total = torch.cuda.get_device_properties(0).total_memory  # mem_get_info would hold a CUDA context here
    if total / GB < ESTIMATE_GB["naive"] * TOLERANCE:
        pytest.skip(f"the naive full-logit step needs up to {ESTIMATE_GB['naive'] * TOLERANCE:.1f} GB; this card "
                    f"has {total / GB:.1f} GB")
    ours = _measure("lora", base_dir, row, workdir)
    naive = _measure("naive", base_dir, row, workdir)
    ours_act = ours["peak_allocated"] - ours["before_step_allocated"]
    naive_act = naive["peak_allocated"] - naive["before_step_allocated"]
    ratio = ours_act / naive_act
    print(f"  activation memory ours/naive: {ratio:.2f} (goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'}); "
          f"peak allocated ours/naive: {ours['peak_allocated'] / naive['peak_allocated']:.2f}; last step time "
          f"ours/naive: {ours['step_s'][-1] / naive['step_s'][-1]:.2f}")
    assert ours["tokens"] == naive["tokens"]
    assert ours_act < naive_act
    assert naive["peak_reserved"] / GB <= ESTIMATE_GB["naive"] * TOLERANCE


if __name__ == "__main__":  # the child: python -m tests.gpu.test_training_peak SPEC.json
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.gpu.test_training_peak SPEC.json")
    _child_main(sys.argv[1])
