"""Workflow leader duties, found by the leader through ``runtime.leader.DUTY_MODULES``.

- ``WorkflowReconciler`` promotes or cascades suspended steps whose dependencies have all ended,
  in case the promotion that rides the ack was lost (its savepoint failed, or the step ended by
  another path: the lifeline, an operator, another runtime).
- ``AwaitExpiry`` wakes parked durable jobs whose ``Await`` timeout has passed: they become
  ``available`` with ``meta.durable.await.expired = true``, so the resumed step sees
  ``job.durable.timed_out`` (``expired_wait``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.jobs.notify import NOTIFY_QUEUES, insert_channel
from powertools_core.runtime.duties import LeaderDuty
from powertools_core.runtime.leader import DutyContext
from powertools_core.workflows.store import reconcile_async

BATCH: Final = 1000

# Parked with a timeout and due (powertools_oban_jobs_await_deadline_index: scheduled_at is the
# deadline). A row a signal sender holds is skipped: it is being woken anyway.
EXPIRE_AWAITS: Final = """
WITH due AS (
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE state = 'suspended' AND (meta -> 'durable' -> 'await') ? 'timeout'
      AND scheduled_at <= timezone('UTC', now())
    ORDER BY scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}.oban_jobs j
SET state = 'available',
    scheduled_at = timezone('UTC', now()),
    meta = jsonb_set(j.meta, '{durable,await,expired}', 'true'::jsonb)
FROM due
WHERE j.id = due.id
RETURNING j.queue
"""


class WorkflowReconciler:
    """Repairs promotions a crash (or a failed savepoint) left undone."""

    name = "workflow_reconciler"
    interval = 1.0

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        return await reconcile_async(conn, prefix, BATCH)


class AwaitExpiry:
    """Wakes durable jobs whose wait timed out (one bounded, lock-skipping pass)."""

    name = "await_expiry"
    interval = 1.0

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        return await expire_awaits_async(conn, prefix, BATCH)


async def expire_awaits_async(
    conn: psycopg.AsyncConnection[Any], prefix: str, limit: int = BATCH
) -> int:
    async with conn.transaction():
        cur = await conn.execute(qualify(EXPIRE_AWAITS, prefix), {"limit": limit})
        queues = [r[0] for r in await cur.fetchall()]
        if queues:
            await conn.execute(NOTIFY_QUEUES, (insert_channel(prefix), sorted(set(queues))))
    return len(queues)


def leader_duties(ctx: DutyContext) -> list[LeaderDuty]:
    return [WorkflowReconciler(), AwaitExpiry()]
