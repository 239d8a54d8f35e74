"""Property: whatever the states, action, batch size and concurrency, every selected job ends in
exactly one outcome, only legal ones change, and each change has exactly one audit event."""

from __future__ import annotations

from collections import Counter

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from powertools_core import ops
from powertools_core.config import Settings
from powertools_core.ops.actions import LEGAL_FROM, Action
from powertools_core.schema.oban import JOB_STATES
from tests.ops.conftest import InsertJob, audit_rows, job_row

TARGET = {Action.retry: "available", Action.cancel: "cancelled", Action.discard: "discarded"}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    states=st.lists(st.sampled_from(JOB_STATES), min_size=1, max_size=12),
    action=st.sampled_from(list(Action)),
    batch_size=st.integers(1, 5),
    concurrency=st.integers(1, 3),
)
def test_every_job_has_one_outcome_and_one_audit_event_per_change(
    installed: Settings,
    conn: psycopg.Connection,
    insert_job: InsertJob,
    states: list[str],
    action: Action,
    batch_size: int,
    concurrency: int,
) -> None:
    schema = sql.Identifier(installed.prefix)
    conn.execute(
        sql.SQL("TRUNCATE {}.oban_jobs, {}.powertools_audit_events").format(schema, schema)
    )
    ids = [insert_job(s) for s in states]
    result = ops.execute(
        installed,
        action,
        ops.build_filter(ids=ids),
        actor="prop",
        reason="property check run",
        batch_size=batch_size,
        concurrency=concurrency,
        handle_sigint=False,
    )
    legal = [i for i, s in zip(ids, states, strict=True) if s in LEGAL_FROM[action]]
    assert result.done == legal
    assert [j.id for j in result.skipped] == [i for i in ids if i not in legal]
    assert {j.reason for j in result.skipped} <= {"illegal_state"}
    assert result.failed == [] and not result.interrupted
    for job_id, state in zip(ids, states, strict=True):
        expected = TARGET[action] if job_id in legal else state
        assert job_row(conn, installed.prefix, job_id)["state"] == expected
    per_job = Counter(
        int(r["target_id"]) for r in audit_rows(conn, installed.prefix, target_type="job")
    )
    assert per_job == {i: 1 for i in legal}
    assert len(audit_rows(conn, installed.prefix, target_type="job_selection")) == 1
