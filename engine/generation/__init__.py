"""The model and what its two backends share: the in-process analyst on transformers/PEFT (`model`, with `adapters`,
`constrained` and `placement`) and the vLLM one (`remote_model`, `vllm_client`), what both are and use (`base`: the
chat rendering, token counting, calibration and `Generation` record), the answer grammar (`grammar`), the 12-bin
scores and their calibration (`bin_scoring`, `bin_calibration`, `scaffold`), the streamed partial answer
(`streaming`) and serving memory (`sizing`).

torch, transformers, peft and xgrammar are imported at module import by `model`, `adapters` and `constrained` only
(`placement` and `remote_model` import torch or a tokenizer inside functions); the rest is torch-free. May import
`engine.data` and the engine's shared modules, never `engine.evaluation` or `engine.training` (pyproject.toml's
"engine-parts" contract). Imported by `engine.evaluation`, `engine.training`, `jobs` and `forecaster`; never by `bot`.
"""
