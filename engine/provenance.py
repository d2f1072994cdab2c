"""What to call the base model in footers, the ledger and the adapter registry. Torch-free: reads files only.

A Hugging Face id names itself. A local folder does not: in Docker it is `/weights`, and a folder written by
`save_pretrained` keeps no hub id (transformers 5 drops `_name_or_path` from config.json). So a folder is named by
what it holds: the architecture from its config and the parameter count from its safetensors headers, e.g.
"qwen2 1.5B". Only an operator knows which checkpoint that is (Instruct or not, which release), so a `MODEL_NAME`
setting wins over both.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from pathlib import Path


def base_model_name(base: str, configured: str | None = None) -> str:
    """`configured` (MODEL_NAME) when set; a hub id as given; a local folder described from its own files."""
    if configured and configured.strip():
        return configured.strip()
    folder = Path(base).expanduser()
    if not folder.is_dir():
        return base
    return _describe_folder(str(folder.resolve()))


@functools.lru_cache(maxsize=16)
def _describe_folder(folder: str) -> str:
    """"qwen2 1.5B" from config.json and the weights; the folder's own name when it holds no readable config."""
    path = Path(folder)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return path.name
    named = config.get("_name_or_path") or config.get("name_or_path")
    if isinstance(named, str) and _looks_like_hub_id(named):
        return named
    kind = str(config.get("model_type") or path.name)
    params = _parameter_count(path)
    return f"{kind} {_short_count(params)}" if params else kind


def _looks_like_hub_id(name: str) -> bool:
    """"Qwen/Qwen2.5-1.5B-Instruct", not "/weights" or "./models/x": an org and a name, not a path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not Path(name).exists()


def _parameter_count(folder: Path) -> int:
    """Parameters stored in the folder's safetensors files, read from their headers (a few KB, no weights loaded).
    Tied embeddings are stored once, so this is the model's own count. 0 when there are none or they are unreadable."""
    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with open(file, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
        except (OSError, ValueError, struct.error):
            return 0
        for name, tensor in header.items():
            if name != "__metadata__":
                total += math.prod(tensor.get("shape") or [1])
    return total


def _short_count(n: int) -> str:
    """1_543_714_304 → "1.5B", 7_615_616_512 → "7.6B", 126_000 → "126K"."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            value = n / size
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(n)
