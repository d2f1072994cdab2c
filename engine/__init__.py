"""The analyst's library, by concept: `data` (what becomes a prompt and a training row), `generation` (the model's
two backends and what they share), `evaluation` (scores, baselines, calibration, the track record) and `training`
(the teacher, fine-tuning, the adapter registry); beside them `market` (the calendar, weeks and bins) and `sources`
(market data). Modules every part uses stay at this level: `exceptions`, `settings`, `records`, `parsing`,
`upstream_parser`, `probabilities`, `provenance`, `retry` (the one retry loop of every client that calls a server),
and `forecast` (inputs → prompt → model → parsed forecast).

Imports nothing from `bot` or `jobs`. Inside, training > evaluation > generation > data, one way (pyproject.toml's
import contracts; `python -m forecaster.structure` draws them). torch, transformers and peft are imported only inside
`generation` and `training` (and a tokenizer in `data`), never at package import.
"""
