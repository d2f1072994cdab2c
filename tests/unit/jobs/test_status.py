"""`/forecast-status`'s reads on a real Redis: queue depths, registered RQ workers, the served model, the last
scheduled posts, and only the asking user's pending jobs."""

from __future__ import annotations

import datetime as dt
import socket

from rq import SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import ForecastRequest, JobsClient, queue
from jobs.keys import last_run_key, served_model_key, worker_heartbeat_key
from jobs.queues import BATCH, BY_PRIORITY, INTERACTIVE, TRAINING
from jobs.retrain_progress import ProgressPublisher
from jobs.status import read_status, workers_alive

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)


def ask(redis, ticker: str, user: str, **changes) -> str:
    request = ForecastRequest(ticker=ticker, channel="C123", user=user, **changes)
    return JobsClient(redis, now=NOW).forecast(request).job_id


def test_an_empty_system_reads_as_empty_and_unknown(redis):
    status = read_status(redis, user="U1").to_json()
    assert [q["name"] for q in status["queues"]] == [spec.name for spec in BY_PRIORITY]
    assert all(q["queued"] == q["running"] == q["failed"] == 0 for q in status["queues"])
    assert status["workers"] == [] and status["served"] is None and status["mine"] == []
    assert status["last_digest"] is None and status["last_summary"] is None and status["scanned_everything"]


def test_the_users_own_jobs_are_listed_with_their_place_and_nobody_elses(redis):
    ask(redis, "KO", "U2")
    mine = ask(redis, "AXP", "U1", as_of=dt.date(2024, 3, 15))
    JobsClient(redis, now=NOW).retrain(channel="C123", user="U1")
    JobsClient(redis, now=NOW).digest(channel="C123", as_of=dt.date(2026, 11, 25))  # nobody's own

    status = read_status(redis, user="U1")

    assert [(j.job_id, j.what, j.status, j.position) for j in status.mine] == [
        (mine, "forecast AXP as of 2024-03-15", "queued", 1),
        (status.mine[1].job_id, "retrain", "queued", 0),
    ]
    assert [(q.name, q.queued) for q in status.queues] == [("interactive", 2), ("batch", 1), ("training", 1)]


def registered_worker(redis, name: str, pid: int, *, beating: bool, specs=(INTERACTIVE,)) -> SimpleWorker:
    """An RQ worker registration as a worker process on this host with `pid` makes it, with its heartbeat key
    as `jobs.worker.heartbeat` writes it (or none: the process died). `specs`: the queues it listens to."""
    worker = SimpleWorker([queue(redis, spec) for spec in specs], connection=redis, serializer=JSONSerializer,
                          name=name)
    worker.pid = pid
    worker.register_birth()
    if beating:
        redis.set(worker_heartbeat_key(socket.gethostname(), pid), "2026-11-25T14:59:30+00:00", ex=120)
    return worker


def test_workers_alive_and_busy_the_served_model_and_the_last_posts(redis):
    busy = registered_worker(redis, "gpu-0", 1001, beating=True)
    idle = registered_worker(redis, "gpu-1", 1002, beating=True)
    busy.set_state("busy")
    idle.set_state("idle")
    redis.hset(served_model_key(), mapping={"model": "tiny", "adapter": "v0002", "since": "2026-11-25T08:00:00+00:00"})
    redis.set(last_run_key("digest"), "2026-11-23T13:00:04+00:00")

    status = read_status(redis, user="U1")

    assert workers_alive(redis) == 2
    assert [(w.name, w.state) for w in status.workers] == [("gpu-0", "busy"), ("gpu-1", "idle")]
    assert status.workers[0].last_heartbeat == "2026-11-25T14:59:30+00:00" and status.lost == []
    assert status.served == {"model": "tiny", "adapter": "v0002", "since": "2026-11-25T08:00:00+00:00"}
    assert status.last_digest == "2026-11-23T13:00:04+00:00" and status.last_summary is None
    busy.register_death()
    idle.register_death()
    assert workers_alive(redis) == 0


def test_a_registered_worker_without_a_heartbeat_is_lost_not_alive(redis):
    dead = registered_worker(redis, "gpu-0", 1001, beating=False)
    dead.set_state("busy")
    registered_worker(redis, "gpu-1", 1002, beating=True)

    status = read_status(redis, user="U1")

    assert [w.name for w in status.workers] == ["gpu-1"] and workers_alive(redis) == 1
    assert [(w.name, w.state) for w in status.lost] == [("gpu-0", "busy")]  # RQ's last word, not proof of life


def test_status_only_reads(redis):
    ask(redis, "AXP", "U1")
    before = {key: redis.type(key) for key in redis.scan_iter()}
    read_status(redis, user="U1")
    assert {key: redis.type(key) for key in redis.scan_iter()} == before


def test_a_trainer_is_listed_apart_and_never_counted_as_a_serving_worker(redis):
    registered_worker(redis, "gpu-0", 1001, beating=True, specs=(INTERACTIVE, BATCH))
    registered_worker(redis, "trainer-0", 1002, beating=True, specs=(TRAINING,))

    status = read_status(redis, user="U1")

    assert [w.name for w in status.workers] == ["gpu-0"] and status.workers[0].queues == ("interactive", "batch")
    assert [(t.name, t.queues) for t in status.trainers] == [("trainer-0", ("training",))]
    # A /forecast ack's "no worker is running" must not be silenced by a trainer, nor /retrain's by a worker.
    assert workers_alive(redis) == 1 and workers_alive(redis, queue_name=TRAINING.name) == 1
    assert workers_alive(redis, queue_name=TRAINING.name, host="another-host") == 0


def test_no_trainer_alive_when_only_serving_workers_run(redis):
    registered_worker(redis, "gpu-0", 1001, beating=True, specs=(INTERACTIVE, BATCH))
    registered_worker(redis, "trainer-0", 1002, beating=False, specs=(TRAINING,))  # killed
    assert workers_alive(redis, queue_name=TRAINING.name) == 0
    status = read_status(redis, user="U1")
    assert status.trainers == [] and [w.name for w in status.lost] == ["trainer-0"]


def test_a_retrains_progress_is_shown_while_its_job_runs_and_not_after(redis):
    job_id = JobsClient(redis, now=NOW).retrain(channel="C123", user="UADMIN").job_id
    trainer = registered_worker(redis, "trainer-0", 1002, beating=True, specs=(TRAINING,))
    publish = ProgressPublisher(redis, job_id, requested_by="UADMIN")
    publish("training", step=12, max_steps=60, epoch=0.4, loss=2.5, eta_s=30.0)
    assert read_status(redis, user="U1").retrain is None  # published, but its job is not running: not shown

    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    trainer.prepare_execution(job)  # what a worker does as it starts a job: the started registry has it
    progress = read_status(redis, user="U1").retrain
    assert {k: progress[k] for k in ("job_id", "requested_by", "phase", "step", "max_steps", "loss", "eta_s")} == {
        "job_id": job_id, "requested_by": "UADMIN", "phase": "training", "step": "12", "max_steps": "60",
        "loss": "2.5", "eta_s": "30.0"}

    publish("training", step=13, max_steps=60, epoch=0.43, loss=2.4, eta_s=29.0)  # within PUBLISH_EVERY_S: skipped
    assert read_status(redis, user="U1").retrain["step"] == "12"
    publish("evaluating", done=1, total=3)  # a new phase is always written, without the training fields
    progress = read_status(redis, user="U1").retrain
    assert (progress["phase"], progress["done"], progress["total"], "step" in progress) == ("evaluating", "1", "3",
                                                                                            False)
    publish.clear()
    assert read_status(redis, user="U1").retrain is None
