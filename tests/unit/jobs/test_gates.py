"""The bot's admission checks on a real Redis: on-demand digests paced per channel, and the job client's queue-depth
limit and per-person cap, re-run of a request that ended without an answer, and memory of Slack deliveries."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.attempts import ANSWERED, TOLD, attempt_of, conclude
from jobs.client import ForecastRequest, JobsClient, QueueFull, TooManyPending, queue
from jobs.gates import claim_digest_slot, release_digest_slot
from jobs.keys import (
    DELIVERY_TTL_S,
    delivery_key,
    digest_job_id,
    forecast_job_id,
    on_demand_digest_key,
    user_pending_key,
)
from jobs.queues import INTERACTIVE

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)


def test_one_on_demand_digest_per_channel_per_cooldown(redis):
    assert claim_digest_slot(redis, "C1", cooldown_s=3600) == 0
    wait = claim_digest_slot(redis, "C1", cooldown_s=3600)
    assert 3590 <= wait <= 3600
    assert claim_digest_slot(redis, "C2", cooldown_s=3600) == 0  # per channel
    release_digest_slot(redis, "C1")
    assert claim_digest_slot(redis, "C1", cooldown_s=3600) == 0
    assert claim_digest_slot(redis, "C9", cooldown_s=0) == claim_digest_slot(redis, "C9", cooldown_s=0) == 0
    assert redis.ttl(on_demand_digest_key("C1")) > 0  # the slot lapses by itself


def request(ticker: str, *, user: str = "U1") -> ForecastRequest:
    return ForecastRequest(ticker=ticker, channel="C123", user=user)


def test_a_full_queue_refuses_new_jobs_but_answers_duplicates(redis):
    client = JobsClient(redis, now=NOW, max_depth=2)
    client.forecast(request("AXP"))
    client.forecast(request("KO"))
    with pytest.raises(QueueFull, match=r"the interactive queue already holds 2 jobs \(limit 2\)"):
        client.forecast(request("MSFT"))
    assert client.forecast(request("AXP")).status == "duplicate"
    assert queue(redis, INTERACTIVE).count == 2
    assert JobsClient(redis, now=NOW).forecast(request("MSFT")).status == "queued"  # no limit by default


def test_asking_again_after_a_failure_runs_the_request_again_when_asked_to(redis):
    client = JobsClient(redis, now=NOW)
    first = client.forecast(request("AXP"))
    job = Job.fetch(first.job_id, connection=redis, serializer=JSONSerializer)
    queue(redis, INTERACTIVE).remove(job)
    job.set_status("failed")
    assert client.forecast(request("AXP")).job_status == "failed"  # default (the scheduler): the failed job answers
    again = client.forecast(request("AXP"), again=True)
    assert (again.status, again.job_status, again.job_id) == ("queued", "queued", first.job_id)
    assert queue(redis, INTERACTIVE).count == 1
    assert attempt_of(Job.fetch(first.job_id, connection=redis, serializer=JSONSerializer)) != attempt_of(job)


@pytest.mark.parametrize(("status", "outcome", "runs_again"), [
    ("queued", None, False), ("started", None, False), ("scheduled", None, False),
    ("finished", ANSWERED, False), ("finished", None, False),  # answered (a job from before outcomes: answered)
    ("finished", TOLD, True), ("failed", None, True), ("stopped", None, True), ("canceled", None, True),
])
def test_only_a_request_that_ended_without_an_answer_runs_again_when_asked_again(redis, status, outcome,
                                                                                 runs_again):
    client = JobsClient(redis, now=NOW)
    first = client.forecast(request("AXP"))
    job = Job.fetch(first.job_id, connection=redis, serializer=JSONSerializer)
    if status != "queued":
        queue(redis, INTERACTIVE).remove(job)
        job.set_status(status)
    if outcome:
        conclude(job, outcome)
    again = client.forecast(request("AXP"), again=True)
    assert again.status == ("queued" if runs_again else "duplicate")
    assert again.job_status == ("queued" if runs_again else status)


def test_one_person_may_have_only_so_many_requests_pending_and_a_duplicate_is_never_refused(redis):
    client = JobsClient(redis, now=NOW, max_pending_per_user=2)
    mine = [client.forecast(request(ticker, user="U1")) for ticker in ("AXP", "KO")]
    with pytest.raises(TooManyPending) as refused:
        client.forecast(request("MSFT", user="U1"))
    assert (refused.value.pending, refused.value.limit) == (2, 2)
    assert client.forecast(request("AXP", user="U1")).status == "duplicate"
    assert client.forecast(request("MSFT", user="U2")).status == "queued"  # per person
    assert queue(redis, INTERACTIVE).count == 3  # the refused one was taken back

    done = Job.fetch(mine[0].job_id, connection=redis, serializer=JSONSerializer)
    queue(redis, INTERACTIVE).remove(done)
    done.set_status("finished")  # answered: no longer theirs to count
    assert client.forecast(request("MSFT", user="U1")).status == "duplicate"  # U2's request, the same one
    assert client.forecast(request("JPM", user="U1")).status == "queued"
    assert {m.decode() for m in redis.smembers(user_pending_key("U1"))} == {mine[1].job_id, forecast_job_id(
        ticker="JPM", as_of=None, weeks=3, financials=True, channel="C123", now=NOW)}  # the ended one dropped


def test_many_requests_of_one_person_at_once_admit_exactly_their_share(redis):
    tickers = ["AXP", "KO", "MSFT", "JPM", "IBM", "MMM", "CAT", "HD", "V", "WMT"]
    outcomes: list[str] = []
    lock = threading.Lock()

    def ask(ticker: str) -> None:
        try:
            JobsClient(redis, now=NOW, max_pending_per_user=3).forecast(request(ticker, user="U1"))
            said = "queued"
        except TooManyPending:
            said = "refused"
        with lock:
            outcomes.append(said)

    threads = [threading.Thread(target=ask, args=(t,)) for t in tickers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["queued"] * 3 + ["refused"] * 7
    assert queue(redis, INTERACTIVE).count == 3


def test_a_delivery_is_remembered_with_its_job_so_a_redelivery_finds_it(redis):
    client = JobsClient(redis, now=NOW)
    assert client.delivered("111.222.abc") is None
    first = client.forecast(request("AXP"), delivery="111.222.abc")
    client.forecast(request("KO"))
    again = client.delivered("111.222.abc")
    assert (again.job_id, again.status, again.job_status, again.ahead) == (first.job_id, "duplicate", "queued", 0)
    assert 0 < redis.ttl(delivery_key("111.222.abc")) <= DELIVERY_TTL_S
    Job.fetch(first.job_id, connection=redis, serializer=JSONSerializer).delete()
    assert client.delivered("111.222.abc") is None  # the job is gone: answer the redelivery anew


def test_a_refused_job_leaves_nothing_behind(redis):
    client = JobsClient(redis, now=NOW, max_depth=1)
    client.forecast(request("AXP"))
    with pytest.raises(QueueFull):
        client.forecast(request("KO"), delivery="555.666.ghi")
    assert client.delivered("555.666.ghi") is None
    assert not Job.exists(forecast_job_id(ticker="KO", as_of=None, weeks=3, financials=True, channel="C123",
                                          now=NOW), redis)


def test_a_digest_slot_whose_job_never_came_to_exist_is_taken_over_after_a_grace(redis):
    # The bot claimed the slot, then lost Redis before the digest was enqueued: the job never existed.
    job = digest_job_id(channel="C1", as_of=dt.date(2026, 11, 23))
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job, stale_after_s=0.5) == 0
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job, stale_after_s=0.5) > 0
    time.sleep(0.6)  # real time: a claim this old had all the time an ack takes to enqueue its job
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job, stale_after_s=0.5) == 0
    JobsClient(redis, now=NOW).digest(channel="C1", as_of=dt.date(2026, 11, 23))  # now the job exists
    time.sleep(0.6)
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job, stale_after_s=0.5) > 0


@pytest.mark.parametrize("ended", ["failed", "stopped", "canceled"])
def test_a_digest_that_ended_without_an_answer_does_not_hold_the_channels_slot(redis, ended):
    from rq.job import JobStatus

    as_of = dt.date(2026, 11, 23)
    job_id = digest_job_id(channel="C1", as_of=as_of)
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job_id) == 0
    JobsClient(redis, now=NOW).digest(channel="C1", as_of=as_of)
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job_id) > 0  # queued: the slot is held
    job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    job.set_status(JobStatus(ended))  # as RQ marks it when its retries are spent, or someone stops it
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job_id) == 0
    job.set_status(JobStatus.FINISHED)
    assert claim_digest_slot(redis, "C1", cooldown_s=3600, for_job=job_id) > 0  # answered: the cooldown holds
