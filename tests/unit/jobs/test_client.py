"""Enqueueing on a real Redis: dedupe by job id, JSON on the wire, priorities, positions."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import zlib

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import (
    FORECAST_TASK,
    ForecastRequest,
    JobsClient,
    NotQueued,
    QueueingUnconfirmed,
    fast_connection,
    queue,
    sent_nothing,
)
from jobs.keys import LIVE_DEDUPE_WINDOW_S, forecast_job_id, live_window_key
from jobs.queues import INTERACTIVE
from tests.redis_stall import busy, paused

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)


def request(**changes) -> ForecastRequest:
    return ForecastRequest(**({"ticker": "AXP", "channel": "C123", "user": "U1"} | changes))


def test_the_same_request_enqueued_20_times_at_once_makes_one_job(redis):
    results = []
    lock = threading.Lock()

    def ask() -> None:
        outcome = JobsClient(redis, now=NOW).forecast(request())
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.job_id for r in results}) == 1
    assert sorted(r.status for r in results).count("queued") == 1
    assert queue(redis, INTERACTIVE).count == 1


def test_jobs_are_json_on_the_wire_and_name_the_task_by_path(redis):
    outcome = JobsClient(redis, now=NOW).forecast(request(as_of=dt.date(2024, 3, 8)))
    raw = redis.hget(f"rq:job:{outcome.job_id}", "data")
    func, _instance, args, kwargs = json.loads(zlib.decompress(raw))  # RQ zlib-compresses; inside, JSON, no pickle
    assert func == FORECAST_TASK and kwargs["request"]["as_of"] == "2024-03-08"
    job = Job.fetch(outcome.job_id, connection=redis, serializer=JSONSerializer)
    assert job.timeout == INTERACTIVE.timeout_s and job.retries_left == INTERACTIVE.retries


def test_live_requests_dedupe_within_the_window_and_not_after(redis):
    """The window is Redis's, from the first ask: real time, at a test's scale (1 s for 10 minutes)."""
    first = JobsClient(redis, live_window_s=1).forecast(request())
    assert JobsClient(redis, live_window_s=1).forecast(request()).status == "duplicate"
    time.sleep(1.1)
    again = JobsClient(redis, live_window_s=1).forecast(request())
    assert again.status == "queued" and again.job_id != first.job_id
    assert again.ahead == 1  # behind the first one


def test_the_same_live_request_two_seconds_apart_across_a_ten_minute_mark_is_one_job(redis):
    before, after = dt.datetime(2026, 11, 25, 15, 9, 59, tzinfo=dt.UTC), dt.datetime(2026, 11, 25, 15, 10, 1,
                                                                                      tzinfo=dt.UTC)
    first = JobsClient(redis, now=before).forecast(request())
    again = JobsClient(redis, now=after).forecast(request())
    assert (again.status, again.job_id) == ("duplicate", first.job_id)
    assert queue(redis, INTERACTIVE).count == 1
    assert 0 < redis.pttl(live_window_key(ticker="AXP", weeks=3, financials=True, channel="C123")) \
        <= LIVE_DEDUPE_WINDOW_S * 1000


def test_different_options_or_channels_are_different_jobs():
    ids = {forecast_job_id(ticker="AXP", as_of=None, weeks=w, financials=f, channel=c, now=NOW)
           for w in (1, 3) for f in (True, False) for c in ("C1", "C2")}
    assert len(ids) == 8
    assert all(":" not in i and " " not in i for i in ids)


def test_the_job_status_is_rqs_plain_value(redis):
    first = JobsClient(redis, now=NOW).forecast(request())
    again = JobsClient(redis, now=NOW).forecast(request())
    assert (first.job_status, again.job_status) == ("queued", "queued")  # not "JobStatus.QUEUED"


# -- when Redis fails: "not queued" only when nothing was sent, "unconfirmed" when the write went out -------------

TIMEOUT_S = 0.3  # the bot's client gives up after 1 s; shorter here, so each stall costs about a second
STALL_S = 1.2


def test_redis_refusing_the_connection_or_never_answering_it_is_a_definite_not_queued(tmp_path):
    listening = socket.socket()  # accepts (the kernel's backlog) and never answers the handshake
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    try:
        for url in (f"unix://{tmp_path}/nobody.sock", f"redis://127.0.0.1:{listening.getsockname()[1]}/0"):
            conn = fast_connection(url, timeout_s=TIMEOUT_S)
            with pytest.raises(NotQueued) as caught:
                JobsClient(conn, now=NOW).forecast(request())
            assert caught.value.job_id.startswith("forecast_AXP_")
            assert isinstance(caught.value.__cause__, redis_lib.ConnectionError | redis_lib.TimeoutError)
            conn.close()
    finally:
        listening.close()


def test_a_stall_after_the_enqueue_was_sent_is_unconfirmed_and_the_busy_server_queues_it_later(redis,
                                                                                               redis_server):
    conn = fast_connection(redis_server["url"], timeout_s=TIMEOUT_S)
    client = JobsClient(conn, now=NOW)
    day = dt.date(2024, 3, 8)  # dated: the enqueue is the first write (a live one's window comes first, below)
    client.forecast(request(ticker="KO", as_of=day))  # a bot that has served a command: its connection is open
    with busy(redis_server["url"], seconds=STALL_S):
        started = time.perf_counter()
        with pytest.raises(QueueingUnconfirmed):
            client.forecast(request(as_of=day))
        gave_up_s = time.perf_counter() - started
    assert gave_up_s < TIMEOUT_S + 0.5
    # The server ran the enqueue when it caught up: "not queued" would have been false.
    job_id = forecast_job_id(ticker="AXP", as_of=day, weeks=3, financials=True, channel="C123", now=NOW)
    assert queue(redis, INTERACTIVE).get_job_ids() == [forecast_job_id(ticker="KO", as_of=day, weeks=3,
                                                                       financials=True, channel="C123", now=NOW),
                                                       job_id]
    again = client.forecast(request(as_of=day))  # the user asks again: answered from that job, no second one
    assert (again.job_id, again.status, again.job_status, again.ahead) == (job_id, "duplicate", "queued", 1)
    assert queue(redis, INTERACTIVE).count == 2
    conn.close()


def test_a_paused_redis_drops_the_write_of_a_client_that_gave_up_so_unconfirmed_was_right_and_a_retry_queues_once(
        redis, redis_server):
    conn = fast_connection(redis_server["url"], timeout_s=TIMEOUT_S)
    client = JobsClient(conn, now=NOW)
    day = dt.date(2024, 3, 8)
    client.forecast(request(ticker="KO", as_of=day))
    with paused(redis, seconds=STALL_S):
        with pytest.raises(QueueingUnconfirmed):
            client.forecast(request(as_of=day))
    assert queue(redis, INTERACTIVE).count == 1  # only KO: the paused server dropped it when the client closed
    again = client.forecast(request(as_of=day))
    assert (again.status, again.job_status) == ("queued", "queued")
    assert queue(redis, INTERACTIVE).count == 2
    conn.close()


def test_a_stall_on_a_live_requests_window_queues_nothing_and_the_next_ask_queues_it(redis, redis_server):
    conn = fast_connection(redis_server["url"], timeout_s=TIMEOUT_S)
    client = JobsClient(conn, now=NOW)
    client.forecast(request(ticker="KO"))
    with busy(redis_server["url"], seconds=STALL_S):
        with pytest.raises(NotQueued):  # only the window was asked for: no job can come of it
            client.forecast(request())
    assert queue(redis, INTERACTIVE).count == 1
    again = client.forecast(request())
    assert (again.status, again.ahead) == ("queued", 1)
    conn.close()


def test_a_stall_before_the_connection_is_ready_queues_nothing(redis, redis_server):
    conn = fast_connection(redis_server["url"], timeout_s=TIMEOUT_S)  # new: its handshake meets the stall
    with busy(redis_server["url"], seconds=STALL_S):
        with pytest.raises(NotQueued):
            JobsClient(conn, now=NOW).forecast(request())
    assert queue(redis, INTERACTIVE).count == 0 and redis.keys("rq:job:*") == []
    conn.close()


def test_errors_of_clients_not_built_by_fast_connection_all_count_as_maybe_sent(redis):
    plain = redis_lib.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis_lib.ConnectionError) as caught:
        plain.ping()
    assert not sent_nothing(caught.value)
