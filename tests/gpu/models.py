"""Random-weight models with the real Qwen2.5 shapes, a LoRA adapter for them, and the folders they are served from.

Nothing is downloaded: `build_random_model` makes a `Qwen2ForCausalLM` from a `Qwen2Config` with the real shape
and random bf16 weights on the device it is given (a CUDA build takes seconds; the caller runs it in a child process
so that the pytest process never holds CUDA memory), saves it, and optionally saves a rank-8 LoRA adapter on all
seven projections with non-identity weights (like tests/fakes/tiny_model.build_lora_adapter). `model_folder` then
puts the weights beside a tiny test tokenizer (tests/fakes/tiny_model.build_tokenizer): the model keeps the real
vocabulary, the tokenizer uses its first ids.

The CPU smoke test (tests/unit/test_gpu_run.py) runs the same functions with `TINY_SHAPE` on the CPU.

    python -m tests.gpu.models SPEC.json     # the child: build_random_model(**spec), result to spec["result"]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SHAPES: dict[str, dict] = {
    # Qwen/Qwen2.5-1.5B-Instruct's config.json (LLM_NOTES §1)
    "qwen2.5-1.5b": {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                     "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151_936,
                     "tie_word_embeddings": True, "max_position_embeddings": 32768},
    # Qwen/Qwen2.5-7B-Instruct's config.json (docs/MEMORY.md: 7,615,616,512 parameters)
    "qwen2.5-7b": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                   "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152_064,
                   "tie_word_embeddings": False, "max_position_embeddings": 32768},
}
PARAMETERS = {"qwen2.5-1.5b": 1_543_714_304, "qwen2.5-7b": 7_615_616_512}
# The CPU smoke test's stand-in: a vocabulary larger than the tiny tokenizer's, like the real shapes.
TINY_SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128, "vocab_size": 4096, "tie_word_embeddings": True,
              "max_position_embeddings": 8192}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_RANK = 8


def build_random_model(shape: dict, out: str | Path, *, eos_token_id: int, pad_token_id: int, device: str = "cpu",
                       adapter: str | Path | None = None, rank: int = LORA_RANK, seed: int = 0) -> dict:
    """Save a Qwen2 of `shape` with random bf16 weights to `out` (no tokenizer: see `model_folder`), built on
    `device`; with `adapter`, also a LoRA adapter (r=`rank`, alpha 2r, all seven projections, random A and B, so a
    broken load or merge would show). Returns the parameter count and the seconds taken."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    started = time.perf_counter()
    config = Qwen2Config(**shape, bos_token_id=None, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    if adapter is not None:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed + 1)
        lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, init_lora_weights=False,
                          target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
        get_peft_model(model, lora).save_pretrained(adapter)
    del model
    return {"parameters": parameters, "seconds": time.perf_counter() - started, "device": device}


def model_folder(weights: Path, folder: Path) -> Path:
    """Make `folder` (which already holds a tokenizer) a loadable model folder: links to every file of `weights`.
    The weights are written once and shared by folders with different tokenizers."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in Path(weights).iterdir():
        link = folder / path.name
        if link.exists() or link.is_symlink():
            raise FileExistsError(f"{link} exists: the tokenizer and the weights must not share a file name")
        link.symlink_to(path.resolve())
    return folder


def special_ids(tokenizer) -> dict:
    """What the model's config needs from the tokenizer."""
    return {"eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"), "pad_token_id": tokenizer.pad_token_id}


# -- the GPU run's side: build in a child, on the card --------------------------------------------------------------

BUILD_TIMEOUT_S = {"qwen2.5-1.5b": 300, "qwen2.5-7b": 600}


def build_weights(name: str, out: Path, ids: dict, *, adapter: Path | None = None) -> dict:
    """The `name` shape with random bf16 weights (and `adapter`), built on the card (report.DEVICE) in a child
    process."""
    from tests.gpu import report
    from tests.gpu.children import run_child

    spec = {"shape": SHAPES[name], "out": str(out), "device": report.DEVICE, **ids,
            "adapter": None if adapter is None else str(adapter)}
    built = run_child("tests.gpu.models", spec, out.parent / f"build-{name}", timeout=BUILD_TIMEOUT_S[name])
    if built["parameters"] != PARAMETERS[name]:
        raise AssertionError(f"{name}: {built['parameters']:,} parameters, {PARAMETERS[name]:,} expected")
    report.timed(f"build {name} (+ save)", built["child_s"])
    return built


def training_folder(tokenizer_dir: Path, weights: Path, folder: Path) -> Path:
    """A model folder for training: a copy of the tokenizer folder and links to the weights."""
    import shutil

    shutil.copytree(tokenizer_dir, folder)
    return model_folder(weights, folder)


def _child_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result_path = spec.pop("result")
    Path(result_path).write_text(json.dumps(build_random_model(**spec)))


if __name__ == "__main__":  # the child: python -m tests.gpu.models SPEC.json
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.gpu.models SPEC.json")
    _child_main(sys.argv[1])
