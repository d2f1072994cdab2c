"""The shared limiter on a real Redis: several limiter instances (as several processes) share one budget."""

from __future__ import annotations

import threading
import time

from engine.sources.ratelimit import Limit, LocalRateLimiter, RedisRateLimiter


def test_calls_within_the_limit_are_admitted_at_once(redis):
    limiter = RedisRateLimiter(redis, key="rl:test", limits=[Limit(5, 60)])
    assert [limiter.try_acquire() for _ in range(5)] == [0.0] * 5


def test_the_call_over_the_limit_is_told_how_long_to_wait(redis):
    limiter = RedisRateLimiter(redis, key="rl:test", limits=[Limit(3, 60)])
    for _ in range(3):
        assert limiter.try_acquire() == 0
    wait = limiter.try_acquire()
    assert 59 < wait <= 60.01
    # A refused call is not recorded, so the budget is not eaten by waiting clients.
    assert redis.zcard("rl:test") == 3


def test_two_instances_share_one_budget(redis):
    first = RedisRateLimiter(redis, key="rl:shared", limits=[Limit(4, 60)])
    second = RedisRateLimiter(redis, key="rl:shared", limits=[Limit(4, 60)])
    admitted = [lim.try_acquire() == 0 for lim in (first, second) * 4]
    assert admitted.count(True) == 4


def test_the_per_second_cap_applies_alongside_the_per_minute_budget(redis):
    limiter = RedisRateLimiter(redis, key="rl:burst", limits=[Limit(2, 1.0), Limit(60, 60)])
    assert limiter.try_acquire() == 0 and limiter.try_acquire() == 0
    wait = limiter.try_acquire()
    assert 0 < wait <= 1.01


def test_acquire_blocks_until_a_slot_frees_up(redis):
    limiter = RedisRateLimiter(redis, key="rl:block", limits=[Limit(2, 0.3)])
    started = time.monotonic()
    for _ in range(4):
        limiter.acquire()
    assert time.monotonic() - started >= 0.3
    assert limiter.waited_s > 0


def test_concurrent_threads_never_exceed_the_window(redis):
    # 6 threads x 5 calls against 10 per 0.5 s: the first 10 go at once, the other 20 need two more windows.
    # Over-admission would finish sooner; a loaded machine can only make it slower, so this cannot flake.
    limits = [Limit(10, 0.5)]
    done: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        limiter = RedisRateLimiter(redis, key="rl:threads", limits=limits)
        for _ in range(5):
            limiter.acquire()
            with lock:
                done.append(1)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 30
    assert time.monotonic() - started >= 1.0


def test_local_limiter_applies_the_same_policy():
    now = [100.0]
    limiter = LocalRateLimiter(limits=[Limit(2, 10)], clock=lambda: now[0])
    assert limiter.try_acquire() == 0 and limiter.try_acquire() == 0
    assert limiter.try_acquire() == 10
    now[0] = 110.01
    assert limiter.try_acquire() == 0
