"""Operator actions on a workflow: cancel (cascade + stop signal) and retry failed steps.

Each runs in one transaction (run again from the start if PostgreSQL aborted it to break a
deadlock with a promotion), writes one audit event per workflow and per changed job, and
re-checks states in its ``UPDATE``s (a step that moved since is left alone).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar

import psycopg

from powertools_core.audit import AuditEvent, record
from powertools_core.config import Settings
from powertools_core.db.connection import connect, translated
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput, NotFound
from powertools_core.ops.actions import NOTIFY_SIGNALS, signal_channel
from powertools_core.ops.errors import check_intent
from powertools_core.workflows.results import WorkflowActionResult
from powertools_core.workflows.store import promote

log = logging.getLogger("powertools.workflows")

T = TypeVar("T")

LOCK_WORKFLOW: Final = """
SELECT id, cancelled_at IS NOT NULL FROM {prefix}.powertools_workflows
WHERE id = %(id)s FOR UPDATE
"""

MARK_CANCELLED: Final = """
UPDATE {prefix}.powertools_workflows
SET cancelled_at = timezone('UTC', now()), cancelled_by = %(actor)s
WHERE id = %(id)s
"""

CLEAR_CANCELLED: Final = """
UPDATE {prefix}.powertools_workflows SET cancelled_at = NULL, cancelled_by = NULL
WHERE id = %(id)s
"""

# The pending steps are locked in id order first, the order promotion locks the dependents it
# waits for, so a cancel and an acker promoting the same workflow take turns on those rows
# instead of each holding one the other wants. (Promotion still settles some rows outside that
# order, so a deadlock stays possible: ``_retrying`` runs the whole action again if PostgreSQL
# broke one by aborting it.) A row promoted meanwhile is re-checked as locked and still cancelled.
CANCEL_PENDING: Final = """
WITH pending AS MATERIALIZED (
    SELECT j.id
    FROM {prefix}.oban_jobs j
    JOIN {prefix}.powertools_workflow_steps s ON s.job_id = j.id
    WHERE s.workflow_id = %(id)s
      AND j.state IN ('available', 'scheduled', 'retryable', 'suspended')
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE {prefix}.oban_jobs j
SET state = 'cancelled', cancelled_at = timezone('UTC', now()),
    errors = array_append(j.errors, jsonb_build_object(
        'at', timezone('UTC', now()), 'attempt', j.attempt,
        'error', 'cancelled_by_workflow: ' || %(reason)s))
FROM {prefix}.powertools_workflow_steps s
WHERE j.id IN (SELECT id FROM pending) AND s.job_id = j.id
  AND j.state IN ('available', 'scheduled', 'retryable', 'suspended')
RETURNING j.id, s.name
"""

EXECUTING_STEPS: Final = """
SELECT j.id FROM {prefix}.oban_jobs j
JOIN {prefix}.powertools_workflow_steps s ON s.job_id = j.id
WHERE s.workflow_id = %(id)s AND j.state = 'executing'
ORDER BY j.id
"""

# Failed steps (discarded, or cancelled other than by a dependency) back to available, with
# Oban's retry semantics: attempts raised when exhausted, terminal timestamps cleared.
RETRY_FAILED: Final = """
UPDATE {prefix}.oban_jobs j
SET state = 'available', scheduled_at = timezone('UTC', now()),
    max_attempts = greatest(j.max_attempts, j.attempt + 1),
    completed_at = NULL, cancelled_at = NULL, discarded_at = NULL
FROM {prefix}.powertools_workflow_steps s
WHERE s.workflow_id = %(id)s AND j.id = s.job_id
  AND (%(step)s::text IS NULL OR s.name = %(step)s)
  AND (j.state = 'discarded'
       OR (j.state = 'cancelled' AND coalesce(
           j.errors[array_length(j.errors, 1)] ->> 'error', '')
           NOT LIKE 'cancelled_by_dependency:%%'))
RETURNING j.id, s.name
"""

# Dependents cancelled by a dependency go back to waiting; promotion then decides again.
REOPEN_DEPENDENTS: Final = """
UPDATE {prefix}.oban_jobs j
SET state = 'suspended', cancelled_at = NULL
FROM {prefix}.powertools_workflow_steps s
WHERE s.workflow_id = %(id)s AND j.id = s.job_id
  AND j.state = 'cancelled'
  AND j.errors[array_length(j.errors, 1)] ->> 'error' LIKE 'cancelled_by_dependency:%%'
RETURNING j.id, s.name
"""

STEP_JOB_IDS: Final = """
SELECT job_id FROM {prefix}.powertools_workflow_steps WHERE workflow_id = %(id)s
"""

STEP_EXISTS: Final = """
SELECT 1 FROM {prefix}.powertools_workflow_steps WHERE workflow_id = %(id)s AND name = %(step)s
"""


DEADLOCK_ATTEMPTS: Final = 3
"""How many times an action runs when PostgreSQL keeps choosing it as a deadlock's victim."""


def _conn(settings: Settings) -> psycopg.Connection[Any]:
    assert settings.database_url
    return connect(settings.database_url, autocommit=True)


def _retrying(settings: Settings, action: Callable[[psycopg.Connection[Any]], T]) -> T:
    """Run ``action`` in one transaction; again, from the start, when PostgreSQL aborted it to
    break a deadlock. Cancel and retry write every pending step of a workflow while an acker
    may be promoting some of them in another order. The aborted attempt wrote nothing (audit
    rows and notifications included), so running it again acts exactly once."""
    with translated(settings.database_url), _conn(settings) as conn:
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                with conn.transaction():
                    return action(conn)
            except psycopg.errors.DeadlockDetected:
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                log.info("workflow action chosen as a deadlock victim, attempt %d", attempt)
    raise AssertionError("unreachable")


def _lock(conn: psycopg.Connection[Any], prefix: str, workflow_id: int) -> bool:
    row = conn.execute(qualify(LOCK_WORKFLOW, prefix), {"id": workflow_id}).fetchone()
    if row is None:
        raise NotFound(f"workflow {workflow_id} not found")
    return bool(row[1])


def _job_events(
    action: str, actor: str, reason: str, workflow_id: int, rows: list[Any], before: str, after: str
) -> list[AuditEvent]:
    return [
        AuditEvent(
            actor=actor,
            action=action,
            target_type="job",
            target_id=str(r[0]),
            reason=reason,
            before={"state": before},
            after={"state": after},
            meta={"workflow_id": workflow_id, "step": r[1]},
        )
        for r in rows
    ]


def cancel_workflow(
    settings: Settings, workflow_id: int, *, actor: str | None, reason: str | None
) -> WorkflowActionResult:
    """Cancel every pending step and signal executing ones to stop; audited."""
    who, why = check_intent(actor, reason)
    prefix = settings.prefix

    def cancel(conn: psycopg.Connection[Any]) -> tuple[list[Any], list[int]]:
        already = _lock(conn, prefix, workflow_id)
        conn.execute(qualify(MARK_CANCELLED, prefix), {"id": workflow_id, "actor": who})
        cancelled = conn.execute(
            qualify(CANCEL_PENDING, prefix), {"id": workflow_id, "reason": why}
        ).fetchall()
        executing = [
            r[0] for r in conn.execute(qualify(EXECUTING_STEPS, prefix), {"id": workflow_id})
        ]
        payloads = [json.dumps({"action": "cancel", "job_id": i}) for i in executing]
        if payloads:
            conn.execute(NOTIFY_SIGNALS, [signal_channel(prefix), payloads])
        events = [
            AuditEvent(
                actor=who,
                action="workflow.cancel",
                target_type="workflow",
                target_id=str(workflow_id),
                reason=why,
                meta={"cancelled": len(cancelled), "signalled": executing, "again": already},
            ),
            *_job_events(
                "workflow.cancel_step", who, why, workflow_id, cancelled, "pending", "cancelled"
            ),
        ]
        record(conn, prefix, events)
        return cancelled, executing

    cancelled, executing = _retrying(settings, cancel)
    return WorkflowActionResult(
        command="workflow cancel",
        workflow_id=workflow_id,
        changed={r[1]: "cancelled" for r in cancelled},
        signalled=executing,
    )


def retry_workflow(
    settings: Settings,
    workflow_id: int,
    *,
    step: str | None,
    actor: str | None,
    reason: str | None,
) -> WorkflowActionResult:
    """Retry failed steps (or one) and re-open their cancelled-by-dependency dependents."""
    who, why = check_intent(actor, reason)
    prefix = settings.prefix

    def retry(conn: psycopg.Connection[Any]) -> tuple[list[Any], list[Any]]:
        _lock(conn, prefix, workflow_id)
        if (
            step is not None
            and not conn.execute(
                qualify(STEP_EXISTS, prefix), {"id": workflow_id, "step": step}
            ).fetchone()
        ):
            raise InvalidInput(f"workflow {workflow_id} has no step {step!r}")
        conn.execute(qualify(CLEAR_CANCELLED, prefix), {"id": workflow_id})
        retried = conn.execute(
            qualify(RETRY_FAILED, prefix), {"id": workflow_id, "step": step}
        ).fetchall()
        reopened = (
            conn.execute(qualify(REOPEN_DEPENDENTS, prefix), {"id": workflow_id}).fetchall()
            if retried
            else []
        )
        # Re-opened steps are decided again at once: one still behind another failed step
        # (not retried) is cancelled again, one whose deps allow it moves on.
        if reopened:
            ids = [r[0] for r in conn.execute(qualify(STEP_JOB_IDS, prefix), {"id": workflow_id})]
            promote(conn, prefix, ids)
        events = [
            AuditEvent(
                actor=who,
                action="workflow.retry",
                target_type="workflow",
                target_id=str(workflow_id),
                reason=why,
                meta={"step": step, "retried": len(retried), "reopened": len(reopened)},
            ),
            *_job_events(
                "workflow.retry_step", who, why, workflow_id, retried, "failed", "available"
            ),
            *_job_events(
                "workflow.reopen_step", who, why, workflow_id, reopened, "cancelled", "suspended"
            ),
        ]
        record(conn, prefix, events)
        return retried, reopened

    retried, reopened = _retrying(settings, retry)
    changed = {r[1]: "suspended" for r in reopened}
    changed.update({r[1]: "available" for r in retried})
    return WorkflowActionResult(
        command="workflow retry", workflow_id=workflow_id, changed=changed, signalled=[]
    )
