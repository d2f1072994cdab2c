"""On-demand digests paced per channel, in Redis so every bot replica agrees: a Dow30 digest is 30 generations,
so a channel gets one on demand per cooldown (the scheduled weekly digest is not counted).

(Redelivered commands are the job client's: `JobsClient.delivered`.)
"""

from __future__ import annotations

import redis

from jobs.keys import on_demand_digest_key


def claim_digest_slot(conn: redis.Redis, channel: str, *, cooldown_s: int) -> int:
    """0 when this channel may have an on-demand digest now (the slot is then held for `cooldown_s`); otherwise
    the seconds until it may."""
    if cooldown_s <= 0:
        return 0
    key = on_demand_digest_key(channel)
    if conn.set(key, 1, nx=True, ex=cooldown_s):
        return 0
    return max(1, int(conn.ttl(key)))


def release_digest_slot(conn: redis.Redis, channel: str) -> None:
    """Give the slot back: the digest was not queued after all (already done today, queue full)."""
    conn.delete(on_demand_digest_key(channel))
