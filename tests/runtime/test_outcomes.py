"""What each kind of attempt leaves in oban_jobs (in-process runtime, real PostgreSQL)."""

from __future__ import annotations

import json

import psycopg

from powertools_core.config import Settings
from tests.runtime.helpers import (
    config_for,
    job_row,
    running,
    runs,
    seed,
    states,
    wait_for,
)


def _errors(row: dict[str, object]) -> list[dict[str, object]]:
    return [e if isinstance(e, dict) else json.loads(str(e)) for e in row["errors"]]  # type: ignore[attr-defined]


def test_priority_order_with_one_slot(rt_settings: Settings, conn: psycopg.Connection) -> None:
    s = rt_settings.prefix
    prios = [3, 0, 2, 1, 0, 3, 1, 2]
    ids = seed(conn, s, "Record", len(prios), priorities=prios)
    expected = [i for _, i in sorted(zip(prios, ids, strict=True))]
    with running(config_for(rt_settings, queues={"default": 1}, prefetch=0)):
        wait_for(lambda: states(conn, s).get("completed") == len(ids), message="all completed")
    assert [r[0] for r in runs(conn, s)] == expected


def test_scheduled_job_waits_until_due(rt_settings: Settings, conn: psycopg.Connection) -> None:
    s = rt_settings.prefix
    (due,) = conn.execute("SELECT timezone('UTC', now()) + interval '1.5 seconds'").fetchone()  # type: ignore[misc]
    (job_id,) = seed(conn, s, "Record", state="scheduled", scheduled_at=due)
    (now_id,) = seed(conn, s, "Record")
    with running(config_for(rt_settings)):
        wait_for(lambda: states(conn, s).get("completed") == 2, message="both completed")
    row = job_row(conn, s, job_id)
    assert row["attempted_at"] >= due
    assert job_row(conn, s, now_id)["attempted_at"] < due


def test_retries_append_errors_then_complete(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    (job_id,) = seed(conn, s, "Record", args={"fail_times": 2})
    (sync_id,) = seed(conn, s, "RecordSync", args={"fail_times": 1})
    with running(config_for(rt_settings)):
        wait_for(lambda: states(conn, s).get("completed") == 2, message="both completed")
    row = job_row(conn, s, job_id)
    assert row["attempt"] == 3
    errors = _errors(row)
    assert [e["attempt"] for e in errors] == [1, 2]
    assert "RuntimeError: planned failure on attempt 1" in str(errors[0]["error"])
    assert "Traceback" in str(errors[0]["error"])
    assert {"at", "attempt", "error"} <= set(errors[0])
    sync_row = job_row(conn, s, sync_id)
    assert sync_row["attempt"] == 2 and len(_errors(sync_row)) == 1
    assert [r[1] for r in runs(conn, s) if r[0] == job_id] == [1, 2, 3]


def test_backoff_schedules_the_retry_and_last_attempt_discards(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    (retry_id,) = seed(conn, s, "FailSlowBackoff", max_attempts=3)
    (last_id,) = seed(conn, s, "FailSlowBackoff", max_attempts=1)
    with running(config_for(rt_settings)):
        wait_for(lambda: states(conn, s) == {"retryable": 1, "discarded": 1}, message="settled")
    row = job_row(conn, s, retry_id)
    delay = (row["scheduled_at"] - row["attempted_at"]).total_seconds()
    assert 29.0 <= delay <= 35.0
    assert len(_errors(row)) == 1
    last = job_row(conn, s, last_id)
    assert last["state"] == "discarded" and last["discarded_at"] is not None
    assert _errors(last)[0]["attempt"] == 1


def test_snooze_cancel_discard(rt_settings: Settings, conn: psycopg.Connection) -> None:
    s = rt_settings.prefix
    (snooze,) = seed(conn, s, "Snoozer", max_attempts=5)
    (cancel,) = seed(conn, s, "Canceller")
    (discard,) = seed(conn, s, "Discarder")
    with running(config_for(rt_settings)):
        wait_for(
            lambda: states(conn, s) == {"scheduled": 1, "cancelled": 1, "discarded": 1},
            message="three outcomes",
        )
    row = job_row(conn, s, snooze)
    # Oban's snooze: attempt stays consumed but max_attempts grows by one; no error recorded.
    assert (row["attempt"], row["max_attempts"], _errors(row)) == (1, 6, [])
    assert 59.0 <= (row["scheduled_at"] - row["attempted_at"]).total_seconds() <= 65.0
    row = job_row(conn, s, cancel)
    assert row["cancelled_at"] is not None
    assert _errors(row)[0]["error"] == "not needed any more"
    row = job_row(conn, s, discard)
    assert row["discarded_at"] is not None
    assert _errors(row)[0]["error"] == "malformed payload"


def test_timeouts_fail_the_attempt(rt_settings: Settings, conn: psycopg.Connection) -> None:
    s = rt_settings.prefix
    (async_id,) = seed(conn, s, "SlowAsync", max_attempts=1)
    (sync_id,) = seed(conn, s, "SlowSync", args={"sleep": 1}, max_attempts=2)
    with running(config_for(rt_settings)):
        wait_for(lambda: states(conn, s) == {"discarded": 1, "retryable": 1}, message="timeouts")
    for job_id in (async_id, sync_id):
        (error,) = _errors(job_row(conn, s, job_id))
        assert "worker timeout of 0.2s" in str(error["error"])


def test_unknown_worker_is_retried_with_a_clear_error(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    (job_id,) = seed(conn, s, "myapp.gone.Missing", max_attempts=3)
    with running(config_for(rt_settings)):
        wait_for(lambda: states(conn, s) == {"retryable": 1}, message="retryable")
    row = job_row(conn, s, job_id)
    assert row["attempt"] == 1
    (error,) = _errors(row)
    assert "unknown worker 'myapp.gone.Missing'" in str(error["error"])
