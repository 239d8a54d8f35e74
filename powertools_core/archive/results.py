"""The JSON contract of ``powertools archive``: one model per kind of answer.

Times are UTC (``...Z``). A dry run returns an ``ArchivePreview``; an execution returns an
``ArchiveRunResult`` whose ``run`` is the row recorded in ``powertools_archive_runs``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

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


class SampleRow(_UtcModel):
    """One of the first rows a run would move: a job (args redacted like ``archive list``; meta
    and errors left out) or, for ``--audit``, an audit event (before/after/meta left out)."""

    id: int
    state: str | None = None
    queue: str | None = None
    worker: str | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    tags: list[str] | None = None
    args: Any = None
    finished_at: datetime | None = Field(
        default=None, description="completed_at, discarded_at or cancelled_at (jobs)."
    )
    at: datetime | None = Field(default=None, description="When the audit event happened.")
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    archived_at: datetime | None = Field(
        default=None, description="restore and prune: when the row was archived."
    )


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
    as_of: datetime | None = Field(
        default=None,
        description="run and prune: the instant (UTC, whole seconds) the cutoffs were computed "
        "from; the preview token pins it. null for restore.",
    )
    by_state: dict[str, int] = Field(default_factory=dict, description="Jobs per state.")
    by_queue: dict[str, int] = Field(
        default_factory=dict, description="Jobs per queue, most first."
    )
    by_worker: dict[str, int] = Field(
        default_factory=dict, description="Jobs per worker, most first."
    )
    sample: list[SampleRow] = Field(
        default_factory=list,
        description="Up to 5 of the rows, in the order the run takes them: archive run, oldest "
        "finished first (audit events: oldest first); restore, lowest id first; prune, oldest "
        "archived first.",
    )
    plan_hash: str = Field(
        default="",
        description="SHA-256 of the plan: kind, selection (with the cutoffs), and per "
        "state/queue/worker (audit: action) the count, sum and range of the ids, plus the ids "
        "left alone.",
    )
    preview_token: str = Field(
        default="",
        description="Pass as --preview-token to execute only this plan: the start of "
        "plan_hash, and for run and prune @as_of (e.g. 3f9a0c1d2e4b5a6c@20260105T101112Z).",
    )


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
    preview_token: str | None = Field(
        default=None,
        description="The --preview-token the plan was checked against before the first chunk "
        "(null without one).",
    )

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
