"""`powertools workflow signal` and durable state in `workflow show` (syrupy snapshots)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import psycopg
from syrupy.assertion import SnapshotAssertion

from powertools_core import correlate
from powertools_core.config import Settings
from powertools_core.runtime import outcomes
from powertools_core.workflows import Workflow, context, flush
from tests.support.cli import one_line_error
from tests.workflows.app_durable import Order
from tests.workflows.app_wf import Step
from tests.workflows.test_cli import WHY, audit, cli, stable
from tests.workflows.test_durable import _claim


def _park(settings: Settings, conn: psycopg.Connection[Any], job_id: int, ack_for: Any) -> None:
    """Run ``job_id`` through the acker's write path with the outcome ``ack_for``."""
    claimed = _claim(conn, settings.prefix, job_id)
    context.load(conn, settings.prefix, [claimed])
    ack = outcomes.from_result(claimed, "p", ack_for)

    async def write() -> None:
        assert settings.database_url
        async with (
            await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c,
            c.transaction(),
        ):
            await flush.write(c, settings.prefix, [ack])

    asyncio.run(write())


def parked_order(settings: Settings, conn: psycopg.Connection[Any]) -> int:
    from powertools_core import Await

    job = Order.enqueue(
        {"amount": 7}, meta=correlate("order-17"), conn=conn, prefix=settings.prefix
    ).job
    _park(settings, conn, job.id, Await(["approved", "rejected"], step="decide"))
    return job.id


def test_signal_wakes_a_parked_job_and_is_audited(
    installed: Settings, conn: psycopg.Connection, snapshot: SnapshotAssertion
) -> None:
    s = installed.prefix
    job_id = parked_order(installed, conn)
    dry = cli(
        installed,
        "signal",
        "order-17",
        "approved",
        "--payload",
        '{"by": "alice"}',
        "--dry-run",
        "--format",
        "json",
    )
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["woke"] is True
    assert conn.execute(f'SELECT count(*) FROM "{s}".powertools_signals').fetchone() == (0,)

    run = cli(
        installed,
        "signal",
        "order-17",
        "approved",
        "--payload",
        '{"by": "alice"}',
        "--dedupe-key",
        "call-1",
        *WHY,
        "--format",
        "json",
    )
    assert run.exit_code == 0, run.output
    body = json.loads(run.stdout)
    assert (body["job_id"], body["woke"], body["delivered"]) == (job_id, True, True)
    body.update(job_id="<job>", signal_id="<signal>")
    assert stable(installed, json.dumps(body, indent=2)) == snapshot(name="json")
    state = conn.execute(f'SELECT state::text FROM "{s}".oban_jobs WHERE id = %s', [job_id])
    assert state.fetchone() == ("available",)
    assert audit(conn, s) == [("alice", "workflow.signal", str(job_id), "testing workflow ops")]

    again = cli(installed, "signal", str(job_id), "approved", "--dedupe-key", "call-1", *WHY)
    assert again.exit_code == 0, again.output
    text = re.sub(r"(?m)^(job\s+)\d+", r"\1<job>", stable(installed, again.stdout))
    assert re.sub(r"signal \d+", "signal <id>", text) == snapshot(name="dup")


def test_signal_refusals_are_one_line_errors(installed: Settings, conn: psycopg.Connection) -> None:
    job_id = parked_order(installed, conn)
    no_actor = cli(installed, "signal", str(job_id), "approved", "--reason", "long enough", "--yes")
    assert no_actor.exit_code == 2 and "an actor is required" in one_line_error(no_actor)
    bad_json = cli(installed, "signal", str(job_id), "approved", "--payload", "{oops", *WHY)
    assert bad_json.exit_code == 2 and "--payload is not valid JSON" in one_line_error(bad_json)
    missing = cli(installed, "signal", "order-404", "approved", *WHY)
    assert missing.exit_code == 2
    assert "no live job with key 'order-404'" in one_line_error(missing)
    digits = cli(installed, "signal", "17", "approved", "--key", *WHY)
    assert "no live job with key '17'" in one_line_error(digits)
    # A malformed request is named before the confirmation is asked for.
    empty = cli(installed, "signal", "", "approved")
    assert empty.exit_code == 2 and "a correlation key must be" in one_line_error(empty)
    bad_key = cli(installed, "signal", str(job_id), "approved", "--dedupe-key", "")
    assert bad_key.exit_code == 2 and "dedupe_key must be" in one_line_error(bad_key)
    assert audit(conn, installed.prefix) == []


def test_show_displays_durable_steps_waiting_on_a_signal_or_expired(
    installed: Settings, conn: psycopg.Connection, snapshot: SnapshotAssertion
) -> None:
    from powertools_core import Await

    s = installed.prefix
    wf = (
        Workflow("approvals")
        .add("request", Order.new({"amount": 1}))
        .add("late", Order.new({"amount": 2}))
        .add("notify", Step.new({}), deps=["request"])
        .insert(conn=conn, prefix=s)
    )
    _park(installed, conn, wf.job_ids["request"], Await("approved", step="decide"))
    _park(installed, conn, wf.job_ids["late"], Await("approved", timeout="1h", step="decide"))
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET scheduled_at = '2030-01-01 00:00:00' WHERE id = %s",
        [wf.job_ids["late"]],
    )
    shown = cli(installed, "show", str(wf.id), "--format", "json")
    steps = {st["name"]: st for st in json.loads(shown.stdout)["steps"]}
    assert steps["request"]["blocker"] == "waiting_on_signal"
    assert steps["request"]["awaiting"] == ["approved"]
    assert steps["late"]["wait_until"] == "2030-01-01T00:00:00Z"
    assert steps["notify"]["blocker"] == "waiting_on_dependencies"
    assert stable(installed, cli(installed, "show", str(wf.id)).stdout) == snapshot(name="ansi")

    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET scheduled_at = now() - interval '1s' WHERE id = %s",
        [wf.job_ids["late"]],
    )
    from powertools_core.workflows.duty import expire_awaits_async

    async def expire() -> int:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as c:
            return await expire_awaits_async(c, s)

    assert asyncio.run(expire()) == 1
    shown = json.loads(cli(installed, "show", str(wf.id), "--format", "json").stdout)
    late = {st["name"]: st for st in shown["steps"]}["late"]
    assert (late["state"], late["blocker"]) == ("available", "expired_wait")
