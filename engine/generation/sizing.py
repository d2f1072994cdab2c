"""How much memory serving a model takes: the arithmetic of docs/MEMORY.md, for inference. Pure and torch-free.

Serving holds the weights, the KV cache of one batch (MODEL_BATCH_SIZE prompts of up to MODEL_CONTEXT_TOKENS) and,
on a GPU, about 0.8 GB of CUDA context, cuBLAS workspaces and allocator slack. There is no optimizer state, no
gradient and no activation checkpoint: generation keeps only one step's activations, which the overhead covers.

Shapes come from a model's config.json when it is at hand (a local directory or the Hugging Face cache); for the
three Qwen2.5-Instruct sizes this product documents, from the published configs (shared/reference/LLM_NOTES §1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GB = 10**9
GPU_OVERHEAD_BYTES = int(0.8 * GB)
# NF4 with double quantization: 4 bits per weight + an 8-bit absmax per 64-block + an fp32 absmax per 256 blocks.
NF4_BYTES_PER_PARAM = 4.127 / 8
# A card is "full" before its last bytes: fragmentation and other processes' contexts (MEMORY.md's 95 % rule).
USABLE_FRACTION = 0.95
BYTES_PER_ELEMENT = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer of the Qwen2/Llama family, as its config.json describes it."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool
    attention_bias: bool = True  # Qwen2 has q/k/v biases; Llama does not

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        """From a Hugging Face config.json (`model_type` qwen2, llama, mistral and friends)."""
        try:
            hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            return cls(
                hidden=hidden,
                layers=int(config["num_hidden_layers"]),
                intermediate=int(config["intermediate_size"]),
                vocab=int(config["vocab_size"]),
                heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                tied_embeddings=bool(config.get("tie_word_embeddings", False)),
                attention_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"config.json does not describe a decoder-only transformer ({exc!r} missing)") from None

    @property
    def linear_params(self) -> int:
        """The decoder's projection weights: what 4-bit quantization shrinks."""
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = self.hidden * q_out + 2 * self.hidden * kv_out + q_out * self.hidden  # q, k, v, o
        mlp = 3 * self.hidden * self.intermediate  # gate, up, down
        return (attention + mlp) * self.layers

    @property
    def other_params(self) -> int:
        """Embedding, untied LM head, norms and biases: these stay 16-bit under 4-bit quantization."""
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        biases = (q_out + 2 * kv_out) * self.layers if self.attention_bias else 0
        norms = 2 * self.hidden * self.layers + self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + norms + biases

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params

    def kv_bytes_per_token(self, dtype: str) -> int:
        """Keys and values of every layer for one token, in the compute dtype."""
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES_PER_ELEMENT[dtype]


# Published configs (LLM_NOTES §1) of the sizes this product documents, for a Hub id not downloaded yet.
_QWEN25 = {
    "0.5B": ModelShape(hidden=896, layers=24, intermediate=4864, vocab=151_936, heads=14, kv_heads=2, head_dim=64,
                       tied_embeddings=True),
    "1.5B": ModelShape(hidden=1536, layers=28, intermediate=8960, vocab=151_936, heads=12, kv_heads=2, head_dim=128,
                       tied_embeddings=True),
    "7B": ModelShape(hidden=3584, layers=28, intermediate=18_944, vocab=152_064, heads=28, kv_heads=4, head_dim=128,
                     tied_embeddings=False),
}
_QWEN25_ID = re.compile(r"qwen2\.5-(0\.5b|1\.5b|7b)\b", re.IGNORECASE)


def known_shape(model_id: str) -> ModelShape | None:
    """The shape of a Qwen2.5 0.5B/1.5B/7B id (Instruct or base, any namespace), else None."""
    match = _QWEN25_ID.search(model_id)
    return _QWEN25[match.group(1).upper()] if match else None


@dataclass(frozen=True)
class ServingEstimate:
    dtype: str
    load_in_4bit: bool
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes

    def fits(self, capacity_bytes: int) -> bool:
        return self.total_bytes <= capacity_bytes * USABLE_FRACTION

    def describe(self) -> str:
        """`18.9 GB (weights 15.2 + KV cache 1.9 + overhead 0.8)`."""
        parts = f"weights {self.weights_bytes / GB:.1f} + KV cache {self.kv_cache_bytes / GB:.1f}"
        if self.overhead_bytes:
            parts += f" + overhead {self.overhead_bytes / GB:.1f}"
        return f"{self.total_bytes / GB:.1f} GB ({parts})"


def serving_estimate(shape: ModelShape, *, dtype: str, load_in_4bit: bool, batch: int, context_tokens: int,
                     on_gpu: bool, quantize: str = "none") -> ServingEstimate:
    """Memory to serve `batch` prompts of up to `context_tokens` tokens at `dtype` (the compute dtype when 4-bit or
    int8: `quantize="int8"` stores the linear layers' weights in one byte each)."""
    if dtype not in BYTES_PER_ELEMENT:
        raise ValueError(f"unknown dtype {dtype!r}; one of {', '.join(BYTES_PER_ELEMENT)}")
    width = BYTES_PER_ELEMENT[dtype]
    if load_in_4bit:
        weights = int(shape.linear_params * NF4_BYTES_PER_PARAM) + shape.other_params * width
    elif quantize == "int8":
        weights = shape.linear_params + shape.other_params * width
    else:
        weights = shape.params * width
    return ServingEstimate(
        dtype=dtype,
        load_in_4bit=load_in_4bit,
        weights_bytes=weights,
        kv_cache_bytes=shape.kv_bytes_per_token(dtype) * batch * context_tokens,
        overhead_bytes=GPU_OVERHEAD_BYTES if on_gpu else 0,
    )
