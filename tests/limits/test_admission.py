"""``admit`` over claimed batches: real workers, real rows, the CHECK referee, cross-connection
serialisation of a concurrency gate, and the saturation cache."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import psycopg
import pytest

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.limits.admission import SaturationCache, admit, run_admission
from powertools_core.limits.declarations import Demand, Gate
from tests.limits import app_workers

T0 = datetime(2026, 3, 1, 9, 0, 0)
API = app_workers.LimApiCall.name()
TENANT = app_workers.LimTenantSync.name()
PLAIN = app_workers.LimPlain.name()


def _claim(conn: psycopg.Connection, prefix: str, worker: str, args: dict, n: int = 1) -> list[Job]:
    jobs = []
    for _ in range(n):
        row = conn.execute(
            f'INSERT INTO "{prefix}".oban_jobs (state, queue, worker, args, attempt) '
            "VALUES ('executing', 'q', %s, %s, 1) RETURNING id",
            (worker, json.dumps(args)),
        ).fetchone()
        assert row is not None
        jobs.append(Job(row[0], "executing", "q", worker, args, attempt=1, raw_args=args))
    return jobs


def _admit(settings: Settings, jobs: list[Job], now: datetime | None, cache=None):  # type: ignore[no-untyped-def]
    async def go() -> tuple[list[Job], list[Job]]:
        assert settings.database_url
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True
        ) as conn:
            return await admit(conn, settings.prefix, jobs, now, cache=cache)

    return asyncio.run(go())


def test_a_batch_is_split_in_priority_order_and_unlimited_jobs_pass(
    installed: Settings, conn: psycopg.Connection
) -> None:
    limited = _claim(conn, installed.prefix, API, {}, 5)
    plain = _claim(conn, installed.prefix, PLAIN, {}, 2)
    batch = [limited[0], plain[0], *limited[1:], plain[1]]
    admitted, refused = _admit(installed, batch, T0)
    assert [j.id for j in admitted] == [
        limited[0].id,
        plain[0].id,
        limited[1].id,
        limited[2].id,
        plain[1].id,
    ]
    assert [j.id for j in refused] == [limited[3].id, limited[4].id]
    row = conn.execute(
        f"SELECT kind, scope, bucket_capacity, bucket_span_ms, workers "
        f'FROM "{installed.prefix}".powertools_rate_limits WHERE name = %s',
        ("lim-api",),
    ).fetchone()
    assert row == ("rate", "global", 3, 1000, [API])
    tokens = conn.execute(
        f'SELECT tokens, level FROM "{installed.prefix}".powertools_rate_buckets'
    ).fetchall()
    assert tokens == [(0.0, 0)]


def test_partitions_are_independent_and_concurrency_slots_free_when_jobs_leave_executing(
    installed: Settings, conn: psycopg.Connection
) -> None:
    a1, a2 = _claim(conn, installed.prefix, TENANT, {"tenant": "a", "cost": 1}, 2)
    (b1,) = _claim(conn, installed.prefix, TENANT, {"tenant": "b", "cost": 1})
    admitted, refused = _admit(installed, [a1, a2, b1], T0)
    # One running per tenant: a2 waits for a1; tenant b is unaffected.
    assert [j.id for j in admitted] == [a1.id, b1.id] and [j.id for j in refused] == [a2.id]
    conn.execute(
        f"UPDATE \"{installed.prefix}\".oban_jobs SET state = 'completed' WHERE id = %s", (a1.id,)
    )
    admitted, refused = _admit(installed, [a2], T0 + timedelta(seconds=1))
    assert [j.id for j in admitted] == [a2.id] and refused == []
    holds = conn.execute(
        f"SELECT limit_name, partition_key, job_id "
        f'FROM "{installed.prefix}".powertools_limit_holds ORDER BY 1, 2, 3'
    ).fetchall()
    # a1's holds were swept when it left executing.
    assert holds == [
        ("lim-tenant-run", "", a2.id),
        ("lim-tenant-run", "", b1.id),
        ("lim-tenant-run", "a", a2.id),
        ("lim-tenant-run", "b", b1.id),
    ]


def test_weights_debit_several_tokens(installed: Settings, conn: psycopg.Connection) -> None:
    heavy, light = (
        _claim(conn, installed.prefix, TENANT, {"tenant": "w", "cost": 2})[0],
        _claim(conn, installed.prefix, TENANT, {"tenant": "x", "cost": 1})[0],
    )
    admitted, _ = _admit(installed, [heavy, light], T0)
    assert len(admitted) == 2
    rows = conn.execute(
        f'SELECT partition_key, tokens FROM "{installed.prefix}".powertools_rate_buckets '
        "WHERE kind = 'rate' ORDER BY 1"
    ).fetchall()
    assert rows == [("w", 0.0), ("x", 1.0)]


def test_the_check_constraint_refuses_an_over_debit(
    installed: Settings, conn: psycopg.Connection
) -> None:
    _admit(installed, _claim(conn, installed.prefix, API, {}), T0)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            f'UPDATE "{installed.prefix}".powertools_rate_buckets SET level = level - 3000000'
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(f'UPDATE "{installed.prefix}".powertools_rate_buckets SET level = 3000001')


def test_a_gate_is_serialised_across_connections(
    installed: Settings, conn: psycopg.Connection
) -> None:
    """B's admission waits on A's lock of the gate row and then sees the hold A committed."""
    gate = Gate("ser", "", "concurrency", 1)
    (first,) = _claim(conn, installed.prefix, PLAIN, {})
    (second,) = _claim(conn, installed.prefix, PLAIN, {})
    assert installed.database_url
    url, prefix = installed.database_url, installed.prefix

    async def scenario() -> list[object]:
        a = await psycopg.AsyncConnection.connect(url)
        b = await psycopg.AsyncConnection.connect(url, autocommit=True)
        probe = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            # A: the same admission inside an open transaction, so it keeps the gate row locked.
            got_a = await run_admission(a, prefix, [(first, [Demand(gate, 1)])], T0)
            b_pid = b.info.backend_pid
            task = asyncio.create_task(run_admission(b, prefix, [(second, [Demand(gate, 1)])], T0))
            # Wait until B is queued behind A's row lock (a condition, not a timer). Without the
            # lock B finishes on its own and, not seeing A's uncommitted hold, admits: caught below.
            while not task.done():
                cur = await probe.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (b_pid,)
                )
                row = await cur.fetchone()
                if row and row[0] == "Lock":
                    break
                await asyncio.sleep(0)
            await a.commit()
            got_b = await task
            return [got_a[0], got_b[0]]
        finally:
            for c in (a, b, probe):
                await c.close()

    got_a, got_b = asyncio.run(scenario())
    assert got_a is None
    assert got_b is not None and got_b.code == "concurrency_reached"  # type: ignore[attr-defined]


def test_a_saturated_gate_is_refused_from_the_cache_without_a_round_trip(
    installed: Settings, conn: psycopg.Connection
) -> None:
    cache = SaturationCache()
    jobs = _claim(conn, installed.prefix, API, {}, 4)
    admitted, refused = _admit(installed, jobs, T0, cache)
    assert len(admitted) == 3 and len(refused) == 1
    assert list(cache.until.values()) == [T0 + timedelta(microseconds=333_334)]
    assert cache.next_opening(installed.prefix, T0) == T0 + timedelta(microseconds=333_334)
    assert cache.next_opening("other_schema", T0) is None
    # Against a schema where admission would fail loudly, the cached refusal still answers.
    conn.execute(f'DROP FUNCTION "{installed.prefix}".powertools_limits_admit')
    more = _claim(conn, installed.prefix, API, {}, 1)
    admitted, refused = _admit(installed, more, T0 + timedelta(microseconds=1), cache)
    assert admitted == [] and [j.id for j in refused] == [more[0].id]


def test_when_admission_fails_limited_jobs_are_refused_and_others_still_run(
    installed: Settings, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    conn.execute(f'DROP FUNCTION "{installed.prefix}".powertools_limits_admit')
    limited = _claim(conn, installed.prefix, TENANT, {"tenant": "a", "cost": 1})
    plain = _claim(conn, installed.prefix, PLAIN, {})
    admitted, refused = _admit(installed, [*limited, *plain], T0)
    assert admitted == plain and refused == limited
    assert "admission failed" in caplog.text
