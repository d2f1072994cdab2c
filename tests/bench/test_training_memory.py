"""Benchmark: peak memory of ONE ~4096-token LoRA training step with the real Qwen vocabulary (151,936), on CPU in
fp32: our recipe (`engine.training.train.build_trainer`: TRL SFTTrainer, prompt/completion rows, completion-only loss,
fused LM head) against the naive recipe of the Colab attempt (PEFT + a plain `transformers.Trainer`, `labels =
input_ids`, full-vocabulary logits at every position), same saved weights, same row, same run.

The model is a small Qwen2 (hidden 256, 2 layers, 4 heads / 2 KV heads) with the real vocabulary, so the
[tokens × 151,936] logits weigh what they weigh for the 1.5B or the 7B while the decoder layers stay cheap. The row
is a real FinGPT test-split row prepared with `prepare_dataset` (max_length 4096: the longest rows are fitted to the
budget by dropping their oldest news, never the answer); the one closest to 4096 tokens is used.

Each recipe runs in its own fresh interpreter (this module run with `python -m`), so the parent's memory does not
pollute the figures. The child reports:
- setup RSS: VmRSS just before the step (weights, data, trainer; LoRA's AdamW states are allocated inside the step,
  and weigh ~10 MB here);
- step peak: the kernel's RSS high-water mark (VmHWM), reset through /proc/self/clear_refs just before the step,
  cross-checked by a thread sampling VmRSS every 2 ms; ru_maxrss before and after the step is printed too;
- activation memory = step peak − setup RSS; step time and tokens/s (CPU figures: no assertion on them).

What this does not measure: GPU peaks. On CUDA the fused head also projects only the answer positions (here, on
CPU, TRL's chunked PyTorch fallback scores every position and masks afterwards), so the GPU ratio should be better
still; `python -m pytest tests/gpu -s` measures it on a GPU machine (docs/MEMORY.md).

    make bench      # or: .venv/bin/python -m pytest tests/bench/test_training_memory.py -s -m bench
    BENCH_NAIVE_NO_CHECKPOINTING=0 skips the optional naive run without activation checkpointing.

On CPU our recipe narrows TRL's vocabulary tile width (engine.training.train.CPU_LOGPROB_TILE): TRL's chunked fallback
holds several [tokens x tile width] fp32 temporaries at once, and at its default width (32,768) that alone was
4.4 GiB above the weights at 4096 tokens (ours/naive 0.61-0.63 before the change).
"""

from __future__ import annotations

import gc
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 256, 2, 4, 2, 1536
VOCAB = 151_936  # Qwen2.5-0.5B/1.5B (the 7B pads to 152,064)
MAX_LENGTH = 4096
TOKENIZER_VOCAB = 2000  # the tiny BPE: ~1.4x Qwen's token count on this text, so long rows reach the 4096 budget
GOAL = 0.25  # activation memory, ours / naive
TRL_TILE_WIDTH = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE's default in TRL 1.16
GIB = 2**30
CHILD_TIMEOUT_S = 240
# A child that goes past this RSS ends itself (the sampler checks every 2 ms) rather than take the machine down.
RSS_CAP_GIB = 16.0
NO_CKPT_CAP_GIB = 12.0  # the optional naive run without checkpointing, per the brief
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# -- the child: one recipe, one step ---------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM, and ru_maxrss with it) to the current RSS; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024


class _Sampler(threading.Thread):
    """Reads VmRSS every few ms while the step runs (torch releases the GIL in its kernels); ends the process if
    the RSS passes the cap."""

    def __init__(self, cap_kib: int, interval_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.cap_kib, self.interval_s = cap_kib, interval_s
        self.peak_kib, self.samples = 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = _status_kib("VmRSS")
            self.samples += 1
            self.peak_kib = max(self.peak_kib, rss)
            if rss > self.cap_kib:
                sys.stderr.write(f"RSS {rss / 2**20:.1f} GiB passed the cap of {self.cap_kib / 2**20:.1f} GiB; "
                                 "ending the benchmark child\n")
                sys.stderr.flush()
                os._exit(3)
            time.sleep(self.interval_s)


def _probe(cap_gib: float):
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """Measures the one training step: on_step_begin comes after the batch is fetched, on_step_end after the
        optimizer step."""

        def __init__(self) -> None:
            self.figures: dict = {}

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (transformers' signature)
            gc.collect()
            self.sampler = start_measuring(self.figures, cap_gib)
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.figures["step_s"] = time.perf_counter() - self.started
            stop_measuring(self.figures, self.sampler)

    return Probe()


def start_measuring(f: dict, cap_gib: float) -> _Sampler:
    """Just before the measured step(s), into the figures `f`: the setup RSS, ru_maxrss so far, the reset of VmHWM;
    returns the RSS sampler, started under the cap. (Also tests/bench/test_training_real_width.py's.)"""
    f["setup_rss_kib"] = _status_kib("VmRSS")
    f["maxrss_before_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    f["hwm_reset"] = _reset_hwm()
    sampler = _Sampler(int(cap_gib * 2**20))
    sampler.start()
    return sampler


def stop_measuring(f: dict, sampler: _Sampler) -> None:
    """Just after the measured step(s): the sampler stopped, and the peaks read into `f` (`step_peak_kib` says which
    one counts)."""
    sampler.stop.set()
    sampler.join()
    f["maxrss_after_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    f["hwm_kib"] = _status_kib("VmHWM")
    f["sampled_peak_kib"] = sampler.peak_kib
    f["samples"] = sampler.samples
    f["step_peak_kib"] = step_peak_kib(f)


def step_peak_kib(f: dict) -> int:
    """The peak RSS over what was measured, from a probe's figures: VmHWM when it could be reset before, else
    ru_maxrss if it rose (with the sampler's peak), else the sampler's peak alone."""
    if f["hwm_reset"]:
        return f["hwm_kib"]
    if f["maxrss_after_kib"] > f["maxrss_before_kib"]:
        return max(f["maxrss_after_kib"], f["sampled_peak_kib"])
    return f["sampled_peak_kib"]  # the setup peaked higher than the step: only the sampler sees the step


def _checkpointing_on(model) -> bool:
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def trained_figures(probe: Any, trainer: Any, output: Any, *, tokens: int, loss_tokens: int) -> dict:
    """What a child reports of its training run: the probe's figures, the row's tokens and those the loss counts,
    the loss, and whether activation checkpointing was on."""
    return {**probe.figures, "tokens": tokens, "loss_tokens": loss_tokens, "loss": output.training_loss,
            "checkpointing": _checkpointing_on(trainer.model)}


def train_ours(spec: dict, probe: Any, *, max_steps: int, max_length: int, checkpointing: bool,
               before: Callable[[Any], None] | None = None) -> tuple[Any, dict]:
    """Our recipe (engine.training.train.build_trainer) on CPU for `max_steps` steps on the spec's one-row dataset,
    measured by `probe` (a TrainerCallback with `figures`); `before(model)` runs just before training. Returns the
    run and its `trained_figures`. (Also tests/bench/test_training_real_width.py's.)"""
    from engine.training.train import build_trainer
    from engine.training.train_config import TrainConfig

    cfg = TrainConfig(base=spec["base"], max_steps=max_steps, gradient_accumulation=1, max_length=max_length,
                      device="cpu", warmup_steps=0, gradient_checkpointing=checkpointing, seed=0)
    run = build_trainer(cfg, Path(spec["dataset"]), Path(spec["out"]))
    run.trainer.add_callback(probe)
    if before is not None:
        before(run.trainer.model)
    output = run.trainer.train()
    return run, trained_figures(probe, run.trainer, output, tokens=run.lengths["tokens"],
                                loss_tokens=run.lengths["answer_tokens"])


def _run_ours(spec: dict) -> dict:
    probe = _probe(spec["cap_gib"])
    return train_ours(spec, probe, max_steps=1, max_length=MAX_LENGTH, checkpointing=spec["checkpointing"])[1]


def build_naive_trainer(spec: dict, *, callbacks: list, dtype: str = "float32", bf16: bool = False,
                        max_steps: int = 1):
    """The Colab recipe: PEFT LoRA on the base, a plain Trainer, `labels = input_ids` over the whole sequence, so
    the model computes [S, 151,936] logits and transformers' loss upcasts them to fp32 (a no-op in fp32) and keeps
    an fp32 log-softmax for the backward. `dtype` is the weights' dtype and `bf16` the Trainer's autocast (this module:
    fp32, no autocast; tests/bench/test_training_real_width.py: whatever our recipe chose). Returns the trainer and
    the row's token count."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments

    from engine.data.prepared import load_prepared

    tokenizer = AutoTokenizer.from_pretrained(spec["base"])
    row = load_prepared(Path(spec["dataset"]), "train")[0]
    ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)["input_ids"]
    data = Dataset.from_list([{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)}])

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(spec["base"], dtype=getattr(torch, dtype), attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=LORA_TARGETS,
                                             task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=spec["out"], per_device_train_batch_size=1, gradient_accumulation_steps=1, max_steps=max_steps,
        learning_rate=5e-5, warmup_steps=0, lr_scheduler_type="cosine", optim="adamw_torch", bf16=bf16,
        activation_checkpointing=spec["checkpointing"], activation_checkpointing_kwargs={"use_reentrant": False},
        use_cpu=True, logging_steps=1, save_strategy="no", report_to=[], seed=0, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    return trainer, len(ids)


def _run_naive(spec: dict) -> dict:
    probe = _probe(spec["cap_gib"])
    trainer, tokens = build_naive_trainer(spec, callbacks=[probe])
    return trained_figures(probe, trainer, trainer.train(), tokens=tokens, loss_tokens=tokens - 1)


def _child_main(recipe: str, spec_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text())
    figures = (_run_ours if recipe == "ours" else _run_naive)(spec)
    figures["threads"] = torch.get_num_threads()
    Path(spec["result"]).write_text(json.dumps(figures))


# -- the parent: data, model, two children ---------------------------------------------------------------------


def build_bench_model(out: Path) -> dict:
    """The tiny BPE tokenizer (tests.fakes.tiny_model) next to a small Qwen2 with the REAL Qwen vocabulary, random
    fp32 weights, tied embeddings like the 0.5B/1.5B. Token ids above the tokenizer's size are simply never used."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.fakes.tiny_model import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, vocab_size=TOKENIZER_VOCAB)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=32768,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()), "tokenizer_size": len(tokenizer)}


def prepare_row(records: list[dict], model_dir: Path, root: Path) -> dict:
    """Prepare every row at max_length 4096, pick the one closest to 4096 tokens, prepare it alone as the "train"
    split. Returns its prepared line (with prompt_tokens and completion_tokens)."""
    from engine.data.dataset import prepare_dataset
    from engine.data.prepared import load_prepared

    root.mkdir(parents=True, exist_ok=True)
    source = root / "all.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    prepare_dataset(str(source), root / "all", tokenizer_path=str(model_dir), max_length=MAX_LENGTH)
    prepared = load_prepared(root / "all", "train")
    best = max(prepared, key=lambda r: r["prompt_tokens"] + r["completion_tokens"])
    chosen = [r for r in records if (r["symbol"], r["period"]) == (best["symbol"], best["period"])]
    assert len(chosen) == 1, f"{best['symbol']} {best['period']} is not unique in the split"
    (root / "row.jsonl").write_text(json.dumps(chosen[0], ensure_ascii=False) + "\n")
    prepare_dataset(str(root / "row.jsonl"), root / "dataset", tokenizer_path=str(model_dir), max_length=MAX_LENGTH)
    (line,) = load_prepared(root / "dataset", "train")
    return line


def run_child(recipe: str, *, base: Path, dataset: Path, work: Path, checkpointing: bool, cap_gib: float) -> dict:
    work.mkdir(parents=True)
    spec = {"base": str(base), "dataset": str(dataset), "out": str(work / "out"), "result": str(work / "result.json"),
            "checkpointing": checkpointing, "cap_gib": cap_gib}
    (work / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tests.bench.test_training_memory", recipe, str(work / "spec.json")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if done.returncode != 0 or not (work / "result.json").is_file():
        return {"failed": f"exit code {done.returncode}", "stderr": done.stderr[-3000:],
                "wall_s": time.perf_counter() - started}
    return {**json.loads((work / "result.json").read_text()), "wall_s": time.perf_counter() - started}


def _gib(kib: float) -> float:
    return kib * 1024 / GIB


def _describe(name: str, r: dict) -> list[str]:
    if "failed" in r:
        return [f"  {name}: FAILED ({r['failed']})", *("    " + line for line in r["stderr"].splitlines()[-15:])]
    activation = _gib(r["step_peak_kib"] - r["setup_rss_kib"])
    peak_how = "VmHWM reset before the step" if r["hwm_reset"] else "ru_maxrss / sampler"
    return [
        f"  {name}",
        f"    setup RSS {_gib(r['setup_rss_kib']):6.2f} GiB   step peak {_gib(r['step_peak_kib']):6.2f} GiB "
        f"({peak_how}; 2 ms sampler saw {_gib(r['sampled_peak_kib']):.2f} GiB in {r['samples']} samples; "
        f"ru_maxrss before/after {_gib(r['maxrss_before_kib']):.2f}/{_gib(r['maxrss_after_kib']):.2f} GiB)",
        f"    activation memory above the setup: {activation:6.2f} GiB",
        f"    step {r['step_s']:6.1f} s   {r['tokens'] / r['step_s']:6.1f} tok/s   loss {r['loss']:.3f} over "
        f"{r['loss_tokens']} tokens   checkpointing {'on' if r['checkpointing'] else 'off'}   "
        f"child wall {r['wall_s']:.0f} s",
    ]


def _activation(r: dict) -> float:
    return _gib(r["step_peak_kib"] - r["setup_rss_kib"])


def test_one_4096_token_step_ours_against_naive(fingpt_test_rows, tmp_path):
    started = time.perf_counter()
    model_dir = tmp_path / "base"
    shape = build_bench_model(model_dir)
    row = prepare_row(fingpt_test_rows, model_dir, tmp_path / "data")
    prompt_tokens, answer_tokens = row["prompt_tokens"], row["completion_tokens"]
    total = prompt_tokens + answer_tokens
    dataset = tmp_path / "data" / "dataset"

    kwargs = {"base": model_dir, "dataset": dataset}
    results = {
        "ours": run_child("ours", work=tmp_path / "ours", checkpointing=True, cap_gib=RSS_CAP_GIB, **kwargs),
        "naive": run_child("naive", work=tmp_path / "naive", checkpointing=True, cap_gib=RSS_CAP_GIB, **kwargs),
    }
    naive_peak = results["naive"].get("step_peak_kib")
    no_ckpt_note = None
    if os.environ.get("BENCH_NAIVE_NO_CHECKPOINTING", "1") == "0":
        no_ckpt_note = "skipped (BENCH_NAIVE_NO_CHECKPOINTING=0)"
    elif naive_peak is None or _gib(naive_peak) > NO_CKPT_CAP_GIB - 1.5:
        no_ckpt_note = f"skipped: the checkpointed naive step leaves too little room under {NO_CKPT_CAP_GIB:.0f} GiB"
    else:
        results["naive, no checkpointing"] = run_child("naive", work=tmp_path / "naive-nockpt", checkpointing=False,
                                                       cap_gib=NO_CKPT_CAP_GIB, **kwargs)

    print()
    print(f"one LoRA training step on CPU, fp32, {results['ours'].get('threads', '?')} threads")
    print(f"  model: Qwen2 hidden {HIDDEN}, {LAYERS} layers, {HEADS} heads / {KV_HEADS} KV heads, intermediate "
          f"{INTERMEDIATE}, vocab {VOCAB:,} (tied), {shape['parameters'] / 1e6:.1f} M parameters; tokenizer "
          f"{shape['tokenizer_size']} tokens; LoRA r=8 alpha=16 on q/k/v/o/gate/up/down, AdamW, batch 1")
    print(f"  row: FinGPT test split {row['symbol']} {row['period']}, prepared with max_length {MAX_LENGTH} "
          f"({row['dropped_news']} oldest news items dropped to fit): prompt {prompt_tokens} + answer "
          f"{answer_tokens} = {total} tokens")
    print(f"  full-logit size at this length: {total} x {VOCAB:,} x 4 bytes = {total * VOCAB * 4 / GIB:.2f} GiB")
    print("  both recipes use activation checkpointing (non-reentrant), so the comparison isolates the logits/loss;")
    print("  ours = engine.training.train.build_trainer (TRL SFTTrainer, completion-only loss, fused LM head: "
          "chunked PyTorch on CPU);")
    print("  naive = PEFT + transformers.Trainer, labels = input_ids (prompt not masked), full logits, fp32 loss")
    from engine.training.train import CPU_LOGPROB_TILE

    print(f"  TRL's CPU fallback scores every position in [{min(total, 4096)} x {CPU_LOGPROB_TILE}] fp32 tiles "
          f"(ours narrows TRL's default of {TRL_TILE_WIDTH}); on CUDA its Triton kernel scores the answer only")
    for name, r in results.items():
        print("\n".join(_describe(name, r)))
    if no_ckpt_note:
        print(f"  naive, no checkpointing: {no_ckpt_note}")

    ours, naive = results["ours"], results["naive"]
    assert "failed" not in ours, ours.get("stderr")
    assert "failed" not in naive, naive.get("stderr")
    ratio = _activation(ours) / _activation(naive)
    print(f"  activation memory ours/naive: {ratio:.2f} (goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'}); "
          f"peak RSS ours/naive: {ours['step_peak_kib'] / naive['step_peak_kib']:.2f}; step time ours/naive: "
          f"{ours['step_s'] / naive['step_s']:.2f}")
    print(f"  benchmark wall time {time.perf_counter() - started:.0f} s")

    assert total <= MAX_LENGTH
    assert ours["tokens"] == naive["tokens"] == total, (ours["tokens"], naive["tokens"], total)
    for r in (ours, naive):
        assert r["setup_rss_kib"] > 0 and r["step_peak_kib"] > r["setup_rss_kib"] and r["step_s"] > 0
        assert r["checkpointing"]
        assert r["loss"] == r["loss"] and r["loss"] > 0  # finite (not NaN) and positive


if __name__ == "__main__":  # the child: python -m tests.bench.test_training_memory {ours|naive} SPEC.json
    if len(sys.argv) != 3 or sys.argv[1] not in ("ours", "naive"):
        sys.exit("usage: python -m tests.bench.test_training_memory {ours|naive} SPEC.json")
    _child_main(sys.argv[1], sys.argv[2])
