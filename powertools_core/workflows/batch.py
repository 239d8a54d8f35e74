"""``Batch``: a group of jobs with callbacks once they have all finished.

A batch is a workflow (``kind = 'batch'``) whose members are steps without dependencies and
whose callbacks are steps that depend on every member:

- ``on_complete`` runs when every member has ended, whatever the outcome (``continue`` edges);
- ``on_success`` runs when every member completed; a discarded or cancelled member cancels it
  (``cascade`` edges, ``cancelled_by_dependency``);
- ``on_discard`` runs when every member has ended and at least one was discarded; otherwise it
  is cancelled as not needed (``run_if = 'any_discarded'``).

Callbacks are ordinary jobs, promoted in the transaction that acks the last member (or by the
leader's reconciler after a crash), so each one is delivered at least once and retried like any
job; make them idempotent. A callback reads the outcome through ``job.workflow.batch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from powertools_core.errors import InvalidInput
from powertools_core.jobs.spec import JobSpec
from powertools_core.workflows import graph
from powertools_core.workflows.builder import Workflow, check_step_spec

META_BATCH_CALLBACK: Final = "batch_callback"
CALLBACKS: Final = ("on_complete", "on_success", "on_discard")
MEMBER_PREFIX: Final = "job-"
_POLICY: Final[dict[str, graph.Policy]] = {
    "on_complete": "continue",
    "on_success": "cascade",
    "on_discard": "continue",
}


@dataclass(frozen=True, slots=True)
class InsertedBatch:
    """What ``Batch.insert`` wrote: the batch (workflow) id, member job ids in ``add`` order,
    and each callback's job id."""

    id: int
    name: str
    job_ids: tuple[int, ...]
    callbacks: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """``job.workflow.batch`` in a callback: how the members ended."""

    batch_id: int
    callback: str
    total: int
    counts: Mapping[str, int]

    @property
    def completed(self) -> int:
        return self.counts.get("completed", 0)

    @property
    def discarded(self) -> int:
        return self.counts.get("discarded", 0)

    @property
    def cancelled(self) -> int:
        return self.counts.get("cancelled", 0)


class Batch:
    """A group of jobs with callbacks when all of them have finished.

    Example::

        batch = Batch("nightly-emails", on_complete=Report.new({"day": day}),
                      on_discard=Alert.new({}))
        for user in users:
            batch.add(SendEmail.new({"to": user.email}))
        inserted = batch.insert(conn=conn)     # atomic, in the caller's transaction
    """

    def __init__(
        self,
        name: str,
        *,
        on_complete: JobSpec | None = None,
        on_success: JobSpec | None = None,
        on_discard: JobSpec | None = None,
    ) -> None:
        self.name = graph.check_name(name, "batch name")
        given = {"on_complete": on_complete, "on_success": on_success, "on_discard": on_discard}
        self.callbacks: dict[str, JobSpec] = {
            k: check_step_spec(k, v) for k, v in given.items() if v is not None
        }
        self.members: list[JobSpec] = []

    def add(self, spec: JobSpec) -> Batch:
        """Add one job to the batch."""
        self.members.append(check_step_spec(f"batch job {len(self.members) + 1}", spec))
        return self

    def add_all(self, specs: Iterable[JobSpec]) -> Batch:
        for spec in specs:
            self.add(spec)
        return self

    def workflow(self) -> Workflow:
        """The workflow this batch is inserted as (members ``job-1``…, then the callbacks)."""
        if not self.members:
            raise InvalidInput(f"{self.name}: a batch needs at least one job")
        wf = Workflow(self.name)
        wf.kind = "batch"
        names = [f"{MEMBER_PREFIX}{i}" for i in range(1, len(self.members) + 1)]
        for name, spec in zip(names, self.members, strict=True):
            wf.add(name, spec)
        for kind, spec in self.callbacks.items():
            meta = {**spec.meta, META_BATCH_CALLBACK: kind}
            wf.add(kind, _with_meta(spec, meta), deps=names, on_failure=_POLICY[kind])
            if kind == "on_discard":
                wf.run_if[kind] = graph.ANY_DISCARDED
        return wf

    def insert(self, *, conn: Any, prefix: str | None = None) -> InsertedBatch:
        """Insert the batch, its jobs and callbacks atomically in the caller's transaction."""
        inserted = self.workflow().insert(conn=conn, prefix=prefix)
        ids = inserted.job_ids
        return InsertedBatch(
            id=inserted.id,
            name=inserted.name,
            job_ids=tuple(ids[f"{MEMBER_PREFIX}{i}"] for i in range(1, len(self.members) + 1)),
            callbacks={k: ids[k] for k in self.callbacks},
        )


def _with_meta(spec: JobSpec, meta: dict[str, Any]) -> JobSpec:
    import dataclasses

    return dataclasses.replace(spec, meta=meta)
