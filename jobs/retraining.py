"""The `/retrain` job: train a new adapter, evaluate it against the served one (or the bare base) and the naive
baselines, promote it only if the gate agrees (engine.training.registry.gate), and say so in Slack — one message edited
with the progress (step, loss, ETA), the verdict and which comparison decided it in its thread.

It runs in a trainer (`forecaster trainer`), the training queue's only consumer: its own process and CUDA context,
beside the serving workers, which keep their model loaded and go on answering `/forecast` meanwhile. The trainer
loads a model for the evaluation only and releases it when the retrain ends; the serving workers pick a promoted
adapter up from the registry before their next job. The progress also goes to Redis (jobs.retrain_progress) for
`/forecast-status`.
"""

from __future__ import annotations

import logging
import time

from rq import get_current_job

from engine.exceptions import EngineError
from engine.provenance import base_model_name
from engine.training.registry import Registry
from engine.training.train_config import TrainConfig
from jobs import runtime
from jobs.attempts import attempt_of
from jobs.failures import without_server_paths
from jobs.replies import Reply, Route, post_once
from jobs.results import RetrainJobResult
from jobs.retrain_progress import ProgressPublisher

log = logging.getLogger(__name__)

# Slack allows about one edit a second per channel; a training step can take less. Edit at most this often.
PROGRESS_EVERY_S = 15.0


class _Throttled:
    """Calls `show(text)` at most every `every_s` seconds, and always for the first and the last update."""

    def __init__(self, show, every_s: float) -> None:
        self.show, self.every_s, self.last = show, every_s, 0.0

    def __call__(self, text: str, *, final: bool = False) -> None:
        now = time.monotonic()
        if final or self.last == 0.0 or now - self.last >= self.every_s:
            self.last = now
            self.show(text)


def _missing_setup(settings) -> str | None:
    if settings.train_dataset_dir is None:
        return ("TRAIN_DATASET_DIR is not set: prepare the training rows with `forecaster dataset prepare --out DIR` "
                "on the trainer host and set TRAIN_DATASET_DIR=DIR")
    if not settings.train_dataset_dir.is_dir():
        return f"TRAIN_DATASET_DIR={settings.train_dataset_dir} is not a folder on the trainer host"
    if not settings.eval_dataset:
        return "EVAL_DATASET is not set: a new adapter is served only after it is evaluated on a test split"
    return None


def retrain_job(channel: str, user: str, epochs: float | None = None, force: bool = False,
                thread_ts: str | None = None) -> dict:
    from engine.training.retrain import retrain  # the training stack loads only when a retrain actually runs

    ctx = runtime.current()
    job = get_current_job()
    job_id = job.id if job else f"adhoc-retrain-{time.time_ns()}"
    attempt = attempt_of(job) if job else job_id  # whose delivery state (jobs/attempts.py)
    settings, layouts = ctx.settings, ctx.slack.layouts
    reply = Reply(ctx, attempt, Route(channel, thread_ts))
    if reply.delivered():
        return RetrainJobResult(status="done", note="verdict already posted by an earlier attempt").to_json()

    problem = _missing_setup(settings)
    if problem:
        text, blocks = layouts.failure_message("Retrain not started", problem, hint="An admin of the trainer host "
                                               "can fix this; then run `/retrain` again.")
        reply.final(text, blocks)
        return RetrainJobResult(status="failed", error=problem).to_json()

    status = _Throttled(reply.progress, PROGRESS_EVERY_S)
    publish = ProgressPublisher(ctx.conn, job_id, requested_by=user)
    publish("loading")
    status(f":hammer_and_wrench: Retrain requested by <@{user}>: loading "
           f"{layouts.inline(base_model_name(settings.model_base, settings.model_name))} for training…")
    try:
        return _run(ctx, reply, status, publish, job_id=job_id, user=user, channel=channel, thread_ts=thread_ts,
                    epochs=epochs, force=force, retrain=retrain)
    finally:
        publish.clear()
        if ctx.serves:  # run in a serving worker (tests, a one-process setup): re-apply the served adapter
            ctx.forget_adapter()
        else:  # a trainer: give the evaluation model's memory back (the GPU may be shared with a worker)
            ctx.release_model()


def _run(ctx, reply: Reply, status: _Throttled, publish: ProgressPublisher, *, job_id: str, user: str,
         channel: str, thread_ts: str | None, epochs: float | None, force: bool, retrain) -> dict:
    settings, layouts = ctx.settings, ctx.slack.layouts
    try:
        cfg = TrainConfig(base=settings.model_base, device=settings.model_device, qlora=settings.train_qlora,
                          epochs=epochs or settings.train_epochs, max_steps=settings.train_max_steps,
                          gradient_accumulation=settings.train_grad_accum)
    except ValueError as exc:  # a setting out of range: the admin's to fix, so its words are shown (no paths)
        text, blocks = layouts.failure_message("Retrain not started", without_server_paths(str(exc)))
        reply.final(text, blocks)
        return RetrainJobResult(status="failed", error=str(exc)).to_json()

    def on_train(p) -> None:
        last = p.step >= p.max_steps
        status(layouts.training_status(requested_by=user, step=p.step, max_steps=p.max_steps, epoch=p.epoch,
                                       loss=p.loss, eta_s=p.eta_s), final=last)
        publish("training", step=p.step, max_steps=p.max_steps, epoch=round(p.epoch, 3), loss=p.loss,
                eta_s=None if p.eta_s is None else round(p.eta_s, 1), final=last)

    def on_eval(done: int, total: int, _elapsed: float) -> None:
        status(layouts.evaluation_status(requested_by=user, done=done, total=total), final=done == total)
        publish("evaluating", done=done, total=total, final=done == total)

    registry = Registry(settings.model_dir)
    # The served model is not touched: training loads its own copy, evaluation loads this process's (a trainer's).
    try:
        outcome = retrain(cfg, dataset_dir=settings.train_dataset_dir, registry=registry,
                          eval_dataset=settings.eval_dataset, load_analyst=ctx.model,
                          metric=settings.model_gate_metric, force=force, eval_limit=settings.eval_limit,
                          max_new_tokens=settings.model_max_new_tokens, batch_size=settings.model_batch_size,
                          train_progress=on_train, eval_progress=on_eval, model_name=settings.model_name)
    except EngineError as exc:
        # The admin who asked can act on the trainer's words (e.g. "train in bfloat16"); server paths stay in the log.
        log.warning("%s: retrain failed: %s", job_id, exc)
        text, blocks = layouts.failure_message("Retrain failed", without_server_paths(str(exc)),
                                               hint="Nothing was promoted; the served "
                                               "adapter is unchanged.")
        reply.final(text, blocks)
        return RetrainJobResult(status="failed", error=str(exc)).to_json()

    decision = outcome.decision
    current_version = outcome.compared_version
    text, blocks = layouts.retrain_result_message(
        version=outcome.version, promoted=decision.promote, reason=decision.reason, new=outcome.new_scores,
        current=outcome.current_scores, current_version=current_version, training=outcome.training,
        decided_by=decision.decided_by)
    verdict = (f":white_check_mark: Retrain requested by <@{user}> finished: *{outcome.version} promoted*, served "
               "from the next job." if decision.promote else
               f":no_entry: Retrain requested by <@{user}> finished: {outcome.version} *not promoted* (decided by "
               f"{decision.decided_by}); {current_version or 'the base model'} stays served.")
    head_text, head_blocks = layouts.progress_message(f"{verdict} Details in the thread.")
    head_ts = reply.final(head_text, head_blocks)
    post_once(ctx, reply.attempt, "verdict", channel=channel, text=text, blocks=blocks, thread_ts=head_ts or thread_ts)
    log.info("%s: retrain → %s %s (%s)", job_id, outcome.version, "promoted" if decision.promote else "refused",
             decision.reason)
    return RetrainJobResult(status="done", version=outcome.version, promoted=decision.promote,
                            reason=decision.reason).to_json()
