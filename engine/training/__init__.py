"""Making and choosing adapters: the teacher that writes a training set on fresh data (`teacher`, `teacher_client`,
`teacher_prompts`), LoRA/QLoRA fine-tuning (`train`, `train_config`), the adapter registry and its promotion gate
(`registry`) and the flow train → register → evaluate → promote (`retrain`).

The top of the engine's parts: may import `engine.evaluation`, `engine.generation`, `engine.data` and the shared
modules; nothing in the engine imports it (pyproject.toml's "engine-parts" contract). Imported by `jobs` (the
`/retrain` job) and `forecaster` (the training commands); never by `bot`.
"""
