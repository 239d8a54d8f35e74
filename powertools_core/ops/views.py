"""Jobs and audit events as operators see them: always through redaction."""

from __future__ import annotations

from typing import Any

from powertools_core import workers
from powertools_core.audit import AuditEvent
from powertools_core.jobs.model import Job
from powertools_core.ops.results import AuditEntry, JobDetail, JobError, JobSummary
from powertools_core.redaction import DenyList, redact, redact_value


def _worker_class(name: str) -> type[workers.Worker] | None:
    # Only the registry: a worker name read from the database is never imported.
    return workers.registered().get(name)


def finished_at(job: Job) -> Any:
    return {
        "completed": job.completed_at,
        "discarded": job.discarded_at,
        "cancelled": job.cancelled_at,
    }.get(job.state)


def _errors(job: Job) -> list[JobError]:
    out = []
    for entry in job.errors:
        if isinstance(entry, dict):
            attempt = entry.get("attempt")
            out.append(
                JobError(
                    at=str(entry["at"]) if entry.get("at") is not None else None,
                    attempt=attempt if isinstance(attempt, int) else None,
                    error=str(entry.get("error", "")),
                )
            )
        else:
            out.append(JobError(error=str(entry)))
    return out


def job_summary(job: Job, deny: DenyList) -> JobSummary:
    errors = _errors(job)
    last = errors[-1].error.strip().splitlines()[0] if errors and errors[-1].error.strip() else None
    return JobSummary(
        id=job.id,
        state=job.state,
        queue=job.queue,
        worker=job.worker,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        priority=job.priority,
        tags=job.tags,
        args=redact(job.raw_args, _worker_class(job.worker), deny),
        inserted_at=job.inserted_at,
        scheduled_at=job.scheduled_at,
        attempted_at=job.attempted_at,
        finished_at=finished_at(job),
        last_error=last,
    )


def job_detail(job: Job, deny: DenyList) -> JobDetail:
    cls = _worker_class(job.worker)
    meta = redact_value(job.meta, deny)
    return JobDetail(
        id=job.id,
        state=job.state,
        queue=job.queue,
        worker=job.worker,
        worker_registered=cls is not None,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        priority=job.priority,
        tags=job.tags,
        args=redact(job.raw_args, cls, deny),
        meta=meta if isinstance(meta, dict) else {},
        errors=_errors(job),
        attempted_by=job.attempted_by,
        inserted_at=job.inserted_at,
        scheduled_at=job.scheduled_at,
        attempted_at=job.attempted_at,
        completed_at=job.completed_at,
        discarded_at=job.discarded_at,
        cancelled_at=job.cancelled_at,
    )


def audit_entry(event: AuditEvent, deny: DenyList) -> AuditEntry:
    assert event.id is not None and event.at is not None
    meta = redact_value(event.meta or {}, deny)
    return AuditEntry(
        id=event.id,
        at=event.at,
        actor=event.actor,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        reason=event.reason,
        result=event.result,
        run_id=event.run_id,
        before=redact_value(event.before, deny),
        after=redact_value(event.after, deny),
        meta=meta if isinstance(meta, dict) else {},
    )
