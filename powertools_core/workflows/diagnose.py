"""Why a workflow step or durable job is not running, and which ones are stuck (read-only).

For ``limiter explain --job`` and the ``stuck_workflows`` doctor check: ``step_blockers`` gives
the workflow blocker code of any job (None for jobs that are not steps or durable waits), and
``STUCK_READY`` / ``STUCK_EXPIRED`` find what the leader's duties should have moved on long ago
(a reconciler or expiry duty that is not running). Both are plain parameterised SQL so doctor
can run them through its own connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.workflows import graph

SUMMARIES: Final = {
    graph.WAITING_ON_DEPENDENCIES: "the step waits for its dependencies to end",
    graph.WAITING_ON_RETRYABLE_DEPENDENCY: "a dependency failed and will be retried",
    graph.READY_TO_PROMOTE: "every dependency has ended; promotion is due (the reconciler "
    "moves it on if the ack's promotion was lost)",
    graph.CANCELLED_BY_DEPENDENCY: "a dependency on a cascade edge was discarded or cancelled",
    graph.CANCEL_REQUESTED: "the workflow was cancelled by an operator",
    graph.WAITING_ON_SIGNAL: "a durable step is parked until a signal it awaits arrives",
    graph.EXPIRED_WAIT: "the wait timed out before a matching signal arrived; the step resumes "
    "with job.durable.timed_out",
}
"""One line per workflow blocker code (the vocabulary ``limiter explain`` can show)."""

# Everything the blocker of each job depends on, one row per job.
STEP_FACTS: Final = """
SELECT j.id, j.state::text,
       (j.errors[array_length(j.errors, 1)] ->> 'error'),
       s.workflow_id, s.name, w.cancelled_at IS NOT NULL,
       j.meta -> 'durable' -> 'await', j.scheduled_at,
       coalesce((
           SELECT jsonb_agg(jsonb_build_array(e.dep, coalesce(dj.state::text, 'archived'),
                                              e.on_failure) ORDER BY e.dep)
           FROM {prefix}.powertools_workflow_edges e
           JOIN {prefix}.powertools_workflow_steps ds
             ON ds.workflow_id = e.workflow_id AND ds.name = e.dep
           LEFT JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
           WHERE e.workflow_id = s.workflow_id AND e.step = s.name), '[]'::jsonb)
FROM {prefix}.oban_jobs j
LEFT JOIN {prefix}.powertools_workflow_steps s ON s.job_id = j.id
LEFT JOIN {prefix}.powertools_workflows w ON w.id = s.workflow_id
WHERE j.id = ANY(%(ids)s::bigint[])
"""

# Suspended steps whose deps all ended more than %(older_than)s seconds ago (and none failed
# on a cascade edge, which would be just as due): the reconciler should have promoted them.
STUCK_READY: Final = """
SELECT j.id, s.workflow_id, s.name, max(coalesce(dj.completed_at, dj.discarded_at,
                                                  dj.cancelled_at)) AS since
FROM {prefix}.oban_jobs j
JOIN {prefix}.powertools_workflow_steps s ON s.job_id = j.id
JOIN {prefix}.powertools_workflow_edges e ON e.workflow_id = s.workflow_id AND e.step = s.name
JOIN {prefix}.powertools_workflow_steps ds ON ds.workflow_id = e.workflow_id AND ds.name = e.dep
JOIN {prefix}.oban_jobs dj ON dj.id = ds.job_id
WHERE j.state = 'suspended' AND (j.meta -> 'durable' -> 'await') IS NULL
GROUP BY j.id, s.workflow_id, s.name
HAVING bool_and(dj.state IN ('completed', 'discarded', 'cancelled'))
   AND max(coalesce(dj.completed_at, dj.discarded_at, dj.cancelled_at))
       < timezone('UTC', now()) - make_interval(secs => %(older_than)s)
ORDER BY since
LIMIT %(limit)s
"""

# Parked awaits whose timeout passed more than %(older_than)s seconds ago (the expiry duty
# should have woken them). Uses powertools_oban_jobs_await_deadline_index.
STUCK_EXPIRED: Final = """
SELECT j.id, j.meta ->> 'workflow_id', j.meta ->> 'workflow_step', j.scheduled_at
FROM {prefix}.oban_jobs j
WHERE j.state = 'suspended' AND (j.meta -> 'durable' -> 'await') ? 'timeout'
  AND j.scheduled_at < timezone('UTC', now()) - make_interval(secs => %(older_than)s)
ORDER BY j.scheduled_at, j.id
LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class StepBlocker:
    """The workflow blocker of one job, with what it is waiting for."""

    job_id: int
    code: str
    summary: str
    workflow_id: int | None = None
    step: str | None = None
    waiting_on: list[str] = field(default_factory=list)
    """Deps that have not ended (dependency codes) or awaited signal names (signal codes)."""
    until: datetime | None = None
    """When a parked wait times out (UTC, naive like oban_jobs), or None."""


def blocker_of(row: Sequence[Any]) -> StepBlocker | None:
    """The blocker from one ``STEP_FACTS`` row (pure)."""
    job_id, state, tail, workflow_id, step, cancelled, waiting, scheduled_at, deps = row
    dep_map = {d[0]: (d[1], d[2]) for d in deps or []}
    waits = waiting if isinstance(waiting, dict) else None
    if workflow_id is None and waits is None:
        return None  # neither a step nor a durable wait (e.g. a cron follow-up)
    code = graph.blocker(
        state,
        dep_map,
        errors_tail=tail,
        cancel_requested=bool(cancelled),
        awaiting=waits is not None,
        expired=bool(waits and waits.get("expired")),
    )
    if code is None:
        return None
    if code in (graph.WAITING_ON_SIGNAL, graph.EXPIRED_WAIT) and waits is not None:
        waiting_on = [str(n) for n in waits.get("signals") or []]
    else:
        waiting_on = sorted(n for n, (s, _) in dep_map.items() if s not in graph.TERMINAL_STATES)
    timed = code == graph.WAITING_ON_SIGNAL and waits is not None and "timeout" in waits
    until = scheduled_at if timed else None
    return StepBlocker(
        job_id=job_id,
        code=code,
        summary=SUMMARIES.get(code, code),
        workflow_id=workflow_id,
        step=step,
        waiting_on=waiting_on,
        until=until,
    )


def step_blockers(
    conn: psycopg.Connection[Any], prefix: str, job_ids: Sequence[int]
) -> dict[int, StepBlocker]:
    """Blockers of the given jobs, by id; jobs without a workflow blocker are left out."""
    rows = conn.execute(qualify(STEP_FACTS, prefix), {"ids": list(job_ids)}).fetchall()
    found = (blocker_of(r) for r in rows)
    return {b.job_id: b for b in found if b is not None}
