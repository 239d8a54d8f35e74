"""Workflow SQL: insert a DAG, promote or cascade dependents, reconcile, read a graph.

Promotion is race-free under READ COMMITTED: the suspended dependents are first locked in id
order (``FOR UPDATE``), and only then does a *new* statement (a fresh snapshot) read their
dependencies' states. Two transactions finishing two deps of one fan-in step serialise on that
lock, so the second one always sees the first one's commit; the conditional ``UPDATE … WHERE
state = 'suspended'`` makes a repeated pass a no-op. A dependent whose only dependency just
finished cannot race anyone (the finishing transaction holds that dependency's row) and is
decided without the lock (see ``LOCK_DEPENDENTS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import Any, Final

import psycopg

from powertools_core.db.arrays import int_array
from powertools_core.db.identifiers import qualify
from powertools_core.jobs.notify import NOTIFY_QUEUES, insert_channel
from powertools_core.workflows.values import encode

INSERT_WORKFLOW: Final = """
INSERT INTO {prefix}.powertools_workflows (name, kind) VALUES (%(name)s, %(kind)s) RETURNING id
"""

INSERT_STEPS: Final = """
INSERT INTO {prefix}.powertools_workflow_steps (workflow_id, name, job_id, added_by, run_if)
SELECT %(workflow_id)s, u.name, u.job_id, u.added_by, u.run_if
FROM unnest(%(names)s::text[], %(job_ids)s::bigint[], %(added_by)s::text[], %(run_if)s::text[])
    AS u(name, job_id, added_by, run_if)
"""

INSERT_EDGES: Final = """
INSERT INTO {prefix}.powertools_workflow_edges (workflow_id, step, dep, on_failure, kind)
SELECT %(workflow_id)s, u.step, u.dep, u.policy, u.kind
FROM unnest(%(steps)s::text[], %(deps)s::text[], %(policies)s::text[], %(kinds)s::text[])
    AS u(step, dep, policy, kind)
"""

# The dependents of finished jobs, as (id, sole, clear). A dependent with other deps is locked,
# in id order, if it is still suspended (the serialisation point: two transactions finishing
# two deps of one fan-in step take turns, so the later one sees the earlier one's commit). A
# *sole* dependent (its only dep is one of the finished jobs) is not locked: nobody else can end
# that dep, whose row this transaction holds, so it goes straight to a settling UPDATE whose
# ``WHERE state = 'suspended'`` is re-checked on the latest row version (a concurrent cancel or
# reconciler pass wins or loses cleanly). *clear*: that only dep completed and the step is not
# conditional (``run_if``), so the verdict is known without reading anything more: it moves on
# (``PROMOTE_CLEAR``). A wide fan-out (one root, 10,000 children) thus costs one update per
# child instead of a row lock, a verdict probe and then the update.
# Driven by the finished jobs: their dependents are collected through the edges, then looked
# up by primary key; a fan-in step named by many of them is listed once per finished dep (the
# lock takes it once). Whether a finished job completed is read only for those that may have
# failed (``failed``: the acker knows the others completed). ``state::text`` keeps the planner
# off the state indexes (a generic plan would otherwise walk every suspended job in the table
# on each flush).
LOCK_DEPENDENTS: Final = """
WITH finished AS MATERIALIZED (
    SELECT d.workflow_id, d.name,
           CASE WHEN d.job_id = ANY(%(failed)s::bigint[])
                THEN (SELECT dj.state::text = 'completed' FROM {prefix}.oban_jobs dj
                      WHERE dj.id = d.job_id)
                ELSE true END AS completed
    FROM {prefix}.powertools_workflow_steps d
    WHERE d.job_id = ANY(%(ids)s::bigint[])
), dependents AS MATERIALIZED (
    SELECT s.job_id, f.completed AND s.run_if IS NULL AS clear,
           NOT EXISTS (
               SELECT 1 FROM {prefix}.powertools_workflow_edges o
               WHERE o.workflow_id = e.workflow_id AND o.step = e.step AND o.dep <> e.dep
           ) AS sole
    FROM finished f
    JOIN {prefix}.powertools_workflow_edges e
      ON e.workflow_id = f.workflow_id AND e.dep = f.name
    JOIN {prefix}.powertools_workflow_steps s
      ON s.workflow_id = e.workflow_id AND s.name = e.step
), locked AS MATERIALIZED (
    SELECT j.id
    FROM {prefix}.oban_jobs j
    WHERE j.id = ANY(ARRAY(SELECT job_id FROM dependents WHERE NOT sole))
      AND j.state::text = 'suspended'
    ORDER BY j.id
    FOR UPDATE OF j
)
SELECT id, false, false FROM locked
UNION ALL
SELECT job_id, true, clear FROM dependents WHERE sole
"""

# Sole dependents whose only dep completed (``clear`` above): no dependency can cancel them, so
# they move on without the verdict's reads (SETTLE's edges, dep steps and dep jobs). The same
# re-checks as SETTLE: still suspended (on the latest row version, so a concurrent workflow
# cancel that got there first wins), not parked on a signal.
PROMOTE_CLEAR: Final = """
UPDATE {prefix}.oban_jobs j
SET state = (CASE WHEN j.scheduled_at > timezone('UTC', now()) THEN 'scheduled'
                  ELSE 'available' END)::{prefix}.oban_job_state
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.state::text = 'suspended'
  AND (j.meta -> 'durable' -> 'await') IS NULL
RETURNING j.id, j.state::text, j.queue
"""

# Of the locked dependents, the ones promotion can change now: a dependency that just ended
# failed on a cascade edge, or no dependency is still live. A wide fan-in (a batch callback,
# a join over many steps) is thus not re-aggregated over all its deps on every ack:
# - the failures are looked up among the just-finished jobs that may have failed only
#   (``failed``: the acker passes the ones it wrote as discarded or cancelled, usually none;
#   each is checked by primary key, first);
# - the live check walks the step's edges backwards in name order (the edge primary key, no
#   sort) and stops at the first live dep. Names given in creation order (c0 .. c9999, or
#   zero-padded) put a job that is still waiting first, so each flush costs a few index
#   probes, not one per dep; any other order costs at most one probe per dep, as before.
# The full verdict (SETTLE) runs once the step is due. An earlier failure whose promotion was
# lost is still caught, by SETTLE when the step is ready or by the reconciler at once.
DUE: Final = """
WITH failed AS MATERIALIZED (
    SELECT fs.workflow_id, fs.name
    FROM {prefix}.oban_jobs fj
    JOIN {prefix}.powertools_workflow_steps fs ON fs.job_id = fj.id
    WHERE fj.id = ANY(%(failed)s::bigint[])
      AND fj.state::text IN ('discarded', 'cancelled')
)
SELECT s.job_id
FROM {prefix}.powertools_workflow_steps s
WHERE s.job_id = ANY(%(ids)s::bigint[])
  AND (EXISTS (
           SELECT 1
           FROM failed f
           JOIN {prefix}.powertools_workflow_edges e
             ON e.workflow_id = f.workflow_id AND e.step = s.name AND e.dep = f.name
           WHERE f.workflow_id = s.workflow_id AND e.on_failure = 'cascade')
       OR (SELECT 1
           FROM {prefix}.powertools_workflow_edges e
           JOIN {prefix}.powertools_workflow_steps ds
             ON ds.workflow_id = e.workflow_id AND ds.name = e.dep
           JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
           WHERE e.workflow_id = s.workflow_id AND e.step = s.name
             AND dj.state::text NOT IN ('completed', 'discarded', 'cancelled')
           ORDER BY e.dep DESC
           LIMIT 1) IS NULL)
"""

# Suspended steps whose deps allow a decision now: all ended, or one failed on a cascade edge
# (the reconciler's query). The "all ended" test looks for a live dep newest job first (see DUE).
LOCK_STRANDED: Final = """
SELECT j.id
FROM {prefix}.oban_jobs j
JOIN {prefix}.powertools_workflow_steps s ON s.job_id = j.id
WHERE j.state = 'suspended'
  AND (j.meta -> 'durable' -> 'await') IS NULL
  AND ((SELECT ds.job_id
        FROM {prefix}.powertools_workflow_steps ds
        JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
        JOIN {prefix}.powertools_workflow_edges e
          ON e.workflow_id = ds.workflow_id AND e.dep = ds.name AND e.step = s.name
        WHERE ds.workflow_id = s.workflow_id
          AND dj.state NOT IN ('completed', 'discarded', 'cancelled')
        ORDER BY ds.job_id DESC
        LIMIT 1) IS NULL
       OR EXISTS (
           SELECT 1
           FROM {prefix}.powertools_workflow_edges e
           JOIN {prefix}.powertools_workflow_steps ds
             ON ds.workflow_id = e.workflow_id AND ds.name = e.dep
           JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
           WHERE e.workflow_id = s.workflow_id AND e.step = s.name
             AND e.on_failure = 'cascade' AND dj.state IN ('discarded', 'cancelled')))
ORDER BY j.id
LIMIT %(limit)s
FOR UPDATE OF j SKIP LOCKED
"""

# Decide for locked suspended steps (see graph.decide): a cascade edge from a failed dep
# cancels, all deps terminal promotes (or, for run_if any_discarded without a discarded dep,
# cancels as not needed), anything else waits. A durable step parked on a signal
# is not a waiting dependent (only its signal or timeout wakes it). Returns (id, state, queue).
# ``state::text``: statistics taken while nothing was suspended made the planner drive the
# update from the state index (1 row estimated) and rescan the verdict once per suspended job,
# quadratic in a wide fan-out (10,000 children: ~45 s); the verdict now drives, by primary key.
SETTLE: Final = """
WITH verdict AS (
    SELECT s.job_id,
           bool_or(dj.state IN ('discarded', 'cancelled') AND e.on_failure = 'cascade')
               AS cancel,
           bool_and(dj.state IN ('completed', 'discarded', 'cancelled')) AS ready,
           coalesce(s.run_if = 'any_discarded' AND NOT bool_or(dj.state = 'discarded'), false)
               AS not_needed,
           min(e.dep) FILTER (
               WHERE dj.state IN ('discarded', 'cancelled') AND e.on_failure = 'cascade')
               AS culprit
    FROM {prefix}.powertools_workflow_steps s
    JOIN {prefix}.powertools_workflow_edges e
      ON e.workflow_id = s.workflow_id AND e.step = s.name
    JOIN {prefix}.powertools_workflow_steps ds
      ON ds.workflow_id = e.workflow_id AND ds.name = e.dep
    JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
    WHERE s.job_id = ANY(%(ids)s::bigint[])
    GROUP BY s.job_id, s.run_if
), decided AS (
    SELECT job_id, culprit, cancel, ready,
           cancel OR (ready AND not_needed) AS ends
    FROM verdict
)
UPDATE {prefix}.oban_jobs j
SET state = (CASE
        WHEN v.ends THEN 'cancelled'
        WHEN j.scheduled_at > timezone('UTC', now()) THEN 'scheduled'
        ELSE 'available' END)::{prefix}.oban_job_state,
    cancelled_at = CASE WHEN v.ends THEN timezone('UTC', now()) ELSE j.cancelled_at END,
    errors = CASE
        WHEN v.cancel THEN array_append(j.errors, jsonb_build_object(
            'at', timezone('UTC', now()), 'attempt', j.attempt,
            'error', 'cancelled_by_dependency: ' || v.culprit))
        WHEN v.ends THEN array_append(j.errors, jsonb_build_object(
            'at', timezone('UTC', now()), 'attempt', j.attempt,
            'error', 'not_needed: no dependency was discarded (run_if any_discarded)'))
        ELSE j.errors END
FROM decided v
WHERE j.id = v.job_id AND j.state::text = 'suspended' AND (v.cancel OR v.ready)
  AND (j.meta -> 'durable' -> 'await') IS NULL
RETURNING j.id, j.state::text, j.queue
"""

RECORD_RESULT: Final = """
UPDATE {prefix}.powertools_workflow_steps
SET result = %(result)s::jsonb, result_at = timezone('UTC', now())
WHERE job_id = %(job_id)s
RETURNING workflow_id
"""

READ_RESULT: Final = """
SELECT s.result, s.result_at IS NOT NULL
FROM {prefix}.powertools_workflow_steps me
JOIN {prefix}.powertools_workflow_steps s
  ON s.workflow_id = me.workflow_id AND s.name = %(step)s
WHERE me.job_id = %(job_id)s
"""


def _q(template: str, prefix: str) -> str:
    return qualify(template, prefix)


def own_tx(conn: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
    """A transaction on an autocommit connection; none otherwise (the caller's transaction,
    which the caller commits or rolls back, holds every statement)."""
    return conn.transaction() if conn.autocommit else nullcontext()


def own_tx_async(conn: psycopg.AsyncConnection[Any]) -> AbstractAsyncContextManager[Any]:
    return conn.transaction() if conn.autocommit else nullcontext()


def promote(conn: psycopg.Connection[Any], prefix: str, finished_job_ids: Sequence[int]) -> int:
    """Move dependents of finished jobs on: promote, cascade-cancel (transitively) or leave.

    Call it in the transaction that recorded the outcomes. Idempotent; returns the number of
    steps whose state changed.
    """
    changed = 0
    frontier = list(finished_job_ids)
    with own_tx(conn):
        while frontier:
            ids = int_array(frontier)
            found = conn.execute(
                _q(LOCK_DEPENDENTS, prefix), {"ids": ids, "failed": ids}
            ).fetchall()
            locked, due, clear = _split(found)
            if clear:
                changed += len(
                    conn.execute(_q(PROMOTE_CLEAR, prefix), {"ids": int_array(clear)}).fetchall()
                )
            if locked:
                params = {"ids": int_array(locked), "failed": ids}
                due += [r[0] for r in conn.execute(_q(DUE, prefix), params)]
            if not due:
                break
            rows = conn.execute(_q(SETTLE, prefix), {"ids": int_array(due)}).fetchall()
            changed += len(rows)
            frontier = [r[0] for r in rows if r[1] == "cancelled"]
    return changed


def _split(found: Sequence[Any]) -> tuple[list[int], list[int], list[int]]:
    """LOCK_DEPENDENTS rows as (locked, sole to settle, sole and clear to promote)."""
    locked: list[int] = []
    due: list[int] = []
    clear: list[int] = []
    for job_id, sole, is_clear in found:
        (clear if is_clear else due if sole else locked).append(job_id)
    return locked, due, clear


def reconcile(conn: psycopg.Connection[Any], prefix: str, limit: int = 1000) -> int:
    """Repair missed promotions: suspended steps whose deps all ended (one bounded pass)."""
    with own_tx(conn):
        locked = [r[0] for r in conn.execute(_q(LOCK_STRANDED, prefix), {"limit": limit})]
        if not locked:
            return 0
        rows = conn.execute(_q(SETTLE, prefix), {"ids": locked}).fetchall()
        cancelled = [r[0] for r in rows if r[1] == "cancelled"]
    return len(rows) + (promote(conn, prefix, cancelled) if cancelled else 0)


async def promote_async(
    conn: psycopg.AsyncConnection[Any], prefix: str, finished_job_ids: Sequence[int]
) -> int:
    """Async twin of :func:`promote` (the runtime's ack connection)."""
    return len(await promote_rows_async(conn, prefix, finished_job_ids))


async def promote_rows_async(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    finished_job_ids: Sequence[int],
    *,
    failed: Sequence[int] | None = None,
) -> list[tuple[int, str, str]]:
    """:func:`promote_async` returning each changed step as (id, new state, queue).

    ``failed``: the finished jobs that may have been discarded or cancelled (the caller knows
    the others completed); None when the caller does not know (every one is checked).
    """
    changed: list[tuple[int, str, str]] = []
    frontier = list(finished_job_ids)
    candidates = frontier if failed is None else list(failed)
    async with own_tx_async(conn):
        while frontier:
            params = {"ids": int_array(frontier), "failed": int_array(candidates)}
            cur = await conn.execute(_q(LOCK_DEPENDENTS, prefix), params, prepare=True)
            locked, due, clear = _split(await cur.fetchall())
            if clear:
                cur = await conn.execute(
                    _q(PROMOTE_CLEAR, prefix), {"ids": int_array(clear)}, prepare=True
                )
                changed.extend((r[0], r[1], r[2]) for r in await cur.fetchall())
            if locked:
                params["ids"] = int_array(locked)
                cur = await conn.execute(_q(DUE, prefix), params, prepare=True)
                due += [r[0] for r in await cur.fetchall()]
            if not due:
                break
            cur = await conn.execute(_q(SETTLE, prefix), {"ids": int_array(due)}, prepare=True)
            rows = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
            changed.extend(rows)
            frontier = [r[0] for r in rows if r[1] == "cancelled"]
            candidates = frontier
    return changed


async def settle_rows_async(
    conn: psycopg.AsyncConnection[Any], prefix: str, job_ids: Sequence[int]
) -> list[tuple[int, str, str]]:
    """Decide suspended steps the caller just inserted (and holds): promote, cascade, or wait."""
    cur = await conn.execute(_q(SETTLE, prefix), {"ids": int_array(job_ids)}, prepare=True)
    rows = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
    cancelled = [r[0] for r in rows if r[1] == "cancelled"]
    if cancelled:
        rows.extend(await promote_rows_async(conn, prefix, cancelled))
    return rows


async def reconcile_async(
    conn: psycopg.AsyncConnection[Any], prefix: str, limit: int = 1000
) -> int:
    """Async twin of :func:`reconcile` (the leader duty); wakes the queues it made runnable."""
    async with own_tx_async(conn):
        cur = await conn.execute(_q(LOCK_STRANDED, prefix), {"limit": limit})
        locked = [r[0] for r in await cur.fetchall()]
        if not locked:
            return 0
        cur = await conn.execute(_q(SETTLE, prefix), {"ids": locked})
        rows = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
        cancelled = [r[0] for r in rows if r[1] == "cancelled"]
        if cancelled:
            rows.extend(await promote_rows_async(conn, prefix, cancelled))
        queues = sorted({q for _, state, q in rows if state == "available"})
        if queues:
            await conn.execute(NOTIFY_QUEUES, (insert_channel(prefix), queues))
    return len(rows)


def record_result(conn: psycopg.Connection[Any], prefix: str, job_id: int, value: Any) -> bool:
    """Store a step's JSON result; False when the job is not a workflow step."""
    text = encode(value, f"the result of job {job_id}")
    row = conn.execute(_q(RECORD_RESULT, prefix), {"result": text, "job_id": job_id}).fetchone()
    return row is not None


def read_result(
    conn: psycopg.Connection[Any], prefix: str, job_id: int, step: str
) -> tuple[bool, Any]:
    """(found, value) of ``step``'s result in the workflow of ``job_id``."""
    row = conn.execute(_q(READ_RESULT, prefix), {"job_id": job_id, "step": step}).fetchone()
    if row is None or not row[1]:
        return False, None
    return True, row[0]
