"""What becomes a prompt and a training row: the inputs one forecast gathers from the sources (`inputs`), the
FinGPT-Forecaster prompt built from them and parsed back (`prompts`, `prompt_parser`), FinGPT's dataset rows
(`fingpt_rows`), the prepared training folder and how it is written (`prepared`, `dataset`) and the token budget rows
are fitted to (`token_budget`).

Imports only the engine's shared modules (`engine.exceptions`, `engine.records`, `engine.parsing`,
`engine.upstream_parser`, `engine.market`) and `engine.sources`, never `engine.generation`, `engine.evaluation` or
`engine.training` (pyproject.toml's "engine-parts" contract). Imported by those three, by `engine.sources`,
`engine.forecast`, and by `jobs` and `forecaster`; never by `bot`.
"""
