"""Adapter switches keep the base weights bit for bit, in bf16 and fp16 as in fp32 (issue 12).

Merging and unmerging a LoRA is arithmetic in the weights' own precision; in bf16 one round trip changed about half
of a matrix's elements. Served adapters are attached unmerged instead, so after 20 switches (A → B → none → A …)
every base parameter equals a copy taken before the first, and adapter A answers exactly as A loaded fresh.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from peft import PeftModel

from engine.generation.model import Analyst

CONVERSATIONS = [
    [{"role": "system", "content": "You are a seasoned stock market analyst."},
     {"role": "user", "content": f"Company {name} reports invented result {n}. Predict next week."}]
    for n, name in enumerate(["AXP", "KO Synthetic Inc orders, margins and guidance"])
]
SWITCHES = 20


def _base_parameters(analyst: Analyst) -> dict[str, torch.Tensor]:
    """Every base parameter by its name in the bare model (LoRA weights left out), copied."""
    model = analyst.model.get_base_model() if isinstance(analyst.model, PeftModel) else analyst.model
    return {name.replace(".base_layer.", "."): p.detach().clone() for name, p in model.named_parameters()
            if "lora_" not in name}


def _logits(analyst: Analyst) -> torch.Tensor:
    batch = analyst.tokenizer([analyst.render(c) for c in CONVERSATIONS], return_tensors="pt", padding=True)
    with torch.inference_mode():
        return analyst.model(**batch).logits


def _lora_parameter_count(analyst: Analyst) -> int:
    return sum(p.numel() for name, p in analyst.model.named_parameters() if "lora_" in name)


@pytest.mark.parametrize("merge", [False, True], ids=["unmerged", "merged-opt-in"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_twenty_switches_leave_the_base_bit_identical(tiny_model_dir, tiny_adapter_dirs, dtype, merge):
    first, second = tiny_adapter_dirs
    analyst = Analyst.load(str(tiny_model_dir), device="cpu", dtype=dtype, merge_adapter=merge, constrained=False)
    assert analyst.model.dtype == getattr(torch, dtype)
    before = _base_parameters(analyst)
    base_logits = _logits(analyst)

    cycle = itertools.cycle([first, second, None])
    for _ in range(SWITCHES):
        analyst.use_adapter(next(cycle))
        assert analyst.merged is (merge and analyst.adapter is not None)
        if isinstance(analyst.model, PeftModel):
            assert len(analyst.model.peft_config) == 1  # the old adapter was deleted, memory does not grow
    analyst.use_adapter(None)

    assert not isinstance(analyst.model, PeftModel)  # no adapter: the bare base, no LoRA layers left behind
    after = _base_parameters(analyst)
    assert after.keys() == before.keys()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert not changed, f"{len(changed)} base parameters changed after {SWITCHES} switches: {changed[:3]}"
    assert torch.equal(_logits(analyst), base_logits)

    analyst.use_adapter(first)
    fresh = Analyst.load(str(tiny_model_dir), device="cpu", dtype=dtype, adapter=first, merge_adapter=merge,
                         constrained=False)
    assert _lora_parameter_count(analyst) == _lora_parameter_count(fresh)
    switched_logits = _logits(analyst)
    assert not torch.equal(switched_logits, base_logits)  # A really is active
    assert torch.equal(switched_logits, _logits(fresh))
    switched = analyst.generate(CONVERSATIONS, max_new_tokens=8)
    assert [g.text for g in switched] == [g.text for g in fresh.generate(CONVERSATIONS, max_new_tokens=8)]


def test_generation_and_bin_scoring_run_with_the_adapter_active(tiny_model_dir, tiny_adapter_dirs):
    """Constrained generation and bin scoring over its KV cache see the adapter: both differ from the base's."""
    analyst = Analyst.load(str(tiny_model_dir), device="cpu")
    base = analyst.generate(CONVERSATIONS, max_new_tokens=200)
    analyst.use_adapter(tiny_adapter_dirs[0])
    adapted = analyst.generate(CONVERSATIONS, max_new_tokens=200)
    analyst.use_adapter(None)
    assert [g.text for g in analyst.generate(CONVERSATIONS, max_new_tokens=200)] == [g.text for g in base]

    assert [g.text for g in adapted] != [g.text for g in base]
    scored = [(b.bin_distribution, a.bin_distribution) for b, a in zip(base, adapted, strict=True)
              if b.bin_distribution is not None and a.bin_distribution is not None]
    assert scored, "no answer reached its Prediction line: the bin scoring was not exercised"
    assert any(b != a for b, a in scored)


def test_a_failed_switch_keeps_the_served_adapter(tiny_model_dir, tiny_adapter_dirs, tmp_path):
    from engine.generation.model import ModelError
    from tests.fakes.tiny_model import build_lora_adapter, build_tiny_model

    wrong = build_lora_adapter(build_tiny_model(tmp_path / "wider", hidden=96), tmp_path / "wider-adapter")
    analyst = Analyst.load(str(tiny_model_dir), device="cpu", dtype="bfloat16", constrained=False)
    before = _base_parameters(analyst)
    analyst.use_adapter(tiny_adapter_dirs[0])
    served = _logits(analyst)
    with pytest.raises(ModelError, match="does not fit base"):
        analyst.use_adapter(wrong)
    assert analyst.adapter == tiny_adapter_dirs[0]
    assert len(analyst.model.peft_config) == 1
    assert torch.equal(_logits(analyst), served)
    analyst.use_adapter(None)
    assert all(torch.equal(before[n], p) for n, p in _base_parameters(analyst).items())


def test_the_worker_follows_the_registry_and_keeps_serving_through_a_failed_switch(
        tiny_model_dir, tiny_adapter_dirs, tmp_path, redis):
    from jobs import runtime
    from jobs.keys import served_model_key
    from tests.fakes.tiny_model import build_lora_adapter, build_tiny_model

    first, second = tiny_adapter_dirs
    wrong = build_lora_adapter(build_tiny_model(tmp_path / "wider", hidden=96), tmp_path / "wider-adapter")
    wanted = [first]
    context = runtime.WorkerContext(
        settings=None, conn=redis, sources=None, slack=None, adapter_for=lambda: wanted[0],
        load_model=lambda: Analyst.load(str(tiny_model_dir), device="cpu", adapter=wanted[0], constrained=False),
    )
    model = context.model()
    before = _base_parameters(model)
    assert model.adapter == first and redis.hget(served_model_key(), "adapter") == b"adapter-a"

    wanted[0] = wrong  # promoted by mistake: the next job is still answered, by the adapter served before
    assert context.model() is model and model.adapter == first
    assert redis.hget(served_model_key(), "adapter") == b"adapter-a"

    for path in [second, None, first, None]:
        wanted[0] = path
        assert context.model().adapter == path
    assert redis.hget(served_model_key(), "adapter") == b"none (base model)"
    assert context.model_loads == 1
    assert all(torch.equal(before[n], p) for n, p in _base_parameters(model).items())
