"""A pytest plugin that runs `make gpu-test`'s whole orchestration on the CPU, for checking changes to tests/gpu
where no GPU is lent (about 4 minutes on 2 cores):

    GPU_TEST_NEW_TOKENS=128 .venv/bin/python -m pytest tests/gpu -s -p no:cacheprovider -p tests.gpu.dry_run

It makes the pytest process believe CUDA is there (torch.cuda.is_available, a fake 80 GB card), builds and serves
on the CPU in float32 (report.DEVICE/DTYPE), and swaps the Qwen shapes for tiny ones (the forecast tokenizer's 16k
ids fit their vocabulary). The children really run: the build, the four analysts' timed forecasts, and the training
recipes (on the CPU: their memory figures are 0, so the naive comparison fails its "memory was measured" check).
Every figure it prints is meaningless; what it shows is that fixtures, children, JSON and the table work together.
"""

from __future__ import annotations

import torch


def pytest_configure(config) -> None:  # noqa: ANN001 (pytest's hook)
    import peft  # noqa: F401  (imported before the patch: their imports probe CUDA)
    import transformers  # noqa: F401
    from transformers import Qwen2Config, Qwen2ForCausalLM

    import engine.data.dataset  # noqa: F401
    import engine.generation.model  # noqa: F401
    import tests.gpu.models as models
    import tests.gpu.report as report

    class FakeCard:
        name, total_memory, major, minor = "fake card (CPU dry run)", int(80e9), 9, 0

    torch.cuda.is_available = lambda: True
    torch.cuda.get_device_properties = lambda *args: FakeCard
    torch.cuda.get_device_capability = lambda *args: (9, 0)
    report.DEVICE, report.DTYPE = "cpu", "float32"
    tiny = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 128, "vocab_size": 16384, "tie_word_embeddings": True,
            "max_position_embeddings": 8192}
    models.SHAPES["qwen2.5-1.5b"] = tiny
    models.SHAPES["qwen2.5-7b"] = {**tiny, "tie_word_embeddings": False, "num_attention_heads": 8,
                                   "num_key_value_heads": 4}
    for name, shape in models.SHAPES.items():
        with torch.device("meta"):
            model = Qwen2ForCausalLM(Qwen2Config(**shape))
        models.PARAMETERS[name] = sum(p.numel() for p in model.parameters())
