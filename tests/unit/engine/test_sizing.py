"""Serving memory arithmetic against the figures docs/MEMORY.md and LLM_NOTES derive from the published configs."""

from __future__ import annotations

import json

import pytest

from engine.generation.sizing import GB, ModelShape, known_shape, serving_estimate

QWEN25_15B_CONFIG = {  # Qwen/Qwen2.5-1.5B-Instruct config.json, the fields that size it
    "model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28, "intermediate_size": 8960,
    "vocab_size": 151936, "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True,
}


def test_the_config_gives_the_published_parameter_counts():
    small = ModelShape.from_config(QWEN25_15B_CONFIG)
    assert small == known_shape("Qwen/Qwen2.5-1.5B-Instruct")
    assert small.params == 1_543_714_304
    assert small.linear_params == 1_310_195_712  # MEMORY.md: 46,792,704 per layer x 28
    assert known_shape("Qwen/Qwen2.5-7B-Instruct").params == 7_615_616_512
    assert known_shape("Qwen/Qwen2.5-0.5B-Instruct").params == 494_032_768


def test_weights_and_kv_cache_match_memory_md():
    small, big = known_shape("Qwen2.5-1.5B"), known_shape("qwen/qwen2.5-7b-instruct")
    assert small.kv_bytes_per_token("bfloat16") == 28 * 1024 and big.kv_bytes_per_token("bfloat16") == 56 * 1024

    def weights(shape, dtype, four_bit):
        return serving_estimate(shape, dtype=dtype, load_in_4bit=four_bit, batch=1, context_tokens=1,
                                on_gpu=True).weights_bytes / GB

    assert weights(small, "bfloat16", False) == pytest.approx(3.09, abs=0.01)
    assert weights(small, "float32", False) == pytest.approx(6.17, abs=0.01)
    assert weights(small, "bfloat16", True) == pytest.approx(1.14, abs=0.01)
    assert weights(big, "bfloat16", False) == pytest.approx(15.23, abs=0.01)
    assert weights(big, "bfloat16", True) == pytest.approx(5.55, abs=0.01)


def test_a_batch_of_full_contexts_adds_its_kv_cache_and_the_gpu_overhead():
    big = known_shape("Qwen/Qwen2.5-7B-Instruct")
    estimate = serving_estimate(big, dtype="bfloat16", load_in_4bit=False, batch=8, context_tokens=4096, on_gpu=True)
    assert estimate.kv_cache_bytes == 8 * 4096 * 56 * 1024
    assert estimate.total_bytes / GB == pytest.approx(15.23 + 1.88 + 0.8, abs=0.02)
    assert not estimate.fits(int(16e9)) and estimate.fits(int(40e9))
    on_cpu = serving_estimate(big, dtype="float32", load_in_4bit=False, batch=1, context_tokens=4096, on_gpu=False)
    assert on_cpu.overhead_bytes == 0 and "overhead" not in on_cpu.describe()


def test_llama_style_configs_and_bad_configs():
    llama = ModelShape.from_config({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                                    "intermediate_size": 128, "vocab_size": 1000, "num_attention_heads": 4})
    assert llama.kv_heads == 4 and llama.head_dim == 16 and not llama.attention_bias and not llama.tied_embeddings
    with pytest.raises(ValueError, match="decoder-only"):
        ModelShape.from_config(json.loads('{"hidden_size": 64}'))
    assert known_shape("meta-llama/Llama-3-8B") is None
