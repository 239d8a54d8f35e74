"""The leader's retention duty: apply ``[tool.powertools.archive]`` periodically.

It calls the same ``archive_jobs``/``archive_audit`` as ``powertools archive run``, with actor
``system``, at most ``max_rows_per_tick`` rows per call, and records nothing when nothing is old
enough. A call that hit the cap leaves a backlog, so the next one comes after ``BACKLOG_INTERVAL``
instead of ``interval`` (the leader's other duties run in between).

    [tool.powertools.archive]
    retention = { completed = "1d", cancelled = "7d", discarded = "30d" }
    audit_retention = "365d"     # optional: also move old audit events to the audit archive
    interval = "10m"
    batch_size = 10000
    max_rows_per_tick = 100000
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg

from powertools_core.archive.policy import ArchiveConfig, parse_archive_config
from powertools_core.archive.results import ArchiveRunResult
from powertools_core.archive.run import (
    SYSTEM_ACTOR,
    ArchiveRequest,
    AuditArchiveRequest,
    archive_audit,
    archive_jobs,
)
from powertools_core.config import Settings
from powertools_core.runtime.duties import LeaderDuty

if TYPE_CHECKING:
    from powertools_core.runtime.leader import DutyContext

SYSTEM_REASON: Final = "retention policy applied by the leader"
BACKLOG_INTERVAL: Final = 1.0


class ArchiveDuty:
    """A ``runtime.duties.LeaderDuty`` (name, interval, ``run_once``)."""

    name = "archive"

    def __init__(self, config: ArchiveConfig | None = None) -> None:
        self.config = config or ArchiveConfig()
        self.interval = self.config.interval.total_seconds()
        self.runs: list[ArchiveRunResult] = []
        """The runs of the last call (jobs and/or audit events; empty when nothing was due)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveDuty | None:
        """The duty for these settings, or ``None`` when ``enabled = false``."""
        config = parse_archive_config(settings.archive)
        return cls(config) if config.enabled else None

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        """Archive what the policy says is old enough; returns the rows moved."""
        self.runs = []
        moved = 0
        backlog = False
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
        if jobs is not None:
            self.runs.append(jobs)
            moved += jobs.moved
            backlog = jobs.moved >= self.config.max_rows_per_tick
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
            if events is not None:
                self.runs.append(events)
                moved += events.moved
                backlog = backlog or events.moved >= self.config.max_rows_per_tick
        base = self.config.interval.total_seconds()
        self.interval = min(base, BACKLOG_INTERVAL) if backlog else base
        return moved


def leader_duties(ctx: DutyContext) -> list[LeaderDuty]:
    """Discovered through ``runtime.leader.DUTY_MODULES``: the retention duty, configured by the
    worker's ``[tool.powertools.archive]`` (defaults when there is none; none when
    ``enabled = false``). A bad table raises, and the leader logs it and skips the duty."""
    if ctx.settings is None:
        return [ArchiveDuty()]
    duty = ArchiveDuty.from_settings(ctx.settings)
    return [duty] if duty is not None else []
