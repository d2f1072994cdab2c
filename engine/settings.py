"""The engine's settings: market data sources, the model, evaluation and training. Read from the environment and
`.env` (env var names are the field names in upper case).

Each layer owns its settings (`jobs.settings`, `bot.settings`); the entry point composes them once
(`forecaster.settings.Settings`) and passes that object down, so engine code reads only the fields declared here.
Nothing here runs at import time; tests build `EngineSettings(...)` (or the composed class) with `_env_file=None`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyUrl, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = {"", "changeme", "change-me", "your-key", "your_api_key", "xxx", "todo", "none"}
SETTINGS_CONFIG = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    # MODEL_* settings arrive with the model; pydantic reserves `model_` names unless told otherwise.
    protected_namespaces=(),
)


class EngineSettings(BaseSettings):
    """Data sources, model, evaluation and training."""

    model_config = SETTINGS_CONFIG

    finnhub_api_key: SecretStr | None = Field(
        default=None,
        description="Finnhub API key (free plan is enough). Unset: news falls back to Yahoo Finance and the "
        "company profile comes from Yahoo; basic financials are then omitted.",
    )
    finnhub_api_url: AnyUrl | None = Field(
        default=None,
        description="Override of Finnhub's API base URL (a proxy, or a fake server in tests). "
        "Default: the client's https://api.finnhub.io/api/v1.",
    )
    finnhub_calls_per_minute: int = Field(
        default=60, ge=1, description="Shared budget across all processes (Finnhub free plan: 60/min)."
    )
    finnhub_calls_per_second: int = Field(
        default=30, ge=1, description="Shared burst cap across all processes (Finnhub: 30/s on every plan)."
    )
    yahoo_calls_per_minute: int = Field(
        default=60, ge=1, description="Shared budget for Yahoo Finance requests (undocumented; ~60/min is safe)."
    )
    http_timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout for market data calls.")
    data_snapshot_dir: Path | None = Field(
        default=None,
        description="Read every market data source from this directory (written by `forecaster data snapshot`) "
        "instead of the network.",
    )
    financials_lag_days: int = Field(
        default=45,
        ge=0,
        description="In backtests, a quarterly report counts as known only this many days after its quarter end "
        "(10-Q deadline is 40 days). Live forecasts use whatever has been published.",
    )
    model_base: str = Field(
        default="Qwen/Qwen2.5-1.5B-Instruct",
        description="Base model: a Hugging Face id (downloaded once into HF_HOME) or a local directory.",
    )
    model_name: str | None = Field(
        default=None,
        description="What footers, the ledger and the adapter registry call the base model. Unset: a Hugging Face id "
        "as given; a local folder (e.g. /weights) by its architecture and size from its own files, e.g. qwen2 1.5B.",
    )
    model_adapter: Path | None = Field(
        default=None, description="A PEFT LoRA adapter directory to serve on top of the base. Unset: the base alone."
    )
    model_device: str = Field(
        default="auto", description="auto (CUDA when available, else CPU), cpu, cuda or cuda:N."
    )
    model_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="auto: bfloat16 on CPUs with amx_bf16 or avx512_bf16 (prefill 2.2x, decode 1.6x fp32's on a Zen 4 "
        "EPYC), float32 on other CPUs (bf16 is emulated, 35-50x slower), bfloat16 on Ampere+ GPUs, float16 on "
        "older.",
    )
    model_load_in_4bit: bool = Field(
        default=False, description="Load the base in 4-bit NF4 (bitsandbytes, double quant): 7B fits a 16 GB card."
    )
    model_threads: int = Field(
        default=0, ge=0, le=512,
        description="CPU threads the worker's model computes on. 0: torch's default, one per physical core, which "
        "was fastest on the 2-core machines measured (README: Measured figures). Set fewer to leave a core to "
        "the bot and Redis on a shared host.",
    )
    model_quantize: Literal["none", "int8"] = Field(
        default="none",
        description="int8: the linear layers' weights stored in int8 (torchao weight-only), computed in MODEL_DTYPE; "
        "adapters stay unmerged. About half of bf16's weight memory; on the 2-core EPYC measured it kept fp32's "
        "calls (6/6) but decoded slower than bf16 (2.3 against 3.7 tokens/s), so it is not the default.",
    )
    model_merge_adapter: bool = Field(
        default=False,
        description="false: the served adapter stays attached unmerged (PEFT multi-adapter), base weights never "
        "change. true: merged into the weights for speed, with a host-memory copy of the weights it overwrites "
        "(about their size again in RAM) restored exactly at each switch. Never merged into a 4-bit base.",
    )
    model_max_new_tokens: int = Field(
        default=700, ge=16, le=4096,
        description="Longest answer generated. Constrained answers need about 450 or more: with less, the lists are "
        "clipped to make room for the call (`forecaster doctor` warns).",
    )
    model_batch_size: int = Field(default=8, ge=1, le=64, description="Prompts per batched generate call.")
    model_constrained: bool = Field(
        default=True,
        description="Generate every answer under a grammar of FinGPT's format (xgrammar in process, "
        "structured_outputs on vLLM), so it always parses. false: free generation, for comparisons.",
    )
    signal_band: float = Field(
        default=0.05, ge=0.0, lt=0.5,
        description="A call whose P(up) lies within 0.5 ± this shows \"no clear signal\" instead of an arrow "
        "(still with its bin and P(up)). 0: always an arrow. See README \"What the calls are worth\".",
    )
    model_context_tokens: int = Field(
        default=4096, ge=512, description="Prompt + answer budget; longer prompts drop their oldest news items."
    )
    model_backend: Literal["transformers", "vllm"] = Field(
        default="transformers",
        description="transformers: the worker runs the model in its own process (GPU or CPU). vllm: the worker sends "
        "requests to a vLLM server (VLLM_BASE_URL) and keeps only the tokenizer of MODEL_BASE, which must be the "
        "model that server serves.",
    )
    vllm_base_url: str = Field(
        default="http://localhost:8000/v1",
        description="The vLLM server's OpenAI-compatible URL (its root or its /v1), for MODEL_BACKEND=vllm.",
    )
    vllm_api_key: SecretStr | None = Field(
        default=None, description="The vLLM server's --api-key, when it was started with one."
    )
    vllm_model: str | None = Field(
        default=None,
        description="The base model's name at the vLLM server (its --served-model-name). Unset: MODEL_BASE when the "
        "server lists it, else the one base model it serves.",
    )
    vllm_timeout_s: float = Field(
        default=300.0, gt=0,
        description="Per-request timeout for one answer from the vLLM server (a 700-token answer in a busy batch "
        "can take a minute or more). Connection errors, timeouts and 5xx are retried twice.",
    )
    vllm_wait_s: float = Field(
        default=120.0, ge=0,
        description="How long a starting worker waits for the vLLM server to come up (it opens its port only once "
        "the weights are loaded).",
    )
    vllm_model_dir: str | None = Field(
        default=None,
        description="MODEL_DIR as the vLLM server sees it, when the server mounts the adapter registry at another "
        "path (another container or host). Unset: the same path as here.",
    )
    model_dir: Path = Field(
        default=Path("models"),
        description="Adapter registry: numbered versions, the `current` pointer, history. The current version is "
        "served when MODEL_ADAPTER is unset.",
    )
    model_gate_metric: Literal["binary_accuracy_all", "binary_accuracy", "parse_rate", "mcc", "mse"] = Field(
        default="binary_accuracy_all",
        description="A retrained adapter is promoted only if, on this metric and the same rows, it is not worse than "
        "the served adapter (or the bare base when none is served) and beats the best naive baseline; and only if it "
        "parses at least as often.",
    )
    eval_dataset: str | None = Field(
        default=None,
        description="The FinGPT-format split the retrain gate evaluates on (a save_to_disk folder, parquet, "
        "JSONL or Hugging Face id).",
    )
    train_dataset_dir: Path | None = Field(
        default=None,
        description="The training rows `/retrain` fine-tunes on: a folder written by `forecaster dataset prepare`.",
    )
    train_epochs: float = Field(default=1.0, gt=0, le=20, description="`/retrain`'s passes over the training rows "
                                "(an admin can override per run: `/retrain epochs=2`).")
    train_max_steps: int = Field(default=-1, ge=-1, description="Stop `/retrain` after this many optimizer updates "
                                 "(-1: run the epochs). For smoke runs.")
    train_grad_accum: int = Field(default=8, ge=1, le=256, description="Rows per optimizer update (batch size is 1).")
    train_qlora: bool = Field(default=False, description="Train on a 4-bit NF4 base (QLoRA): 7B on a 24 GB card.")
    eval_limit: int | None = Field(
        default=None, ge=1, description="Evaluate the retrain gate on the first N rows of EVAL_DATASET only (smoke "
        "runs; unset: all rows, as the published numbers are).",
    )
    teacher_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint of the teacher model that writes training answers."
    )
    teacher_model: str | None = Field(default=None, description="The teacher's model name at that endpoint.")
    teacher_api_key: SecretStr | None = Field(default=None, description="The teacher endpoint's API key.")

    @field_validator("finnhub_api_key")
    @classmethod
    def _reject_placeholder_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in _PLACEHOLDERS:
            # An empty or placeholder key is "no key": Finnhub answers an empty token with 429, which would
            # look like rate limiting rather than a configuration mistake.
            return None
        return value

    @field_validator("data_snapshot_dir")
    @classmethod
    def _snapshot_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(
                f"DATA_SNAPSHOT_DIR={value} is not a directory; record one with "
                "`forecaster data snapshot TICKER --date YYYY-MM-DD --out DIR` or unset the variable"
            )
        return value
