"""The leader's retention duty: apply ``[tool.powertools.archive]`` periodically.

It calls the same ``archive_jobs``/``archive_audit`` as ``powertools archive run``, with actor
``system``, at most ``max_rows_per_tick`` rows per call (the next tick continues), and records
nothing when nothing is old enough.

    [tool.powertools.archive]
    retention = { completed = "1d", cancelled = "7d", discarded = "30d" }
    audit_retention = "365d"     # optional: also move old audit events to the audit archive
    interval = "10m"
    batch_size = 10000
    max_rows_per_tick = 100000
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from powertools_core.archive.policy import ArchiveConfig, parse_archive_config
from powertools_core.archive.run import (
    SYSTEM_ACTOR,
    ArchiveRequest,
    AuditArchiveRequest,
    archive_audit,
    archive_jobs,
)
from powertools_core.config import Settings

SYSTEM_REASON: Final = "retention policy applied by the leader"


class ArchiveDuty:
    """A ``runtime.duties.LeaderDuty`` (name, interval, ``run_once``)."""

    name = "archive"

    def __init__(self, config: ArchiveConfig | None = None) -> None:
        self.config = config or ArchiveConfig()
        self.interval = self.config.interval.total_seconds()

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveDuty | None:
        """The duty for these settings, or ``None`` when ``enabled = false``."""
        config = parse_archive_config(settings.archive)
        return cls(config) if config.enabled else None

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        """Archive what the policy says is old enough; returns the rows moved."""
        moved = 0
        jobs = await archive_jobs(
            conn,
            prefix,
            ArchiveRequest(
                retention=self.config.retention,
                batch_size=self.config.batch_size,
                max_rows=self.config.max_rows_per_tick,
                source="duty",
            ),
            actor=SYSTEM_ACTOR,
            reason=SYSTEM_REASON,
            now=now,
            count_first=False,
            skip_empty=True,
        )
        moved += jobs.moved if jobs else 0
        if self.config.audit_retention is not None:
            events = await archive_audit(
                conn,
                prefix,
                AuditArchiveRequest(
                    older_than=self.config.audit_retention,
                    batch_size=self.config.batch_size,
                    max_rows=self.config.max_rows_per_tick,
                    source="duty",
                ),
                actor=SYSTEM_ACTOR,
                reason=SYSTEM_REASON,
                now=now,
                count_first=False,
                skip_empty=True,
            )
            moved += events.moved if events else 0
        return moved
