"""Stalling a real Redis server for a while, the two ways it happens in production.

`busy`: the server runs one long command (here a Lua script spinning on TIME, from its own connection) and reads
nobody else meanwhile; a command sent during the stall waits in the socket and is executed when the server catches
up, even if its client gave up and closed. That is the stall of a slow command, a big fork or a swapped host.

`CLIENT PAUSE` (`paused`) holds every client's commands instead; a command whose client closes meanwhile is dropped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import redis

_SPIN = """
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
while true do
  local n = redis.call('TIME')
  if n[1] * 1000000 + n[2] >= stop then break end
end
return 1
"""


@contextlib.contextmanager
def busy(url: str, *, seconds: float) -> Iterator[None]:
    """Inside: the server is busy (checked: a PING gets no answer) for about `seconds` from entry. On exit: waits
    until the stall is over. Stay under Redis's busy-reply threshold (5 s by default)."""
    stalls = redis.Redis.from_url(url)
    spinning = threading.Thread(target=lambda: stalls.eval(_SPIN, 0, int(seconds * 1000)), daemon=True)
    probe = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=1)
    started = time.monotonic()
    spinning.start()
    try:
        while True:  # until the server stops answering: the script runs
            if time.monotonic() - started > 2:
                raise AssertionError("Redis did not stall")
            try:
                probe.ping()
            except redis.TimeoutError:
                break
            time.sleep(0.005)
        yield
    finally:
        spinning.join(timeout=seconds + 10)
        probe.close()
        stalls.close()


@contextlib.contextmanager
def paused(conn: redis.Redis, *, seconds: float, mode: str = "ALL") -> Iterator[None]:
    """`CLIENT PAUSE` from `conn` (its own connection); on exit waits until the pause has ended."""
    until = time.monotonic() + seconds
    conn.execute_command("CLIENT", "PAUSE", int(seconds * 1000), mode)
    try:
        yield
    finally:
        time.sleep(max(0.0, until - time.monotonic()) + 0.05)
