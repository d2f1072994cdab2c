"""The model: base weights and adapter present, and whether the base fits where it would run (GPU or RAM)."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from forecaster.doctor.check import MODEL_STACK, Check, fail, ok, warn

if TYPE_CHECKING:
    from engine.generation.sizing import ModelShape
    from forecaster.settings import Settings


def _looks_like_path(base: str) -> bool:
    return base.startswith((".", "/", "~")) or Path(base).expanduser().exists()


def _offline(env: Mapping[str, str]) -> bool:
    return any(env.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = Path(env["HF_HOME"]).expanduser() if env.get("HF_HOME") else Path.home() / ".cache" / "huggingface"
    return home / "hub"


def _cached_config(model_id: str, env: Mapping[str, str]) -> Path | None:
    """config.json of a Hub model in the local Hugging Face cache, or None (also when huggingface_hub is absent)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model_id, "config.json", cache_dir=_hub_cache_dir(env))
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def _weight_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])


def check_model_base(settings: Settings, *, env: Mapping[str, str]) -> Check:
    """MODEL_BASE present: a local directory with config and weights, or a Hub id in the cache (required when
    HF_HUB_OFFLINE is set: nothing may be downloaded then)."""
    base = settings.model_base
    if _looks_like_path(base):
        folder = Path(base).expanduser()
        if not folder.is_dir():
            return fail("model base", f"MODEL_BASE={base} does not exist",
                        "point MODEL_BASE at a model directory, or give a Hugging Face id")
        weights = _weight_files(folder)
        if not (folder / "config.json").is_file() or not weights:
            return fail("model base", f"{folder} has no config.json or no weights (*.safetensors)",
                        f"download the whole model there, e.g. `hf download {settings.model_base} --local-dir DIR`")
        size = sum(w.stat().st_size for w in weights) / 1e9
        return ok("model base", f"local directory {folder} ({len(weights)} weight file(s), {size:.1f} GB)")
    config = _cached_config(base, env)
    if config is not None and _weight_files(config.parent):
        return ok("model base", f"{base} is in the Hugging Face cache ({_hub_cache_dir(env)})")
    offline = _offline(env)
    if importlib.util.find_spec("huggingface_hub") is None:
        return warn("model base", f"{base}: cannot look in the Hugging Face cache (the model extra is not installed "
                                  "here)", MODEL_STACK)
    get_it = (f"on a connected machine run `hf download {base}` (same HF_HOME), or download it into a folder and set "
              "MODEL_BASE to that folder")
    if offline:
        return fail("model base", f"{base} is not in the Hugging Face cache ({_hub_cache_dir(env)}) and "
                                  "HF_HUB_OFFLINE forbids downloading it", get_it)
    from engine.generation.sizing import known_shape

    shape = known_shape(base)
    size = f" (about {shape.params * 2 / 1e9:.0f} GB)" if shape else ""
    return warn("model base", f"{base} is not downloaded yet: the worker downloads it{size} when it first starts",
                get_it + " ahead of time")


def check_adapter(settings: Settings) -> Check:
    """The adapter served on top of the base: MODEL_ADAPTER, or the registry's current version."""
    from engine.training.registry import Registry

    if settings.model_adapter is not None:
        folder = settings.model_adapter
        if not (folder / "adapter_config.json").is_file():
            return fail("adapter", f"MODEL_ADAPTER={folder} is not an adapter folder (no adapter_config.json)",
                        "point it at a PEFT adapter folder, or unset it to serve the registry's current version")
        return ok("adapter", f"MODEL_ADAPTER={folder}")
    registry = Registry(settings.model_dir)
    try:
        version = registry.current_version()
    except (OSError, ValueError, KeyError) as exc:
        return fail("adapter", f"{settings.model_dir}/current.json is unreadable ({exc})",
                    "`forecaster model promote VERSION` rewrites it")
    writable = _writable(settings.model_dir)
    read_only = "" if writable else "; MODEL_DIR is read-only, so /retrain cannot register new versions"
    if version is None:
        return warn("adapter", f"no adapter: the bare base is served (it rarely states a FinGPT bin); registry "
                               f"{settings.model_dir} has no current version{read_only}",
                    "train and promote one with `forecaster retrain --dataset DIR`, or set MODEL_ADAPTER")
    folder = registry.current_path()
    if folder is None or not (folder / "adapter_config.json").is_file():
        return fail("adapter", f"the registry serves {version} but {folder} holds no adapter",
                    "restore the folder, or `forecaster model rollback`")
    if not writable:
        return warn("adapter", f"registry {settings.model_dir} serves {version}{read_only}",
                    "mount MODEL_DIR read-write on the worker")
    return ok("adapter", f"registry {settings.model_dir} serves {version}")


def check_answer_budget(settings: Settings) -> Check:
    """Whether MODEL_MAX_NEW_TOKENS leaves constrained answers room for lists as long as real ones (in process only:
    the line budget that cuts lines short near the end is this backend's)."""
    from engine.generation.base import MIN_CONSTRAINED_NEW_TOKENS

    tokens = settings.model_max_new_tokens
    if not settings.model_constrained or settings.model_backend != "transformers" \
            or tokens >= MIN_CONSTRAINED_NEW_TOKENS:
        return ok("answer budget", f"MODEL_MAX_NEW_TOKENS={tokens}")
    return warn("answer budget", f"MODEL_MAX_NEW_TOKENS={tokens} is too few for constrained answers: list items are "
                                 "clipped, down to a token or two (\"1. /**\")",
                f"set MODEL_MAX_NEW_TOKENS to {MIN_CONSTRAINED_NEW_TOKENS} or more (700 is the default)")


def _writable(folder: Path) -> bool:
    """The folder, or the nearest existing parent it would be created in, accepts writes."""
    for candidate in (folder, *folder.resolve().parents):
        if candidate.exists():
            return os.access(candidate, os.W_OK)
    return False


@dataclass(frozen=True)
class Device:
    """Where the model would run, and the memory it may use there."""

    kind: Literal["cuda", "cpu"]
    name: str
    memory_bytes: int
    capability: tuple[int, int] | None = None


def probe_device(settings: Settings) -> tuple[Device, str]:
    """The device MODEL_DEVICE picks on this machine and the dtype the worker would load at (engine.generation.model's
    rules). Imports torch: only for the full doctor, on a host with the model extra."""
    import torch

    from engine.generation.placement import choose_placement, read_cpu_flags

    cuda = torch.cuda.is_available()
    placement = choose_placement(device=settings.model_device, dtype=settings.model_dtype,
                                 load_in_4bit=settings.model_load_in_4bit, cuda_available=cuda,
                                 cuda_capability=torch.cuda.get_device_capability() if cuda else None,
                                 cpu_flags=read_cpu_flags(), quantize=settings.model_quantize)
    if placement.device.startswith("cuda"):
        index = int(placement.device.partition(":")[2] or 0)
        props = torch.cuda.get_device_properties(index)
        device = Device("cuda", props.name, props.total_memory, (props.major, props.minor))
    else:
        device = Device("cpu", "CPU", _available_ram())
    return device, placement.dtype


def _available_ram() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def model_shape(base: str, *, env: Mapping[str, str]) -> ModelShape | None:
    """The base model's shape: its config.json (local directory or HF cache), else the published Qwen2.5 shapes."""
    from engine.generation.sizing import ModelShape, known_shape

    if _looks_like_path(base):
        config = Path(base).expanduser() / "config.json"
    else:
        config = _cached_config(base, env)
    if config is not None and config.is_file():
        try:
            return ModelShape.from_config(json.loads(config.read_text(encoding="utf-8")))
        except ValueError:
            pass
    return known_shape(base)


def check_model_memory(settings: Settings, *, env: Mapping[str, str],
                       probe: Callable[[Settings], tuple[Device, str]] = probe_device) -> Check:
    """Will MODEL_BASE fit where it would run, at the dtype it would load in, with a full batch's KV cache?"""
    if settings.model_backend == "vllm":
        return ok("gpu memory", "not used here: MODEL_BACKEND=vllm, the model lives in the vLLM server")
    if importlib.util.find_spec("torch") is None:
        return warn("gpu memory", "torch is not installed: this host cannot run the worker", MODEL_STACK)
    shape = model_shape(settings.model_base, env=env)
    if shape is None:
        return warn("gpu memory", f"cannot size {settings.model_base} (no config.json at hand and not a known "
                                  "Qwen2.5 size)", "download the model first; then doctor reads its config.json")
    try:
        device, dtype = probe(settings)
    except Exception as exc:  # engine.generation.model's ModelError (cuda asked, none here), a broken CUDA install
        return fail("gpu memory", f"cannot place the model ({type(exc).__name__}: {exc})",
                    "set MODEL_DEVICE=auto (or cpu) or fix the CUDA install (nvidia-smi)")
    return memory_verdict(settings, shape, device, dtype)


def memory_verdict(settings: Settings, shape: ModelShape, device: Device, dtype: str) -> Check:
    """Pure: the serving estimate against the device, with the cheapest fix when it does not fit."""
    from engine.generation.sizing import GB, USABLE_FRACTION, serving_estimate

    on_gpu = device.kind == "cuda"
    sizing = {"batch": settings.model_batch_size, "context_tokens": settings.model_context_tokens, "on_gpu": on_gpu}
    estimate = serving_estimate(shape, dtype=dtype, load_in_4bit=settings.model_load_in_4bit,
                                quantize=settings.model_quantize, **sizing)
    precision = (f"{dtype}{' + 4-bit NF4' if settings.model_load_in_4bit else ''}"
                 f"{' + int8 weights' if settings.model_quantize == 'int8' else ''}")
    what = (f"{settings.model_base} ({shape.params / 1e9:.2f}B) in {precision} on {device.name}: needs about "
            f"{estimate.describe()} of {device.memory_bytes / GB:.1f} GB")
    if settings.model_load_in_4bit and importlib.util.find_spec("bitsandbytes") is None:
        return fail("gpu memory", f"{what}, but MODEL_LOAD_IN_4BIT needs bitsandbytes, which is not installed",
                    "`pip install -e '.[gpu]'`")
    if estimate.fits(device.memory_bytes):
        if not on_gpu:
            return warn("gpu memory", f"no GPU: {what}; generation on a CPU takes minutes per forecast",
                        "run the worker on a CUDA machine (docker/Dockerfile.worker) for interactive use")
        return ok("gpu memory", what)
    fixes = []
    room = device.memory_bytes * USABLE_FRACTION - estimate.weights_bytes - estimate.overhead_bytes
    per_prompt = shape.kv_bytes_per_token(dtype) * settings.model_context_tokens
    if room >= per_prompt:
        fixes.append(f"lower MODEL_BATCH_SIZE to {int(room // per_prompt)}")
    if not settings.model_load_in_4bit:
        quantized = serving_estimate(shape, dtype=dtype, load_in_4bit=True, **sizing)
        if quantized.fits(device.memory_bytes):
            fixes.append("set MODEL_LOAD_IN_4BIT=true (needs the gpu extra): about "
                         f"{quantized.total_bytes / GB:.1f} GB")
    if not fixes:
        fixes.append("use a smaller MODEL_BASE (e.g. Qwen/Qwen2.5-1.5B-Instruct) or a device with at least "
                     f"{estimate.total_bytes / USABLE_FRACTION / GB:.0f} GB")
    return fail("gpu memory", f"does not fit: {what}", "; or ".join(fixes))


def check_vllm(settings: Settings, *, timeout_s: float = 10.0) -> Check:
    """MODEL_BACKEND=vllm: the server answers `GET /v1/models` and serves the base this worker will ask for."""
    import requests

    from forecaster.doctor.check import secret_text

    root = settings.vllm_base_url.rstrip("/")
    url = f"{root}/models" if root.endswith("/v1") else f"{root}/v1/models"
    key = secret_text(settings.vllm_api_key)
    start_it = "start the vLLM server (README: the vLLM backend) or fix VLLM_BASE_URL"
    try:
        response = requests.get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=timeout_s)
    except requests.RequestException as exc:
        return fail("vllm", f"no answer from {url} ({type(exc).__name__})", start_it)
    if response.status_code == 401:
        return fail("vllm", f"{url} refused the API key (HTTP 401)", "set VLLM_API_KEY to the server's --api-key")
    if not response.ok:
        return fail("vllm", f"{url} answered HTTP {response.status_code}", start_it)
    try:
        bases = [m["id"] for m in response.json()["data"] if not m.get("parent")]
    except (ValueError, KeyError, TypeError):
        return fail("vllm", f"{url} is not an OpenAI-compatible models list", start_it)
    wanted = settings.vllm_model or (settings.model_base if settings.model_base in bases else None)
    if wanted is None and len(bases) == 1:
        wanted = bases[0]
    if wanted not in bases:
        return fail("vllm", f"{url} serves {', '.join(bases) or 'no model'}, not "
                            f"{settings.vllm_model or settings.model_base}",
                    "set VLLM_MODEL to the server's --served-model-name (MODEL_BASE must be the same model)")
    return ok("vllm", f"{url} serves {wanted}")
