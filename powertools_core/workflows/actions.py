"""What ``powertools workflow list/show`` compute (read-only), one connection per call."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

import psycopg

from powertools_core.config import Settings
from powertools_core.db.connection import connect, translated
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput, NotFound
from powertools_core.workflows import graph
from powertools_core.workflows.results import (
    EdgeView,
    StepView,
    WorkflowListResult,
    WorkflowShowResult,
    WorkflowState,
    WorkflowSummary,
)

STATES: Final = ("running", "completed", "failed", "cancelled")

SELECT_WORKFLOWS: Final = """
SELECT w.id, w.name, w.inserted_at, w.cancelled_at IS NOT NULL,
       coalesce(array_agg(j.state::text) FILTER (WHERE j.id IS NOT NULL), '{}'),
       w.kind,
       count(*) FILTER (WHERE j.state = 'cancelled'
                        AND j.errors[array_length(j.errors, 1)] ->> 'error' LIKE 'not_needed:%%')
FROM {prefix}.powertools_workflows w
LEFT JOIN {prefix}.powertools_workflow_steps s ON s.workflow_id = w.id
LEFT JOIN {prefix}.oban_jobs j ON j.id = s.job_id
WHERE (%(id)s::bigint IS NULL OR w.id = %(id)s)
GROUP BY w.id
ORDER BY w.id DESC
LIMIT %(limit)s
"""

SELECT_STEPS: Final = """
SELECT s.name, s.job_id, j.worker, j.state::text, j.attempt, j.max_attempts,
       extract(epoch FROM coalesce(j.completed_at, j.discarded_at, j.cancelled_at)
                          - j.attempted_at)::float8,
       (j.errors[array_length(j.errors, 1)] ->> 'error'), s.result_at IS NOT NULL, s.added_by,
       j.meta -> 'durable', j.scheduled_at
FROM {prefix}.powertools_workflow_steps s
JOIN {prefix}.oban_jobs j ON j.id = s.job_id
WHERE s.workflow_id = %(id)s
"""

SELECT_EDGES: Final = """
SELECT step, dep, on_failure, kind FROM {prefix}.powertools_workflow_edges
WHERE workflow_id = %(id)s ORDER BY step, dep
"""


def workflow_state(cancelled: bool, states: Iterable[str], not_needed: int = 0) -> WorkflowState:
    """Cancelled by an operator, running while any step can still run, else completed/failed.

    ``not_needed`` steps (cancelled because their condition did not hold, e.g. a batch's
    on_discard when nothing was discarded) do not make a workflow failed.
    """
    if cancelled:
        return "cancelled"
    seen = list(states)
    if any(s not in graph.TERMINAL_STATES for s in seen):
        return "running"
    failed = sum(1 for s in seen if s != "completed") - not_needed
    return "completed" if failed <= 0 else "failed"


def _summary(row: tuple[Any, ...]) -> WorkflowSummary:
    states = list(row[4])
    return WorkflowSummary(
        id=row[0],
        name=row[1],
        state=workflow_state(row[3], states, int(row[6] or 0)),
        kind=row[5],
        inserted_at=row[2],
        steps=len(states),
        counts=dict(sorted(Counter(states).items())),
    )


def _with_conn(settings: Settings) -> psycopg.Connection[Any]:
    assert settings.database_url
    return connect(settings.database_url, autocommit=True)


def list_workflows(
    settings: Settings, *, state: str | None = None, limit: int = 100
) -> WorkflowListResult:
    if state is not None and state not in STATES:
        raise InvalidInput(f"unknown workflow state {state!r}", hint=f"use {', '.join(STATES)}")
    if not 1 <= limit <= 10_000:
        raise InvalidInput("--limit must be between 1 and 10000")
    with translated(settings.database_url), _with_conn(settings) as conn:
        rows = conn.execute(
            qualify(SELECT_WORKFLOWS, settings.prefix), {"id": None, "limit": limit}
        ).fetchall()
    found = [_summary(tuple(r)) for r in rows]
    return WorkflowListResult(workflows=[w for w in found if state in (None, w.state)])


def show_workflow(settings: Settings, workflow_id: int) -> WorkflowShowResult:
    prefix = settings.prefix
    with translated(settings.database_url), _with_conn(settings) as conn:
        row = conn.execute(
            qualify(SELECT_WORKFLOWS, prefix), {"id": workflow_id, "limit": 1}
        ).fetchone()
        if row is None:
            raise NotFound(f"workflow {workflow_id} not found")
        steps = conn.execute(qualify(SELECT_STEPS, prefix), {"id": workflow_id}).fetchall()
        edges = conn.execute(qualify(SELECT_EDGES, prefix), {"id": workflow_id}).fetchall()
    summary = _summary(tuple(row))
    edge_views = [EdgeView(step=e[0], dep=e[1], on_failure=e[2], kind=e[3]) for e in edges]
    by_name = {s[0]: s for s in steps}
    order = graph.topo_order(
        sorted(by_name, key=lambda n: by_name[n][1]),
        [graph.Edge(e.step, e.dep, e.on_failure) for e in edge_views],
    )
    views = []
    for name in order:
        s = by_name[name]
        deps = {e.dep: (by_name[e.dep][3], e.on_failure) for e in edge_views if e.step == name}
        durable = s[10] if isinstance(s[10], dict) else None
        waiting = (
            durable.get("await") if durable and isinstance(durable.get("await"), dict) else None
        )
        views.append(
            StepView(
                name=name,
                job_id=s[1],
                worker=s[2],
                state=s[3],
                attempt=s[4],
                max_attempts=s[5],
                duration_s=s[6],
                blocker=graph.blocker(
                    s[3],
                    deps,
                    errors_tail=s[7],
                    cancel_requested=summary.state == "cancelled",
                    awaiting=waiting is not None,
                    expired=bool(waiting and waiting.get("expired")),
                ),
                deps=sorted(deps),
                has_result=s[8],
                added_by=s[9],
                durable_step=durable.get("step") if durable else None,
                awaiting=list(waiting.get("signals") or []) if waiting else [],
                wait_until=s[11]
                if waiting and "timeout" in waiting and s[3] == "suspended"
                else None,
            )
        )
    return WorkflowShowResult(workflow=summary, steps=views, edges=edge_views)
