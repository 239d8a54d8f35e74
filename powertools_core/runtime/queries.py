"""Every statement the runtime runs, as static templates (``{prefix}`` is the quoted schema).

The texts never vary with batch size (arrays go through ``unnest``), so each is prepared once
per connection and reused. Writes that can race a rescue are fenced by the claim's identity:
``state = 'executing' AND attempt = <claimed attempt> AND attempted_by[2] = <producer uuid>``.
"""

from __future__ import annotations

from functools import cache
from typing import Final

from powertools_core.db.identifiers import qualify

# One autocommit statement per batch: claim up to $limit available jobs of one queue in fetch
# order (the partial index powertools_oban_jobs_fetch_index), mark them executing.
FETCH: Final = """
UPDATE {prefix}.oban_jobs j
SET state = 'executing',
    attempt = j.attempt + 1,
    attempted_at = timezone('UTC', now()),
    attempted_by = %(attempted_by)s::text[]
WHERE j.id = ANY(ARRAY(
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE state = 'available' AND queue = %(queue)s
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
))
RETURNING j.id, j.state, j.queue, j.worker, j.args, j.errors, j.attempt, j.max_attempts,
    j.inserted_at, j.scheduled_at, j.attempted_at, j.completed_at, j.attempted_by,
    j.discarded_at, j.priority, j.tags, NULLIF(j.meta, '{}'::jsonb), j.cancelled_at
"""

# Group-committed outcomes: one set-based UPDATE per flush, fenced per row.
ACK: Final = """
UPDATE {prefix}.oban_jobs j
SET state = u.state::{prefix}.oban_job_state,
    completed_at = CASE WHEN u.state = 'completed' THEN timezone('UTC', now())
                        ELSE j.completed_at END,
    cancelled_at = CASE WHEN u.state = 'cancelled' THEN timezone('UTC', now())
                        ELSE j.cancelled_at END,
    discarded_at = CASE WHEN u.state = 'discarded' THEN timezone('UTC', now())
                        ELSE j.discarded_at END,
    scheduled_at = CASE WHEN u.state IN ('scheduled', 'retryable')
                        THEN timezone('UTC', now()) + make_interval(secs => u.delay)
                        ELSE j.scheduled_at END,
    max_attempts = j.max_attempts + u.bump,
    errors = CASE WHEN u.error IS NULL THEN j.errors
                  ELSE array_append(j.errors, u.error::jsonb) END
FROM unnest(
    %(ids)s::bigint[], %(attempts)s::integer[], %(producers)s::text[], %(states)s::text[],
    %(delays)s::float8[], %(bumps)s::integer[], %(errors)s::text[]
) AS u(id, attempt, producer, state, delay, bump, error)
WHERE j.id = u.id
  AND j.state = 'executing'
  AND j.attempt = u.attempt
  AND j.attempted_by[2] = u.producer
RETURNING j.id, j.meta ? 'workflow_id'
"""

# Claimed but never started (drain, admission refusal): back to available, attempt restored.
RELEASE: Final = """
UPDATE {prefix}.oban_jobs j
SET state = 'available', attempt = j.attempt - 1
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(producers)s::text[])
    AS u(id, attempt, producer)
WHERE j.id = u.id
  AND j.state = 'executing'
  AND j.attempt = u.attempt
  AND j.attempted_by[2] = u.producer
RETURNING j.id
"""

# After a fetch whose reply was lost (connection dropped mid-statement) the claim may have
# committed: give back this producer's executing jobs that it does not know about.
RECONCILE: Final = """
UPDATE {prefix}.oban_jobs
SET state = 'available', attempt = attempt - 1
WHERE state = 'executing'
  AND queue = %(queue)s
  AND attempted_by[2] = %(producer)s
  AND NOT (id = ANY(%(known)s::bigint[]))
RETURNING id
"""

UPSERT_PRODUCERS: Final = """
INSERT INTO {prefix}.powertools_producers AS p
    (uuid, node, queue, pid, concurrency, started_at, beat_at)
SELECT u.uuid, %(node)s, u.queue, %(pid)s, u.concurrency,
       timezone('UTC', now()), timezone('UTC', now())
FROM unnest(%(uuids)s::uuid[], %(queues)s::text[], %(concurrency)s::integer[])
    AS u(uuid, queue, concurrency)
ON CONFLICT (uuid) DO UPDATE SET beat_at = EXCLUDED.beat_at
"""

DELETE_PRODUCERS: Final = """
DELETE FROM {prefix}.powertools_producers WHERE uuid = ANY(%(uuids)s::uuid[])
"""

# Stager: due scheduled/retryable rows become available (bounded, never waits on a lock).
STAGE: Final = """
WITH due AS (
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= timezone('UTC', now())
    ORDER BY scheduled_at, id
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
), moved AS (
    UPDATE {prefix}.oban_jobs j
    SET state = 'available'
    FROM due
    WHERE j.id = due.id
    RETURNING j.queue
)
SELECT queue, count(*) FROM moved GROUP BY queue
"""

NOTIFY_QUEUES: Final = """
SELECT pg_notify(%(channel)s, q) FROM unnest(%(queues)s::text[]) AS q
"""

# Lifeline: executing jobs whose producer's heartbeat is stale (or whose producer is unknown
# and which were attempted long ago) go back to available, or to discarded when out of
# attempts; each one is recorded as an incident, all in one statement.
RESCUE: Final = """
WITH doomed AS (
    SELECT j.id,
           CASE WHEN p.uuid IS NULL THEN 'unknown_producer' ELSE 'stale_heartbeat' END AS reason
    FROM {prefix}.oban_jobs j
    LEFT JOIN {prefix}.powertools_producers p ON p.uuid::text = j.attempted_by[2]
    WHERE j.state = 'executing'
      AND CASE WHEN p.uuid IS NULL
               THEN coalesce(j.attempted_at, j.scheduled_at)
                    < timezone('UTC', now()) - make_interval(secs => %(orphan_after)s)
               ELSE p.beat_at
                    < timezone('UTC', now()) - make_interval(secs => %(rescue_after)s) END
    ORDER BY j.id
    LIMIT %(limit)s
    FOR NO KEY UPDATE OF j SKIP LOCKED
), moved AS (
    UPDATE {prefix}.oban_jobs j
    SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded'
                     ELSE 'available' END::{prefix}.oban_job_state,
        discarded_at = CASE WHEN j.attempt >= j.max_attempts THEN timezone('UTC', now())
                            ELSE j.discarded_at END,
        errors = CASE WHEN j.attempt >= j.max_attempts
                      THEN array_append(j.errors, jsonb_build_object(
                          'at', timezone('UTC', now()), 'attempt', j.attempt,
                          'error', 'rescued by the lifeline (' || doomed.reason
                                   || ') with no attempts left'))
                      ELSE j.errors END
    FROM doomed
    WHERE j.id = doomed.id
    RETURNING j.id, j.queue, j.worker, j.attempt, j.attempted_by, j.state, doomed.reason
), recorded AS (
    INSERT INTO {prefix}.powertools_lifeline_incidents
        (at, job_id, queue, worker, attempt, producer_uuid, node, reason, action, detected_by)
    SELECT timezone('UTC', now()), id, queue, worker, attempt, attempted_by[2],
           attempted_by[1], reason,
           CASE WHEN state = 'discarded' THEN 'discarded' ELSE 'rescued' END, %(node)s
    FROM moved
    RETURNING job_id
)
SELECT m.state::text, m.queue, count(*)
FROM moved m
GROUP BY m.state, m.queue
"""

# Producers that have been silent far longer than any rescue threshold and own no executing
# job any more: forget them.
PRUNE_PRODUCERS: Final = """
DELETE FROM {prefix}.powertools_producers p
WHERE p.beat_at < timezone('UTC', now()) - make_interval(secs => %(older_than)s)
  AND NOT EXISTS (
      SELECT 1 FROM {prefix}.oban_jobs j
      WHERE j.state = 'executing' AND j.attempted_by[2] = p.uuid::text
  )
"""

TRY_LEADER_LOCK: Final = "SELECT pg_try_advisory_lock(%(key)s)"
RELEASE_LEADER_LOCK: Final = "SELECT pg_advisory_unlock(%(key)s)"

SCHEMA_PRESENT: Final = """
SELECT to_regclass(%(jobs)s) IS NOT NULL, to_regclass(%(producers)s) IS NOT NULL
"""


# The fetch returns exactly ``JOB_COLUMNS`` (checked by a test) so ``Job.from_row`` applies.


@cache
def sql(template: str, prefix: str) -> str:
    """The statement for ``prefix`` (cached: the same text object every time)."""
    return qualify(template, prefix)
