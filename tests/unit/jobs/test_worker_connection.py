"""The worker's two Redis clients: RQ's own, whose socket timeout outlasts RQ's blocking wait for work, and the
jobs' one, which gives up in seconds. (The idle worker picking a job up at once: tests/scenarios/test_worker_idle.)"""

from __future__ import annotations

import pytest

from forecaster.cli.common import connect_queue_redis, connect_redis
from forecaster.settings import Settings
from jobs import worker


def test_rqs_client_outlasts_the_wait_for_work_and_the_jobs_client_stays_short(redis, redis_server):
    settings = Settings(_env_file=None, redis_url=redis_server["url"])
    queue_conn = connect_queue_redis(settings)  # already PINGed: a connection with this timeout is open
    built = worker.build_worker(queue_conn)
    timeout = queue_conn.connection_pool.connection_kwargs["socket_timeout"]
    assert timeout >= built.connection_timeout > built.dequeue_timeout  # what RQ itself asks of its socket
    assert connect_redis(settings).connection_pool.connection_kwargs["socket_timeout"] == 5


def test_a_client_that_would_time_the_wait_out_is_refused_with_what_to_do(redis, redis_server):
    short = connect_redis(Settings(_env_file=None, redis_url=redis_server["url"]))
    with pytest.raises(ValueError, match=f"times out after 5s.*socket_timeout={worker.QUEUE_SOCKET_TIMEOUT_S}"):
        worker.build_worker(short)
