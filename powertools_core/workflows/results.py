"""The JSON contract of ``powertools workflow …``; times are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from powertools_core.results import CommandResult


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Utc = Annotated[datetime, AfterValidator(_utc)]
WorkflowState = Literal["running", "completed", "failed", "cancelled"]


class WorkflowSummary(BaseModel):
    id: int = Field(description="workflow id")
    name: str = Field(description="the name given to Workflow(...) or Batch(...)")
    kind: Literal["workflow", "batch"] = Field(default="workflow", description="workflow or batch")
    state: WorkflowState = Field(description="running, completed, failed or cancelled")
    inserted_at: Utc = Field(description="when it was inserted (UTC)")
    steps: int = Field(description="number of steps")
    counts: dict[str, int] = Field(description="steps by job state")


class WorkflowListResult(CommandResult):
    """``powertools workflow list``."""

    command: Literal["workflow list"] = "workflow list"
    workflows: list[WorkflowSummary] = Field(description="newest first")


class StepView(BaseModel):
    name: str = Field(description="step name")
    job_id: int = Field(description="its oban_jobs row")
    worker: str = Field(description="worker import path")
    state: str = Field(description="the job's state")
    attempt: int = Field(description="attempts made")
    max_attempts: int = Field(description="attempts allowed")
    duration_s: float | None = Field(description="seconds from last start to end (or null)")
    blocker: str | None = Field(description="workflow blocker code, e.g. waiting_on_dependencies")
    deps: list[str] = Field(description="the steps it waits for")
    has_result: bool = Field(description="whether a result was recorded")
    added_by: str | None = Field(
        default=None, description="the step that added it at run time (null: declared)"
    )
    durable_step: str | None = Field(
        default=None, description="a durable job's current step (Next/Await), or null"
    )
    awaiting: list[str] = Field(
        default=[], description="signal names a parked (or just woken) durable step waits for"
    )
    wait_until: Utc | None = Field(
        default=None, description="when a parked step's Await times out (UTC), or null"
    )


class EdgeView(BaseModel):
    step: str = Field(description="the dependent step")
    dep: str = Field(description="the step it depends on")
    on_failure: Literal["cascade", "continue"] = Field(description="policy when dep fails")
    kind: Literal["step", "added_by", "added"] = Field(
        default="step",
        description="step (declared), added_by (dep and every step it adds), added (one of "
        "those, recorded when it was added)",
    )


class WorkflowShowResult(CommandResult):
    """``powertools workflow show``."""

    command: Literal["workflow show"] = "workflow show"
    workflow: WorkflowSummary = Field(description="the workflow")
    steps: list[StepView] = Field(description="steps in dependency order")
    edges: list[EdgeView] = Field(description="every dependency edge")


class WorkflowActionResult(CommandResult):
    """``powertools workflow cancel`` and ``workflow retry``."""

    command: Literal["workflow cancel", "workflow retry"]
    workflow_id: int = Field(description="the workflow acted on")
    changed: dict[str, str] = Field(description="step name -> its new job state")
    signalled: list[int] = Field(description="executing job ids told to stop (cancel)")
