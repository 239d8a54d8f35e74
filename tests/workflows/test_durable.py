"""Durable jobs: Next/Await/Done/Stop on one row, signals, timeouts, correlation keys."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import psycopg
import pytest

from powertools_core import Await, Done, Next, Stop, correlate, signal, signal_async
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput, NotFound
from powertools_core.jobs.model import Job
from powertools_core.runtime import outcomes
from powertools_core.workflows import context, flush
from powertools_core.workflows.durable import DurableContext
from powertools_core.workflows.signals import parse_target
from tests.runtime.helpers import config_for, job_row, running, wait_for
from tests.workflows.app_durable import Order

Q = {"durable": 2}


def _job(meta: dict[str, Any] | None = None, attempt: int = 1) -> Job:
    return Job(
        id=9, state="executing", queue="q", worker="w", args={}, attempt=attempt, meta=meta or {}
    )


# pure ------------------------------------------------------------------------------------


def test_durable_outcomes_map_to_acks_that_keep_their_attempts() -> None:
    nxt = outcomes.from_result(_job(), "p", Next("charge", {"n": 1}))
    assert (nxt.state, nxt.bump) == ("available", 1)
    assert nxt.effects is not None and nxt.effects.schedule == 0.0
    assert json.loads(nxt.effects.durable or "") == {"step": "charge", "state": {"n": 1}}

    meta = {"durable": {"step": "charge", "state": {"n": 1}}}
    wait = outcomes.from_result(_job(meta), "p", Await("ok", timeout="2d", step="decide"))
    assert (wait.state, wait.bump) == ("suspended", 1)
    assert wait.effects is not None and wait.effects.park and wait.effects.schedule == 172800
    assert json.loads(wait.effects.durable or "") == {
        "step": "decide",
        "state": {"n": 1},
        "await": {"signals": ["ok"], "timeout": 172800.0},
    }
    forever = outcomes.from_result(_job(meta), "p", Await(["a", "b", "a"], state=None))
    assert forever.effects is not None and forever.effects.schedule is None
    assert json.loads(forever.effects.durable or "")["await"] == {"signals": ["a", "b"]}

    done = outcomes.from_result(_job(meta), "p", Done({"ok": True}))
    assert done.state == "completed" and done.effects is not None
    assert json.loads(done.effects.durable or "")["result"] == {"ok": True}
    plain_return = outcomes.from_result(_job(meta), "p", 42)
    assert json.loads(plain_return.effects.durable or "")["result"] == 42  # type: ignore[union-attr]

    stop = outcomes.from_result(_job(meta), "p", Stop("no"))
    assert stop.state == "cancelled" and json.loads(stop.error or "")["error"] == "no"

    bad = outcomes.from_result(_job(meta), "p", Next("x", {float("nan")}))
    assert bad.state == "retryable" and "not JSON-serialisable" in (bad.error or "")


def test_await_and_signal_arguments_are_checked() -> None:
    with pytest.raises(InvalidInput, match="at least one signal"):
        Await([])
    with pytest.raises(InvalidInput, match="timeout must be positive"):
        Await("a", timeout=0)
    with pytest.raises(InvalidInput, match="invalid Await timeout"):
        Await("a", timeout="soon")
    with pytest.raises(InvalidInput, match="signal name"):
        Await(["ok", ""])
    with pytest.raises(InvalidInput, match="correlation key"):
        correlate("")
    assert parse_target(17) == (17, None)
    assert parse_target("17") == (17, None)
    assert parse_target("17", by_key=True) == (None, "17")
    assert parse_target("order-17") == (None, "order-17")


def test_the_durable_context_reads_meta() -> None:
    ctx = DurableContext.from_meta({})
    assert (ctx.step, ctx.state, ctx.awaiting, ctx.timed_out, ctx.resumed) == (
        "start",
        None,
        (),
        False,
        False,
    )
    ctx = DurableContext.from_meta(
        {
            "correlation_key": "k",
            "durable": {"step": "d", "state": [1], "await": {"signals": ["x"], "expired": True}},
        }
    )
    assert (ctx.step, ctx.state, ctx.awaiting, ctx.timed_out, ctx.key) == (
        "d",
        [1],
        ("x",),
        True,
        "k",
    )


# runtime ---------------------------------------------------------------------------------


def _state(conn: psycopg.Connection[Any], schema: str, job_id: int) -> str:
    return str(job_row(conn, schema, job_id)["state"])


def _signals(conn: psycopg.Connection[Any], schema: str, job_id: int) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            f'SELECT name, payload, dedupe_key, consumed_at IS NOT NULL FROM "{schema}".'
            "powertools_signals WHERE target = %s ORDER BY id",
            [str(job_id)],
        ).fetchall()
    ]


def test_an_order_is_charged_parks_and_completes_when_approved(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    job = Order.enqueue({"amount": 30}, meta=correlate("order-17"), conn=conn, prefix=s).job
    with running(config_for(installed, queues=Q)):
        wait_for(lambda: _state(conn, s, job.id) == "suspended", message="the order parked")
        parked = job_row(conn, s, job.id)
        assert parked["meta"]["durable"] == {
            "step": "decide",
            "state": {"amount": 30, "charged": True},
            "await": {"signals": ["approved", "rejected"]},
        }
        sent = signal("order-17", "approved", {"by": "alice"}, conn=conn, prefix=s)
        assert (sent.job_id, sent.woke, sent.delivered, sent.duplicate) == (
            job.id,
            True,
            True,
            False,
        )
        wait_for(lambda: _state(conn, s, job.id) == "completed", message="the order completed")
    row = job_row(conn, s, job.id)
    assert row["meta"]["durable"]["result"] == {
        "amount": 30,
        "charged": True,
        "approved_by": "alice",
    }
    assert "await" not in row["meta"]["durable"]
    # start, charge, decide: three attempts; Next and Await each gave one back
    assert (row["attempt"], row["max_attempts"], row["errors"]) == (3, 5, [])
    assert _signals(conn, s, job.id) == [("approved", {"by": "alice"}, None, True)]


def test_a_signal_sent_before_the_await_is_kept_and_taken_when_it_parks(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    job = Order.enqueue({"amount": 5}, conn=conn, prefix=s).job
    early = signal(job.id, "rejected", "too expensive", conn=conn, prefix=s)
    assert (early.woke, early.job_state, early.awaiting) == (False, "available", [])
    with running(config_for(installed, queues=Q)):
        wait_for(lambda: _state(conn, s, job.id) == "cancelled", message="the order stopped")
    row = job_row(conn, s, job.id)
    assert row["errors"][-1]["error"] == "rejected: too expensive"
    assert _signals(conn, s, job.id) == [("rejected", "too expensive", None, True)]


def test_a_failed_resumed_attempt_gets_the_same_signal_again(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    job = Order.enqueue({"amount": 1, "fail_decide_once": True}, conn=conn, prefix=s).job
    signal(job.id, "approved", {"by": "bob"}, conn=conn, prefix=s)
    with running(config_for(installed, queues=Q)):
        wait_for(lambda: _state(conn, s, job.id) == "completed", message="the order completed")
    row = job_row(conn, s, job.id)
    assert row["attempt"] == 4 and len(row["errors"]) == 1
    assert row["meta"]["durable"]["result"]["approved_by"] == "bob"


def test_an_await_times_out_and_the_step_knows(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    job = Order.enqueue({"amount": 1, "timeout": "300ms"}, conn=conn, prefix=s).job
    with running(config_for(installed, queues=Q)):
        wait_for(lambda: _state(conn, s, job.id) == "cancelled", message="the wait expired")
    row = job_row(conn, s, job.id)
    assert row["errors"][-1]["error"] == "no answer before the timeout"
    assert row["meta"]["durable"]["await"]["expired"] is True


def test_duplicates_dedupe_and_targets_must_be_live(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    job = Order.enqueue({"amount": 1}, meta=correlate("order-9"), conn=conn, prefix=s).job
    first = signal("order-9", "approved", {"by": "a"}, dedupe_key="hook-1", conn=conn, prefix=s)
    again = signal("order-9", "approved", {"by": "b"}, dedupe_key="hook-1", conn=conn, prefix=s)
    assert (first.delivered, first.duplicate) == (True, False)
    assert (again.delivered, again.duplicate, again.signal_id) == (False, True, first.signal_id)
    other = asyncio.run(
        _signal_async(installed, "order-9", "approved", {"by": "c"}, dedupe_key="hook-2")
    )
    assert other.delivered and other.signal_id != first.signal_id
    assert [r[2] for r in _signals(conn, s, job.id)] == ["hook-1", "hook-2"]

    with pytest.raises(NotFound, match="no live job with key 'order-404'"):
        signal("order-404", "approved", conn=conn, prefix=s)
    with pytest.raises(NotFound, match="no job 999999"):
        signal(999999, "approved", conn=conn, prefix=s)
    with pytest.raises(InvalidInput, match="payload is not JSON-serialisable"):
        signal(job.id, "approved", {"x": object()}, conn=conn, prefix=s)
    conn.execute(f"UPDATE \"{s}\".oban_jobs SET state = 'completed' WHERE id = %s", [job.id])
    with pytest.raises(InvalidInput, match=f"job {job.id} has ended"):
        signal(job.id, "approved", conn=conn, prefix=s)
    with pytest.raises(NotFound):
        signal("order-9", "approved", conn=conn, prefix=s)


async def _signal_async(settings: Settings, *args: Any, **kwargs: Any) -> Any:
    assert settings.database_url
    async with await psycopg.AsyncConnection.connect(settings.database_url) as aconn:
        result = await signal_async(*args, conn=aconn, prefix=settings.prefix, **kwargs)
        await aconn.commit()
        return result


def test_a_correlation_key_names_one_live_instance(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    first = Order.enqueue({"amount": 1}, meta=correlate("order-1"), conn=conn, prefix=s).job
    with pytest.raises(psycopg.errors.UniqueViolation, match="correlation_index"):
        Order.enqueue({"amount": 2}, meta=correlate("order-1"), conn=conn, prefix=s)
    conn.execute(f"UPDATE \"{s}\".oban_jobs SET state = 'completed' WHERE id = %s", [first.id])
    second = Order.enqueue({"amount": 3}, meta=correlate("order-1"), conn=conn, prefix=s).job
    assert signal("order-1", "approved", conn=conn, prefix=s).job_id == second.id


# the race ---------------------------------------------------------------------------------


def _claim(conn: psycopg.Connection[Any], schema: str, job_id: int) -> Job:
    row = conn.execute(
        f"UPDATE \"{schema}\".oban_jobs SET state = 'executing', attempt = attempt + 1, "
        "attempted_by = ARRAY['node', 'p'], attempted_at = now() WHERE id = %s "
        "RETURNING id, state, queue, worker, args, errors, attempt, max_attempts, inserted_at, "
        "scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, priority, tags, "
        "meta, cancelled_at",
        [job_id],
    ).fetchone()
    assert row is not None
    return Job.from_row(row)


ROUNDS = 150


def test_no_wake_up_is_lost_when_a_signal_races_a_park(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    """A park (the acker writing an Await) and a send start together on two connections, in
    every interleaving the scheduler gives us. Whoever commits last must see the other: the
    job ends runnable, never parked with an unconsumed matching signal."""
    s = installed.prefix
    lost: list[int] = []
    outcomes_seen: dict[str, int] = {"woken_by_park": 0, "woken_by_signal": 0}

    send_conn = psycopg.Connection.connect(database_url, autocommit=True)
    loop = asyncio.new_event_loop()
    try:
        aconn = loop.run_until_complete(_aconnect(database_url))
        for _ in range(ROUNDS):
            job = Order.enqueue({"amount": 1}, conn=conn, prefix=s).job
            claimed = _claim(conn, s, job.id)
            context.load(conn, s, [claimed])
            ack = outcomes.from_result(claimed, "p", Await("go"))
            barrier = threading.Barrier(2)
            box: dict[str, Any] = {}

            async def write(ack: outcomes.Ack = ack) -> flush.Written:
                async with aconn.transaction():
                    return await flush.write(aconn, s, [ack])

            def park(barrier: threading.Barrier = barrier, box: dict[str, Any] = box) -> None:
                barrier.wait()
                box["park"] = loop.run_until_complete(write())

            def send(
                barrier: threading.Barrier = barrier,
                box: dict[str, Any] = box,
                target: int = job.id,
            ) -> None:
                barrier.wait()
                box["send"] = signal(target, "go", conn=send_conn, prefix=s)

            threads = [threading.Thread(target=park), threading.Thread(target=send)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if _state(conn, s, job.id) != "available":
                lost.append(job.id)
            elif box["send"].woke:
                outcomes_seen["woken_by_signal"] += 1
            else:
                outcomes_seen["woken_by_park"] += 1
            assert box["park"].committed == [job.id]
    finally:
        loop.run_until_complete(aconn.close())
        loop.close()
        send_conn.close()
    assert lost == [], f"lost wake-ups: {len(lost)} of {ROUNDS} ({outcomes_seen})"
    assert sum(outcomes_seen.values()) == ROUNDS
    # both orders happened (which side committed last varies from round to round)
    assert all(outcomes_seen.values()), outcomes_seen


async def _aconnect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)
