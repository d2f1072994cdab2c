"""Training peaks: one recipe, two optimizer steps, in a fresh process (tests/gpu/children.py), on a ~4096-token row.

- ours: `engine.training.train.build_trainer` as the product runs it (device and dtype auto; LoRA r=8, or QLoRA NF4);
- naive: the Colab recipe (PEFT + plain `Trainer`, `labels = input_ids`, full-vocabulary logits).

The child records `torch.cuda.max_memory_allocated` / `max_memory_reserved` over the steps (the weights stay
resident, so this is the whole training peak), the memory before the first step, and each step's time (the first
compiles kernels). Without CUDA the memory figures are 0 (the child still runs: that is how its code is checked on
a CPU).

    python -m tests.gpu.training SPEC.json     # the child: {"mode", "base", "dataset", "out", "result"}
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from tests.gpu.models import LORA_TARGETS
from tests.gpu.report import GB

MAX_LENGTH = 4096
STEPS = 2
# docs/MEMORY.md, "5. Totals at 4096 tokens, worked": estimated peaks in GB, 0.8 GB of overhead included. Ours
# uses the fused LM head; naive materialises the full logits. Update both together.
ESTIMATE_GB = {"1.5b.lora": 5.3, "1.5b.qlora": 3.3, "1.5b.naive": 11.2, "7b.qlora": 9.4}
TOLERANCE = 1.4  # LLM_NOTES §5: real peaks run 10-40 % above these estimates
GOAL = 0.25  # activation memory (peak - memory before the step), ours / naive
CHILD_TIMEOUT_S = 600


# -- the child: one recipe, two steps, CUDA peaks --------------------------------------------------------------


def _probe(figures: dict):
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()

    class Probe(TrainerCallback):
        """on_step_begin comes after the batch is fetched; on_step_end after the optimizer step."""

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (transformers' signature)
            if cuda:
                torch.cuda.synchronize()
            if "before_step_allocated" not in figures:
                figures["before_step_allocated"] = torch.cuda.memory_allocated() if cuda else 0
                figures["before_step_reserved"] = torch.cuda.memory_reserved() if cuda else 0
                figures["load_peak_allocated"] = torch.cuda.max_memory_allocated() if cuda else 0
                figures["load_peak_reserved"] = torch.cuda.max_memory_reserved() if cuda else 0
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if cuda:
                torch.cuda.synchronize()
            figures.setdefault("step_s", []).append(time.perf_counter() - self.started)
            figures["peak_allocated"] = torch.cuda.max_memory_allocated() if cuda else 0
            figures["peak_reserved"] = torch.cuda.max_memory_reserved() if cuda else 0

    return Probe()


def _run_ours(spec: dict, figures: dict) -> dict:
    from engine.training.train import build_trainer
    from engine.training.train_config import TrainConfig

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

    from engine.data.prepared import load_prepared
    from engine.generation.placement import choose_placement, torch_dtype

    cuda = torch.cuda.is_available()
    placement = choose_placement(cuda_available=cuda, cuda_capability=torch.cuda.get_device_capability() if cuda
                                 else None)
    dtype = torch_dtype(placement.dtype)
    tokenizer = AutoTokenizer.from_pretrained(spec["base"])
    row = load_prepared(Path(spec["dataset"]), "train")[0]
    ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)["input_ids"]
    data = Dataset.from_list([{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}])
    model = AutoModelForCausalLM.from_pretrained(spec["base"], dtype=dtype, attn_implementation="sdpa")
    model = get_peft_model(model.to(placement.device),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=LORA_TARGETS,
                                      task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=1, gradient_accumulation_steps=1, max_steps=STEPS,
        learning_rate=5e-5, warmup_steps=0, lr_scheduler_type="cosine", optim="adamw_torch",
        activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=cuda and dtype == torch.bfloat16, fp16=cuda and dtype == torch.float16, use_cpu=not cuda,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[_probe(figures)])
    trainer.remove_callback(PrinterCallback)
    output = trainer.train()
    return {"tokens": len(ids), "loss_tokens": len(ids) - 1, "loss": output.training_loss,
            "dtype": placement.dtype, "optim": "adamw_torch"}


def child_main(spec_path: str | Path) -> None:
    spec = json.loads(Path(spec_path).read_text())
    figures: dict = {}
    result = (_run_naive if spec["mode"] == "naive" else _run_ours)(spec, figures)
    Path(spec["result"]).write_text(json.dumps({**figures, **result}))


# -- the parent's side: the table's row and the printed detail ----------------------------------------------------


def table_row(estimate: str, r: dict) -> dict:
    """The figures of one training row of tests/gpu/report.py's table, from a child's result."""
    last = r["step_s"][-1]
    limit = ESTIMATE_GB[estimate] * TOLERANCE
    peak = r["peak_reserved"] / GB
    activation = (r["peak_allocated"] - r["before_step_allocated"]) / GB
    return {
        "tokens": r["tokens"], "loss_tokens": r["loss_tokens"], "loss": r["loss"], "dtype": r["dtype"],
        "optim": r["optim"], "step_s": last, "steps_s": r["step_s"], "tok_s": r["tokens"] / last,
        "peak_reserved_gb": peak, "peak_allocated_gb": r["peak_allocated"] / GB,
        "before_step_gb": r["before_step_allocated"] / GB, "activation_gb": activation,
        "load_peak_gb": r["load_peak_allocated"] / GB, "estimate_gb": ESTIMATE_GB[estimate], "limit_gb": limit,
        "child_s": r.get("child_s"),
        "note": (f"allocated {r['peak_allocated'] / GB:.2f}, before step {r['before_step_allocated'] / GB:.2f}, "
                 f"activation {activation:.2f} GB; estimate {ESTIMATE_GB[estimate]:.1f} GB x{TOLERANCE} = "
                 f"{limit:.1f}: {'within' if peak <= limit else 'ABOVE'}; loss {r['loss']:.3f}"),
    }


def describe(name: str, r: dict, row: dict, estimate: str) -> str:
    """The detail printed as each measurement finishes."""
    from transformers.utils import is_triton_available

    props = torch.cuda.get_device_properties(0)
    activation = (r["peak_allocated"] - r["before_step_allocated"]) / GB
    last = r["step_s"][-1]
    return "\n".join([
        "",
        f"{name}: {props.name} ({props.total_memory / GB:.1f} GB, compute capability {props.major}.{props.minor}), "
        f"{r['dtype']}, optimizer {r['optim']}, PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF')}, "
        f"Triton {'available' if is_triton_available() else 'MISSING (TRL fused head falls back to full tiles)'}",
        f"  random weights; row: {row['source']} {row['symbol']} {row['period']}: prompt {row['prompt_tokens']} + "
        f"answer {row['completion_tokens']} = {r['tokens']} tokens (tiny tokenizer); loss over {r['loss_tokens']} "
        f"tokens = {r['loss']:.3f}",
        f"  before the first step: allocated {r['before_step_allocated'] / GB:.2f} GB, reserved "
        f"{r['before_step_reserved'] / GB:.2f} GB (loading peaked at {r['load_peak_allocated'] / GB:.2f} / "
        f"{r['load_peak_reserved'] / GB:.2f} GB)",
        f"  over {len(r['step_s'])} steps: max_memory_allocated {r['peak_allocated'] / GB:.2f} GB, "
        f"max_memory_reserved {r['peak_reserved'] / GB:.2f} GB; activation memory (peak - before) {activation:.2f} GB",
        f"  estimate (docs/MEMORY.md) {ESTIMATE_GB[estimate]:.1f} GB, limit x{TOLERANCE}: "
        f"{ESTIMATE_GB[estimate] * TOLERANCE:.1f} GB; steps {', '.join(f'{s:.2f} s' for s in r['step_s'])} "
        f"(the first compiles kernels); {r['tokens'] / last:,.0f} tok/s on the last; child {r.get('child_s', 0):.0f} s",
    ])


if __name__ == "__main__":  # the child: python -m tests.gpu.training SPEC.json
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.gpu.training SPEC.json")
    child_main(sys.argv[1])
