"""Admission checks the bot makes, in Redis so every bot replica agrees.

Per person (`admit`): at most so many of one person's requests pending at once (queued, waiting out a retry's
backoff, or running), so one person cannot fill the queue everyone shares. The person's job ids are kept in a set;
counting reads each job's RQ status and drops the ids whose job is no longer pending, so nothing has to remove them
when a job ends, fails or lapses.

Per channel: on-demand digests paced, a Dow30 digest being 30 generations: a channel gets one on demand per
cooldown (the scheduled weekly digest is not counted), unless that one ended without an answer.

A slot is claimed before its digest is enqueued, and names that digest's job. When the bot loses Redis between the
two (the claim went through, the enqueue did not), the slot would block the channel for the whole cooldown for a
digest that does not exist; so a slot whose job does not exist, claimed more than STALE_CLAIM_S ago (far longer
than any ack takes), is taken over by the next claim.

(Redelivered commands are the job client's: `JobsClient.delivered`.)
"""

from __future__ import annotations

import redis
from rq.job import Job

from jobs.keys import RESULT_TTL_S, on_demand_digest_key, user_pending_key

STALE_CLAIM_S = 10

# Atomic, so two requests of one person at once cannot both take the last place. KEYS[1]: the person's set of job
# ids; ARGV: the job-key prefix, the new job's id (already created, so it is never counted twice), the limit, the
# set's TTL (s). Returns -1 when admitted (the id is added), else how many of theirs are pending.
_ADMIT = """
local pending = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[2] then
    local status = redis.call('HGET', ARGV[1] .. id, 'status')
    if status == 'queued' or status == 'started' or status == 'scheduled' or status == 'deferred' then
      pending = pending + 1
    else
      redis.call('SREM', KEYS[1], id)
    end
  end
end
if pending >= tonumber(ARGV[3]) then return pending end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return -1
"""


def admit(conn: redis.Redis | redis.client.Pipeline, user: str, job_id: str, *, limit: int) -> object:
    """Count `user`'s pending requests and, when fewer than `limit`, add the job `job_id` (just created) to them.
    Run on a pipeline, it is queued there; its answer is -1 when admitted, else how many of theirs are pending."""
    return conn.eval(_ADMIT, 1, user_pending_key(user), Job.key_for(""), job_id, limit, RESULT_TTL_S)

# Atomic, so two replicas never both take a slot over. KEYS[1]: the slot; ARGV: the claimant's job key, the
# cooldown (s), how old a claim must be to count as stale (ms), the job-key prefix (a holder that is not a job key,
# e.g. an older bot's "1", never lapses early). A slot whose digest ended without an answer (RQ's failed, stopped
# or canceled: its retries spent, a timeout) is free at once: asking again after a failure always works.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
local holder = redis.call('GET', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[4]) == ARGV[4] then
  local status = redis.call('HGET', holder, 'status')
  local never_came = redis.call('EXISTS', holder) == 0
                     and tonumber(ARGV[2]) * 1000 - redis.call('PTTL', KEYS[1]) > tonumber(ARGV[3])
  if never_came or status == 'failed' or status == 'stopped' or status == 'canceled' then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return 0
  end
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
