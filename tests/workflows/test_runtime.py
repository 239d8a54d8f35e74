"""Workflows run by a real in-process runtime: the acker's hook promotes, the duty reconciles."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from powertools_core.config import Settings
from powertools_core.runtime import leader
from powertools_core.workflows import Workflow
from tests.runtime.helpers import config_for, running, wait_for
from tests.workflows.app_wf import Boom, Step

TERMINAL = {"completed", "discarded", "cancelled"}


def rows(conn: psycopg.Connection[Any], schema: str, ids: dict[str, int]) -> dict[str, Any]:
    found = conn.execute(
        f'SELECT id, state::text, attempted_at, completed_at FROM "{schema}".oban_jobs '
        "WHERE id = ANY(%s)",
        [list(ids.values())],
    ).fetchall()
    by_id = {r[0]: r[1:] for r in found}
    return {name: by_id[i] for name, i in ids.items()}


def test_a_diamond_runs_in_dependency_order_promoted_by_the_ack_hook_alone(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the reconciler duty, only the acker's hook can promote the dependents.
    monkeypatch.setattr(
        leader,
        "DUTY_MODULES",
        tuple(m for m in leader.DUTY_MODULES if m != "powertools_core.workflows.duty"),
    )
    s = installed.prefix
    wf = Workflow("diamond")
    wf.add("a", Step.new({}))
    wf.add("b", Step.new({}), deps=["a"])
    wf.add("c", Step.new({}), deps=["a"])
    wf.add("d", Step.new({}), deps=["b", "c"])
    ins = wf.insert(conn=conn, prefix=s)
    with running(config_for(installed, queues={"wf": 4})):
        got = wait_for(
            lambda: (
                (r := rows(conn, s, dict(ins.job_ids)))
                and all(v[0] == "completed" for v in r.values())
                and r
            ),
            message="every step completed",
        )
    for step, deps in {"b": ["a"], "c": ["a"], "d": ["b", "c"]}.items():
        assert all(got[step][1] >= got[dep][2] for dep in deps), (step, got)


def test_a_discarded_step_cascades_and_a_continue_edge_still_runs(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("failing")
        .add("boom", Boom.new({}))
        .add("after", Step.new({}), deps=["boom"])
        .add("last", Step.new({}), deps=["after"])
        .add("cleanup", Step.new({}), deps=["boom"], on_failure="continue")
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 4})):
        got = wait_for(
            lambda: (
                (r := rows(conn, s, dict(ins.job_ids)))
                and all(v[0] in TERMINAL for v in r.values())
                and r
            ),
            message="every step ended",
        )
    assert {k: v[0] for k, v in got.items()} == {
        "boom": "discarded",
        "after": "cancelled",
        "last": "cancelled",
        "cleanup": "completed",
    }


def test_a_thousand_child_fan_out_with_a_fan_in_completes(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = Workflow("fan").add("root", Step.new({}))
    children = [f"child-{i}" for i in range(1000)]
    for name in children:
        wf.add(name, Step.new({}), deps=["root"])
    wf.add("join", Step.new({}), deps=children)
    ins = wf.insert(conn=conn, prefix=s)
    with running(config_for(installed, queues={"wf": 20})):
        got = wait_for(
            lambda: (
                (r := rows(conn, s, {"join": ins.job_ids["join"]}))
                and r["join"][0] == "completed"
                and r
            ),
            timeout=60,
            message="the fan-in completed",
        )
    last_child = conn.execute(
        f'SELECT max(completed_at) FROM "{s}".oban_jobs WHERE id = ANY(%s)',
        [[ins.job_ids[c] for c in children]],
    ).fetchone()
    assert last_child is not None and got["join"][1] >= last_child[0]


def test_the_leader_reconciler_finishes_steps_acked_without_promotion(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("lost")
        .add("a", Step.new({}, queue="elsewhere"))
        .add("b", Step.new({}), deps=["a"])
        .insert(conn=conn, prefix=s)
    )
    # An ack whose promotion was lost (a crash between the two): the step ended, b waits.
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed', completed_at = now() WHERE id = %s",
        [ins.job_ids["a"]],
    )
    with running(config_for(installed, queues={"wf": 2})):
        wait_for(
            lambda: rows(conn, s, {"b": ins.job_ids["b"]})["b"][0] == "completed",
            message="the reconciler promoted b and a worker ran it",
        )
