"""Step results: recorded with the completion, read by dependents through ``job.workflow``."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from powertools_core.config import Settings
from powertools_core.errors import InvalidInput
from powertools_core.jobs.model import Job
from powertools_core.runtime import leader, outcomes
from powertools_core.workflows import Workflow, context, flush
from tests.runtime.helpers import config_for, job_row, running, seed, wait_for
from tests.workflows.app_wf import AsyncSum, Fetch, NaNResult, Step, Sum

TERMINAL = {"completed", "discarded", "cancelled"}


def without_reconciler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the acker can promote: proves promotion rides the ack, not the leader's duty."""
    monkeypatch.setattr(
        leader,
        "DUTY_MODULES",
        tuple(m for m in leader.DUTY_MODULES if m != "powertools_core.workflows.duty"),
    )


def step_rows(conn: psycopg.Connection[Any], schema: str, workflow_id: int) -> dict[str, Any]:
    rows = conn.execute(
        f"SELECT s.name, j.state::text, s.result, s.result_at IS NOT NULL, j.errors "
        f'FROM "{schema}".powertools_workflow_steps s '
        f'JOIN "{schema}".oban_jobs j ON j.id = s.job_id WHERE s.workflow_id = %s',
        [workflow_id],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_a_return_value_is_recorded_and_read_by_dependents(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_reconciler(monkeypatch)
    s = installed.prefix
    ins = (
        Workflow("results")
        .add("fetch", Fetch.new({"rows": [4, 5, 6]}))
        .add("sum", Sum.new({}), deps=["fetch"])
        .add("async_sum", AsyncSum.new({}), deps=["fetch"])
        .insert(conn=conn, prefix=s)
    )
    with running(config_for(installed, queues={"wf": 4})):
        got = wait_for(
            lambda: (
                (r := step_rows(conn, s, ins.id))
                and all(v[0] in TERMINAL for v in r.values())
                and r
            ),
            message="every step ended",
        )
    assert got["fetch"][:3] == ("completed", {"rows": [4, 5, 6]}, True)
    assert got["sum"][:3] == ("completed", 15, True)
    assert got["async_sum"][:3] == (
        "completed",
        {"total": 15, "deps": {"fetch": {"rows": [4, 5, 6]}}},
        True,
    )


def test_a_result_jsonb_cannot_hold_fails_the_attempt_and_the_acker_goes_on(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("nan")
        .add("bad", NaNResult.new({}))
        .add("after", Step.new({}), deps=["bad"])
        .insert(conn=conn, prefix=s)
    )
    (plain,) = seed(conn, s, "tests.workflows.app_wf.Step", queue="wf")
    with running(config_for(installed, queues={"wf": 2})):
        got = wait_for(
            lambda: (
                (r := step_rows(conn, s, ins.id))
                and all(v[0] in TERMINAL for v in r.values())
                and job_row(conn, s, plain)["state"] == "completed"
                and r
            ),
            message="the workflow ended and the plain job completed",
        )
    state, value, has_result, errors = got["bad"]
    assert (state, value, has_result) == ("discarded", None, False)
    assert (
        "NotJSON: the result of workflow step 'bad' is not JSON-serialisable"
        in (errors[-1]["error"])
    )
    assert got["after"][0] == "cancelled"


def _claim(conn: psycopg.Connection[Any], schema: str, job_id: int) -> Job:
    row = conn.execute(
        f"UPDATE \"{schema}\".oban_jobs SET state = 'executing', attempt = attempt + 1, "
        "attempted_by = ARRAY['node', 'producer'], attempted_at = now() WHERE id = %s "
        "RETURNING id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, "
        "scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, priority, tags, "
        "meta, cancelled_at",
        [job_id],
    ).fetchone()
    assert row is not None
    return Job.from_row(row)


def test_the_ack_its_result_and_the_promotion_commit_together(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("atomic")
        .add("fetch", Fetch.new({}))
        .add("sum", Sum.new({}), deps=["fetch"])
        .insert(conn=conn, prefix=s)
    )
    job = _claim(conn, s, ins.job_ids["fetch"])
    ack = outcomes.from_result(job, "producer", {"rows": [1]})
    assert ack.effects is not None and ack.effects.record

    async def write(commit: bool) -> flush.Written:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as tx:
            async with tx.transaction(force_rollback=not commit):
                written = await flush.write(tx, s, [ack])
                # Not committed yet: another connection sees none of it.
                seen = step_rows(conn, s, ins.id)
                assert seen["fetch"][:3] == ("executing", None, False)
                assert seen["sum"][0] == "suspended"
            return written

    rolled_back = asyncio.run(write(commit=False))
    assert rolled_back.committed == [job.id] and rolled_back.promoted == 1
    assert step_rows(conn, s, ins.id)["fetch"][0] == "executing"
    asyncio.run(write(commit=True))
    seen = step_rows(conn, s, ins.id)
    assert seen["fetch"][:3] == ("completed", {"rows": [1]}, True)
    assert seen["sum"][0] == "available"


def test_a_stale_ack_records_no_result(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = Workflow("stale").add("fetch", Fetch.new({})).insert(conn=conn, prefix=s)
    job = _claim(conn, s, ins.job_ids["fetch"])
    stale = outcomes.from_result(job, "another-producer", {"rows": [9]})

    async def write() -> flush.Written:
        async with (
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as tx,
            tx.transaction(),
        ):
            return await flush.write(tx, s, [stale])

    assert asyncio.run(write()).committed == []
    assert step_rows(conn, s, ins.id)["fetch"][:3] == ("executing", None, False)


def test_job_workflow_reads_only_dependencies(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    ins = (
        Workflow("reads")
        .add("fetch", Fetch.new({}))
        .add("other", Step.new({}))
        .add("sum", Sum.new({}), deps=["fetch"])
        .add("cleanup", Step.new({}), deps=["other"], on_failure="continue")
        .insert(conn=conn, prefix=s)
    )
    for name, value in (("fetch", {"rows": [2]}), ("other", None)):
        job = _claim(conn, s, ins.job_ids[name])
        conn.execute(
            f'UPDATE "{s}".oban_jobs SET state = %s WHERE id = %s',
            ["completed" if value else "discarded", job.id],
        )
        if value:
            conn.execute(
                f'UPDATE "{s}".powertools_workflow_steps SET result = %s, result_at = now() '
                "WHERE job_id = %s",
                [psycopg.types.json.Jsonb(value), job.id],
            )
    sum_job = _claim(conn, s, ins.job_ids["sum"])
    cleanup = _claim(conn, s, ins.job_ids["cleanup"])
    with pytest.raises(InvalidInput, match="was not loaded"):
        _ = sum_job.workflow
    context.load(conn, s, [sum_job, cleanup])
    assert sum_job.workflow.result("fetch") == {"rows": [2]}
    assert sum_job.workflow.results() == {"fetch": {"rows": [2]}}
    with pytest.raises(InvalidInput, match="does not depend on 'other'"):
        sum_job.workflow.result("other")
    with pytest.raises(InvalidInput, match="ended discarded without a result"):
        cleanup.workflow.result("other")
    assert cleanup.workflow.get("other", "n/a") == "n/a"
    plain = Job(id=1, state="executing", queue="q", worker="w", args={})
    with pytest.raises(InvalidInput, match="not a workflow step"):
        _ = plain.workflow


def test_steps_loaded_together_share_a_dependency_and_keep_workflows_apart(
    installed: Settings, conn: psycopg.Connection
) -> None:
    # A batch's context reads each dependency once, however many steps name it; a dependency of
    # the same name in another workflow is another dependency.
    s = installed.prefix
    flows = [
        Workflow(f"shared-{n}")
        .add("fetch", Fetch.new({}))
        .add("left", Sum.new({}), deps=["fetch"])
        .add("right", Sum.new({}), deps=["fetch"])
        .insert(conn=conn, prefix=s)
        for n in (1, 2)
    ]
    for n, ins in enumerate(flows, start=1):
        job = _claim(conn, s, ins.job_ids["fetch"])
        conn.execute(f"UPDATE \"{s}\".oban_jobs SET state = 'completed' WHERE id = %s", [job.id])
        conn.execute(
            f'UPDATE "{s}".powertools_workflow_steps SET result = %s, result_at = now() '
            "WHERE job_id = %s",
            [psycopg.types.json.Jsonb({"rows": [n]}), job.id],
        )
    steps = [_claim(conn, s, ins.job_ids[name]) for ins in flows for name in ("left", "right")]
    context.load(conn, s, steps)
    assert [j.workflow.result("fetch") for j in steps] == [{"rows": [1]}] * 2 + [{"rows": [2]}] * 2
    assert {j.workflow.dependencies["fetch"].state for j in steps} == {"completed"}


@pytest.mark.parametrize(
    "text", ['{"r": NaN}', '{"r": Infinity}', '"\\u0000"', '"\\ud800"'], ids=str
)
def test_postgres_refuses_what_encode_refuses(conn: psycopg.Connection, text: str) -> None:
    """Why the check exists: json.dumps writes these, jsonb rejects them."""
    with pytest.raises(psycopg.errors.DataError):
        conn.execute("SELECT %s::jsonb", [text])


def test_an_outcome_the_acker_cannot_write_becomes_a_failed_attempt(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (or a value the checks missed) in the effects write must neither kill the acker
    nor leave the job executing: the attempt is recorded as failed and retried."""
    s = installed.prefix
    ins = Workflow("broken").add("fetch", Fetch.new({})).insert(conn=conn, prefix=s)
    (plain,) = seed(conn, s, "tests.workflows.app_wf.Step", queue="wf")
    real = flush.write
    fetch_id = ins.job_ids["fetch"]
    calls = {"n": 0}

    async def broken_once(conn: Any, prefix: str, batch: Any, **kwargs: Any) -> flush.Written:
        # The first attempt's completion cannot be written (in the batch, then on its own).
        if any(a.id == fetch_id and a.attempt == 1 for a in batch):
            calls["n"] += 1
            raise RuntimeError("boom in the effects write")
        return await real(conn, prefix, batch, **kwargs)

    monkeypatch.setattr(flush, "write", broken_once)
    monkeypatch.setattr(Fetch, "backoff", lambda self, attempt: 0.05)
    with running(config_for(installed, queues={"wf": 2})):
        got = wait_for(
            lambda: (
                (r := step_rows(conn, s, ins.id))
                and r["fetch"][0] == "completed"
                and job_row(conn, s, plain)["state"] == "completed"
                and r
            ),
            message="the step completed on its retry and the plain job ran",
        )
    _, value, _, errors = got["fetch"]
    assert value == {"rows": [1, 2, 3]} and calls["n"] >= 1
    assert errors[-1]["error"] == (
        "the outcome could not be written: RuntimeError: boom in the effects write"
    )
