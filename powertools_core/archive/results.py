"""The JSON contract of ``powertools archive``: one model per kind of answer.

Times are UTC (``...Z``). A dry run returns an ``ArchivePreview``; an execution returns an
``ArchiveRunResult`` whose ``run`` is the row recorded in ``powertools_archive_runs``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, field_validator

from powertools_core.results import CommandResult

RunKind = Literal["archive", "audit_archive", "restore", "prune", "audit_prune"]
RunStatus = Literal["running", "completed", "interrupted", "failed"]


def as_utc(value: datetime | None) -> datetime | None:
    """Database timestamps are naive UTC; results carry them as aware UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class _UtcModel(BaseModel):
    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return as_utc(value) if isinstance(value, datetime) else value


class Group(_UtcModel):
    """Rows per state and queue (jobs) or per action (audit events)."""

    state: str | None = None
    queue: str | None = None
    action: str | None = None
    count: int
    oldest: datetime | None = None


class RunRecord(_UtcModel):
    """One row of ``powertools_archive_runs``."""

    id: uuid.UUID
    kind: str
    status: str
    actor: str
    reason: str | None
    filter: dict[str, Any]
    counts: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None = None


class ArchivePreview(CommandResult):
    """``--dry-run``: what would move (or be deleted); nothing changed."""

    kind: RunKind
    dry_run: Literal[True] = True
    filter: dict[str, Any]
    total: int
    groups: list[Group]
    conflicts: list[int] = []
    conflict_count: int = 0
    not_found: list[int] = []


class ArchiveRunResult(CommandResult):
    """An executed archive, restore or prune run."""

    kind: RunKind
    dry_run: Literal[False] = False
    run: RunRecord
    moved: int
    groups: list[Group]
    chunks: int
    duration_ms: int
    rows_per_s: float
    conflicts: list[int] = []
    conflict_count: int = 0
    not_found: list[int] = []
    interrupted_runs: list[uuid.UUID] = []

    def exit_status(self) -> int:
        """0 done; 1 interrupted (run again to finish) or some ids refused/not found; 2 failed."""
        if self.run.status == "failed":
            return 2
        if self.run.status == "interrupted":
            return 1
        return 1 if self.conflict_count or self.not_found else 0


class ArchivedJob(_UtcModel):
    """An archived job: every ``oban_jobs`` column, plus when and by which run it was archived."""

    id: int
    state: str
    queue: str
    worker: str
    args: Any
    errors: list[Any]
    attempt: int
    max_attempts: int
    inserted_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None
    completed_at: datetime | None
    attempted_by: list[str] | None
    discarded_at: datetime | None
    priority: int
    tags: list[str] | None
    meta: Any
    cancelled_at: datetime | None
    archived_at: datetime
    archive_run_id: uuid.UUID | None


class ArchiveListResult(CommandResult):
    """``archive list``: archived jobs matching the filters, newest job (highest id) first.
    ``total`` counts matches up to 10,000; ``total_capped`` is true when there are more."""

    command: Literal["archive list"] = "archive list"
    filter: dict[str, Any]
    total: int
    total_capped: bool = False
    limit: int
    jobs: list[ArchivedJob]


class ArchiveRunsResult(CommandResult):
    """``archive runs``: recorded archive, restore and prune runs, newest first."""

    command: Literal["archive runs"] = "archive runs"
    runs: list[RunRecord]


class ArchiveShowResult(CommandResult):
    """``archive show``: one archived job (with the run that archived it) or one run."""

    command: Literal["archive show"] = "archive show"
    job: ArchivedJob | None = None
    run: RunRecord | None = None
