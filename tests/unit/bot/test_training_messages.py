"""What the bot says about training now that it runs apart from serving: the `/retrain` ack is truthful about
whether a trainer runs, and `/forecast-status` shows the trainers and a running retrain's step, loss and ETA."""

from __future__ import annotations

import datetime as dt

from bot import messages
from tests.slack_limits import slack_problems, within_slack_limits
from tests.unit.bot.layout_cases import markup_not_ours

NOW = dt.datetime(2026, 11, 25, 18, 30, tzinfo=dt.UTC)
TRAINER = {"name": "trainer-0.77", "state": "busy", "current_job": "retrain_20261125T1800",
           "last_heartbeat": "2026-11-25T18:29:40+00:00", "queues": ["training"]}


def status(**changes) -> dict:
    base = {
        "queues": [{"name": q, "queued": 0, "running": 0, "failed": 0} for q in ("interactive", "batch", "training")],
        "workers": [], "lost": [], "served": None, "last_digest": None, "last_summary": None, "mine": [],
        "scanned_everything": True, "trainers": [TRAINER],
        "retrain": {"job_id": "retrain_20261125T1800", "requested_by": "UADMIN", "phase": "training", "step": "12",
                    "max_steps": "60", "epoch": "0.4", "loss": "2.3456", "eta_s": "95.0",
                    "updated": "2026-11-25T18:29:58+00:00", "trainer": "host"},
    }
    return base | changes


def training_section(answer: dict) -> str:
    [section] = [b["text"]["text"] for b in answer["blocks"] if b["type"] == "section"
                 and b["text"]["text"].startswith("*Training")]
    return section


def test_the_status_shows_the_running_retrains_step_loss_and_eta_and_the_trainer():
    answer = messages.status_report(status(), now=NOW)
    within_slack_limits(answer)
    assert training_section(answer) == (
        "*Training: 1 trainer alive, a retrain running*\n"
        "• retrain `retrain_20261125T1800` requested by <@UADMIN>: training step 12/60 (epoch 0.4) · loss 2.3456 · "
        "about 2 min left (updated 2026-11-25 18:29 UTC)\n"
        "• trainer `trainer-0.77`: busy, last heartbeat 2026-11-25 18:29 UTC")


def test_the_status_shows_the_evaluation_phase_and_a_missing_trainer():
    evaluating = {"job_id": "r1", "requested_by": "UADMIN", "phase": "evaluating", "done": "2", "total": "3",
                  "updated": "2026-11-25T18:29:58+00:00"}
    assert "training done; evaluating on the test split, 2/3 answers" in training_section(
        messages.status_report(status(retrain=evaluating), now=NOW))
    alone = training_section(messages.status_report(status(trainers=[], retrain=None), now=NOW))
    assert alone.startswith("*Training: 0 trainers alive*\n_no trainer running: a `/retrain` waits in the queue")


def test_hostile_progress_fields_are_shown_as_text():
    hostile = {"job_id": "<!channel>" * 30, "requested_by": "<!here>", "phase": "training", "step": "<@U1>",
               "max_steps": "&" * 900, "epoch": "`", "loss": "*x*" * 300, "eta_s": "inf",
               "updated": "<!everyone>"}
    answer = messages.status_report(status(retrain=hostile, trainers=[TRAINER | {"name": "<!channel>"}] * 40),
                                    now=NOW)
    assert slack_problems(answer) == [] and markup_not_ours(answer) == []
    assert "about ? left" in training_section(answer)


def test_the_retrain_ack_says_when_no_trainer_runs_and_that_forecasts_go_on():
    queued = messages.retrain_ack(job_id="retrain_1", status="queued", job_status="queued", epochs=None,
                                  force=False, trainers=0)["text"]
    assert "forecasts are served as usual meanwhile" in queued
    assert "No trainer is running right now, so training is not available yet: the retrain waits in the queue" \
        in queued
    for trainers in (1, None):  # one runs, or Redis did not say: nothing claimed either way
        text = messages.retrain_ack(job_id="retrain_1", status="queued", job_status="queued", epochs=None,
                                    force=False, trainers=trainers)["text"]
        assert "No trainer" not in text
    running = messages.retrain_ack(job_id="retrain_1", status="exists", job_status="started", epochs=None,
                                   force=False, trainers=0)["text"]
    assert running.startswith(":gear: A retrain is already running") and "No trainer" not in running
