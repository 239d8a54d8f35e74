"""The doctor check ``stuck_workflows`` through the doctor runner, on real rows."""

from __future__ import annotations

import psycopg

from powertools_core import Await
from powertools_core.config import Settings
from powertools_core.workflows import Workflow
from tests.doctor.conftest import of, run, status
from tests.workflows.app_durable import Order
from tests.workflows.app_wf import Step
from tests.workflows.test_cli_durable import _park


def test_a_lost_promotion_and_an_unwoken_await_are_stuck_workflow_warnings(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = Workflow("stuck").add("a", Step.new({})).add("b", Step.new({}), deps=["a"])
    wf = ins.insert(conn=conn, prefix=s)
    assert status(run(installed), "stuck_workflows") == "ok"  # b waits on a running dependency

    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed', "
        "completed_at = timezone('UTC', now()) - interval '10 minutes' WHERE id = %s",
        [wf.job_ids["a"]],
    )  # acked ten minutes ago, its promotion lost, and no reconciler ran since
    result = run(installed)
    [ready] = of(result, "stuck_workflows")
    assert ready.severity == "warning" and ready.object == f"workflow:{wf.id}"
    assert f"jobs {wf.job_ids['b']} in workflow(s) {wf.id}" in ready.message
    assert "dependencies ended up to 10m ago" in ready.message
    assert ready.remediation.startswith(f"powertools worker run --prefix {s}")
    assert result.exit_code == 1
    assert run(installed, strict=True).exit_code == 1  # live traffic, never promoted

    wait = Order.enqueue({"amount": 1}, conn=conn, prefix=s).job
    _park(installed, conn, wait.id, Await(["ok"], timeout="1s"))
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET scheduled_at = timezone('UTC', now()) - interval '1h' "
        "WHERE id = %s",
        [wait.id],
    )
    found = of(run(installed), "stuck_workflows")
    assert [f.object for f in found] == [f"workflow:{wf.id}", f"job:{wait.id}"]
    assert "parked past their await timeout (up to 1h ago" in found[1].message

    # A longer threshold tolerates both.
    relaxed = run(installed, thresholds={"stuck_workflow_after": "2h"})
    assert status(relaxed, "stuck_workflows") == "ok"
