"""The workflow reconciler, found by the leader through ``runtime.leader.DUTY_MODULES``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from powertools_core.runtime.duties import LeaderDuty
from powertools_core.runtime.leader import DutyContext
from powertools_core.workflows.store import reconcile_async

BATCH: Final = 1000


class WorkflowReconciler:
    """Promotes or cascades suspended steps whose dependencies have all ended, in case the
    promotion that should have followed their ack was lost (a crash between the two)."""

    name = "workflow_reconciler"
    interval = 1.0

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        return await reconcile_async(conn, prefix, BATCH)


def leader_duties(ctx: DutyContext) -> list[LeaderDuty]:
    return [WorkflowReconciler()]
