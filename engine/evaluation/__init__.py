"""How good the answers are: evaluation runs (`evaluate`), their scores and report (`metrics`, `eval_report`), the naive
baselines (`baselines`), the calibration of P(up) and of the 12 bins measured out of sample (`calibration`,
`calibration_fit`), saved predictions files (`predictions`), the evidence under each claim (`evidence`) and the live
track record (`track`, its sums and report: `track_sums`, `track_scores`, `track_report`). Torch-free: a model
arrives as a function to call.

May import `engine.generation`, `engine.data` and the engine's shared modules, never `engine.training`
(pyproject.toml's "engine-parts" contract). Imported by `engine.training` (the promotion gate's evaluation),
`engine.forecast` (evidence), `jobs` (the ledger scores with `track`) and `forecaster`; by `bot` only for
`track_report`, the track report's type (pydantic alone, no numpy).
"""
