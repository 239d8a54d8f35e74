"""What the acker writes for workflow steps and durable jobs, inside the flush transaction.

Plain jobs never come here: their outcomes go out through the one autocommit ``ACK`` statement.
A flush that holds at least one ``Ack`` with ``effects`` runs as one transaction instead:

1. ``ACK_EFFECTS``: the fenced job update plus ``meta.durable`` and, in the same statement, the
   step results (a result is written only when its ack matched, never by a stale ack);
2. the signals the attempts received are consumed;
3. steps added at run time are inserted and fan-in edges materialised (``fanout``; its
   ``check`` runs before step 1 and may turn an attempt into a failure);
4. parked jobs re-check for a signal that arrived before they parked (a new statement, so a
   fresh snapshot: see ``signals`` for why no wake-up is lost);
5. dependents are promoted (under a savepoint: if promotion fails, the acks and results still
   commit and the leader's reconciler repairs the promotion);
6. the queues of jobs that became ``available`` are notified (delivered at commit).

Dependents are therefore promoted in the transaction that records their dependencies'
completion and results, and can never run before the results they read are committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from powertools_core.db.arrays import bool_array, float_array, int_array, text_array
from powertools_core.db.identifiers import qualify
from powertools_core.jobs.notify import NOTIFY_QUEUES, insert_channel
from powertools_core.runtime.outcomes import Ack
from powertools_core.workflows import fanout, store

log = logging.getLogger("powertools.workflows")

TERMINAL: Final = frozenset({"completed", "discarded", "cancelled"})

# The acks drive the update, each row found by primary key. ``state::text`` keeps the planner
# off the state indexes: statistics taken while nothing was executing estimate one executing
# row, and the plan then walked every executing job and, for each, rescanned the whole batch
# (quadratic: 2,000 acks against 4,200 executing jobs took 2.4 s instead of 30 ms).
ACK_EFFECTS: Final = """
WITH acked AS (
    UPDATE {prefix}.oban_jobs j
    SET state = u.state::{prefix}.oban_job_state,
        completed_at = CASE WHEN u.state = 'completed' THEN timezone('UTC', now())
                            ELSE j.completed_at END,
        cancelled_at = CASE WHEN u.state = 'cancelled' THEN timezone('UTC', now())
                            ELSE j.cancelled_at END,
        discarded_at = CASE WHEN u.state = 'discarded' THEN timezone('UTC', now())
                            ELSE j.discarded_at END,
        scheduled_at = CASE WHEN u.delay IS NOT NULL
                            THEN timezone('UTC', now()) + make_interval(secs => u.delay)
                            ELSE j.scheduled_at END,
        max_attempts = j.max_attempts + u.bump,
        errors = CASE WHEN u.error IS NULL THEN j.errors
                      ELSE array_append(j.errors, u.error::jsonb) END,
        meta = CASE WHEN u.durable IS NULL THEN j.meta
                    ELSE jsonb_set(j.meta, '{durable}', u.durable::jsonb) END
    FROM unnest(
        %(ids)s::bigint[], %(attempts)s::integer[], %(producers)s::text[], %(states)s::text[],
        %(delays)s::float8[], %(bumps)s::integer[], %(errors)s::text[], %(durables)s::text[],
        %(results)s::text[], %(records)s::boolean[]
    ) AS u(id, attempt, producer, state, delay, bump, error, durable, result, record)
    WHERE j.id = u.id
      AND j.state::text = 'executing'
      AND j.attempt = u.attempt
      AND j.attempted_by[2] = u.producer
    RETURNING j.id, j.queue, j.state::text AS state, u.result, u.record
), recorded AS (
    UPDATE {prefix}.powertools_workflow_steps s
    SET result = a.result::jsonb, result_at = timezone('UTC', now())
    FROM acked a
    WHERE s.job_id = a.id AND a.record
)
SELECT id, queue, state FROM acked
"""

CONSUME_SIGNALS: Final = """
UPDATE {prefix}.powertools_signals
SET consumed_at = timezone('UTC', now())
WHERE id = ANY(%(ids)s::bigint[]) AND consumed_at IS NULL
"""

# Parked jobs that already have a matching signal go straight back to available. A separate
# statement (a snapshot taken after the park's row lock is held): a sender that committed
# before it is seen here; one that commits later waits on the row lock and then sees the park.
WAKE_PARKED: Final = """
UPDATE {prefix}.oban_jobs j
SET state = 'available', scheduled_at = timezone('UTC', now())
WHERE j.id = ANY(%(ids)s::bigint[])
  AND j.state = 'suspended'
  AND EXISTS (
      SELECT 1 FROM {prefix}.powertools_signals s
      WHERE s.target = j.id::text AND s.consumed_at IS NULL
        AND s.name IN (
            SELECT jsonb_array_elements_text(j.meta -> 'durable' -> 'await' -> 'signals')))
RETURNING j.id, j.queue
"""


class EffectsWriteError(Exception):
    """Writing effects failed for a reason other than the database (a bug, a bad value)."""


@dataclass(slots=True)
class Written:
    """What one effects write did (for the acker's counters and the tests)."""

    committed: list[int] = field(default_factory=list)
    woken: list[int] = field(default_factory=list)
    promoted: int = 0
    added: int = 0
    refused: list[int] = field(default_factory=list)
    """Acks whose fan-out was refused (written as failed attempts instead)."""


def params(batch: Sequence[Ack]) -> dict[str, str]:
    """The parameters of ``ACK_EFFECTS``, as array literals (see ``db.arrays``)."""
    fxs = [a.effects for a in batch]
    return {
        "ids": int_array([a.id for a in batch]),
        "attempts": int_array([a.attempt for a in batch]),
        "producers": text_array([a.producer for a in batch]),
        "states": text_array([a.state for a in batch]),
        "delays": float_array([_delay(a) for a in batch]),
        "bumps": int_array([a.bump for a in batch]),
        "errors": text_array([a.error for a in batch]),
        "durables": text_array([fx.durable if fx else None for fx in fxs]),
        "results": text_array([fx.result if fx else None for fx in fxs]),
        "records": bool_array([bool(fx and fx.record) for fx in fxs]),
    }


def _delay(ack: Ack) -> float | None:
    """Seconds from now for ``scheduled_at``, or None to keep it."""
    if ack.state in ("scheduled", "retryable"):
        return ack.delay
    fx = ack.effects
    if fx is not None and fx.schedule is not None:
        return fx.schedule
    return None


async def write(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    batch: Sequence[Ack],
    *,
    also_promote: Sequence[int] = (),
) -> Written:
    """Write ``batch`` (acks with effects) in the caller's transaction; see the module doc.

    ``also_promote`` are workflow steps acked by the plain statement in the same transaction.
    """
    out = Written()
    queues: set[str] = set()
    batch = await fanout.check(conn, prefix, batch, out.refused)
    rows: list[Any] = []
    if batch:
        # Planned per flush (not prepared): a plan cached while oban_jobs was small stays
        # cached as it grows, and the batch sizes swing from 1 to 2,000 (see ACK_EFFECTS).
        cur = await conn.execute(qualify(ACK_EFFECTS, prefix), params(batch), prepare=False)
        rows = await cur.fetchall()
    matched = {r[0]: r for r in rows}
    out.committed = list(matched)
    by_id = {a.id: a for a in batch if a.id in matched}
    for _, queue, state in rows:
        if state == "available":
            queues.add(queue)
    consume = [
        a.effects.consume
        for a in by_id.values()
        if a.effects is not None and a.effects.consume is not None
    ]
    if consume:
        await conn.execute(qualify(CONSUME_SIGNALS, prefix), {"ids": consume}, prepare=True)
    added = await fanout.insert(
        conn,
        prefix,
        [a.effects.fanout for a in by_id.values() if a.effects and a.effects.fanout],
    )
    out.added = added.count
    queues.update(added.queues)
    # Steps that ended and may have added steps get their added_by fan-in edges (a plain
    # step that added nothing cannot be anyone's adder: no statement for it).
    targets = added.targets | {
        a.effects.step
        for a in by_id.values()
        if a.effects is not None
        and a.effects.step is not None
        and a.effects.may_have_added
        and matched[a.id][2] in TERMINAL
    }
    await fanout.materialize(conn, prefix, targets)
    parked = [
        a.id
        for a in by_id.values()
        if a.effects is not None and a.effects.park and matched[a.id][2] == "suspended"
    ]
    if parked:
        cur = await conn.execute(qualify(WAKE_PARKED, prefix), {"ids": parked}, prepare=True)
        for job_id, queue in await cur.fetchall():
            out.woken.append(job_id)
            queues.add(queue)
    ended = [
        a.id
        for a in by_id.values()
        if a.effects is not None and a.effects.step is not None and matched[a.id][2] in TERMINAL
    ]
    finished = [*also_promote, *ended]
    # Which finished steps may have failed (promotion looks for cascades among these only):
    # those acked by the plain statement, and those this statement wrote as failed.
    failed = [*also_promote, *(i for i in ended if matched[i][2] in ("discarded", "cancelled"))]
    if finished or added.suspended:
        out.promoted = await _promote_guarded(
            conn, prefix, finished, failed, added.suspended, queues
        )
    if queues:
        await conn.execute(NOTIFY_QUEUES, (insert_channel(prefix), sorted(queues)))
    return out


async def _promote_guarded(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    finished: list[int],
    failed: list[int],
    new_steps: list[int],
    queues: set[str],
) -> int:
    """Promote dependents of ``finished`` and decide ``new_steps`` (just added, with deps) under
    a savepoint: an error here must not take the acks down with it."""
    try:
        async with conn.transaction():
            rows = (
                await store.promote_rows_async(conn, prefix, finished, failed=failed)
                if finished
                else []
            )
            if new_steps:
                rows += await store.settle_rows_async(conn, prefix, new_steps)
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise
        log.warning(
            "workflows: promotion after ack of %d step(s) failed (%s); the reconciler repairs it",
            len(finished),
            exc,
        )
        return 0
    queues.update(q for _, state, q in rows if state == "available")
    return len(rows)
