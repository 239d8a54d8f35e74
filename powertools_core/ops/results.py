"""Result models of ``powertools ops`` (the JSON contract; the Python API returns the same)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from powertools_core.results import CommandResult


class JobSummary(BaseModel):
    """One row of ``ops list`` (args already redacted)."""

    id: int
    state: str
    queue: str
    worker: str
    attempt: int
    max_attempts: int
    priority: int
    tags: list[str] = Field(default_factory=list)
    args: dict[str, Any] = Field(default_factory=dict)
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    finished_at: datetime | None = None
    """completed_at, discarded_at or cancelled_at, whichever the state implies."""
    last_error: str | None = None


class JobError(BaseModel):
    at: str | None = None
    attempt: int | None = None
    error: str


class AuditEntry(BaseModel):
    """One audit event as operators see it (before/after/meta redacted)."""

    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None = None
    reason: str | None = None
    result: str
    run_id: uuid.UUID | None = None
    before: Any = None
    after: Any = None
    meta: dict[str, Any] = Field(default_factory=dict)


class JobDetail(BaseModel):
    """Everything about one job (``ops show``)."""

    id: int
    state: str
    queue: str
    worker: str
    worker_registered: bool
    attempt: int
    max_attempts: int
    priority: int
    tags: list[str] = Field(default_factory=list)
    args: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    errors: list[JobError] = Field(default_factory=list)
    attempted_by: list[str] | None = None
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    discarded_at: datetime | None = None
    cancelled_at: datetime | None = None


class JobListResult(CommandResult):
    command: str = "ops list"
    filter: dict[str, Any]
    counts: dict[str, int]
    """Jobs matching the filter, by state (every state, ignoring ``--state``)."""
    total: int
    """Jobs matching the filter including ``--state``."""
    jobs: list[JobSummary]
    next_cursor: str | None = None


class AuditListResult(CommandResult):
    """``audit list``: events newest first; ``next_cursor`` continues after the last one."""

    command: str = "audit list"
    filter: dict[str, Any]
    events: list[AuditEntry]
    next_cursor: str | None = None


class JobShowResult(CommandResult):
    command: str = "ops show"
    job: JobDetail
    audit: list[AuditEntry]


class Group(BaseModel):
    """Selected jobs sharing a state, queue and worker (the preview's unit)."""

    state: str
    queue: str
    worker: str
    count: int
    legal: bool


class Preview(BaseModel):
    """What an action would do: counts, a sample, and the token that pins this plan."""

    action: str
    filter: dict[str, Any]
    total: int
    would_act: int
    would_skip: int
    by_state: dict[str, int]
    by_queue: dict[str, int]
    by_worker: dict[str, int]
    groups: list[Group]
    sample: list[JobSummary]
    plan_hash: str
    preview_token: str


class PreviewResult(CommandResult):
    """``--dry-run``: nothing was changed, nothing was written."""

    command: str
    dry_run: Literal[True] = True
    preview: Preview


class SkippedJob(BaseModel):
    id: int
    reason: str
    state: str | None = None
    """The state the job had when it was selected."""
    now_state: str | None = None
    """For ``changed_since_preview``: where it is now (None when it no longer exists)."""


class FailedJob(BaseModel):
    id: int
    error: str
    state: str | None = None


class Summary(BaseModel):
    selected: int
    done: int
    skipped: int
    failed: int
    not_attempted: int
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    chunks: int
    seconds: float
    longest_chunk_seconds: float


class ActionResult(CommandResult):
    """An executed action: every selected job ends in exactly one of done/skipped/failed, or is
    counted in ``summary.not_attempted`` when the run was interrupted (run again to finish)."""

    command: str
    action: str
    run_id: uuid.UUID
    actor: str
    reason: str
    filter: dict[str, Any]
    plan_hash: str
    interrupted: bool = False
    summary: Summary
    done: list[int]
    skipped: list[SkippedJob]
    failed: list[FailedJob]
    warnings: list[str] = Field(default_factory=list)

    def exit_status(self) -> int:
        return 1 if (self.failed or self.interrupted) else 0
