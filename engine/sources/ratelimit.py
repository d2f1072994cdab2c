"""Rate limiters shared by every process that calls a provider.

`RedisRateLimiter` keeps a sliding-window log in one Redis sorted set per provider and decides atomically in a
Lua script, using the Redis server's clock, so any number of workers and CLIs together stay within the budget
(Finnhub's free plan: 60 calls per rolling minute and 30 per second). `LocalRateLimiter` is the same policy for
a single process with no Redis configured.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Limit:
    calls: int
    per_seconds: float


# The provider counts a call when it arrives, we count it when we send it; network jitter between the two can
# squeeze 61 arrivals into the provider's minute. Measuring over a slightly longer window absorbs that.
WINDOW_MARGIN_S = 2.0


def finnhub_limits(per_minute: int, per_second: int) -> tuple[Limit, ...]:
    return (Limit(per_second, 1.0 + WINDOW_MARGIN_S / 20), Limit(per_minute, 60.0 + WINDOW_MARGIN_S))


# KEYS[1]: the sorted set (member = unique call id, score = time in ms).
# ARGV[1]: call id; then pairs of (limit, window_ms).
# Returns 0 when the call was admitted (and recorded), otherwise the milliseconds to wait before trying again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local longest = 0
for i = 2, #ARGV, 2 do
  local w = tonumber(ARGV[i + 1])
  if w > longest then longest = w end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
local wait = 0
for i = 2, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local w = tonumber(ARGV[i + 1])
  local n = redis.call('ZCOUNT', KEYS[1], '(' .. (now - w), '+inf')
  if n >= limit then
    -- the call that must age out of this window before one more fits
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - w), '+inf', 'WITHSCORES', 'LIMIT', n - limit, 1)
    local until_free = tonumber(oldest[2]) + w - now + 1
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], longest + 1000)
return 0
"""


class RedisRateLimiter:
    """Blocks in `acquire()` until one more call fits every limit, counting calls from all processes."""

    def __init__(
        self,
        conn: redis.Redis,
        *,
        key: str,
        limits: Sequence[Limit],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._conn = conn
        self._key = key
        self._limits = tuple(limits)
        self._sleep = sleep
        self._script = conn.register_script(_ACQUIRE)
        self.waited_s = 0.0  # total time this instance spent blocked, for logs and benchmarks

    def try_acquire(self) -> float:
        """Record a call if it fits and return 0; otherwise record nothing and return seconds to wait."""
        args: list[object] = [uuid.uuid4().hex]
        for limit in self._limits:
            args += [limit.calls, int(limit.per_seconds * 1000)]
        wait_ms = int(self._script(keys=[self._key], args=args))
        return wait_ms / 1000

    def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            self.waited_s += wait
            self._sleep(wait)


class LocalRateLimiter:
    """The same sliding-window policy inside one process (used when no REDIS_URL is configured)."""

    def __init__(
        self,
        *,
        limits: Sequence[Limit],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._limits = tuple(limits)
        self._clock = clock
        self._sleep = sleep
        self._calls: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def try_acquire(self) -> float:
        with self._lock:
            now = self._clock()
            longest = max(limit.per_seconds for limit in self._limits)
            while self._calls and self._calls[0] <= now - longest:
                self._calls.popleft()
            wait = 0.0
            for limit in self._limits:
                recent = [t for t in self._calls if t > now - limit.per_seconds]
                if len(recent) >= limit.calls:
                    wait = max(wait, recent[len(recent) - limit.calls] + limit.per_seconds - now)
            if wait > 0:
                return wait
            self._calls.append(now)
            return 0.0

    def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            self.waited_s += wait
            self._sleep(wait)
