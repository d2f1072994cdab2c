"""On-demand digests paced per channel, in Redis so every bot replica agrees: a Dow30 digest is 30 generations,
so a channel gets one on demand per cooldown (the scheduled weekly digest is not counted).

A slot is claimed before its digest is enqueued, and names that digest's job. When the bot loses Redis between the
two (the claim went through, the enqueue did not), the slot would block the channel for the whole cooldown for a
digest that does not exist; so a slot whose job does not exist, claimed more than STALE_CLAIM_S ago (far longer
than any ack takes), is taken over by the next claim.

(Redelivered commands are the job client's: `JobsClient.delivered`.)
"""

from __future__ import annotations

import redis
from rq.job import Job

from jobs.keys import on_demand_digest_key

STALE_CLAIM_S = 10

# Atomic, so two replicas never both take a slot over. KEYS[1]: the slot; ARGV: the claimant's job key, the
# cooldown (s), how old a claim must be to count as stale (ms), the job-key prefix (a holder that is not a job key,
# e.g. an older bot's "1", never lapses early).
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
local holder = redis.call('GET', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[4]) == ARGV[4] and redis.call('EXISTS', holder) == 0
   and tonumber(ARGV[2]) * 1000 - redis.call('PTTL', KEYS[1]) > tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 0
end
return math.max(1, ttl)
"""


def claim_digest_slot(conn: redis.Redis, channel: str, *, cooldown_s: int, for_job: str | None = None,
                      stale_after_s: float = STALE_CLAIM_S) -> int:
    """0 when this channel may have an on-demand digest now (the slot is then held for `cooldown_s`); otherwise
    the seconds until it may. `for_job`: the id of the digest job about to be enqueued (a slot naming a job that
    does not exist `stale_after_s` after its claim is taken over, see the module's docstring)."""
    if cooldown_s <= 0:
        return 0
    holder = Job.key_for(for_job) if for_job else "1"
    prefix = Job.key_for("")
    return int(conn.eval(_CLAIM, 1, on_demand_digest_key(channel), holder, cooldown_s,
                         int(stale_after_s * 1000), prefix))


def release_digest_slot(conn: redis.Redis, channel: str) -> None:
    """Give the slot back: the digest was not queued after all (already done today, queue full)."""
    conn.delete(on_demand_digest_key(channel))
