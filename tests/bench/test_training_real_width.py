"""Benchmark: memory and speed of LoRA training steps at REAL width, on the real pretrained weights at
REAL_MODEL_DIR (a Qwen2.5-1.5B-architecture folder: hidden 1536, 28 layers, vocabulary 151,936), on CPU: our recipe
(`engine.train.build_trainer`: TRL SFTTrainer, prompt/completion rows, completion-only loss, TRL's fused/chunked LM
head) against the naive recipe of the Colab attempt (PEFT + a plain `transformers.Trainer`, `labels = input_ids`,
full-vocabulary logits at every position; `test_training_memory.build_naive_trainer`), at each sequence length of
BENCH_LENGTHS (default 1024,2048,4096).

tests/bench/test_training_memory.py isolates the logits on a small model with the real vocabulary; this one adds
what that leaves out: 28 real decoder layers at hidden 1536 (their checkpointed activations, the recompute, the
LoRA states on all seven projections) and the real weights' dtype.

What each child measures (one fresh interpreter per length and recipe, this module run with `python -m`, so the
parent's memory does not pollute the figures; both recipes use non-reentrant activation checkpointing, batch 1,
gradient accumulation 1, AdamW, LoRA r=8 alpha=16 dropout 0.1 on q/k/v/o/gate/up/down):
- TWO optimizer steps on the same row. Setup RSS is VmRSS just before the first step (weights, data, trainer).
  transformers maps the safetensors file and, where the dtype is the file's (bf16 here), leaves the weights as
  file-backed pages that the first forward would fault in, so the child reads every weight once before it measures
  the setup: otherwise ~3.3 GiB of weights would count as "activation" memory. The peak is the kernel's RSS
  high-water mark (VmHWM, reset through /proc/self/clear_refs just before the first step), cross-checked by a
  thread sampling VmRSS every 2 ms, over BOTH steps (the first allocates LoRA's AdamW states); activation memory =
  peak - setup. The step time and tokens/s are the SECOND step's (the first carries one-time costs: optimizer
  states, oneDNN kernel selection, first-touch page faults); the first is printed too.
- The dtype is the product's rule, not the benchmark's: `build_trainer` picks it with
  `engine.placement.choose_placement` and `read_cpu_flags()` (bf16 weights and bf16 autocast on CPUs with amx_bf16
  or avx512_bf16, fp32 elsewhere); the naive child makes the very same call and loads the model in that dtype with
  the same Trainer `bf16` (autocast) setting, so the two differ only in their recipe. Both children see no GPU
  (CUDA_VISIBLE_DEVICES=""), so the rule is the CPU one everywhere.
- Each child runs under an RSS cap (BENCH_RSS_CAP_GIB, default 20 GiB, lowered to the parent's MemAvailable less
  1.5 GiB when that is smaller): a thread watches VmRSS from the child's first line (every 10 ms while the model
  loads, every 2 ms during the steps) and ends the child, not the machine, when it passes the cap. A capped child
  is reported as such in the table, not as a failure, and that recipe is not tried at the longer lengths. Each child
  has BENCH_CHILD_TIMEOUT_S (default 2400 s: a 4096-token step takes minutes on a 2-core CPU).

How the rows are built, for each length L (real FinGPT text only: the rows of the test split at FINGPT_TEST_SPLIT,
default the shared copy, prepared with `engine.dataset.prepare_dataset` and the real model's tokenizer, so the
counts are TRL's): with this tokenizer the rows run from ~1,100 to ~3,400 tokens, so
1. the split is prepared with max_length L (rows over L lose their oldest news, never the answer, as in training);
   the longest row that needed no fitting is the base (if every row needed it, the longest fitted row);
2. its prompt is extended with further real news items, taken from the same ticker's other weeks (nearest earlier
   weeks first), then from other tickers, never repeating a headline: each is put in front of the oldest week's
   news (as older news), and kept only if prompt + answer still counts <= L with the exact chat-template count,
   until no remaining item fits; the real answer is kept whole as the completion. The result is L tokens or just
   under (by less than the shortest item left);
3. only for lengths below any real row even with all its news dropped (below ~1,000 tokens: smoke lengths such as
   512), the row with the shortest answer keeps only the tail of its user message (the closing instruction and
   what fits before it), cut to the longest tail that fits;
4. the row is written as a one-row prompt/completion source and prepared again with max_length L, which both
   recipes then read (ours through build_trainer, naive through `apply_chat_template(prompt + completion)`).

Run it alone on a quiet machine (minutes per child at 4096 tokens on 2 cores; the full default run takes the
better part of an hour):

    REAL_MODEL_DIR=/work/real-qwen .venv/bin/python -m pytest tests/bench/test_training_real_width.py -s -m bench \
        -p no:cacheprovider

    BENCH_LENGTHS=1024,2048,4096   lengths to measure (each >= 256); BENCH_LENGTHS=512 for a quick smoke run
    BENCH_OUT=/tmp/training-real-width.json   where the figures go as JSON
    BENCH_RSS_CAP_GIB=20   per-child RSS cap;  BENCH_CHILD_TIMEOUT_S=2400   per-child time limit

It skips, with the reason, unless REAL_MODEL_DIR names a folder holding config.json and *.safetensors (build one with
`../shared/tools/real-qwen DIR`). Unlike the other real-weights benchmarks it does not fall back to ../real-qwen:
it runs for the better part of an hour, so `make bench` runs it only where REAL_MODEL_DIR is set in the environment.

What it does not measure: GPU memory or speed (tests/gpu; on CUDA TRL's Triton kernel scores only the answer
positions), QLoRA, the naive recipe without activation checkpointing (test_training_memory.py has that at small
width), steady-state throughput over many steps or rows (one timed step per child, so noisy on a shared machine),
gradient accumulation, and anything about the adapter's quality (two steps on one row). Under memory pressure the kernel
may drop clean file-backed weight pages during a step, which would lower the peak: run it with memory to spare (the
setup's anonymous and file-backed parts are printed). The assertions are only that each child reported its
figures (or hit the cap): nothing is asserted on the times or the ratios.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.bench.test_training_memory import (
    _gib,
    _Sampler,
    _status_kib,
    build_naive_trainer,
    start_measuring,
    stop_measuring,
    train_ours,
    trained_figures,
)
from tests.real.weights import missing_reason, real_model_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LENGTHS = "1024,2048,4096"
DEFAULT_OUT = "/tmp/training-real-width.json"
DEFAULT_RSS_CAP_GIB = 20.0
DEFAULT_CHILD_TIMEOUT_S = 2400
CAP_EXIT_CODE = 3  # what _Sampler exits with when the RSS passes the cap
STEPS = 2
UNFITTED_LENGTH = 1 << 20  # prepare_dataset's max_length when only the counts are wanted
GIB = 2**30


# -- the child: one recipe, two steps --------------------------------------------------------------------------


def _two_step_probe(cap_gib: float, guard: _Sampler):
    from transformers import TrainerCallback

    class TwoSteps(TrainerCallback):
        """Setup RSS before step 1; the peak over steps 1 and 2; each step's time. on_step_begin comes after the
        batch is fetched, on_step_end after the optimizer step."""

        def __init__(self) -> None:
            self.figures: dict = {"step_s": []}
            self.step = 0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (transformers' signature)
            self.step += 1
            f = self.figures
            if self.step == 1:
                gc.collect()
                guard.stop.set()  # the loading guard hands over to the step sampler
                guard.join()
                f["load_peak_kib"] = guard.peak_kib
                f["setup_anon_kib"], f["setup_file_kib"] = _status_kib("RssAnon"), _status_kib("RssFile")
                self.sampler = start_measuring(f, cap_gib)
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            f = self.figures
            f["step_s"].append(time.perf_counter() - self.started)
            if self.step == 1:
                f["step1_peak_kib"] = max(_status_kib("VmHWM") if f["hwm_reset"] else 0, self.sampler.peak_kib)
            if self.step == STEPS:
                stop_measuring(f, self.sampler)

    return TwoSteps()


def _read_weights(model) -> None:
    """Touch every weight once. transformers maps the safetensors file and, when the dtype matches the file's,
    leaves the weights as file-backed pages that the first forward faults in; read here, they are part of the
    setup RSS rather than of the step's "activation" memory."""
    import torch

    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.numel():
                tensor.detach().sum()


def _weights_dtype(model) -> str:
    """The frozen (base) weights' dtype; LoRA's own weights are fp32 either way."""
    return str(next(p.dtype for p in model.parameters() if not p.requires_grad)).removeprefix("torch.")


def _placement():
    """The call `engine.train.build_trainer` makes, so the naive recipe gets the dtype our recipe gets."""
    import torch

    from engine.generation.placement import choose_placement, read_cpu_flags

    cuda = torch.cuda.is_available()
    return choose_placement(device="cpu", dtype="auto", load_in_4bit=False, cuda_available=cuda,
                            cuda_capability=torch.cuda.get_device_capability() if cuda else None,
                            cpu_flags=frozenset() if cuda else read_cpu_flags())


def _dtype_figures(placement: Any, trainer: Any) -> dict:
    """The dtype a recipe ran in, why, with or without bf16 autocast, and the frozen weights' dtype."""
    return {"dtype": placement.dtype, "dtype_reason": placement.reason, "autocast_bf16": bool(trainer.args.bf16),
            "weights_dtype": _weights_dtype(trainer.model)}


def _run_ours(spec: dict, guard: _Sampler) -> dict:
    probe = _two_step_probe(spec["cap_gib"], guard)
    run, figures = train_ours(spec, probe, max_steps=STEPS, max_length=spec["length"], checkpointing=True,
                              before=_read_weights)
    return {**figures, **_dtype_figures(run.placement, run.trainer)}


def _run_naive(spec: dict, guard: _Sampler) -> dict:
    placement = _placement()
    probe = _two_step_probe(spec["cap_gib"], guard)
    trainer, tokens = build_naive_trainer(spec, callbacks=[probe], dtype=placement.dtype,
                                          bf16=placement.dtype == "bfloat16", max_steps=STEPS)
    _read_weights(trainer.model)
    figures = trained_figures(probe, trainer, trainer.train(), tokens=tokens, loss_tokens=tokens - 1)
    return {**figures, **_dtype_figures(placement, trainer)}


def _child_main(recipe: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    guard = _Sampler(int(spec["cap_gib"] * 2**20), interval_s=0.01)  # the cap holds while the model loads too
    guard.start()
    import torch

    figures = (_run_ours if recipe == "ours" else _run_naive)(spec, guard)
    figures["threads"] = torch.get_num_threads()
    Path(spec["result"]).write_text(json.dumps(figures))


# -- the parent: rows, children, table -------------------------------------------------------------------------


@dataclass
class _Chat:
    """A system/user/answer row as `engine.token_budget.TokenCounter.measure` counts it."""

    system: str
    user: str
    answer: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dropped_news: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def where(self) -> str:
        return "the benchmark row"


def _chat(line: dict, user: str | None = None) -> _Chat:
    return _Chat(line["prompt"][0]["content"], line["prompt"][1]["content"] if user is None else user,
                 line["completion"][0]["content"])


def _measured(counter, chat: _Chat) -> _Chat:
    counter.measure([chat])
    return chat


def _prepare(source: Path, out: Path, model_dir: Path, length: int) -> list[dict]:
    from engine.data.dataset import prepare_dataset
    from engine.data.prepared import load_prepared
    from engine.exceptions import EngineError

    try:
        prepare_dataset(str(source), out, tokenizer_path=str(model_dir), max_length=length)
    except EngineError as e:
        if "Every one of the" in str(e):  # no row fits, even with all its news dropped
            return []
        raise
    return load_prepared(out, "train")


def _news_pool(lines: list[dict], base: dict, present: set[str]) -> list:
    """Real news items to extend `base` with: the same ticker's other weeks (nearest earlier weeks first, then
    later ones), then other tickers; no headline twice, none already in the prompt."""
    from engine.data.prompt_parser import parse_user_prompt
    from engine.exceptions import PromptError

    same = [ln for ln in lines if ln["symbol"] == base["symbol"] and ln["period"] != base["period"]]
    earlier = sorted((ln for ln in same if ln["period"] < base["period"]), key=lambda ln: ln["period"], reverse=True)
    later = sorted((ln for ln in same if ln["period"] > base["period"]), key=lambda ln: ln["period"])
    others = [ln for ln in lines if ln["symbol"] != base["symbol"]]
    seen, pool = set(present), []
    for line in earlier + later + others:
        try:
            parts = parse_user_prompt(line["prompt"][1]["content"])
        except PromptError:
            continue
        for week in reversed(parts.weeks):
            for item in week.news:
                if item.headline not in seen:
                    seen.add(item.headline)
                    pool.append(item)
    return pool


def _extend(base: dict, lines: list[dict], counter, length: int) -> tuple[_Chat, int]:
    """Put real news items in front of the oldest week's news while prompt + answer stays <= length."""
    from engine.data.prompt_parser import parse_user_prompt
    from engine.data.prompts import NEWS_ITEM, build_user_prompt

    chat = _measured(counter, _chat(base))
    parts = parse_user_prompt(chat.user)
    if not parts.weeks:
        return chat, 0
    present = {item.headline for week in parts.weeks for item in week.news}
    pool = _news_pool(lines, base, present)
    # An item costs its own tokens plus the blank line joining it to the next (an estimate; the count that
    # decides is the exact one on the whole chat).
    costs = [len(ids) + 1 for ids in counter.ids([NEWS_ITEM.format(headline=n.headline, summary=n.summary)
                                                  for n in pool])]
    smallest = min(costs, default=0)
    added: list = []
    for item, cost in zip(pool, costs, strict=True):
        gap = length - chat.total
        if gap < max(smallest, 1):
            break
        if cost > gap:
            continue
        oldest = parts.weeks[0]
        trial_parts = replace(parts, weeks=(replace(oldest, news=(*added, item, *oldest.news)), *parts.weeks[1:]))
        trial = _measured(counter, _chat(base, build_user_prompt(trial_parts)))
        if trial.total <= length:
            chat, added = trial, [*added, item]
    return chat, len(added)


def _cut(lines: list[dict], counter, length: int) -> tuple[dict, _Chat] | None:
    """The row with the shortest answer, its user message cut to the longest tail that fits `length`."""
    base = min(lines, key=lambda ln: (ln["completion_tokens"], ln["prompt_tokens"]))
    user = base["prompt"][1]["content"]

    def keep(n: int) -> _Chat:
        return _measured(counter, _chat(base, user[len(user) - n:].strip()))

    if keep(0).total > length:
        return None
    lo, hi = 0, len(user)
    while lo < hi:  # token counts grow with the tail, near enough monotonically for a smoke length
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if keep(mid).total <= length else (lo, mid - 1)
    return base, keep(lo)


def build_rows(records: list[dict], model_dir: Path, lengths: list[int], root: Path) -> dict[int, dict | None]:
    """For each length, a one-row prepared dataset of real text at that length or just under (module docstring);
    None where no row can be made that short. Returns {length: description with "dataset"}."""
    from transformers import AutoTokenizer

    from engine.data.prepared import load_prepared
    from engine.data.token_budget import TokenCounter

    root.mkdir(parents=True, exist_ok=True)
    source = root / "all.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    lines = _prepare(source, root / "all", model_dir, UNFITTED_LENGTH)
    counter = TokenCounter(AutoTokenizer.from_pretrained(model_dir))
    rows: dict[int, dict | None] = {}
    for length in lengths:
        fitted = _prepare(source, root / f"fit-{length}", model_dir, length)
        if fitted:
            whole = [ln for ln in fitted if ln["dropped_news"] == 0]
            base = max(whole or fitted, key=lambda ln: ln["prompt_tokens"] + ln["completion_tokens"])
            chat, added = _extend(base, lines, counter, length)
            fit = "" if whole else f" fitted by dropping its {base['dropped_news']} oldest news items"
            how = f"real row{fit} + {added} real news items from other weeks"
        else:
            cut = _cut(lines, counter, length)
            if cut is None:
                rows[length] = None
                continue
            base, chat = cut
            added = 0
            how = f"real row cut to the last {len(chat.user):,} characters of its user message (no real row fits)"
        record = {"prompt": [{"role": "system", "content": chat.system}, {"role": "user", "content": chat.user}],
                  "completion": [{"role": "assistant", "content": chat.answer}],
                  **{k: base[k] for k in ("symbol", "period", "label")}}
        (root / f"row-{length}.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n")
        dataset = root / f"row-{length}"
        _prepare(root / f"row-{length}.jsonl", dataset, model_dir, length)
        (line,) = load_prepared(dataset, "train")
        total = line["prompt_tokens"] + line["completion_tokens"]
        assert total <= length and line["dropped_news"] == 0, (length, total, line["dropped_news"])
        rows[length] = {"length": length, "dataset": str(dataset), "symbol": base["symbol"], "period": base["period"],
                        "prompt_tokens": line["prompt_tokens"], "answer_tokens": line["completion_tokens"],
                        "total": total, "measured_total": chat.total, "added_news": added, "construction": how}
    return rows


def _mem_available_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            found = re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) / 2**20 if found else None


def _rss_cap() -> tuple[float, str]:
    if os.environ.get("BENCH_RSS_CAP_GIB"):
        return float(os.environ["BENCH_RSS_CAP_GIB"]), "BENCH_RSS_CAP_GIB"
    available = _mem_available_gib()
    if available is not None and available - 1.5 < DEFAULT_RSS_CAP_GIB:
        return max(available - 1.5, 1.0), f"the default {DEFAULT_RSS_CAP_GIB:.0f} GiB lowered to MemAvailable " \
            f"{available:.1f} GiB less 1.5 GiB"
    return DEFAULT_RSS_CAP_GIB, "default"


def _lengths() -> list[int]:
    text = os.environ.get("BENCH_LENGTHS") or DEFAULT_LENGTHS
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        pytest.fail(f"BENCH_LENGTHS={text!r}: expected comma-separated token counts, e.g. {DEFAULT_LENGTHS}")
    if not lengths or min(lengths) < 256:
        pytest.fail(f"BENCH_LENGTHS={text!r}: give at least one length, each >= 256 (TrainConfig's minimum)")
    return sorted(set(lengths))


def run_child(recipe: str, *, base: Path, row: dict, work: Path, cap_gib: float, timeout_s: int) -> dict:
    work.mkdir(parents=True)
    spec = {"base": str(base), "dataset": row["dataset"], "length": row["length"], "out": str(work / "out"),
            "result": str(work / "result.json"), "checkpointing": True, "cap_gib": cap_gib}
    (work / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.test_training_real_width", recipe, str(work / "spec.json")],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        return {"status": "timeout", "why": f"no result within {timeout_s} s (BENCH_CHILD_TIMEOUT_S)",
                "stderr": stderr[-3000:], "wall_s": time.perf_counter() - started}
    wall = time.perf_counter() - started
    if done.returncode == CAP_EXIT_CODE:
        return {"status": "capped", "why": f"RSS passed the {cap_gib:.1f} GiB cap", "stderr": done.stderr[-3000:],
                "wall_s": wall}
    if done.returncode != 0 or not (work / "result.json").is_file():
        why = (f"killed by signal {-done.returncode}" + (" (the kernel's OOM killer?)" if done.returncode == -9 else "")
               if done.returncode < 0 else f"exit code {done.returncode}")
        return {"status": "failed", "why": why, "stderr": done.stderr[-3000:], "wall_s": wall}
    figures = json.loads((work / "result.json").read_text())
    activation = figures["step_peak_kib"] - figures["setup_rss_kib"]
    return {"status": "ok", **figures, "wall_s": wall, "setup_gib": _gib(figures["setup_rss_kib"]),
            "peak_gib": _gib(figures["step_peak_kib"]), "activation_gib": _gib(activation),
            "step1_s": figures["step_s"][0], "step2_s": figures["step_s"][-1],
            "tokens_per_s": figures["tokens"] / figures["step_s"][-1]}


def _table(rows: dict[int, dict | None], results: list[dict]) -> list[str]:
    head = (f"{'length':>6}  {'recipe':<10} {'dtype':<9} {'setup GiB':>9} {'peak GiB':>9} {'act GiB':>8} "
            f"{'step s':>8} {'tok/s':>7}  note")
    out = [head, "-" * len(head)]
    for length, row in rows.items():
        if row is None:
            out.append(f"{length:>6}  no row can be made this short (the shortest answer with the system prompt "
                       "does not fit)")
            continue
        by_recipe = {r["recipe"]: r for r in results if r["length"] == length}
        for recipe in ("ours", "naive"):
            r = by_recipe[recipe]
            if r["status"] != "ok":
                out.append(f"{length:>6}  {recipe:<10} {'':<9} {'':>9} {'':>9} {'':>8} {'':>8} {'':>7}  "
                           f"{r['status'].upper()}: {r['why']}")
                continue
            note = (f"step 1 {r['step1_s']:.1f} s; loss {r['loss']:.3f} over {r['loss_tokens']} tokens; "
                    f"{r['tokens']} tokens; {r['threads']} threads")
            out.append(f"{length:>6}  {recipe:<10} {r['dtype']:<9} {r['setup_gib']:>9.2f} {r['peak_gib']:>9.2f} "
                       f"{r['activation_gib']:>8.2f} {r['step2_s']:>8.1f} {r['tokens_per_s']:>7.1f}  {note}")
        ours, naive = by_recipe["ours"], by_recipe["naive"]
        if ours["status"] == naive["status"] == "ok":
            out.append(f"{length:>6}  {'ours/naive':<10} {'':<9} {'':>9} "
                       f"{ours['peak_gib'] / naive['peak_gib']:>9.2f} "
                       f"{ours['activation_gib'] / naive['activation_gib']:>8.2f} "
                       f"{ours['step2_s'] / naive['step2_s']:>8.2f} {'':>7}  ratios (peak, act, step s)")
    return out


@pytest.fixture(scope="module")
def real_weights() -> Path:
    if not os.environ.get("REAL_MODEL_DIR"):
        pytest.skip("REAL_MODEL_DIR is not set: point it at a Qwen2.5-1.5B-architecture folder (config.json and "
                    "*.safetensors); build one with `../shared/tools/real-qwen DIR` and set REAL_MODEL_DIR=DIR")
    folder = real_model_dir()
    if folder is None:
        pytest.skip(missing_reason())
    return folder


def test_real_width_training_steps_ours_against_naive(real_weights, fingpt_test_rows, tmp_path):
    from engine.generation.placement import CPU_BF16_FLAGS, choose_placement, read_cpu_flags

    started = time.perf_counter()
    lengths = _lengths()
    cap_gib, cap_source = _rss_cap()
    timeout_s = int(os.environ.get("BENCH_CHILD_TIMEOUT_S") or DEFAULT_CHILD_TIMEOUT_S)
    out_path = Path(os.environ.get("BENCH_OUT") or DEFAULT_OUT)
    config = json.loads((real_weights / "config.json").read_text())
    flags = read_cpu_flags()
    # What the children will choose (they see no GPU): the product's rule, printed before the long wait.
    placement = choose_placement(device="cpu", cuda_available=False, cuda_capability=None, cpu_flags=flags)
    flag_text = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_BF16_FLAGS)

    print()
    print(f"LoRA training steps at real width on CPU: {real_weights}")
    print(f"  model: {config.get('model_type')} hidden {config.get('hidden_size')}, {config.get('num_hidden_layers')} "
          f"layers, {config.get('num_attention_heads')} heads / {config.get('num_key_value_heads')} KV heads, "
          f"intermediate {config.get('intermediate_size')}, vocab {config.get('vocab_size'):,}, tied embeddings "
          f"{config.get('tie_word_embeddings')}")
    print(f"  dtype: {placement.dtype} ({placement.reason}); CPU flags that decide it: {flag_text}")
    print(f"  lengths {lengths}; RSS cap {cap_gib:.1f} GiB per child ({cap_source}); child timeout {timeout_s} s; "
          f"{STEPS} steps per child, the second one timed")
    rows = build_rows(fingpt_test_rows, real_weights, lengths, tmp_path / "data")
    for length, row in rows.items():
        if row is None:
            print(f"  {length}: no row can be made this short")
            continue
        print(f"  {length}: {row['symbol']} {row['period']}, prompt {row['prompt_tokens']} + answer "
              f"{row['answer_tokens']} = {row['total']} tokens; {row['construction']}; full logits "
              f"{row['total']} x {config.get('vocab_size'):,} x 4 bytes = "
              f"{row['total'] * config.get('vocab_size', 0) * 4 / GIB:.2f} GiB in fp32", flush=True)

    results: list[dict] = []
    capped_at: dict[str, int] = {}
    for length, row in rows.items():
        if row is None:
            continue
        for recipe in ("ours", "naive"):
            if recipe in capped_at:
                r = {"status": "capped", "why": f"not run: it hit the cap at {capped_at[recipe]} tokens"}
            else:
                r = run_child(recipe, base=real_weights, row=row, work=tmp_path / f"{recipe}-{length}",
                              cap_gib=cap_gib, timeout_s=timeout_s)
                if r["status"] == "capped":
                    capped_at[recipe] = length
            r = {"length": length, "recipe": recipe, **r}
            results.append(r)
            if r["status"] == "ok":
                print(f"  done {length} {recipe}: {r['dtype']} (weights {r['weights_dtype']}, bf16 autocast "
                      f"{r['autocast_bf16']}), setup {r['setup_gib']:.2f} GiB (load peak "
                      f"{_gib(r['load_peak_kib']):.2f}; anonymous {_gib(r['setup_anon_kib']):.2f} + file-backed "
                      f"{_gib(r['setup_file_kib']):.2f}), peak {r['peak_gib']:.2f} GiB (step 1 "
                      f"{_gib(r['step1_peak_kib']):.2f}; VmHWM {'reset' if r['hwm_reset'] else 'NOT reset'}; "
                      f"sampler {_gib(r['sampled_peak_kib']):.2f} in {r['samples']} samples), steps "
                      f"{r['step1_s']:.1f} + {r['step2_s']:.1f} s, child wall {r['wall_s']:.0f} s", flush=True)
                if r["tokens"] != row["total"]:
                    print(f"    WARNING: the child trained on {r['tokens']} tokens, the row has {row['total']}")
            else:
                print(f"  done {length} {recipe}: {r['status'].upper()} ({r['why']})", flush=True)
                print("\n".join("    " + line for line in r.get("stderr", "").splitlines()[-15:]))

    dtypes = {r["dtype"] for r in results if r["status"] == "ok"}
    print()
    print(f"LoRA r=8, {STEPS} steps, batch 1, activation checkpointing on both; step s and tok/s: the second step; "
          f"peak: over both steps; act = peak - setup")
    if len(dtypes) > 1:
        print(f"  WARNING: the children chose different dtypes: {sorted(dtypes)}")
    print("\n".join("  " + line for line in _table(rows, results)))
    print(f"  benchmark wall time {time.perf_counter() - started:.0f} s")

    ratios = []
    for length in rows:
        pair = {r["recipe"]: r for r in results if r["length"] == length}
        if pair and all(r["status"] == "ok" for r in pair.values()):
            ratios.append({"length": length,
                           "activation": pair["ours"]["activation_gib"] / pair["naive"]["activation_gib"],
                           "peak": pair["ours"]["peak_gib"] / pair["naive"]["peak_gib"],
                           "step_time": pair["ours"]["step2_s"] / pair["naive"]["step2_s"]})
    report = {
        "model_dir": str(real_weights), "model": {k: config.get(k) for k in (
            "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "vocab_size", "tie_word_embeddings")},
        "dtype": placement.dtype, "dtype_reason": placement.reason,
        "cpu_flags": {flag: flag in flags for flag in CPU_BF16_FLAGS},
        "steps": STEPS, "timed_step": STEPS, "rss_cap_gib": cap_gib, "rss_cap_source": cap_source,
        "child_timeout_s": timeout_s, "lengths": lengths,
        "rows": [row if row is not None else {"length": length, "missing": True} for length, row in rows.items()],
        "results": [{k: v for k, v in r.items() if k != "stderr"} for r in results], "ratios": ratios,
        "wall_s": time.perf_counter() - started,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  figures written to {out_path}")

    failed = [f"{r['length']} {r['recipe']}: {r['status']} ({r['why']})\n{r.get('stderr', '')[-1500:]}"
              for r in results if r["status"] not in ("ok", "capped")]
    assert not failed, "\n".join(failed)
    for r in results:
        if r["status"] == "ok":
            assert r["setup_rss_kib"] > 0 and r["step_peak_kib"] >= r["setup_rss_kib"], r
            assert len(r["step_s"]) == STEPS and all(s > 0 for s in r["step_s"]), r


if __name__ == "__main__":  # the child: python -m tests.bench.test_training_real_width {ours|naive} SPEC.json
    if len(sys.argv) != 3 or sys.argv[1] not in ("ours", "naive"):
        sys.exit("usage: python -m tests.bench.test_training_real_width {ours|naive} SPEC.json")
    _child_main(sys.argv[1], sys.argv[2])
