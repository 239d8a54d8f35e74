"""Blockers of steps and durable waits, and the stuck-step queries doctor can run."""

from __future__ import annotations

from typing import Any

import psycopg

from powertools_core import Await
from powertools_core.config import Settings
from powertools_core.db.identifiers import qualify
from powertools_core.workflows import Workflow, diagnose, graph, promote
from tests.workflows.app_durable import Order
from tests.workflows.app_wf import Step
from tests.workflows.test_cli_durable import _park


def test_step_blockers_name_what_each_job_waits_for(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = (
        Workflow("diag")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .add("c", Step.new({}), deps=["a", "b"])
        .add("wait", Order.new({"amount": 1}))
        .insert(conn=conn, prefix=s)
    )
    _park(installed, conn, wf.job_ids["wait"], Await(["ok"], timeout="1h", step="decide"))
    plain = Order.enqueue({"amount": 2}, conn=conn, prefix=s).job
    conn.execute(f"UPDATE \"{s}\".oban_jobs SET state = 'suspended' WHERE id = %s", [plain.id])
    ids = [*wf.job_ids.values(), plain.id]
    found = diagnose.step_blockers(conn, s, ids)
    assert set(found) == {wf.job_ids["b"], wf.job_ids["c"], wf.job_ids["wait"]}
    c = found[wf.job_ids["c"]]
    assert (c.code, c.waiting_on, c.step, c.workflow_id) == (
        graph.WAITING_ON_DEPENDENCIES,
        ["a", "b"],
        "c",
        wf.id,
    )
    parked = found[wf.job_ids["wait"]]
    assert (parked.code, parked.waiting_on) == (graph.WAITING_ON_SIGNAL, ["ok"])
    assert parked.until is not None and parked.summary == diagnose.SUMMARIES[parked.code]

    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'retryable' WHERE id = %s", [wf.job_ids["a"]]
    )
    assert diagnose.step_blockers(conn, s, [wf.job_ids["b"]])[wf.job_ids["b"]].code == (
        graph.WAITING_ON_RETRYABLE_DEPENDENCY
    )


def _rows(conn: psycopg.Connection[Any], sql: str, schema: str, **params: Any) -> list[Any]:
    return conn.execute(qualify(sql, schema), params).fetchall()


def test_stuck_queries_find_what_the_duties_should_have_moved(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = Workflow("stuck").add("a", Step.new({})).add("b", Step.new({}), deps=["a"])
    ins = wf.insert(conn=conn, prefix=s)
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed', "
        "completed_at = timezone('UTC', now()) - interval '10 minutes' WHERE id = %s",
        [ins.job_ids["a"]],
    )  # acked long ago, promotion lost, no reconciler
    wait = Order.enqueue({"amount": 1}, conn=conn, prefix=s).job
    _park(installed, conn, wait.id, Await(["ok"], timeout="1s"))
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET scheduled_at = timezone('UTC', now()) - interval '1h' "
        "WHERE id = %s",
        [wait.id],
    )
    ready = _rows(conn, diagnose.STUCK_READY, s, older_than=60, limit=10)
    assert [(r[0], r[1], r[2]) for r in ready] == [(ins.job_ids["b"], ins.id, "b")]
    assert _rows(conn, diagnose.STUCK_READY, s, older_than=3600, limit=10) == []
    expired = _rows(conn, diagnose.STUCK_EXPIRED, s, older_than=60, limit=10)
    assert [r[0] for r in expired] == [wait.id]
    promote(conn, s, [ins.job_ids["a"]])
    assert _rows(conn, diagnose.STUCK_READY, s, older_than=60, limit=10) == []
