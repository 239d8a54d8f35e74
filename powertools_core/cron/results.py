"""The JSON contract of ``powertools cron …`` (one model per command shape); times are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from powertools_core.results import CommandResult


def _utc(value: datetime) -> datetime:
    """Database timestamps are naive UTC; results carry them aware, so JSON ends in ``Z``."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Utc = Annotated[datetime, AfterValidator(_utc)]


class EntryView(BaseModel):
    name: str = Field(description="entry name (unique)")
    expression: str = Field(description="cron expression as written (nicknames kept)")
    timezone: str = Field(description="IANA zone the expression is read in")
    explain: str = Field(description="the expression in words")
    worker: str = Field(description="worker import path")
    queue: str | None = Field(description="queue override, null for the worker's own")
    args: dict[str, Any] = Field(description="args of every job it inserts")
    overlap: str = Field(description="allow, skip, queue_one or cancel_previous")
    catch_up: str = Field(description="latest, all or none")
    max_catch_up: int = Field(description="most missed fires made by catch_up=all")
    source: Literal["code", "runtime"] = Field(description="declared in code or via the CLI")
    paused: bool = Field(description="whether the entry is paused")
    paused_at: Utc | None = Field(default=None, description="when it was paused (UTC)")
    paused_by: str | None = Field(default=None, description="who paused it")
    next_fire: Utc | None = Field(default=None, description="next fire (UTC), unless paused")
    last_slot_at: Utc | None = Field(default=None, description="newest recorded fire")
    last_decision: str | None = Field(default=None, description="its decision")
    last_job_id: int | None = Field(default=None, description="its job, if one was inserted")


class CronListResult(CommandResult):
    """``powertools cron list``."""

    command: Literal["cron list"] = "cron list"
    now: Utc = Field(description="database time the listing was made at (UTC)")
    scheduler_last_seen: Utc | None = Field(
        description="the newest minute a scheduler recorded coverage for"
    )
    entries: list[EntryView] = Field(description="every entry, by name")


class SlotView(BaseModel):
    slot_at: Utc = Field(description="the fire time (UTC); a manual run's own time")
    claimed_at: Utc = Field(description="when it was claimed or recorded")
    decision: str = Field(
        description="enqueued, allowed, skipped, queued, cancelled_previous, missed or failed"
    )
    job_id: int | None = Field(description="the job inserted for it, if any")
    job_state: str | None = Field(description="that job's state now (null once archived)")
    manual: bool = Field(description="a `cron run`")
    node: str | None = Field(description="the scheduler node that claimed it")
    details: dict[str, Any] = Field(description="active/cancelled job ids, errors")


class FireView(BaseModel):
    at: Utc = Field(description="an expected fire (UTC)")
    evidence: Literal["missed", "no_evidence"] = Field(
        description="missed: recorded missed, or a scheduler was alive then and made no slot; "
        "no_evidence: no slot and no scheduler coverage that minute"
    )


class CronShowResult(CommandResult):
    """``powertools cron show NAME``."""

    command: Literal["cron show"] = "cron show"
    now: Utc = Field(description="database time (UTC)")
    entry: EntryView = Field(description="the entry")
    next_fires: list[Utc] = Field(description="the next fires (UTC)")
    slots: list[SlotView] = Field(description="the newest slots, newest first")
    missed: list[FireView] = Field(
        description="expected fires of the look-back window that did not run, newest first"
    )
    window_start: Utc = Field(description="start of the window `missed` looked at")


class CronActionResult(CommandResult):
    """``powertools cron pause|resume|run|add|set|remove``."""

    command: str = Field(description="cron pause, cron resume, cron run, cron add, ...")
    action: str = Field(description="pause, resume, run, add, set or remove")
    name: str = Field(description="the entry")
    dry_run: bool = Field(description="true: nothing was changed")
    changed: bool = Field(description="whether the entry (or a slot) changed")
    message: str = Field(description="what happened, in words")
    before: dict[str, Any] | None = Field(default=None, description="the entry before")
    after: dict[str, Any] | None = Field(default=None, description="the entry after")
    decision: str | None = Field(default=None, description="`cron run`: the slot's decision")
    job_id: int | None = Field(default=None, description="`cron run`: the job inserted")
