"""Wake-ups, operator signals, fencing, drain, leadership and telemetry (in-process runtime)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from powertools_core import telemetry
from powertools_core.config import Settings
from powertools_core.jobs.model import JOB_COLUMNS, Job
from powertools_core.runtime import outcomes, queries
from powertools_core.runtime.acker import Acker
from powertools_core.runtime.leader import (
    DutyContext,
    register_duty_provider,
    unregister_duty_provider,
)
from powertools_core.runtime.maintenance import Lifeline
from powertools_core.runtime.notifier import signal_channel
from powertools_core.runtime.release import release
from tests.runtime.helpers import (
    config_for,
    job_row,
    notify,
    running,
    runs,
    seed,
    states,
    wait_for,
)
from tests.support.apps.recorder import Record


def test_notify_wakes_an_idle_worker_long_before_the_poll(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    cfg = config_for(rt_settings, poll_interval=60.0, max_poll_interval=60.0)
    with running(cfg) as rt:
        producer = rt.runtime.producers["default"]  # type: ignore[union-attr]
        wait_for(lambda: producer.fetches >= 1 and not producer.fetching, message="first poll")
        (job_id,) = seed(conn, s, "Record")
        notify(conn, s)
        # The poll is a minute away: only the NOTIFY can make this happen within the deadline.
        wait_for(lambda: runs(conn, s), timeout=15, message="job started by NOTIFY")
    assert runs(conn, s)[0][0] == job_id


def test_enqueue_in_a_transaction_wakes_the_worker_on_commit(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    """The real enqueue path: the job and its NOTIFY ride the caller's transaction."""
    s = rt_settings.prefix
    assert rt_settings.database_url
    cfg = config_for(rt_settings, poll_interval=60.0, max_poll_interval=60.0)
    with running(cfg) as rt:
        producer = rt.runtime.producers["default"]  # type: ignore[union-attr]
        wait_for(lambda: producer.fetches >= 1 and not producer.fetching, message="first poll")
        with psycopg.connect(rt_settings.database_url) as tx:
            # Another queue: the sender's debouncer counts the rolled-back NOTIFY and would
            # swallow the next one on the same queue (reported to the enqueue side).
            rolled_back = Record.enqueue({"schema": s}, conn=tx, prefix=s, queue="elsewhere")
            tx.rollback()
            result = Record.enqueue({"schema": s}, conn=tx, prefix=s)
        wait_for(lambda: runs(conn, s), timeout=15, message="job started by the enqueue NOTIFY")
        wait_for(lambda: states(conn, s) == {"completed": 1}, message="completed")
    assert [r[0] for r in runs(conn, s)] == [result.id]
    assert job_row(conn, s, result.id)["state"] == "completed"
    query = sql.SQL("SELECT count(*) FROM {}.oban_jobs WHERE id = %s").format(sql.Identifier(s))
    assert conn.execute(query, (rolled_back.id,)).fetchone() == (0,)


def test_back_to_back_enqueues_start_without_waiting_for_the_poll(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    """The sender notifies once per queue per window; the listener's follow-up fetch covers
    a job enqueued right after one that was already picked up."""
    s = rt_settings.prefix
    assert rt_settings.database_url
    cfg = config_for(rt_settings, poll_interval=60.0, max_poll_interval=60.0, grace=0.2)
    with running(cfg) as rt:
        producer = rt.runtime.producers["default"]  # type: ignore[union-attr]
        wait_for(lambda: producer.fetches >= 1 and not producer.fetching, message="first poll")
        with psycopg.connect(rt_settings.database_url, autocommit=True) as tx:
            # The first job keeps running, so no completion triggers a fetch either.
            first = Record.enqueue({"schema": s, "sleep": 60}, conn=tx, prefix=s)
            wait_for(lambda: runs(conn, s), timeout=15, message="first job started")
            second = Record.enqueue({"schema": s}, conn=tx, prefix=s)
        wait_for(lambda: len(runs(conn, s)) == 2, timeout=15, message="second job started")
    assert [r[0] for r in runs(conn, s)] == [first.id, second.id]


def test_cancel_signal_stops_an_executing_job(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    (job_id,) = seed(conn, s, "Record", args={"sleep": 60})
    (ops_id,) = seed(conn, s, "Record", args={"sleep": 60})

    def signal(job: int) -> None:
        payload = json.dumps({"action": "cancel", "job_id": job})
        conn.execute("SELECT pg_notify(%s, %s)", (signal_channel(s), payload))

    with running(config_for(rt_settings)) as rt:
        wait_for(lambda: len(runs(conn, s)) == 2, message="jobs running")
        signal(job_id)
        # What `powertools ops cancel` does: the row is cancelled first, then the signal.
        conn.execute(
            sql.SQL(
                "UPDATE {}.oban_jobs SET state = 'cancelled', cancelled_at = now() WHERE id = %s"
            ).format(sql.Identifier(s)),
            (ops_id,),
        )
        signal(ops_id)
        producer = rt.runtime.producers["default"]  # type: ignore[union-attr]
        wait_for(lambda: not producer.running, message="both tasks stopped")
        wait_for(lambda: states(conn, s) == {"cancelled": 2}, message="cancelled")
    row = job_row(conn, s, job_id)
    assert row["cancelled_at"] is not None
    assert "cancelled by an operator" in str(row["errors"][0])
    assert job_row(conn, s, ops_id)["errors"] == []
    assert rt.runtime is not None and rt.runtime.acker.stale == 0


def _claim(conn: psycopg.Connection, schema: str, producer: str) -> Job:
    rows = conn.execute(
        queries.sql(queries.FETCH, schema),
        {"queue": "default", "limit": 10, "attempted_by": ["other-node", producer]},
    ).fetchall()
    assert len(rows) == 1
    return Job.from_row(rows[0])


def test_stale_ack_after_rescue_is_ignored_and_counted(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    assert rt_settings.database_url
    url = rt_settings.database_url
    (job_id,) = seed(conn, s, "Record")
    first = _claim(conn, s, str(uuid.uuid4()))
    events: list[tuple[str, dict[str, Any]]] = []
    handle = telemetry.attach(
        ["ack.batch", "rescue"], lambda e, m, _md: events.append((e, dict(m)))
    )

    async def scenario() -> tuple[int, int, int]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
            # The first claimant's producer is unknown and its attempt is "old enough".
            rescued = await Lifeline("test", orphan_after=0.0).run_once(aconn, s, datetime.now(UTC))
        second = _claim(conn, s, str(uuid.uuid4()))
        acker = Acker(url, s, "test")
        await acker.start()
        acker.push(outcomes.completed(first, first.producer or ""))
        await acker.stop()
        stale_after_first = acker.stale
        assert job_row(conn, s, job_id)["state"] == "executing"
        acker = Acker(url, s, "test")
        await acker.start()
        acker.push(outcomes.completed(second, second.producer or ""))
        await acker.stop()
        return rescued, stale_after_first, acker.acked

    try:
        rescued, stale, acked = asyncio.run(scenario())
    finally:
        telemetry.detach(handle)
    assert (rescued, stale, acked) == (1, 1, 1)
    row = job_row(conn, s, job_id)
    assert row["state"] == "completed" and row["attempt"] == 2
    assert ("ack.batch", {"count": 1, "stale": 1, "duration": pytest.approx(0, abs=5)}) in events
    assert any(e == "rescue" and m["count"] == 1 for e, m in events)
    incidents = conn.execute(
        sql.SQL("SELECT job_id, reason, action FROM {}.powertools_lifeline_incidents").format(
            sql.Identifier(s)
        )
    ).fetchall()
    assert incidents == [(job_id, "unknown_producer", "rescued")]


def test_release_is_fenced(rt_settings: Settings, conn: psycopg.Connection) -> None:
    s = rt_settings.prefix
    assert rt_settings.database_url
    url = rt_settings.database_url
    seed(conn, s, "Record")
    job = _claim(conn, s, str(uuid.uuid4()))
    impostor = Job.from_row(
        conn.execute(
            sql.SQL("SELECT {} FROM {}.oban_jobs").format(
                sql.SQL(JOB_COLUMNS),
                sql.Identifier(s),
            )
        ).fetchone()  # type: ignore[arg-type]
    )
    impostor.attempted_by = ["x", str(uuid.uuid4())]

    async def scenario() -> tuple[list[int], list[int]]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
            wrong = await release(aconn, s, [impostor])
            right = await release(aconn, s, [job])
            return wrong, right

    wrong, right = asyncio.run(scenario())
    assert (wrong, right) == ([], [job.id])
    row = job_row(conn, s, job.id)
    assert (row["state"], row["attempt"]) == ("available", 0)


def test_drain_releases_prefetched_jobs_and_keeps_running_ones(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    ids = seed(conn, s, "Record", 6, args={"sleep": 0.3})
    cfg = config_for(rt_settings, queues={"default": 1}, prefetch=5, grace=10.0)
    with running(cfg) as rt:
        wait_for(lambda: runs(conn, s), message="first job running")
    runtime = rt.runtime
    assert runtime is not None
    assert runtime.released == 5 and runtime.left_running == 0
    assert states(conn, s) == {"completed": 1, "available": 5}
    (ran,) = runs(conn, s)
    assert ran[0] == ids[0]
    producers = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.powertools_producers").format(sql.Identifier(s))
    ).fetchone()
    assert producers == (0,)


def test_one_leader_per_prefix_and_extra_duties_run(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    calls: list[str] = []

    class Probe:
        name = "probe"
        interval = 0.05

        async def run_once(self, aconn: Any, prefix: str, now: datetime) -> int:
            calls.append(prefix)
            return 0

    cfg = config_for(rt_settings)
    with running(cfg, duties=[Probe()]) as a, running(cfg, duties=[Probe()]) as b:
        wait_for(lambda: len(calls) >= 3, message="probe duty runs")
        leaders = [r.runtime.leader.is_leader for r in (a, b)]  # type: ignore[union-attr]
        assert sorted(leaders) == [False, True]
    assert set(calls) == {rt_settings.prefix}


def test_registered_duty_providers_get_the_settings(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    seen: list[DutyContext] = []
    ran: list[str] = []

    class Probe:
        name = "provided"
        interval = 0.05

        async def run_once(self, aconn: Any, prefix: str, now: datetime) -> int:
            ran.append(prefix)
            return 0

    def provider(ctx: DutyContext) -> list[Probe]:
        seen.append(ctx)
        return [Probe()]

    def broken(ctx: DutyContext) -> list[Probe]:
        raise RuntimeError("provider bug")

    register_duty_provider(provider)
    register_duty_provider(broken)
    try:
        with running(config_for(rt_settings), settings=rt_settings):
            wait_for(lambda: ran, message="the provided duty runs")
    finally:
        unregister_duty_provider(provider)
        unregister_duty_provider(broken)
    assert seen[0].settings is rt_settings and seen[0].prefix == rt_settings.prefix


def test_telemetry_events_and_a_failing_handler(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    seen: dict[str, int] = {}

    def count(event: str, measurements: Any, metadata: Any) -> None:
        seen[event] = seen.get(event, 0) + 1

    def broken(event: str, measurements: Any, metadata: Any) -> None:
        raise RuntimeError("handler bug")

    names = ["job.start", "job.stop", "job.exception", "fetch", "ack.batch"]
    handles = [telemetry.attach(names, count), telemetry.attach(names, broken)]
    try:
        seed(conn, s, "Record", 5)
        seed(conn, s, "Record", 1, args={"fail_times": 1})
        with running(config_for(rt_settings)):
            wait_for(lambda: states(conn, s).get("completed") == 6, message="all completed")
    finally:
        for handle in handles:
            telemetry.detach(handle)
    assert seen["job.start"] == 7 and seen["job.stop"] == 6 and seen["job.exception"] == 1
    assert seen["fetch"] >= 1 and seen["ack.batch"] >= 1
    with pytest.raises(ValueError, match="unknown telemetry event"):
        telemetry.attach(["job.finish"], count)


def test_database_connections_dropped_mid_run(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    node = f"outage-{uuid.uuid4().hex[:8]}"
    ids = seed(conn, s, "Record", 60, args={"sleep": 0.02})
    kill = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name LIKE 'powertools:%%:' || %s"
    )
    with running(config_for(rt_settings, node=node, queues={"default": 3})) as rt:
        for threshold in (10, 25):
            wait_for(lambda t=threshold: len(runs(conn, s)) >= t, message=f"{threshold} runs")
            (killed,) = conn.execute(kill, (node,)).fetchone()  # type: ignore[misc]
            assert killed >= 1
        wait_for(lambda: states(conn, s) == {"completed": len(ids)}, message="all completed")
        runtime = rt.runtime
        assert runtime is not None and runtime.ready()
    per_job = [r[0] for r in runs(conn, s)]
    assert sorted(per_job) == sorted(ids), "every job ran exactly once despite the outages"


def test_fetch_returns_the_job_columns_in_order() -> None:
    returning = queries.FETCH.split("RETURNING", 1)[1].replace(
        "NULLIF(j.meta, '{}'::jsonb)", "meta"
    )
    names = [c.strip().removeprefix("j.") for c in returning.replace("\n", " ").split(",")]
    assert names == [c.strip() for c in JOB_COLUMNS.split(",")]


HOT_STATEMENTS = {
    "fetch": (queries.FETCH, {"queue": "'default'", "limit": "100", "attempted_by": "ARRAY['n']"}),
    "ack": (
        queries.ACK,
        {
            "ids": "ARRAY[1,2]::bigint[]",
            "attempts": "ARRAY[1,1]",
            "producers": "ARRAY['p','p']",
            "states": "ARRAY['completed','retryable']",
            "delays": "ARRAY[0,1]::float8[]",
            "bumps": "ARRAY[0,0]",
            "errors": "ARRAY[NULL,'{}']::text[]",
        },
    ),
    "release": (
        queries.RELEASE,
        {"ids": "ARRAY[1]::bigint[]", "attempts": "ARRAY[1]", "producers": "ARRAY['p']"},
    ),
    "reconcile": (
        queries.RECONCILE,
        {"queue": "'default'", "producer": "'p'", "known": "ARRAY[1]::bigint[]"},
    ),
    "stage": (queries.STAGE, {"limit": "1000"}),
    "rescue": (
        queries.RESCUE,
        {"rescue_after": "30", "orphan_after": "1800", "limit": "1000", "node": "'n'"},
    ),
}


@pytest.mark.parametrize("name", sorted(HOT_STATEMENTS))
def test_generic_plans_never_scan_the_whole_jobs_table(
    name: str, rt_settings: Settings, conn: psycopg.Connection
) -> None:
    """The statements are prepared; their generic plans must stay index-driven on a big table."""
    s = rt_settings.prefix
    seed(conn, s, "Record", 3000)
    seed(conn, s, "Record", 3000, queue="other", state="completed")
    conn.execute(sql.SQL("ANALYZE {}.oban_jobs").format(sql.Identifier(s)))
    template, values = HOT_STATEMENTS[name]
    text = queries.sql(template, s)
    for i, key in enumerate(values, start=1):
        text = text.replace(f"%({key})s", f"${i}")
    with conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        conn.execute(sql.SQL("PREPARE pt_plan AS {}").format(sql.SQL(text)))  # type: ignore[arg-type]
        args = ", ".join(values.values())
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN EXECUTE pt_plan({args})").fetchall())
        conn.execute("DEALLOCATE pt_plan")
    assert "Seq Scan on oban_jobs" not in plan, plan
    if name == "fetch":
        assert "powertools_oban_jobs_fetch_index" in plan, plan


def test_lifeline_discards_a_rescued_job_without_attempts_left(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    assert rt_settings.database_url
    url = rt_settings.database_url
    (job_id,) = seed(conn, s, "Record", max_attempts=1)
    (fresh_id,) = seed(conn, s, "Record", queue="other")
    _claim(conn, s, str(uuid.uuid4()))
    # A job claimed a moment ago by an unknown producer is not touched by a 1h threshold.
    conn.execute(
        queries.sql(queries.FETCH, s),
        {"queue": "other", "limit": 1, "attempted_by": ["n", str(uuid.uuid4())]},
    )

    async def sweep(orphan_after: float) -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
            lifeline = Lifeline("test", orphan_after=orphan_after)
            return await lifeline.run_once(aconn, s, datetime.now(UTC))

    assert asyncio.run(sweep(3600.0)) == 0
    conn.execute(
        sql.SQL(
            "UPDATE {}.oban_jobs SET attempted_at = attempted_at - interval '2 hours' WHERE id = %s"
        ).format(sql.Identifier(s)),
        (job_id,),
    )
    assert asyncio.run(sweep(3600.0)) == 1
    row = job_row(conn, s, job_id)
    assert row["state"] == "discarded" and row["discarded_at"] is not None
    assert "no attempts left" in str(row["errors"][-1])
    assert job_row(conn, s, fresh_id)["state"] == "executing"
    incidents = conn.execute(
        sql.SQL("SELECT job_id, action FROM {}.powertools_lifeline_incidents").format(
            sql.Identifier(s)
        )
    ).fetchall()
    assert incidents == [(job_id, "discarded")]
