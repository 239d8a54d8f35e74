"""The leader's limits sweep: dead holds and idle gates go, live state stays."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import psycopg
import pytest

from powertools_core.config import Settings
from powertools_core.limits.duties import LimitsSweeper
from powertools_core.runtime.duties import LeaderDuty

NOW = datetime(2026, 5, 1, 12, 0, 0)


def test_the_sweep_keeps_live_state_and_drops_the_rest(
    installed: Settings, conn: psycopg.Connection
) -> None:
    p = f'"{installed.prefix}"'
    running, done = (
        conn.execute(
            f"INSERT INTO {p}.oban_jobs (state, queue, worker, args, attempt) "
            f"VALUES ('{state}', 'q', 'w', '{{}}', 1) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        for state in ("executing", "completed")
    )
    conn.execute(
        f"INSERT INTO {p}.powertools_limit_holds (limit_name, partition_key, job_id, attempt) "
        "VALUES ('c', 'live', %s, 1), ('c', 'dead', %s, 1), ('c', 'stale-attempt', %s, 2)",
        (running, done, running),
    )
    span = 60_000_000
    conn.execute(
        f"INSERT INTO {p}.powertools_rate_buckets "
        "(limit_name, partition_key, kind, capacity, span_us, level, refilled_at, cooldown_until)"
        " VALUES ('r', 'idle', 'rate', 2, %(span)s, 0, %(long_ago)s, NULL),"
        "        ('r', 'recent', 'rate', 2, %(span)s, 0, %(recent)s, NULL),"
        "        ('r', 'held', 'rate', 2, %(span)s, 0, %(long_ago)s, %(later)s),"
        "        ('c', 'live', 'partition_concurrency', 1, 0, 0, %(long_ago)s, NULL),"
        "        ('c', 'dead', 'partition_concurrency', 1, 0, 0, %(long_ago)s, NULL)",
        {
            "span": span,
            "long_ago": NOW - timedelta(minutes=1),
            "recent": NOW - timedelta(seconds=59),
            "later": NOW + timedelta(hours=1),
        },
    )
    sweeper = LimitsSweeper()
    assert isinstance(sweeper, LeaderDuty)

    async def run() -> int:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as aconn:
            return await sweeper.run_once(aconn, installed.prefix, NOW)

    assert asyncio.run(run()) == 2 + 2
    holds = conn.execute(
        f"SELECT partition_key FROM {p}.powertools_limit_holds ORDER BY 1"
    ).fetchall()
    assert holds == [("live",)]
    buckets = conn.execute(
        f"SELECT limit_name, partition_key FROM {p}.powertools_rate_buckets ORDER BY 1, 2"
    ).fetchall()
    # 'idle' has been full for a second (deleted: a fresh bucket is full too); 'recent' is one
    # second short of full and 'held' cools down, so both stay.
    assert buckets == [("c", "live"), ("r", "held"), ("r", "recent")]


def test_the_runtime_discovers_the_limits_sweeper(installed: Settings) -> None:
    from powertools_core.runtime.leader import DutyContext, discover_duties

    assert installed.database_url
    ctx = DutyContext(url=installed.database_url, prefix=installed.prefix, node="n1")
    assert "limits.sweep" in [d.name for d in discover_duties(ctx)]


def test_runtime_admission_asks_for_the_database_clock(
    installed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from powertools_core.limits import admission as module
    from powertools_core.runtime.release import Admission

    seen: list[object] = []

    async def recording(
        conn: object, prefix: str, jobs: list[object], now: object = "unset", **options: object
    ):  # type: ignore[no-untyped-def]
        seen.append(now)
        return jobs, []

    monkeypatch.setattr(module, "admit", recording)

    class Slot:
        async def get(self) -> None:
            return None

    class Limited:
        limits = ("any",)

    admission = Admission(installed.prefix, Slot(), {"W": Limited()})
    fake = type("J", (), {"worker": "W", "id": 1})()
    assert asyncio.run(admission([fake])) == [fake]  # type: ignore[list-item]
    assert seen == [None]
