"""LoRA / QLoRA supervised fine-tuning on a prepared FinGPT dataset, lean on memory by construction.

Why the people before us ran out of memory, and what this does instead (shared/reference/LLM_NOTES.md §3-6):
- The [tokens × 151,936] logits, upcast to fp32 for the loss, dominate a 4096-token step, whatever the model
  size. TRL's SFTTrainer with prompt/completion rows computes the loss only on the answer and, through its fused
  LM head, never materialises the full logits.
- Gradient checkpointing (non-reentrant), SDPA attention, batch size 1 with gradient accumulation, and 8-bit
  paged AdamW on GPU.
- QLoRA: NF4 + double quantization; compute in bf16 on Ampere+, fp16 before. We never call
  `prepare_model_for_kbit_training`, which would upcast the embeddings and lm_head to fp32.
- `max_length` is explicit, and checked against every row: TRL would otherwise silently cut the answers off.
- fp16 runs are guarded: a non-finite loss stops training and nothing is saved.

`train(cfg, dataset_dir, out_dir)` reads as one piece; the output folder describes itself (`training.json`).
"""

from __future__ import annotations

import json
import logging
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback

from engine.data.prompts import TEMPLATE_ID
from engine.exceptions import EngineError
from engine.generation.placement import choose_placement, read_cpu_flags, torch_dtype
from engine.training.train_config import TrainConfig

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "training.json")


class TrainingError(EngineError):
    """Training could not run or produced nothing worth saving."""


@dataclass(frozen=True)
class TrainProgress:
    step: int
    max_steps: int
    epoch: float
    loss: float | None
    tokens_per_s: float | None
    eta_s: float | None


ProgressFn = Callable[[TrainProgress], None]


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    record: dict  # what training.json holds


# -- data ------------------------------------------------------------------------------------------------------


def _load_rows(dataset_dir: Path) -> tuple[list[dict], dict]:
    from engine.data.prepared import load_prepared

    manifest_path = dataset_dir / "manifest.json"
    if not manifest_path.is_file():
        raise TrainingError(f"{dataset_dir} is not a prepared dataset (no manifest.json); run "
                            "`forecaster dataset prepare --source ... --out DIR` first")
    rows = load_prepared(dataset_dir, "train")
    if not rows:
        raise TrainingError(f"{dataset_dir} has no training rows")
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows], json.loads(manifest_path.read_text())


def _check_lengths(rows: list[dict], tokenizer: Any, max_length: int) -> dict:
    """Count each row as TRL will see it; refuse rather than let TRL truncate an answer away."""
    lengths = []
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)["input_ids"]
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)["input_ids"]
        lengths.append((len(prompt), len(full)))
    too_long = [i for i, (_, total) in enumerate(lengths) if total > max_length]
    if too_long:
        worst = max(total for _, total in lengths)
        raise TrainingError(
            f"{len(too_long)} of {len(rows)} rows are longer than max_length={max_length} (longest {worst} tokens) "
            "and would lose their answers; prepare the dataset with this base's tokenizer and "
            f"--max-length {max_length}, or train with --max-length {worst}"
        )
    totals = [t for _, t in lengths]
    return {"rows": len(rows), "tokens": sum(totals), "answer_tokens": sum(t - p for p, t in lengths),
            "longest": max(totals), "mean": round(sum(totals) / len(totals), 1)}


# -- progress and guards ---------------------------------------------------------------------------------------


class _Watch(TrainerCallback):
    """Reports progress (step, loss, tokens/s, ETA) and stops on a non-finite loss. Rates count only the steps
    this process ran, so a resumed run's ETA is right from its first step. With checkpoints on, the last step is
    always saved, so a run stopped after training (during evaluation, say) is not trained again."""

    def __init__(self, progress: ProgressFn | None, tokens_per_step: float, *, save_last: bool = False) -> None:
        self.progress = progress
        self.tokens_per_step = tokens_per_step
        self.save_last = save_last
        self.started = time.perf_counter()
        self.first_step = 0
        self.seconds: float | None = None  # the training loop's wall time, once it ended
        self.non_finite_at: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (transformers' signature)
        self.started = time.perf_counter()
        self.first_step = state.global_step  # > 0 when resumed from a checkpoint

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.seconds = time.perf_counter() - self.started

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.save_last and state.global_step >= state.max_steps:
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.non_finite_at = state.global_step
            control.should_training_stop = True
        if self.progress is not None:
            elapsed = time.perf_counter() - self.started
            done = state.global_step - self.first_step
            rate = done * self.tokens_per_step / elapsed if elapsed > 0 and done > 0 else None
            per_step = elapsed / done if done > 0 else None
            eta = per_step * (state.max_steps - state.global_step) if per_step else None
            self.progress(TrainProgress(state.global_step, state.max_steps, float(state.epoch or 0.0), loss, rate,
                                        eta))


# -- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A configured trainer and what `train` needs to finish the job."""

    trainer: Any
    watch: _Watch
    placement: Any
    manifest: dict
    lengths: dict
    checkpoint_dir: Path | None = None


def build_trainer(cfg: TrainConfig, dataset_dir: Path, out_dir: Path, *, progress: ProgressFn | None = None,
                  checkpoint_dir: Path | None = None, save_every: int = 5) -> Run:
    """Everything up to `trainer.train()`: checks, model, LoRA, TRL config. Separate so tests can inspect the
    batches the trainer will see. With `checkpoint_dir`, the run saves a checkpoint there every `save_every`
    updates and after the last, and `finish` resumes from the newest one (see `_claim_checkpoints`)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TrainingError(f"{out_dir} is not empty; give a new folder for the adapter")
    cuda = torch.cuda.is_available()
    # The serving rule (engine.generation.placement): bf16 on GPUs from Ampere and on CPUs with native bf16 (AMX,
    # AVX512-BF16), fp32 on other CPUs, where bf16 is emulated and many times slower. LoRA's own weights stay fp32
    # either way (PEFT upcasts adapters), so small updates are not lost to bf16 rounding.
    placement = choose_placement(device=cfg.device, dtype=cfg.dtype, load_in_4bit=cfg.qlora, cuda_available=cuda,
                                 cuda_capability=torch.cuda.get_device_capability() if cuda else None,
                                 cpu_flags=frozenset() if cuda else read_cpu_flags())
    log.info("training in %s on %s (%s)", placement.dtype, placement.device, placement.reason)
    rows, manifest = _load_rows(Path(dataset_dir))
    if checkpoint_dir is not None:
        _claim_checkpoints(Path(checkpoint_dir), cfg, manifest)

    tokenizer = AutoTokenizer.from_pretrained(cfg.base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lengths = _check_lengths(rows, tokenizer, cfg.max_length)

    dtype = torch_dtype(placement.dtype)
    model_kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": "sdpa"}
    if cfg.qlora:
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        model_kwargs["device_map"] = placement.device
    model = AutoModelForCausalLM.from_pretrained(cfg.base, **model_kwargs)
    if not cfg.qlora:
        model.to(placement.device)

    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    on_gpu = placement.device.startswith("cuda")
    args = SFTConfig(
        output_dir=str(checkpoint_dir or out_dir / ".trainer"),
        max_length=cfg.max_length,  # explicit: TRL's default of 1024 cuts FinGPT answers off
        completion_only_loss=True,  # loss on the answer only; prompt labels are -100
        packing=False,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="cosine",
        activation_checkpointing=cfg.gradient_checkpointing,  # "gradient_checkpointing" before transformers 5
        activation_checkpointing_kwargs={"use_reentrant": False},
        optim="paged_adamw_8bit" if on_gpu else "adamw_torch",
        bf16=placement.dtype == "bfloat16",  # on CPU too: autocast where the CPU has native bf16
        fp16=on_gpu and placement.dtype == "float16",
        use_cpu=not on_gpu,
        logging_steps=1,
        logging_nan_inf_filter=False,  # the default hides NaN/inf losses from the log, and so from our guard
        save_strategy="steps" if checkpoint_dir is not None else "no",
        save_steps=save_every,
        save_total_limit=1,  # the newest checkpoint is all a resume needs
        report_to=[],
        seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    tokens_per_step = lengths["tokens"] / len(rows) * cfg.gradient_accumulation
    watch = _Watch(progress, tokens_per_step, save_last=checkpoint_dir is not None)
    if not on_gpu:
        _narrow_logprob_tiles()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora, callbacks=[watch])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; progress goes through `watch`
    return Run(trainer, watch, placement, manifest, lengths, Path(checkpoint_dir) if checkpoint_dir else None)


def train(cfg: TrainConfig, dataset_dir: Path, out_dir: Path, *, progress: ProgressFn | None = None,
          checkpoint_dir: Path | None = None, save_every: int = 5) -> TrainResult:
    """Fine-tune `cfg.base` on the prepared dataset and save a self-describing adapter folder in `out_dir`.
    With `checkpoint_dir`, a stopped run picks up from its newest checkpoint when called again."""
    started = time.perf_counter()
    run = build_trainer(cfg, dataset_dir, Path(out_dir), progress=progress, checkpoint_dir=checkpoint_dir,
                        save_every=save_every)
    return finish(run, cfg, Path(dataset_dir), Path(out_dir), started=started)


def finish(run: Run, cfg: TrainConfig, dataset_dir: Path, out_dir: Path, *, started: float) -> TrainResult:
    """Train a built run, refuse to save a diverged one, save the adapter and its record."""
    trainer, watch, placement, manifest, lengths = run.trainer, run.watch, run.placement, run.manifest, run.lengths
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    resume = _newest_checkpoint(run.checkpoint_dir)
    if resume is not None and _finished(resume):
        # Resumed at its last step, transformers' loop would still run one more update (past the schedule's end):
        # the finished run's adapter is restored instead, exactly as it was saved.
        log.info("%s is the finished run's last checkpoint; not training again", resume)
        output = _restore_finished(trainer, Path(resume), watch)
    else:
        if resume is not None:
            log.info("resuming from %s", resume)
        output = trainer.train(resume_from_checkpoint=resume)
    if watch.non_finite_at is not None:
        _remove_tree(out_dir / ".trainer")
        raise TrainingError(
            f"the loss became non-finite at step {watch.non_finite_at} ({placement.dtype} on {placement.device}); "
            "nothing was saved. Qwen2.5 overflows in float16: train in bfloat16 on an Ampere or newer GPU, or "
            "lower the learning rate"
        )
    # The whole curve, the steps before a resume included (the checkpoint carries them).
    losses = [(entry["step"], float(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry]
    trainer.model.save_pretrained(str(out_dir))
    (out_dir / "README.md").unlink(missing_ok=True)  # PEFT's empty model card; training.json describes the run
    _remove_tree(out_dir / ".trainer")

    record = {
        "base": cfg.base,
        "config": cfg.to_dict(),
        "placement": {"device": placement.device, "dtype": placement.dtype, "qlora": cfg.qlora},
        "prompt_template": TEMPLATE_ID,
        "wording": manifest.get("wording", "stock"),
        "dataset": {"path": str(dataset_dir), "fingerprint": manifest.get("fingerprint"), **lengths},
        "git_revision": _git_revision(),
        "steps": output.global_step,
        "resumed_from_step": watch.first_step or None,
        "loss_first": losses[0][1] if losses else None,
        "loss_last": losses[-1][1] if losses else None,
        "losses": losses,
        "train_loss": output.training_loss,
        "tokens_per_s": _tokens_per_s(watch, output.global_step, lengths, cfg),
        "wall_s": round(time.perf_counter() - started, 2),
        "peak_memory": _peak_memory(),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out_dir / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("trained %s for %d steps in %.0fs; adapter in %s", cfg.base, output.global_step, record["wall_s"],
             out_dir)
    return TrainResult(out_dir, record)


RUN_FILE = "run.json"  # in a checkpoint folder: which run its checkpoints belong to


def _claim_checkpoints(folder: Path, cfg: TrainConfig, manifest: dict) -> None:
    """Checkpoints resume only the run that wrote them: the same configuration on the same rows. Refuses a folder
    holding another run's, rather than mixing two runs' optimizer states."""
    identity = {"config": {k: v for k, v in cfg.to_dict().items() if k != "extra"},
                "dataset": manifest.get("fingerprint")}
    marker = folder / RUN_FILE
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != identity:
            changed = sorted(k for k in identity["config"] if found.get("config", {}).get(k) != identity["config"][k])
            if found.get("dataset") != identity["dataset"]:
                changed.append("dataset")
            raise TrainingError(f"{folder} holds checkpoints of another run (different {', '.join(changed)}); "
                                "give another --checkpoints folder or delete it to start over")
        return
    if folder.is_dir() and any(folder.iterdir()):
        raise TrainingError(f"{folder} is not empty and holds no {RUN_FILE}; give a new folder for checkpoints")
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity, indent=2) + "\n")


def _newest_checkpoint(folder: Path | None) -> str | None:
    if folder is None or not folder.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder))


def _finished(checkpoint: str) -> bool:
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    return state.max_steps > 0 and state.global_step >= state.max_steps


def _restore_finished(trainer: Any, checkpoint: Path, watch: _Watch) -> Any:
    """Load a finished run's adapter and state from its last checkpoint, as `trainer.train()` would have left them."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    set_peft_model_state_dict(trainer.model, load_file(str(checkpoint / "adapter_model.safetensors")))
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    watch.first_step = trainer.state.global_step
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainOutput(trainer.state.global_step, sum(losses) / len(losses) if losses else 0.0, {})


def _tokens_per_s(watch: _Watch, steps: int, lengths: dict, cfg: TrainConfig) -> float | None:
    """Training tokens (prompt and answer, as fed) per second over the updates this process ran."""
    done, seconds = steps - watch.first_step, watch.seconds
    if done <= 0 or not seconds:
        return None
    return round(done * cfg.gradient_accumulation * lengths["mean"] / seconds, 1)


# Without Triton (CPU), TRL's fused LM head scores every position in tiles of this many vocabulary columns and
# keeps several tile-sized temporaries alive: at TRL's default of 32,768 a 4096-token step with Qwen's 151,936
# vocabulary still peaks 4.4 GiB above the weights; at 8,192 it is 1.3 GiB, at no measured cost in speed
# (tests/bench/test_training_memory.py). The knob is private to TRL, so it is set only when it exists.
CPU_LOGPROB_TILE = 8192


def _narrow_logprob_tiles() -> None:
    from trl.trainer import utils as trl_utils

    if hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE"):
        trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = min(trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, CPU_LOGPROB_TILE)
    else:
        log.warning("TRL no longer has _CHUNKED_LOGPROB_CHUNK_SIZE; CPU training uses its default tile width")


def _peak_memory() -> dict:
    rss_unit = 2**30 if sys.platform == "darwin" else 2**20  # ru_maxrss: bytes on macOS, KiB on Linux
    peak = {"process_max_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / rss_unit, 3)}
    if torch.cuda.is_available():
        peak["cuda_max_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        peak["cuda_max_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    return peak


def _git_revision() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

