"""The analyst model on a tiny Qwen2 built in code, through the product's own loading code."""

from __future__ import annotations

import pytest
import torch

from engine.generation.model import Analyst, ModelError
from engine.generation.placement import CPU_BF16_FLAGS, choose_placement, parse_cpu_flags, read_cpu_flags

CONVERSATIONS = [
    [{"role": "system", "content": "You are a seasoned stock market analyst."},
     {"role": "user", "content": f"Company {name} reports invented result {n}. Predict next week."}]
    for n, name in enumerate(["AXP", "KO Synthetic Inc", "MSFT orders, margins, guidance and demand", "ZZZ"])
]


@pytest.fixture(scope="module")
def analyst(tiny_model_dir) -> Analyst:
    return Analyst.load(str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(cuda_available=False, cuda_capability=None), ("cpu", "float32")),
        (dict(cuda_available=True, cuda_capability=(8, 0)), ("cuda", "bfloat16")),
        (dict(cuda_available=True, cuda_capability=(9, 0)), ("cuda", "bfloat16")),
        (dict(cuda_available=True, cuda_capability=(7, 5)), ("cuda", "float16")),  # T4: bf16 only emulated
        (dict(cuda_available=True, cuda_capability=(8, 6), device="cpu"), ("cpu", "float32")),
        (dict(cuda_available=False, cuda_capability=None, dtype="bfloat16"), ("cpu", "bfloat16")),
        # CPUs: bf16 only where it is native (AMX or AVX-512 BF16); emulated bf16 is 35-50x slower than fp32.
        (dict(cuda_available=False, cuda_capability=None, cpu_flags=frozenset({"avx2", "avx512f"})),
         ("cpu", "float32")),
        (dict(cuda_available=False, cuda_capability=None, cpu_flags=frozenset({"avx512f", "avx512_bf16"})),
         ("cpu", "bfloat16")),
        (dict(cuda_available=False, cuda_capability=None, cpu_flags=frozenset({"amx_tile", "amx_bf16"})),
         ("cpu", "bfloat16")),
        (dict(cuda_available=False, cuda_capability=None, cpu_flags=frozenset({"amx_bf16"}), dtype="float32"),
         ("cpu", "float32")),
        (dict(cuda_available=True, cuda_capability=(7, 5), cpu_flags=frozenset({"amx_bf16"})), ("cuda", "float16")),
    ],
)
def test_placement_rules(kwargs, expected):
    placement = choose_placement(**kwargs)
    assert (placement.device, placement.dtype) == expected


def test_cpu_flags_come_from_the_first_flags_line(tmp_path):
    cpuinfo = "processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n"
    assert parse_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert parse_cpu_flags("no flags here") == frozenset()
    assert read_cpu_flags(tmp_path / "absent") == frozenset()  # not Linux: no flags, so fp32


def test_asking_for_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ModelError, match="CUDA is not available"):
        choose_placement(device="cuda", cuda_available=False, cuda_capability=None)


def test_loads_on_cpu_at_the_dtype_its_flags_allow_with_sdpa_and_left_padding(analyst):
    native_bf16 = bool(set(CPU_BF16_FLAGS) & read_cpu_flags())
    assert analyst.model.dtype == (torch.bfloat16 if native_bf16 else torch.float32)
    assert analyst.placement.reason.startswith("CPU ")
    assert analyst.model.config._attn_implementation == "sdpa"
    assert analyst.tokenizer.padding_side == "left"
    assert analyst.version.endswith("(no adapter)")


def test_prompts_go_through_the_chat_template(analyst):
    text = analyst.render(CONVERSATIONS[0])
    assert text.startswith("<|im_start|>system\nYou are a seasoned stock market analyst.<|im_end|>\n")
    assert text.endswith("<|im_start|>user\n" + CONVERSATIONS[0][1]["content"] + "<|im_end|>\n<|im_start|>assistant\n")


def test_batched_greedy_equals_one_by_one(analyst):
    batched = analyst.generate(CONVERSATIONS, max_new_tokens=12)
    single = [analyst.generate([c], max_new_tokens=12)[0] for c in CONVERSATIONS]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.new_tokens for g in batched] == [g.new_tokens for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    assert len({g.prompt_tokens for g in batched}) > 1  # the batch really was padded
    assert all(g.batch_size == 4 and g.seconds > 0 for g in batched)
    assert all(0 < g.new_tokens <= 12 for g in batched)


def test_greedy_is_deterministic_and_ignores_the_checkpoints_sampling_config(analyst):
    first = analyst.generate(CONVERSATIONS[:2], max_new_tokens=10)
    again = analyst.generate(CONVERSATIONS[:2], max_new_tokens=10)
    assert [g.text for g in first] == [g.text for g in again]


def test_seeded_sampling_is_repeatable(analyst):
    one = analyst.generate(CONVERSATIONS[:2], max_new_tokens=10, sample=True, seed=7, temperature=1.5)
    two = analyst.generate(CONVERSATIONS[:2], max_new_tokens=10, sample=True, seed=7, temperature=1.5)
    assert [g.text for g in one] == [g.text for g in two]


def _logits(analyst: Analyst) -> torch.Tensor:
    batch = analyst.tokenizer([analyst.render(CONVERSATIONS[0])], return_tensors="pt")
    with torch.inference_mode():
        return analyst.model(**batch).logits[0, -1]


def test_adapters_switch_without_reloading_and_restore_the_base(tiny_model_dir, tiny_adapter_dirs):
    first, second = tiny_adapter_dirs
    analyst = Analyst.load(str(tiny_model_dir), device="cpu")
    base = _logits(analyst)

    analyst.use_adapter(first)
    with_first = _logits(analyst)
    assert not torch.allclose(base, with_first, atol=1e-4)
    assert analyst.version.endswith("+ adapter-a")

    analyst.use_adapter(second)
    with_second = _logits(analyst)
    assert not torch.allclose(with_first, with_second, atol=1e-4)

    analyst.use_adapter(None)
    assert torch.allclose(base, _logits(analyst), atol=1e-5)


def test_adapters_are_served_unmerged_by_default(tiny_model_dir, tiny_adapter_dirs):
    analyst = Analyst.load(str(tiny_model_dir), device="cpu", adapter=tiny_adapter_dirs[0])
    assert analyst.merged is False
    assert analyst.model.active_adapter in analyst.model.peft_config


@pytest.mark.parametrize(("dtype", "atol"), [("float32", 1e-4), ("bfloat16", 3e-2)])
def test_merged_and_unmerged_adapters_give_the_same_logits(tiny_model_dir, tiny_adapter_dirs, dtype, atol):
    """Equal to fp32 rounding; in bf16 a merge rounds W + BA to bf16, so equal to bf16's precision."""
    merged = Analyst.load(str(tiny_model_dir), device="cpu", dtype=dtype, adapter=tiny_adapter_dirs[0],
                          merge_adapter=True)
    unmerged = Analyst.load(str(tiny_model_dir), device="cpu", dtype=dtype, adapter=tiny_adapter_dirs[0],
                            merge_adapter=False)
    assert merged.merged and not unmerged.merged
    assert torch.allclose(_logits(merged), _logits(unmerged), atol=atol)


def test_an_adapter_for_another_base_is_refused(tiny_model_dir, tmp_path):
    from tests.fakes.tiny_model import build_lora_adapter, build_tiny_model

    other = build_tiny_model(tmp_path / "wider", hidden=96)
    adapter = build_lora_adapter(other, tmp_path / "wider-adapter")
    analyst = Analyst.load(str(tiny_model_dir), device="cpu")
    with pytest.raises(ModelError, match="does not fit base"):
        analyst.use_adapter(adapter)
    assert analyst.adapter is None


def test_missing_model_path_and_non_adapter_dirs_are_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Analyst.load(str(tmp_path / "nope"), device="cpu")
    analyst = Analyst.load(str(tiny_model_dir), device="cpu")
    with pytest.raises(ModelError, match="not a PEFT adapter"):
        analyst.use_adapter(tmp_path)


def test_4bit_nf4_load_quantizes_the_linears_and_keeps_the_adapter_unmerged(tiny_model_dir, tiny_adapter_dirs):
    import bitsandbytes as bnb

    analyst = Analyst.load(str(tiny_model_dir), device="cpu", load_in_4bit=True, adapter=tiny_adapter_dirs[0],
                           merge_adapter=True)
    layer = analyst.model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer.base_layer, bnb.nn.Linear4bit)
    assert layer.base_layer.weight.quant_type == "nf4"
    assert analyst.merged is False  # merging into 4-bit weights is lossy, even when asked
    [answer] = analyst.generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert answer.new_tokens <= 4 and answer.prompt_tokens > 10


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_int8_weights_serve_adapters_unmerged_constrained_with_scored_bins(tiny_model_dir, tiny_adapter_dirs, dtype):
    """MODEL_QUANTIZE=int8 (torchao weight-only): every linear's weight is int8, PEFT's LoRA wraps it unmerged (a
    merge is refused, as into 4-bit), adapters switch and the bare base comes back exactly, and answers keep the
    grammar and a bin distribution scored on the int8 model."""
    from peft.tuners.lora.torchao import TorchaoLoraLinear
    from torchao.quantization import Int8Tensor

    from engine.generation.grammar import ANSWER_REGEX

    analyst = Analyst.load(str(tiny_model_dir), device="cpu", dtype=dtype, quantize="int8", merge_adapter=True)
    assert analyst.placement.quantize == "int8"
    assert isinstance(analyst.model.model.layers[0].mlp.down_proj.weight, Int8Tensor)
    base = _logits(analyst)
    analyst.use_adapter(tiny_adapter_dirs[0])
    layer = analyst.model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, TorchaoLoraLinear) and analyst.merged is False
    with_first = _logits(analyst)
    assert not torch.allclose(base, with_first, atol=1e-3)
    analyst.use_adapter(tiny_adapter_dirs[1])
    assert not torch.allclose(with_first, _logits(analyst), atol=1e-3)
    analyst.use_adapter(None)
    assert torch.equal(base, _logits(analyst))

    import re

    answers = analyst.generate(CONVERSATIONS[:2], max_new_tokens=160)
    for answer in answers:
        assert re.fullmatch(ANSWER_REGEX, answer.text, flags=re.DOTALL), answer.text
        assert answer.bin_distribution is not None
        assert abs(sum(answer.bin_distribution.probabilities.values()) - 1) < 1e-9


def test_int8_and_4bit_together_is_a_clear_error():
    with pytest.raises(ModelError, match="choose one"):
        choose_placement(cuda_available=False, cuda_capability=None, quantize="int8", load_in_4bit=True)


def test_model_threads_set_the_processes_torch_threads(tiny_model_dir):
    before = torch.get_num_threads()
    try:
        Analyst.load(str(tiny_model_dir), device="cpu", threads=1)
        assert torch.get_num_threads() == 1
        Analyst.load(str(tiny_model_dir), device="cpu", threads=0)  # 0: left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
