"""Workflow cancel racing other writers of the same step rows (real PostgreSQL, real locks)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from powertools_core.config import Settings
from powertools_core.workflows import Workflow
from powertools_core.workflows.operate import cancel_workflow
from tests.workflows.app_wf import Step


def with_options(url: str, options: str) -> str:
    """``url`` with libpq ``options`` added (server settings for the session it opens)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("options", options)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def wait_for_lock_wait(
    conn: psycopg.Connection[Any], fragment: str, alive: threading.Thread, outcome: dict[str, Any]
) -> None:
    """Until a backend running a statement containing ``fragment`` waits on a lock."""
    deadline = time.monotonic() + 30
    while True:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s AND pid <> pg_backend_pid()",
            [f"%{fragment}%"],
        ).fetchone()
        if row is not None:
            return
        assert alive.is_alive(), f"it finished without waiting: {outcome}"
        assert time.monotonic() < deadline, "the statement never waited on a lock"
        time.sleep(0.01)


def test_a_cancel_aborted_to_break_a_deadlock_runs_again_and_cancels_every_pending_step(
    installed: Settings,
    database_url: str,
    conn: psycopg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Another writer (here a plain transaction, in production an acker promoting steps) holds
    # the last pending step and then asks for the first, which the cancel holds: a deadlock.
    # PostgreSQL aborts the cancel (its deadlock check runs first); the cancel must run again
    # once the other writer is done, and act exactly once.
    s = installed.prefix
    wf = (
        Workflow("tangle")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .add("c", Step.new({}), deps=["a"])
        .insert(conn=conn, prefix=s)
    )
    first, last = min(wf.job_ids.values()), max(wf.job_ids.values())
    victim = installed.model_copy(
        update={"database_url": with_options(database_url, "-c deadlock_timeout=3s")}
    )
    outcome: dict[str, Any] = {}

    def cancel() -> None:
        try:
            outcome["result"] = cancel_workflow(
                victim, wf.id, actor="alice", reason="untangle the locks"
            )
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    caplog.set_level(logging.INFO, logger="powertools.workflows")
    with psycopg.connect(database_url) as other:
        other.execute("SET deadlock_timeout = '10min'")  # never the one that breaks the tie
        other.execute(f'SELECT 1 FROM "{s}".oban_jobs WHERE id = %s FOR UPDATE', [last])
        canceller = threading.Thread(target=cancel)
        canceller.start()
        wait_for_lock_wait(conn, "pending AS MATERIALIZED", canceller, outcome)

        def take_first() -> None:
            other.execute(f'SELECT 1 FROM "{s}".oban_jobs WHERE id = %s FOR UPDATE', [first])

        taker = threading.Thread(target=take_first)
        taker.start()
        taker.join(timeout=120)  # returns once the cancel was aborted and let go of `first`
        assert not taker.is_alive(), "the deadlock was not broken"
        other.commit()
    canceller.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    assert "deadlock victim" in caplog.text
    assert outcome["result"].changed == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
    rows = conn.execute(
        f'SELECT state::text, count(*) FROM "{s}".oban_jobs WHERE id = ANY(%s) GROUP BY 1',
        [list(wf.job_ids.values())],
    ).fetchall()
    assert rows == [("cancelled", 3)]
    events = conn.execute(
        f'SELECT action, count(*) FROM "{s}".powertools_audit_events GROUP BY 1 ORDER BY 1'
    ).fetchall()
    assert events == [("workflow.cancel", 1), ("workflow.cancel_step", 3)]
