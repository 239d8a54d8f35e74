"""The runtime's own leader duties: the stager and the lifeline (see ``duties.LeaderDuty``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from powertools_core import telemetry
from powertools_core.runtime import queries
from powertools_core.runtime.notifier import insert_channel


class Stager:
    """Due ``scheduled``/``retryable`` jobs become ``available``; their queues are notified."""

    name = "stager"

    def __init__(self, interval: float = 1.0, batch: int = 1000) -> None:
        self.interval = interval
        self.batch = batch

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        total = 0
        while True:
            async with conn.transaction():
                cur = await conn.execute(
                    queries.sql(queries.STAGE, prefix), {"limit": self.batch}, prepare=True
                )
                rows = await cur.fetchall()
                queues = [r[0] for r in rows]
                count = sum(int(r[1]) for r in rows)
                if queues:
                    await conn.execute(
                        queries.sql(queries.NOTIFY_QUEUES, prefix),
                        {"channel": insert_channel(prefix), "queues": queues},
                    )
            total += count
            if count and telemetry.enabled("stage"):
                telemetry.emit("stage", {"count": count}, {"prefix": prefix, "queues": queues})
            if count < self.batch:
                return total


class Lifeline:
    """Executing jobs of dead producers go back to ``available`` (or ``discarded`` when out of
    attempts), recorded in ``powertools_lifeline_incidents``; bounded batches, SKIP LOCKED."""

    name = "lifeline"

    def __init__(
        self,
        node: str,
        *,
        interval: float = 5.0,
        rescue_after: float = 30.0,
        orphan_after: float = 1800.0,
        batch: int = 1000,
    ) -> None:
        self.node = node
        self.interval = interval
        self.rescue_after = rescue_after
        self.orphan_after = orphan_after
        self.batch = batch

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        total = 0
        while True:
            params = {
                "rescue_after": self.rescue_after,
                "orphan_after": self.orphan_after,
                "limit": self.batch,
                "node": self.node,
            }
            async with conn.transaction():
                cur = await conn.execute(queries.sql(queries.RESCUE, prefix), params)
                rows = await cur.fetchall()
                count = sum(int(r[2]) for r in rows)
                discarded = sum(int(r[2]) for r in rows if r[0] == "discarded")
                queues = sorted({r[1] for r in rows if r[0] == "available"})
                if queues:
                    await conn.execute(
                        queries.sql(queries.NOTIFY_QUEUES, prefix),
                        {"channel": insert_channel(prefix), "queues": queues},
                    )
            total += count
            if count and telemetry.enabled("rescue"):
                telemetry.emit(
                    "rescue", {"count": count, "discarded": discarded}, {"prefix": prefix}
                )
            if count < self.batch:
                break
        older = max(self.orphan_after, 10 * self.rescue_after)
        await conn.execute(queries.sql(queries.PRUNE_PRODUCERS, prefix), {"older_than": older})
        return total
