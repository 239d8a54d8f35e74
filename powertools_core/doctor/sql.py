"""Every statement doctor runs. ``{prefix}`` is the quoted schema (``db.identifiers.qualify``);
values are bound parameters. All of them are reads: catalog and statistics views, planner
estimates, and index probes bounded by ``LIMIT``; none counts or scans a whole job table.

The doctor's transaction is ``READ ONLY`` with ``TimeZone`` UTC, so Oban's
``timestamp without time zone`` columns compare directly with ``timezone('UTC', now())``.
"""

from __future__ import annotations

from typing import Final

# -- session ----------------------------------------------------------------------------------
BEGIN_READ_ONLY: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# The doctor's limits for this transaction only (SET LOCAL, as parameters).
SESSION_LIMITS: Final = """
SELECT set_config('statement_timeout', %(statement_timeout)s, true),
       set_config('lock_timeout', %(lock_timeout)s, true),
       set_config('TimeZone', 'UTC', true),
       set_config('jit', 'off', true),  -- short probes: compiling costs more than it saves
       set_config('work_mem', '64MB', true)  -- exact (not lossy) bitmaps on big tables
"""
SERVER_INFO: Final = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       current_database(), current_user, timezone('UTC', now())
"""

# -- inventory --------------------------------------------------------------------------------
SCHEMA_EXISTS: Final = """
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s)
"""
TABLES_PRESENT: Final = """
SELECT c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%(names)s)
"""
JOB_STATE_LABELS: Final = """
SELECT e.enumlabel
FROM pg_catalog.pg_enum e
JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = %(schema)s AND t.typname = 'oban_job_state'
ORDER BY e.enumsortorder
"""

# -- indexes ----------------------------------------------------------------------------------
# Indexes that a failed CREATE/REINDEX CONCURRENTLY left unusable (not valid, ready or live).
BROKEN_INDEXES: Final = """
SELECT t.relname, i.relname, x.indisvalid, x.indisready, x.indislive
FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s AND t.relname = ANY(%(tables)s)
  AND NOT (x.indisvalid AND x.indisready AND x.indislive)
ORDER BY t.relname, i.relname
"""
INDEXES_OF_TABLE: Final = """
SELECT i.relname, x.indisprimary
FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s AND t.relname = %(table)s
"""

# -- uniqueness -------------------------------------------------------------------------------
# Exact up to the cap (an index-only walk of at most ``cap`` entries), then the planner's guess.
ELIGIBLE_CAPPED: Final = """
SELECT count(*) FROM (
    SELECT 1 FROM {prefix}.oban_jobs
    WHERE state = ANY(%(states)s::{prefix}.oban_job_state[])
    LIMIT %(cap)s
) AS capped
"""
ELIGIBLE_ESTIMATE: Final = """
EXPLAIN (FORMAT JSON)
SELECT 1 FROM {prefix}.oban_jobs WHERE state = ANY(%(states)s::{prefix}.oban_job_state[])
"""

# -- deadlines --------------------------------------------------------------------------------
# Convention: ``meta.deadline_at`` is an ISO-8601 timestamp (UTC when it has no offset);
# ``meta.__deadline_at__`` (written by Oban Powertools for Elixir) is read the same way.
# A value that is not a timestamp is counted as malformed instead of failing the check.
_EXPIRED_DEADLINES: Final = """
WITH candidates AS MATERIALIZED (
    SELECT j.id, j.queue, j.worker,
           coalesce(j.meta->>'deadline_at', j.meta->>'__deadline_at__') AS raw
    FROM {prefix}.oban_jobs j
    WHERE j.state = ANY(%(states)s::{prefix}.oban_job_state[])
      AND j.meta ?| ARRAY['deadline_at', '__deadline_at__']
    LIMIT %(scan_cap)s
), checked AS MATERIALIZED (
    SELECT c.id, c.queue, c.worker, {valid} AS valid, c.raw FROM candidates c
), dated AS MATERIALIZED (
    SELECT k.id, k.queue, k.worker, k.valid,
           CASE WHEN k.valid THEN k.raw::timestamptz < now() ELSE false END AS expired,
           CASE WHEN k.valid THEN k.raw::timestamptz END AS deadline
    FROM checked k
)
SELECT d.queue, d.worker,
       count(*) FILTER (WHERE d.expired) AS expired,
       count(*) FILTER (WHERE NOT d.valid) AS malformed,
       min(d.deadline) FILTER (WHERE d.expired) AS oldest,
       (array_agg(d.id ORDER BY d.deadline) FILTER (WHERE d.expired))[1:5] AS ids,
       (array_agg(d.id ORDER BY d.id) FILTER (WHERE NOT d.valid))[1:5] AS bad_ids
FROM dated d
WHERE d.expired OR NOT d.valid
GROUP BY d.queue, d.worker
ORDER BY d.queue, d.worker
"""
# PostgreSQL 16+ can ask whether a text parses; older servers get a strict ISO-8601 pattern.
EXPIRED_DEADLINES_PG16: Final = _EXPIRED_DEADLINES.replace(
    "{valid}", "pg_input_is_valid(c.raw, 'timestamptz')"
)
EXPIRED_DEADLINES_PG12: Final = _EXPIRED_DEADLINES.replace(
    "{valid}",
    "(c.raw ~ '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])"
    "([T ]([01]\\d|2[0-3]):[0-5]\\d(:[0-5]\\d(\\.\\d{1,6})?)?)?"
    "(Z|[+-]([01]\\d|2[0-3])(:?[0-5]\\d)?)?$')",
)

# -- heartbeats -------------------------------------------------------------------------------
# Executing jobs whose producer's heartbeat is stale, or whose producer is unknown and which
# were attempted long ago; grouped per producer (attempted_by = [node, producer uuid]).
ORPHANED_JOBS: Final = """
SELECT CASE WHEN p.uuid IS NULL THEN 'unknown' ELSE 'stale' END AS kind,
       coalesce(j.attempted_by[2], '') AS producer,
       max(coalesce(p.node, j.attempted_by[1], '')) AS node,
       j.queue, count(*) AS jobs,
       min(coalesce(j.attempted_at, j.scheduled_at)) AS oldest,
       max(p.beat_at) AS beat_at,
       (array_agg(j.id ORDER BY j.id))[1:5] AS ids
FROM {prefix}.oban_jobs j
LEFT JOIN {prefix}.powertools_producers p ON p.uuid::text = j.attempted_by[2]
WHERE j.state = 'executing'
  AND CASE WHEN p.uuid IS NULL
           THEN coalesce(j.attempted_at, j.scheduled_at) < timezone('UTC', now()) - %(orphan_after)s
           ELSE p.beat_at < timezone('UTC', now()) - %(stale_after)s END
GROUP BY 1, 2, j.queue
ORDER BY 1 DESC, min(coalesce(j.attempted_at, j.scheduled_at)), 2, j.queue
LIMIT 50
"""
# The same without powertools_producers (a database only Oban has written): time-based only.
ORPHANED_JOBS_BY_TIME: Final = """
SELECT 'unknown' AS kind, coalesce(j.attempted_by[2], '') AS producer,
       max(coalesce(j.attempted_by[1], '')) AS node, j.queue, count(*) AS jobs,
       min(coalesce(j.attempted_at, j.scheduled_at)) AS oldest, NULL::timestamp AS beat_at,
       (array_agg(j.id ORDER BY j.id))[1:5] AS ids
FROM {prefix}.oban_jobs j
WHERE j.state = 'executing'
  AND coalesce(j.attempted_at, j.scheduled_at) < timezone('UTC', now()) - %(orphan_after)s
GROUP BY 2, j.queue
ORDER BY min(coalesce(j.attempted_at, j.scheduled_at)), 2, j.queue
LIMIT 50
"""
STALE_PRODUCERS: Final = """
SELECT p.uuid::text, p.node, p.queue, p.pid, p.beat_at,
       (SELECT count(*) FROM {prefix}.oban_jobs j
        WHERE j.state = 'executing' AND j.attempted_by[2] = p.uuid::text) AS executing
FROM {prefix}.powertools_producers p
WHERE p.beat_at < timezone('UTC', now()) - %(stale_after)s
ORDER BY p.beat_at, p.uuid
LIMIT 51
"""
LIVE_PRODUCERS_BY_QUEUE: Final = """
SELECT p.queue, count(*) FILTER (WHERE NOT p.paused) AS running, count(*) AS total
FROM {prefix}.powertools_producers p
WHERE p.beat_at >= timezone('UTC', now()) - %(stale_after)s
GROUP BY p.queue
"""

# -- backlog ----------------------------------------------------------------------------------
# A loose index scan: hop from one (queue, priority) pair of available jobs to the next, then
# probe each pair's oldest job; every step is one index descent (fetch index or Oban's).
BACKLOG_OLDEST: Final = """
WITH RECURSIVE pairs AS (
    (SELECT j.queue, j.priority, 1 AS depth
     FROM {prefix}.oban_jobs j
     WHERE j.state = 'available'
     ORDER BY j.queue, j.priority
     LIMIT 1)
    UNION ALL
    SELECT nxt.queue, nxt.priority, p.depth + 1
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT j.queue, j.priority
        FROM {prefix}.oban_jobs j
        WHERE j.state = 'available' AND (j.queue, j.priority) > (p.queue, p.priority)
        ORDER BY j.queue, j.priority
        LIMIT 1
    ) AS nxt
    WHERE p.depth < %(max_pairs)s
)
SELECT p.queue, o.id, o.scheduled_at, timezone('UTC', now()) - o.scheduled_at AS waited
FROM pairs p
CROSS JOIN LATERAL (
    SELECT j.id, j.scheduled_at
    FROM {prefix}.oban_jobs j
    WHERE j.state = 'available' AND j.queue = p.queue AND j.priority = p.priority
    ORDER BY j.scheduled_at, j.id
    LIMIT 1
) AS o
WHERE o.scheduled_at < timezone('UTC', now()) - %(threshold)s
ORDER BY p.queue, o.scheduled_at, o.id
"""

# -- vacuum -----------------------------------------------------------------------------------
TABLE_STATS: Final = """
SELECT s.relname, s.n_live_tup, s.n_dead_tup,
       greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuumed,
       now() - greatest(s.last_vacuum, s.last_autovacuum) AS since_vacuum,
       coalesce(c.reloptions, '{}') AS reloptions
FROM pg_catalog.pg_stat_user_tables s
JOIN pg_catalog.pg_class c ON c.oid = s.relid
WHERE s.schemaname = %(schema)s AND s.relname = ANY(%(tables)s)
ORDER BY s.relname
"""
AUTOVACUUM_SETTINGS: Final = """
SELECT current_setting('autovacuum'), current_setting('track_counts')
"""

# -- transactions -----------------------------------------------------------------------------
# Sessions of this database whose transaction is older than the threshold and that hold back
# vacuum (an xid or a snapshot) or hold a lock on one of our tables; ``blocks_writers`` when
# that lock conflicts with INSERT/UPDATE (the fetch and the ack).
LONG_TRANSACTIONS: Final = """
SELECT a.pid, a.usename, a.application_name, a.state, now() - a.xact_start AS age,
       (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL) AS holds_horizon,
       EXISTS (
           SELECT 1 FROM pg_catalog.pg_locks l
           JOIN pg_catalog.pg_class c ON c.oid = l.relation
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE l.pid = a.pid AND l.granted AND n.nspname = %(schema)s
             AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                            'AccessExclusiveLock')
       ) AS blocks_writers,
       EXISTS (
           SELECT 1 FROM pg_catalog.pg_locks l
           JOIN pg_catalog.pg_class c ON c.oid = l.relation
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE l.pid = a.pid AND l.granted AND n.nspname = %(schema)s
       ) AS touches_schema
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND a.xact_start < now() - %(threshold)s
ORDER BY a.xact_start, a.pid
LIMIT 50
"""
# Sessions whose details this role may not see (no pg_read_all_stats, another role's session).
HIDDEN_SESSIONS: Final = """
SELECT count(*)
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND a.backend_type IS NULL  -- hidden along with the rest of another role's session
  AND NOT pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
  AND NOT pg_catalog.pg_has_role(a.usesysid, 'USAGE')
"""
OLD_PREPARED: Final = """
SELECT gid, owner, now() - prepared AS age
FROM pg_catalog.pg_prepared_xacts
WHERE database = current_database() AND prepared < now() - %(threshold)s
ORDER BY prepared
"""

# -- archive ----------------------------------------------------------------------------------
# Terminal jobs past the retention, through the (state, <ts>) index of each state; ``{ts}`` is
# the state's terminal timestamp column, put in with quote_ident.
OVERDUE_TERMINAL: Final = """
SELECT (
    SELECT count(*) FROM (
        SELECT 1 FROM {prefix}.oban_jobs j
        WHERE j.state = %(state)s::{prefix}.oban_job_state AND j.{ts} < %(cutoff)s
        LIMIT %(cap)s
    ) AS capped
) AS overdue, oldest.ts, timezone('UTC', now()) - oldest.ts AS age
FROM (
    SELECT min(j.{ts}) AS ts FROM {prefix}.oban_jobs j
    WHERE j.state = %(state)s::{prefix}.oban_job_state AND j.{ts} < %(cutoff)s
) AS oldest
"""
