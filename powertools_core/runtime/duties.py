"""The contract for cluster-wide periodic work run by the elected leader.

Stager, lifeline, cron, archive retention and the workflow reconciler are all duties: the leader
calls ``run_once`` every ``interval`` seconds while it holds leadership, each call in its own
short transaction(s), so a duty is idempotent and safe to interrupt at any point. Capabilities
add duties without touching the leader loop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import psycopg


@runtime_checkable
class LeaderDuty(Protocol):
    name: str
    interval: float
    """Seconds between runs (the leader may run it sooner when woken)."""

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        """Do one bounded unit of work; return how many rows it acted on (for telemetry)."""
        ...
