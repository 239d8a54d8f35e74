"""A job as read from ``oban_jobs``: a slotted dataclass (cheap on the hot path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from powertools_core.workflows.context import WorkflowContext
    from powertools_core.workflows.durable import DurableContext

# Column order used by every SELECT that builds a Job (keep in sync with ``Job.from_row``).
JOB_COLUMNS: Final = (
    "id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at, "
    "attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta, cancelled_at"
)


@dataclass(slots=True)
class Job:
    id: int
    state: str
    queue: str
    worker: str
    args: Any
    """The worker's validated ``Args`` instance while it runs; the raw JSON dict elsewhere."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    attempt: int = 0
    max_attempts: int = 20
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    attempted_by: list[str] | None = None
    discarded_at: datetime | None = None
    priority: int = 0
    tags: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    cancelled_at: datetime | None = None
    raw_args: dict[str, Any] = field(default_factory=dict)
    """The args exactly as stored (always a dict)."""
    workflow_context: WorkflowContext | None = field(default=None, repr=False, compare=False)
    """Loaded by the runtime before a workflow step runs (see :attr:`workflow`)."""
    durable_context: DurableContext | None = field(default=None, repr=False, compare=False)
    """Loaded by the runtime before a resumed durable step runs (see :attr:`durable`)."""

    @classmethod
    def from_row(cls, row: tuple[Any, ...] | list[Any]) -> Job:
        args = row[4] if row[4] is not None else {}
        return cls(
            id=row[0],
            state=str(row[1]),
            queue=row[2],
            worker=row[3],
            args=args,
            errors=list(row[5] or []),
            attempt=row[6],
            max_attempts=row[7],
            inserted_at=row[8],
            scheduled_at=row[9],
            attempted_at=row[10],
            completed_at=row[11],
            attempted_by=row[12],
            discarded_at=row[13],
            priority=row[14],
            tags=list(row[15] or []),
            meta=row[16] if row[16] is not None else {},
            cancelled_at=row[17],
            raw_args=args,
        )

    @property
    def workflow(self) -> WorkflowContext:
        """The workflow handle of a step: its dependencies' results, run-time fan-out.

        Raises ``InvalidInput`` for a job that is not a workflow step, or one whose context the
        runtime did not load (a step's ``perform`` called by hand).
        """
        if self.workflow_context is not None:
            return self.workflow_context
        from powertools_core.errors import InvalidInput

        if "workflow_id" not in self.meta:
            raise InvalidInput(f"job {self.id} is not a workflow step (it has no workflow_id)")
        raise InvalidInput(
            f"the workflow context of job {self.id} was not loaded",
            hint="steps get it when `powertools worker run` runs them; in a test, call "
            "powertools_core.workflows.context.load(conn, prefix, [job]) first",
        )

    @property
    def durable(self) -> DurableContext:
        """Where a durable job continues (``step``, ``state``) and the signal that woke it."""
        if self.durable_context is None:
            from powertools_core.workflows.durable import DurableContext

            self.durable_context = DurableContext.from_meta(self.meta)
        return self.durable_context

    @property
    def producer(self) -> str | None:
        """The producer uuid that claimed this attempt (``attempted_by[2]``, as Oban stores it)."""
        if self.attempted_by and len(self.attempted_by) > 1:
            return self.attempted_by[1]
        return None
