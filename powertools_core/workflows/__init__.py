"""Workflows: DAGs of ordinary ``oban_jobs`` rows, dependents waiting in ``suspended``.

- :class:`Workflow` declares steps and edges and inserts them atomically.
- :func:`promote` moves dependents on when steps end (cascade or continue per edge);
  :func:`reconcile` repairs anything a crash left behind (the leader runs it as a duty).
- :func:`record_result` / :func:`result` store and read a step's JSON result (the runtime
  records a step's return value itself; a running step reads its deps' via ``job.workflow``).
- :func:`added_by` declares a fan-in on the steps another step adds at run time.
"""

from __future__ import annotations

from typing import Any

import psycopg

from powertools_core.errors import InvalidInput
from powertools_core.jobs.model import Job
from powertools_core.workflows.batch import Batch, BatchSummary, InsertedBatch
from powertools_core.workflows.builder import (
    META_STEP,
    META_WORKFLOW_ID,
    InsertedWorkflow,
    Workflow,
)
from powertools_core.workflows.graph import AddedBy, added_by
from powertools_core.workflows.store import promote, promote_async, reconcile, reconcile_async

__all__ = [
    "META_STEP",
    "META_WORKFLOW_ID",
    "AddedBy",
    "Batch",
    "BatchSummary",
    "InsertedBatch",
    "InsertedWorkflow",
    "Workflow",
    "added_by",
    "promote",
    "promote_async",
    "reconcile",
    "reconcile_async",
    "record_result",
    "result",
]


def record_result(conn: psycopg.Connection[Any], prefix: str, job: Job | int, value: Any) -> None:
    """Store the JSON result of a workflow step (``job``) for its dependents to read."""
    from powertools_core.workflows import store
    from powertools_core.workflows.values import NotJSON

    job_id = job if isinstance(job, int) else job.id
    try:
        stored = store.record_result(conn, prefix, job_id, value)
    except NotJSON as exc:
        raise InvalidInput(str(exc)) from None
    if not stored:
        raise InvalidInput(f"job {job_id} is not a workflow step")


def result(conn: psycopg.Connection[Any], prefix: str, job: Job | int, step: str) -> Any:
    """The recorded result of ``step`` in the workflow of ``job`` (raises when there is none)."""
    from powertools_core.workflows import store

    job_id = job if isinstance(job, int) else job.id
    found, value = store.read_result(conn, prefix, job_id, step)
    if not found:
        raise InvalidInput(f"step {step!r} has no recorded result in the workflow of job {job_id}")
    return value
