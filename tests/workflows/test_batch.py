"""Batches: callbacks once every job has finished (on_complete, on_success, on_discard)."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest

from powertools_core import Batch
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput
from powertools_core.workflows import Workflow, graph, reconcile
from powertools_core.workflows.actions import list_workflows
from tests.runtime.helpers import config_for, running, wait_for
from tests.workflows.app_wf import Boom, Step, Summarise
from tests.workflows.test_results import step_rows, without_reconciler

TERMINAL = {"completed", "discarded", "cancelled"}


def ended(conn: psycopg.Connection[Any], schema: str, batch_id: int) -> dict[str, Any]:
    def check() -> Any:
        rows = step_rows(conn, schema, batch_id)
        return all(v[0] in TERMINAL for v in rows.values()) and rows

    return wait_for(check, timeout=60, message="every job and callback ended")


def callbacks(**kwargs: Any) -> dict[str, Any]:
    return {k: Summarise.new(v) for k, v in kwargs.items()}


def test_a_batch_that_succeeds_runs_on_complete_and_on_success_after_every_job(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_reconciler(monkeypatch)
    s = installed.prefix
    batch = Batch("emails", **callbacks(on_complete={}, on_success={}, on_discard={}))
    batch.add_all(Step.new({}) for _ in range(20))
    ins = batch.insert(conn=conn, prefix=s)
    assert len(ins.job_ids) == 20 and set(ins.callbacks) == {
        "on_complete",
        "on_success",
        "on_discard",
    }
    with running(config_for(installed, queues={"wf": 6})):
        got = ended(conn, s, ins.id)
    counts = {"completed": 20}
    assert got["on_complete"][:2] == (
        "completed",
        {"callback": "on_complete", "total": 20, "counts": counts},
    )
    assert got["on_success"][:2] == (
        "completed",
        {"callback": "on_success", "total": 20, "counts": counts},
    )
    assert got["on_discard"][0] == "cancelled"
    assert got["on_discard"][3][-1]["error"].startswith("not_needed: no dependency was discarded")
    last_job = conn.execute(
        f'SELECT max(completed_at) FROM "{s}".oban_jobs WHERE id = ANY(%s)', [list(ins.job_ids)]
    ).fetchone()
    first_callback = conn.execute(
        f'SELECT min(attempted_at) FROM "{s}".oban_jobs WHERE id = ANY(%s)',
        [[ins.callbacks["on_complete"], ins.callbacks["on_success"]]],
    ).fetchone()
    assert last_job and first_callback and first_callback[0] >= last_job[0]
    [summary] = list_workflows(installed).workflows
    assert (summary.kind, summary.state, summary.steps) == ("batch", "completed", 23)


def test_a_discarded_job_runs_on_discard_and_cancels_on_success(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    batch = Batch("mixed", **callbacks(on_complete={}, on_success={}, on_discard={}))
    batch.add(Step.new({})).add(Boom.new({})).add(Step.new({}))
    ins = batch.insert(conn=conn, prefix=s)
    with running(config_for(installed, queues={"wf": 4})):
        got = ended(conn, s, ins.id)
    mixed = {"completed": 2, "discarded": 1}
    assert got["on_complete"][:2] == (
        "completed",
        {"callback": "on_complete", "total": 3, "counts": mixed},
    )
    assert got["on_discard"][:2] == (
        "completed",
        {"callback": "on_discard", "total": 3, "counts": mixed},
    )
    assert got["on_success"][0] == "cancelled"
    assert got["on_success"][3][-1]["error"] == "cancelled_by_dependency: job-2"
    assert list_workflows(installed).workflows[0].state == "failed"


def test_a_failing_callback_is_retried_until_delivered(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Batch("retry", on_complete=Summarise.new({"fail_once": True}))
        .add(Step.new({}))
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 2})):
        got = ended(conn, s, ins.id)
    assert got["on_complete"][0] == "completed"
    assert conn.execute(
        f'SELECT attempt FROM "{s}".oban_jobs WHERE id = %s', [ins.callbacks["on_complete"]]
    ).fetchone() == (2,)


def test_the_reconciler_delivers_callbacks_whose_promotion_was_lost(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Batch("lost", **callbacks(on_complete={}, on_discard={}))
        .add_all([Step.new({}), Step.new({})])
        .insert(conn=conn, prefix=s)
    )
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'discarded' WHERE id = %s", [ins.job_ids[0]]
    )
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed' WHERE id = %s", [ins.job_ids[1]]
    )
    assert reconcile(conn, s) == 2
    got = step_rows(conn, s, ins.id)
    assert (got["on_complete"][0], got["on_discard"][0]) == ("available", "available")


def test_batches_are_validated() -> None:
    with pytest.raises(InvalidInput, match="at least one job"):
        Batch("empty", on_complete=Step.new({})).workflow()
    with pytest.raises(InvalidInput, match="unique jobs cannot be workflow steps"):
        Batch("u").add(Step.new({}, unique=True))
    with pytest.raises(InvalidInput, match="expected a JobSpec"):
        Batch("x", on_complete="not a spec")  # type: ignore[arg-type]


STATES = ["available", "executing", "retryable", "completed", "discarded", "cancelled"]


def test_promotion_in_sql_agrees_with_the_pure_decision(
    installed: Settings, conn: psycopg.Connection
) -> None:
    """Every pair of dep states x policies x run_if, decided by SETTLE and by graph.decide."""
    s = installed.prefix
    cases = list(
        itertools.product(STATES, STATES, graph.POLICIES, graph.POLICIES, (None, "any_discarded"))
    )
    inserted = []
    for a_state, b_state, a_pol, b_pol, run_if in cases:
        wf = Workflow("case").add("a", Step.new({})).add("b", Step.new({}))
        wf.add("c", Step.new({}), deps=["a", "b"], on_failure={"a": a_pol, "b": b_pol})
        if run_if:
            wf.run_if["c"] = run_if  # type: ignore[assignment]
        ins = wf.insert(conn=conn, prefix=s)
        for name, state in (("a", a_state), ("b", b_state)):
            conn.execute(
                f'UPDATE "{s}".oban_jobs SET state = %s WHERE id = %s', [state, ins.job_ids[name]]
            )
        inserted.append(ins)
    while reconcile(conn, s):
        pass
    for (a_state, b_state, a_pol, b_pol, run_if), ins in zip(cases, inserted, strict=True):
        expected = graph.decide({"a": (a_state, a_pol), "b": (b_state, b_pol)}, run_if)  # type: ignore[arg-type]
        state = step_rows(conn, s, ins.id)["c"][0]
        want = {
            "wait": "suspended",
            "promote": "available",
            "cancel": "cancelled",
            "skip": "cancelled",
        }
        assert state == want[expected], (a_state, b_state, a_pol, b_pol, run_if)
