"""A tiny Qwen2-architecture chat model built in code, since no model can be downloaded here.

The tokenizer is a real byte-level BPE trained on the fly on synthetic FinGPT-style text (about a second), with
Qwen's special tokens and a ChatML chat template; the model is `Qwen2ForCausalLM` from a small `Qwen2Config`
with random fp32 weights. Both are saved with `save_pretrained` and loaded back through the product's own
loading code, the path a real `Qwen/Qwen2.5-1.5B-Instruct` takes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def synthetic_corpus() -> list[str]:
    """FinGPT-shaped prompts and answers about invented companies, built with the product's prompt code."""
    from engine.data.prompts import SYSTEM_PROMPT, NewsLine, PromptParts, WeekBlock, build_user_prompt
    from engine.records import BasicFinancials, CompanyProfile

    texts = [SYSTEM_PROMPT]
    for i, symbol in enumerate(["AXP", "KO", "MSFT", "ZZZ"]):
        profile = CompanyProfile(
            ticker=symbol, name=f"{symbol} Synthetic Inc", finnhubIndustry="Synthetic Goods", ipo="1980-01-02",
            marketCapitalization=1000.0 * (i + 1), shareOutstanding=10.0 * (i + 1), currency="USD",
            country="US", exchange="NEW YORK STOCK EXCHANGE, INC.",
        )
        start = dt.date(2024, 2, 4) + dt.timedelta(days=7 * i)
        weeks = tuple(
            WeekBlock(symbol=symbol, start=str(start + dt.timedelta(days=7 * w)),
                      end=str(start + dt.timedelta(days=7 * w + 7)), start_price=100.0 + w, end_price=99.0 + 2 * w,
                      news=tuple(NewsLine(f"{symbol} reports invented result {n}", f"Synthetic summary {n} of "
                                          "orders, margins, guidance and demand.") for n in range(3)))
            for w in range(2)
        )
        parts = PromptParts(symbol=symbol, profile=profile, weeks=weeks,
                            financials=BasicFinancials(period="2023-12-31", metrics={"eps": 1.5, "roeTTM": 0.2}),
                            target_start=str(start + dt.timedelta(days=14)),
                            target_end=str(start + dt.timedelta(days=21)))
        texts.append(build_user_prompt(parts))
        texts.append(
            "[Positive Developments]:\n1. Orders grew.\n2. Margins widened.\n\n[Potential Concerns]:\n"
            "1. Costs rose.\n2. Demand may slow.\n\n[Prediction & Analysis]:\nPrediction: Up by 1-2%\n"
            "Analysis: Invented reasoning about the coming week, support and momentum."
        )
    return texts


def build_tokenizer(out: Path, *, vocab_size: int = 2000, extra_corpus: list[str] | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(synthetic_corpus() * 3 + (extra_corpus or []), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        model_max_length=4096)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    return tokenizer


def build_tiny_model(out: Path, *, layers: int = 2, hidden: int = 64, seed: int = 0, vocab_size: int = 2000,
                     extra_corpus: list[str] | None = None) -> Path:
    """Save a tokenizer and a randomly initialised tiny Qwen2 chat model to `out`. `extra_corpus` (kept in
    memory, never saved) lets a benchmark train the tokenizer to realistic token counts on real text."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, vocab_size=vocab_size, extra_corpus=extra_corpus)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    # Like the real Instruct checkpoints, ship a sampling generation config; the product must override it.
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20,
                                               eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    model.save_pretrained(out)
    return out


def build_lora_adapter(base_dir: Path, out: Path, *, seed: int = 1, rank: int = 8) -> Path:
    """A LoRA adapter for the tiny base with non-identity weights (PEFT's default init is a no-op, which would
    hide a broken load or merge)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                        task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    model.save_pretrained(out)
    return out
