"""The enqueue side's housekeeping, run by the elected leader (a ``LeaderDuty``).

Idempotency receipts that can no longer block an insert (expired, or their job is gone) are
deleted in bounded batches; rows an insert holds are skipped, so enqueue never waits on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.jobs.insert import PRUNE_RECEIPTS

if TYPE_CHECKING:
    from powertools_core.runtime.leader import DutyContext


class ReceiptsPruner:
    """``LeaderDuty``: delete dead idempotency receipts, at most ``limit`` per run."""

    name = "jobs.prune_receipts"

    def __init__(self, interval: float = 60.0, limit: int = 10_000) -> None:
        self.interval = interval
        self.limit = limit

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        cur = await conn.execute(qualify(PRUNE_RECEIPTS, prefix), [self.limit])
        return cur.rowcount


def leader_duties(ctx: DutyContext) -> Iterable[ReceiptsPruner]:
    """The enqueue side's duties for the runtime's discovery (``runtime.leader.DUTY_MODULES``)."""
    return [ReceiptsPruner()]
