"""Every state x action, for a single job and inside a bulk run, against real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from powertools_core import ops
from powertools_core.config import Settings
from powertools_core.ops.actions import DEFAULT_STATES, LEGAL_FROM, Action, skip_reason
from powertools_core.schema.oban import JOB_STATES
from tests.ops.conftest import InsertJob, audit_rows, job_row

EXPECTED_LEGAL = {
    "retry": {"retryable", "discarded", "cancelled", "completed"},
    "cancel": {"available", "scheduled", "retryable", "executing"},
    "discard": {"available", "scheduled", "retryable"},
}
TARGET = {"retry": "available", "cancel": "cancelled", "discard": "discarded"}
REASON = "incident 42 cleanup"


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", JOB_STATES)
def test_legality_table(action: Action, state: str) -> None:
    legal = state in EXPECTED_LEGAL[action.value]
    assert (state in LEGAL_FROM[action]) is legal
    assert skip_reason(action, state) == (None if legal else "illegal_state")


def test_default_states_are_legal_and_retry_leaves_completed_alone() -> None:
    for action, states in DEFAULT_STATES.items():
        assert set(states) <= LEGAL_FROM[action]
    assert "completed" not in DEFAULT_STATES[Action.retry]


def _check_outcome(
    conn: psycopg.Connection,
    schema: str,
    result: ops.ActionResult,
    job_id: int,
    action: Action,
    state: str,
) -> None:
    after = job_row(conn, schema, job_id)
    events = audit_rows(conn, schema, target_type="job", target_id=str(job_id))
    if state in EXPECTED_LEGAL[action.value]:
        assert result.done == [job_id]
        assert result.skipped == []
        assert after["state"] == TARGET[action.value]
        assert len(events) == 1
        assert events[0]["action"] == f"ops.{action.value}"
        assert events[0]["before"]["state"] == state
        assert events[0]["after"]["state"] == TARGET[action.value]
        assert events[0]["run_id"] == result.run_id
    else:
        assert result.done == []
        assert [(s.id, s.reason, s.state) for s in result.skipped] == [
            (job_id, "illegal_state", state)
        ]
        assert after["state"] == state
        assert events == []
    assert result.failed == []
    assert result.exit_status() == 0


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", JOB_STATES)
def test_single_job_action(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob, action: Action, state: str
) -> None:
    job_id = insert_job(state)
    result = ops.act_on_job(installed, action, job_id, actor="alice", reason=REASON)
    assert result.command == f"ops {action.value}"
    _check_outcome(conn, installed.prefix, result, job_id, action, state)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", JOB_STATES)
def test_bulk_action_per_state(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob, action: Action, state: str
) -> None:
    job_id = insert_job(state)
    other = insert_job("completed" if state != "completed" else "available", queue="other")
    job_filter = ops.build_filter(states=[state], queue="default")
    result = ops.execute(
        installed, action, job_filter, actor="alice", reason=REASON, handle_sigint=False
    )
    _check_outcome(conn, installed.prefix, result, job_id, action, state)
    assert job_row(conn, installed.prefix, other)["state"] in ("completed", "available")
    runs = audit_rows(conn, installed.prefix, target_type="job_selection")
    assert len(runs) == 1
    assert runs[0]["action"] == f"ops.{action.value}_all"
    assert runs[0]["meta"]["filter"] == {"states": [state], "queue": "default"}
    assert runs[0]["reason"] == REASON


def test_retry_follows_oban_semantics(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    exhausted = insert_job("discarded", attempt=3, max_attempts=3)
    spare = insert_job("cancelled", attempt=1, max_attempts=5)
    result = ops.execute(
        installed,
        "retry",
        ops.build_filter(ids=[exhausted, spare]),
        actor="alice",
        reason=REASON,
        handle_sigint=False,
    )
    assert result.done == [exhausted, spare]
    row = job_row(conn, installed.prefix, exhausted)
    assert row["state"] == "available"
    assert row["max_attempts"] == 4
    assert row["attempt"] == 3
    assert row["discarded_at"] is None and row["completed_at"] is None
    assert row["cancelled_at"] is None
    now = conn.execute("SELECT timezone('UTC', now())").fetchone()
    assert now is not None and row["scheduled_at"] <= now[0]
    row = job_row(conn, installed.prefix, spare)
    assert (row["state"], row["max_attempts"], row["cancelled_at"]) == ("available", 5, None)
