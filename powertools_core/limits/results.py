"""The JSON contract of ``powertools limiter …`` (field names are documented in man/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from powertools_core.results import CommandResult

Status = Literal["runnable", "blocked", "running", "finished"]


class SimulatedLimit(BaseModel):
    name: str
    partition: str | None
    """None for a global limit."""
    bucket_capacity: int
    bucket_span: str
    bucket_span_ms: int
    weight: int
    source: Literal["declared", "overridden", "override"]


class SimulateResult(CommandResult):
    command: str = "limiter simulate"
    worker: str
    limits: list[SimulatedLimit]
    count: int
    every: str
    start: datetime
    verdicts: list[dict[str, Any]]
    """``{"request", "at", "result": "reserved", "limit", "tokens_left"}`` or
    ``{"request", "at", "result": "blocked", "code", "limit", "partition", "retry_at",
    "details"}``."""
    reserved: int
    blocked: int
    ignored: list[str] = Field(default_factory=list)
    """Declared limits a simulation cannot model (concurrency: requests have no duration)."""


class Blocker(BaseModel):
    code: str
    summary: str
    retry_at: datetime | None
    limit: str | None = None
    partition: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class GateView(BaseModel):
    """One gate as explain and list show it."""

    limit: str
    partition: str | None
    kind: str
    capacity: int
    tokens: float | None = None
    executing: int | None = None
    refilled_at: datetime | None = None
    cooldown_until: datetime | None = None
    cooldown_reason: str | None = None


class ExplainResult(CommandResult):
    command: str = "limiter explain"
    subject: Literal["limit", "worker", "job"]
    target: str
    status: Status
    now: datetime
    blockers: list[Blocker]
    gates: list[GateView] = Field(default_factory=list)
    job: dict[str, Any] | None = None
    message: str | None = None


class LimitSummary(BaseModel):
    name: str
    kind: str
    scope: str
    describe: str
    partition_by: str | None
    bucket_capacity: int | None
    bucket_span_ms: int | None
    global_limit: int | None
    partition_limit: int | None
    weight: int
    weight_by: str | None
    workers: list[str]
    source: str
    cooldown_until: datetime | None
    cooldown_reason: str | None
    partitions: int
    gates: list[GateView]
    """The busiest partitions (fewest tokens / most executing), at most ``--top``."""
    available_jobs: int
    """Jobs waiting (available) for the workers that use this limit."""


class ListResult(CommandResult):
    command: str = "limiter list"
    now: datetime
    limits: list[LimitSummary]


class CooldownResult(CommandResult):
    command: str
    limit: str
    partition: str | None
    action: Literal["cooldown", "resume"]
    cooldown_until: datetime | None
    previous_until: datetime | None
    actor: str
    reason: str
    audit_id: int | None = None
    cleared_partitions: int = 0
