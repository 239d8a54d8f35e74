"""Run-time fan-out (``job.workflow.add``) and fan-in on ``added_by(step)``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

from powertools_core.config import Settings
from powertools_core.errors import InvalidInput
from powertools_core.jobs.model import Job
from powertools_core.runtime import outcomes
from powertools_core.workflows import Workflow, added_by, context, flush
from powertools_core.workflows.context import WorkflowContext
from tests.runtime.helpers import config_for, running, wait_for
from tests.workflows.app_wf import Merge, Part, Split, Step
from tests.workflows.test_results import step_rows, without_reconciler

TERMINAL = {"completed", "discarded", "cancelled"}


def ended(conn: psycopg.Connection[Any], schema: str, workflow_id: int, count: int) -> Any:
    def check() -> Any:
        rows = step_rows(conn, schema, workflow_id)
        return len(rows) == count and all(v[0] in TERMINAL for v in rows.values()) and rows

    return wait_for(check, timeout=60, message=f"{count} steps ended")


def times(conn: psycopg.Connection[Any], schema: str, workflow_id: int) -> dict[str, Any]:
    rows = conn.execute(
        f'SELECT s.name, j.attempted_at, j.completed_at, s.added_by FROM "{schema}".'
        f'powertools_workflow_steps s JOIN "{schema}".oban_jobs j ON j.id = s.job_id '
        "WHERE s.workflow_id = %s",
        [workflow_id],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_a_step_fans_out_and_a_declared_fan_in_waits_for_everything_it_added(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_reconciler(monkeypatch)
    s = installed.prefix
    files = [f"f{i:02d}" for i in range(25)]
    ins = (
        Workflow("files")
        .add("split", Split.new({"files": files}))
        .add("join", Merge.new({}), deps=[added_by("split")])
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 8})):
        got = ended(conn, s, ins.id, 2 + len(files))
    assert {n: v[0] for n, v in got.items()} == dict.fromkeys(got, "completed")
    assert got["join"][1] == {"total": 3 * len(files), "parts": [f"part-{f}" for f in files]}
    when = times(conn, s, ins.id)
    assert all(when[f"part-{f}"][2] == "split" for f in files)
    last_part = max(when[f"part-{f}"][1] for f in files)
    assert when["join"][0] >= last_part


def test_a_step_can_add_its_own_fan_in(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_reconciler(monkeypatch)
    s = installed.prefix
    ins = (
        Workflow("self-merge")
        .add("split", Split.new({"files": ["a", "bb", "ccc"], "merge": True}))
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 4})):
        got = ended(conn, s, ins.id, 5)
    assert got["merge"][:2] == (
        "completed",
        {"total": 6, "parts": ["part-a", "part-bb", "part-ccc"]},
    )


def test_a_failed_added_step_cascades_through_the_fan_in_or_continues(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("bad-part")
        .add("split", Split.new({"files": ["ok", "bad"]}))
        .add("join", Merge.new({}), deps=[added_by("split")])
        .add("report", Step.new({}), deps=[added_by("split")], on_failure="continue")
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 4})):
        got = ended(conn, s, ins.id, 5)
    states = {n: v[0] for n, v in got.items()}
    assert states == {
        "split": "completed",
        "part-ok": "completed",
        "part-bad": "discarded",
        "join": "cancelled",
        "report": "completed",
    }
    assert got["join"][3][-1]["error"] == "cancelled_by_dependency: part-bad"


def test_a_retried_attempt_adds_its_steps_once(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("flaky")
        .add("split", Split.new({"files": ["a", "b"], "flaky": True}))
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 4})):
        wait_for(
            lambda: step_rows(conn, s, ins.id)["split"][0] == "retryable",
            message="the first attempt failed",
        )
        assert set(step_rows(conn, s, ins.id)) == {"split"}  # nothing added by it
        conn.execute(
            f"UPDATE \"{s}\".oban_jobs SET state = 'available', scheduled_at = now() WHERE id = %s",
            [ins.job_ids["split"]],
        )
        got = ended(conn, s, ins.id, 3)
    assert sorted(got) == ["part-a", "part-b", "split"]


def test_a_name_clash_fails_the_attempt_and_adds_nothing(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("clash")
        .add("split", Split.new({"files": ["a"], "clash": "other"}, max_attempts=1))
        .add("other", Step.new({}))
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 2})):
        got = ended(conn, s, ins.id, 2)
    assert got["split"][0] == "discarded"
    assert got["split"][3][-1]["error"] == (
        f"fan-out refused: step 'other' already exists in workflow {ins.id}"
    )


def _ctx(step: str = "split") -> WorkflowContext:
    return WorkflowContext(workflow_id=1, step=step)


def test_run_time_additions_are_validated_when_added() -> None:
    ctx = _ctx()
    ctx.add("a", Part.new({"file": "a"}))
    with pytest.raises(InvalidInput, match="already adds or is a step named 'a'"):
        ctx.add("a", Part.new({"file": "a"}))
    with pytest.raises(InvalidInput, match="already adds or is a step named 'split'"):
        ctx.add("split", Part.new({}))
    with pytest.raises(InvalidInput, match="unique jobs cannot be workflow steps"):
        ctx.add("u", Part.new({}, unique=True))
    with pytest.raises(InvalidInput, match="depends on itself"):
        ctx.add("self", Part.new({}), deps=["self"])
    # "merge" waits for everything split adds, so an addition that waits for merge is a cycle
    ctx.add("merge", Merge.new({}), deps=[added_by("split")])
    with pytest.raises(InvalidInput, match="cycle"):
        ctx.add("late", Part.new({}), deps=["merge"])
    assert [a.name for a in ctx.additions] == ["a", "merge"]
    # The addition refused as a cycle left no trace: its name is free again.
    ctx.add("late", Part.new({}))
    with pytest.raises(InvalidInput, match="already adds or is a step named 'late'"):
        ctx.add("late", Part.new({}))


def test_a_wide_fan_out_checks_names_against_every_addition() -> None:
    ctx = _ctx()
    for i in range(3000):
        ctx.add(f"c{i}", Part.new({}))
    with pytest.raises(InvalidInput, match="already adds or is a step named 'c0'"):
        ctx.add("c0", Part.new({}))
    # additions appended directly are seen too
    ctx.additions.append(ctx.additions[0].__class__("direct", Part.new({}), ()))
    with pytest.raises(InvalidInput, match="already adds or is a step named 'direct'"):
        ctx.add("direct", Part.new({}))
    assert len(ctx.additions) == 3001


def test_run_time_deps_must_have_ended_or_be_of_the_same_run() -> None:
    from powertools_core.workflows.context import FanOut
    from powertools_core.workflows.fanout import problems

    ctx = _ctx()
    ctx.add("a", Part.new({}))
    ctx.add("b", Part.new({}), deps=["a", "split", "done", "running"])
    ctx.add("c", Part.new({}), deps=[added_by("running"), "ghost"])
    fo = FanOut(1, "split", tuple(ctx.additions))
    found = {(1, "done"): "completed", (1, "running"): "executing", (1, "a"): "completed"}
    assert problems(fo, found) == [
        "step 'a' already exists in workflow 1",
        "step 'b' depends on 'running', which has not ended (executing); a step added at run "
        "time may depend on steps added in the same run, on the step adding it, on "
        "added_by(...), or on steps that have ended",
        "step 'c' depends on unknown step 'ghost'",
    ]


def _claimed(conn: psycopg.Connection[Any], schema: str, job_id: int, producer: str) -> Job:
    row = conn.execute(
        f"UPDATE \"{schema}\".oban_jobs SET state = 'executing', attempt = attempt + 1, "
        "attempted_by = ARRAY['node', %s], attempted_at = now() WHERE id = %s "
        "RETURNING id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, "
        "scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, priority, tags, "
        "meta, cancelled_at",
        [producer, job_id],
    ).fetchone()
    assert row is not None
    return Job.from_row(row)


def test_two_steps_adding_the_same_name_at_once_add_it_once(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("race")
        .add("left", Step.new({}))
        .add("right", Step.new({}))
        .insert(conn=conn, prefix=s)
    )
    acks = {}
    for name in ("left", "right"):
        job = _claimed(conn, s, ins.job_ids[name], f"p-{name}")
        context.load(conn, s, [job])
        job.workflow.add("shared", Part.new({"file": name}))
        acks[name] = outcomes.from_result(job, f"p-{name}", None)
    barrier = threading.Barrier(2)
    written: dict[str, flush.Written] = {}

    def ack(name: str) -> None:
        async def go() -> None:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
                await c.execute("SELECT 1")
                barrier.wait()
                async with c.transaction():
                    written[name] = await flush.write(c, s, [acks[name]])

        asyncio.run(go())

    threads = [threading.Thread(target=ack, args=(n,)) for n in acks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w.added for w in written.values()) == [0, 1]
    assert sorted(len(w.refused) for w in written.values()) == [0, 1]
    rows = step_rows(conn, s, ins.id)
    assert sorted(rows) == ["left", "right", "shared"]
    assert sorted(rows[n][0] for n in ("left", "right")) == ["completed", "retryable"]
