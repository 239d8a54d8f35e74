"""Every statement the archive runs. ``{prefix}`` is the quoted schema (``db.identifiers.qualify``);
``{ts}`` is a terminal-timestamp column from ``policy.TERMINAL_TIMESTAMP`` put in by
``sql.job_sql`` through ``quote_ident``. Values are always bound parameters.

Moving is two steps per chunk, in one short transaction: select at most ``limit`` ids through an
index (``FOR UPDATE SKIP LOCKED``: rows a worker or another run holds are left alone), then one
``DELETE ... RETURNING`` feeding an ``INSERT`` into the other table, so a row is in exactly one
table at every commit.
"""

from __future__ import annotations

from typing import Final

from powertools_core.archive.policy import TERMINAL_TIMESTAMP
from powertools_core.db.identifiers import qualify, quote_ident

# Both the oban_jobs and the archive column list, in this order (a test checks it against
# schema.oban.OBAN_JOBS_COLUMNS so a new Oban column cannot be dropped silently).
JOB_COLUMNS: Final = (
    "id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at, "
    "attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta, cancelled_at"
)
AUDIT_COLUMNS: Final = (
    "id, at, actor, action, target_type, target_id, reason, result, run_id, before, after, meta"
)

# Advisory lock class for "this archive run is alive" (key 2 is hashtext(run id)).
RUN_LOCK_CLASS: Final = 0x50574152

SELECT_NOW: Final = "SELECT timezone('UTC', now())"

# -- runs -------------------------------------------------------------------------------------
INSERT_RUN: Final = """
INSERT INTO {prefix}.powertools_archive_runs
    (id, kind, status, actor, reason, filter, counts, started_at)
VALUES (%(id)s, %(kind)s, 'running', %(actor)s, %(reason)s, %(filter)s, %(counts)s,
        timezone('UTC', now()))
RETURNING started_at
"""
LOCK_RUN: Final = "SELECT pg_advisory_lock(%(cls)s, hashtext(%(id)s::text))"
UNLOCK_RUN: Final = "SELECT pg_advisory_unlock(%(cls)s, hashtext(%(id)s::text))"
UPDATE_RUN_COUNTS: Final = """
UPDATE {prefix}.powertools_archive_runs SET counts = %(counts)s WHERE id = %(id)s
"""
FINISH_RUN: Final = """
UPDATE {prefix}.powertools_archive_runs
SET status = %(status)s, counts = %(counts)s, finished_at = timezone('UTC', now())
WHERE id = %(id)s
RETURNING finished_at
"""
# A run still 'running' whose owner no longer holds its lock was killed: say so.
MARK_ORPHANED_RUNS: Final = """
UPDATE {prefix}.powertools_archive_runs
SET status = 'interrupted', finished_at = timezone('UTC', now())
WHERE status = 'running' AND pg_try_advisory_xact_lock(%(cls)s, hashtext(id::text))
RETURNING id
"""
# Reading runs shows a dead 'running' run as 'interrupted' without writing anything.
SELECT_RUN: Final = """
SELECT id, kind,
    CASE WHEN status = 'running' AND pg_try_advisory_xact_lock(%(cls)s, hashtext(id::text))
         THEN 'interrupted' ELSE status END,
    actor, reason, filter, counts, started_at, finished_at
FROM {prefix}.powertools_archive_runs WHERE id = %(id)s
"""
SELECT_RUNS: Final = """
SELECT id, kind,
    CASE WHEN status = 'running' AND pg_try_advisory_xact_lock(%(cls)s, hashtext(id::text))
         THEN 'interrupted' ELSE status END,
    actor, reason, filter, counts, started_at, finished_at
FROM {prefix}.powertools_archive_runs
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY started_at DESC, id
LIMIT %(limit)s
"""

# -- archive run: oban_jobs -> powertools_job_archive ------------------------------------------
COUNT_ARCHIVABLE: Final = """
SELECT j.queue, count(*), min(j.{ts})
FROM {prefix}.oban_jobs j
WHERE j.state = %(state)s AND j.{ts} < %(cutoff)s
  AND (%(any_queue)s OR j.queue = ANY(%(queues)s))
GROUP BY j.queue
ORDER BY j.queue
"""
SELECT_ARCHIVABLE_IDS: Final = """
SELECT j.id
FROM {prefix}.oban_jobs j
WHERE j.state = %(state)s AND j.{ts} < %(cutoff)s
  AND (%(any_queue)s OR j.queue = ANY(%(queues)s))
  AND NOT EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive a WHERE a.id = j.id)
ORDER BY j.{ts}
LIMIT %(limit)s
FOR UPDATE OF j SKIP LOCKED
"""
# Ids archived earlier and back in oban_jobs under the same id (never overwritten: skipped).
SELECT_ARCHIVE_CONFLICTS: Final = """
SELECT j.id
FROM {prefix}.oban_jobs j
WHERE j.state = %(state)s AND j.{ts} < %(cutoff)s
  AND (%(any_queue)s OR j.queue = ANY(%(queues)s))
  AND EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive a WHERE a.id = j.id)
ORDER BY j.id
LIMIT %(limit)s
"""
MOVE_JOBS_TO_ARCHIVE: Final = """
WITH moved AS (
    DELETE FROM {prefix}.oban_jobs j
    WHERE j.id = ANY(%(ids)s)
      AND j.state IN ('completed', 'cancelled', 'discarded')
      AND NOT EXISTS (SELECT 1 FROM {prefix}.powertools_job_archive a WHERE a.id = j.id)
    RETURNING j.id, j.state, j.queue, j.worker, j.args, j.errors, j.attempt, j.max_attempts,
        j.inserted_at, j.scheduled_at, j.attempted_at, j.completed_at, j.attempted_by,
        j.discarded_at, j.priority, j.tags, j.meta, j.cancelled_at
), archived AS (
    INSERT INTO {prefix}.powertools_job_archive
        (id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at,
         attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta,
         cancelled_at, archived_at, archive_run_id)
    SELECT id, state::text, queue, worker, args, errors, attempt, max_attempts, inserted_at,
        scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta,
        cancelled_at, timezone('UTC', now()), %(run_id)s
    FROM moved
    RETURNING id, state, queue
)
SELECT state, queue, count(*), min(id), max(id) FROM archived GROUP BY state, queue
"""

# -- archive run --audit: powertools_audit_events -> powertools_audit_archive -----------------
COUNT_AUDIT_ARCHIVABLE: Final = """
SELECT e.action, count(*), min(e.at)
FROM {prefix}.powertools_audit_events e
WHERE e.at < %(cutoff)s
GROUP BY e.action
ORDER BY e.action
"""
SELECT_AUDIT_IDS: Final = """
SELECT e.id
FROM {prefix}.powertools_audit_events e
WHERE e.at < %(cutoff)s
ORDER BY e.at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
MOVE_AUDIT_TO_ARCHIVE: Final = """
WITH moved AS (
    DELETE FROM {prefix}.powertools_audit_events e
    WHERE e.id = ANY(%(ids)s)
    RETURNING e.id, e.at, e.actor, e.action, e.target_type, e.target_id, e.reason, e.result,
        e.run_id, e.before, e.after, e.meta
), archived AS (
    INSERT INTO {prefix}.powertools_audit_archive
        (id, at, actor, action, target_type, target_id, reason, result, run_id, before, after,
         meta, archived_at, archive_run_id)
    SELECT id, at, actor, action, target_type, target_id, reason, result, run_id, before, after,
        meta, timezone('UTC', now()), %(run_id)s
    FROM moved
    RETURNING id, action
)
SELECT action, NULL::text, count(*), min(id), max(id) FROM archived GROUP BY action
"""

# -- restore: powertools_job_archive -> oban_jobs ---------------------------------------------
# Filters are optional (NULL = any); keyset on id so each chunk starts where the last ended.
ARCHIVE_FILTER: Final = """
      (%(ids)s::bigint[] IS NULL OR a.id = ANY(%(ids)s))
  AND (%(run_id)s::uuid IS NULL OR a.archive_run_id = %(run_id)s)
  AND (%(states)s::text[] IS NULL OR a.state = ANY(%(states)s))
  AND (%(queues)s::text[] IS NULL OR a.queue = ANY(%(queues)s))
  AND (%(workers)s::text[] IS NULL OR a.worker = ANY(%(workers)s))
  AND (%(archived_before)s::timestamp IS NULL OR a.archived_at < %(archived_before)s)
"""
COUNT_RESTORABLE: Final = """
SELECT a.state, a.queue, count(*), min(a.archived_at)
FROM {prefix}.powertools_job_archive a
WHERE {filter}
  AND NOT EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = a.id)
GROUP BY a.state, a.queue
ORDER BY a.state, a.queue
"""
SELECT_RESTORE_CONFLICTS: Final = """
SELECT a.id
FROM {prefix}.powertools_job_archive a
WHERE {filter}
  AND EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = a.id)
ORDER BY a.id
LIMIT %(limit)s
"""
SELECT_ARCHIVED_PRESENT: Final = """
SELECT a.id FROM {prefix}.powertools_job_archive a WHERE a.id = ANY(%(ids)s)
"""
SELECT_RESTORABLE_IDS: Final = """
SELECT a.id
FROM {prefix}.powertools_job_archive a
WHERE {filter}
  AND a.id > %(after)s
  AND NOT EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = a.id)
ORDER BY a.id
LIMIT %(limit)s
FOR UPDATE OF a SKIP LOCKED
"""
RESTORE_JOBS: Final = """
WITH moved AS (
    DELETE FROM {prefix}.powertools_job_archive a
    WHERE a.id = ANY(%(ids)s)
      AND NOT EXISTS (SELECT 1 FROM {prefix}.oban_jobs j WHERE j.id = a.id)
    RETURNING a.id, a.state, a.queue, a.worker, a.args, a.errors, a.attempt, a.max_attempts,
        a.inserted_at, a.scheduled_at, a.attempted_at, a.completed_at, a.attempted_by,
        a.discarded_at, a.priority, a.tags, a.meta, a.cancelled_at
), restored AS (
    INSERT INTO {prefix}.oban_jobs
        (id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at,
         attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta,
         cancelled_at)
    SELECT id, state::{prefix}.oban_job_state, queue, worker, args, errors, attempt, max_attempts,
        inserted_at, scheduled_at, attempted_at, completed_at, attempted_by, discarded_at,
        priority, tags, meta, cancelled_at
    FROM moved
    RETURNING id, state, queue
)
SELECT state::text, queue, count(*), min(id), max(id) FROM restored GROUP BY state, queue
"""

# -- prune: the only permanent delete, from the archive tables ---------------------------------
COUNT_PRUNABLE: Final = """
SELECT a.state, a.queue, count(*), min(a.archived_at)
FROM {prefix}.powertools_job_archive a
WHERE a.archived_at < %(cutoff)s
GROUP BY a.state, a.queue
ORDER BY a.state, a.queue
"""
SELECT_PRUNABLE_IDS: Final = """
SELECT a.id
FROM {prefix}.powertools_job_archive a
WHERE a.archived_at < %(cutoff)s
ORDER BY a.archived_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
PRUNE_JOBS: Final = """
WITH pruned AS (
    DELETE FROM {prefix}.powertools_job_archive a
    WHERE a.id = ANY(%(ids)s)
    RETURNING a.id, a.state, a.queue
)
SELECT state, queue, count(*), min(id), max(id) FROM pruned GROUP BY state, queue
"""
COUNT_AUDIT_PRUNABLE: Final = """
SELECT a.action, count(*), min(a.archived_at)
FROM {prefix}.powertools_audit_archive a
WHERE a.archived_at < %(cutoff)s
GROUP BY a.action
ORDER BY a.action
"""
SELECT_AUDIT_PRUNABLE_IDS: Final = """
SELECT a.id
FROM {prefix}.powertools_audit_archive a
WHERE a.archived_at < %(cutoff)s
ORDER BY a.archived_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
PRUNE_AUDIT: Final = """
WITH pruned AS (
    DELETE FROM {prefix}.powertools_audit_archive a
    WHERE a.id = ANY(%(ids)s)
    RETURNING a.id, a.action
)
SELECT action, NULL::text, count(*), min(id), max(id) FROM pruned GROUP BY action
"""

# -- reading the archive -----------------------------------------------------------------------
COUNT_ARCHIVED: Final = """
SELECT count(*) FROM {prefix}.powertools_job_archive a WHERE {filter}
"""
SELECT_ARCHIVED: Final = """
SELECT a.id, a.state, a.queue, a.worker, a.args, a.errors, a.attempt, a.max_attempts,
    a.inserted_at, a.scheduled_at, a.attempted_at, a.completed_at, a.attempted_by,
    a.discarded_at, a.priority, a.tags, a.meta, a.cancelled_at, a.archived_at, a.archive_run_id
FROM {prefix}.powertools_job_archive a
WHERE a.id = %(id)s
"""
LIST_ARCHIVED: Final = """
SELECT a.id, a.state, a.queue, a.worker, a.args, a.errors, a.attempt, a.max_attempts,
    a.inserted_at, a.scheduled_at, a.attempted_at, a.completed_at, a.attempted_by,
    a.discarded_at, a.priority, a.tags, a.meta, a.cancelled_at, a.archived_at, a.archive_run_id
FROM {prefix}.powertools_job_archive a
WHERE {filter}
ORDER BY a.archived_at DESC, a.id DESC
LIMIT %(limit)s
"""


def job_sql(template: str, prefix: str, *, state: str | None = None) -> str:
    """Fill a template: the quoted schema, the state's timestamp column, the archive filter."""
    text = template.replace("{filter}", ARCHIVE_FILTER.strip())
    if state is not None:
        text = text.replace("{ts}", quote_ident(TERMINAL_TIMESTAMP[state]))
    return qualify(text, prefix)
