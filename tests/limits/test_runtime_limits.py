"""Limits enforced by real `powertools worker run` processes (several at once), end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from powertools_core.config import Settings
from powertools_core.limits.cooldown import cooldown, resume
from tests.limits import runtime_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
POWERTOOLS = Path(sys.executable).with_name("powertools")
APP = "tests.limits.runtime_app"
T = TypeVar("T")


def wait_for(check: Callable[[], T], *, timeout: float = 60.0, what: str) -> T:
    """Poll a condition; the timeout only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def it_settings(
    installed: Settings, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    assert installed.database_url
    conn.execute(sql.SQL(runtime_app.RUNS_DDL).format(sql.Identifier(installed.prefix)))
    return installed


@contextmanager
def workers(settings: Settings, queues: str, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    assert settings.database_url
    env = dict(os.environ)
    env.update(
        PT_RECORD_URL=settings.database_url,
        PYTHONPATH=str(ROOT),
        POWERTOOLS_DATABASE_URL=settings.database_url,
        POWERTOOLS_PREFIX=settings.prefix,
    )
    env.pop("POWERTOOLS_APP", None)
    procs = [
        subprocess.Popen(
            [
                str(POWERTOOLS),
                "worker",
                "run",
                "--app",
                APP,
                "--queues",
                queues,
                "--poll-interval",
                "100ms",
                "--heartbeat",
                "500ms",
                "--node",
                f"n{i}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def seed(
    conn: psycopg.Connection, schema: str, worker: type[Any], args: list[dict[str, Any]]
) -> None:
    rows = [json.dumps({"schema": schema, **a}) for a in args]
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.oban_jobs (worker, queue, args) "
            "SELECT %s, %s, a::jsonb FROM unnest(%s::text[]) AS a"
        ).format(sql.Identifier(schema)),
        (worker.name(), worker.queue, rows),
    )


def completed(conn: psycopg.Connection, schema: str, n: int) -> bool:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.lim_runs WHERE finished_at IS NOT NULL").format(
            sql.Identifier(schema)
        )
    ).fetchone()
    return bool(row and row[0] >= n)


MAX_OVERLAP = """
SELECT coalesce(max(c), 0) FROM (
    SELECT (SELECT count(*) FROM {runs} o
            WHERE o.started_at <= r.started_at AND o.finished_at > r.started_at
              AND (%(by_tenant)s = false OR o.tenant = r.tenant)) AS c
    FROM {runs} r
) x
"""


def max_overlap(conn: psycopg.Connection, schema: str, *, by_tenant: bool = False) -> int:
    runs = sql.Identifier(schema, "lim_runs")
    row = conn.execute(sql.SQL(MAX_OVERLAP).format(runs=runs), {"by_tenant": by_tenant}).fetchone()
    assert row is not None
    return int(row[0])


def test_a_concurrency_limit_of_3_holds_across_3_processes(
    it_settings: Settings, conn: psycopg.Connection
) -> None:
    s = it_settings.prefix
    seed(conn, s, runtime_app.ItConc, [{"sleep": 0.15}] * 18)
    with workers(it_settings, "it_conc=5", 3):
        wait_for(lambda: completed(conn, s, 18), what="18 jobs to finish")
    # 15 slots across the processes, but never more than 3 running at once (and 3 were).
    assert max_overlap(conn, s) == 3
    # Each process leased its slots; a drained process gives them all back as it stops, so
    # the limit is whole again for whoever comes next (not only once the leases lapse).
    left = conn.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM {}.powertools_limit_leases),"
            " (SELECT held FROM {}.powertools_rate_buckets WHERE limit_name = 'it-conc')"
        ).format(sql.Identifier(s), sql.Identifier(s))
    ).fetchone()
    assert left == (0, 0)


def test_an_idle_worker_gives_its_leased_slots_back_while_it_runs(
    it_settings: Settings, conn: psycopg.Connection
) -> None:
    s = it_settings.prefix
    seed(conn, s, runtime_app.ItConc, [{"sleep": 0.05}] * 6)
    leased = sql.SQL("SELECT coalesce(sum(slots), 0) FROM {}.powertools_limit_leases").format(
        sql.Identifier(s)
    )
    with workers(it_settings, "it_conc=5", 1) as (proc,):
        wait_for(lambda: completed(conn, s, 6), what="6 jobs to finish")
        # The keep-alive hands back slots no job needed for a whole interval: an idle
        # process holds nothing, without stopping.
        wait_for(
            lambda: (conn.execute(leased).fetchone() or (None,))[0] == 0,
            timeout=10,
            what="the idle worker to give its leased slots back",
        )
        assert proc.poll() is None


def test_partitions_are_independent(it_settings: Settings, conn: psycopg.Connection) -> None:
    s = it_settings.prefix
    args = [{"tenant": t, "sleep": 0.15} for t in ("a", "b", "c") for _ in range(4)]
    seed(conn, s, runtime_app.ItTenant, args)
    with workers(it_settings, "it_tenant=6", 2):
        wait_for(lambda: completed(conn, s, 12), what="12 jobs to finish")
    assert max_overlap(conn, s, by_tenant=True) == 1
    assert max_overlap(conn, s) >= 2  # other tenants ran alongside


def test_a_weighted_rate_limit_never_grants_more_than_the_bucket_across_4_processes(
    it_settings: Settings, conn: psycopg.Connection
) -> None:
    s = it_settings.prefix
    costs = [1, 2, 3, 1, 1, 2] * 4  # 40 tokens through a 5-per-second bucket
    seed(conn, s, runtime_app.ItRate, [{"cost": c} for c in costs])
    with workers(it_settings, "it_rate=10", 4):
        wait_for(lambda: completed(conn, s, len(costs)), what="all rate-limited jobs")
    rows = conn.execute(
        sql.SQL("SELECT attempted_at, started_at, cost FROM {} ORDER BY started_at").format(
            sql.Identifier(s, "lim_runs")
        )
    ).fetchall()
    # Each admission happened between the claim (attempted_at) and the start. For any run of
    # consecutive starts, what was admitted is bounded by a full bucket plus the refill between
    # the earliest claim and the latest start: capacity + elapsed * capacity / span.
    worst = 0.0
    for i in range(len(rows)):
        earliest = rows[i][0]
        granted = 0
        for j in range(i, len(rows)):
            earliest = min(earliest, rows[j][0])
            granted += rows[j][2]
            allowed = 5 + (rows[j][1] - earliest) / timedelta(seconds=1) * 5
            worst = max(worst, granted - allowed)
            assert granted <= allowed + 1e-6, (i, j, granted, allowed)
    # A full run takes about (40 - 5) / 5 = 7 s: the limit really throttled.
    assert rows[-1][1] - rows[0][1] >= timedelta(seconds=6)


def test_a_cooldown_blocks_and_resume_frees(
    it_settings: Settings, conn: psycopg.Connection
) -> None:
    s = it_settings.prefix
    from powertools_core.workers import load_app

    load_app([APP])
    cooldown(
        it_settings,
        "it-held",
        duration=timedelta(hours=1),
        actor="ci",
        reason="testing the hold end to end",
    )
    seed(conn, s, runtime_app.ItHeld, [{}] * 3)
    bucket = sql.SQL(
        "SELECT count(*) FROM {}.powertools_rate_buckets WHERE limit_name = 'it-held'"
    ).format(sql.Identifier(s))
    with workers(it_settings, "it_held=5", 2):
        # The bucket row is minted by admission: once it exists, admission has decided these
        # jobs at least once, under the hold.
        wait_for(lambda: (conn.execute(bucket).fetchone() or (0,))[0] == 1, what="admission")
        assert not completed(conn, s, 1)
        states = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.lim_runs").format(sql.Identifier(s))
        ).fetchone()
        assert states == (0,)
        resume(it_settings, "it-held", actor="ci", reason="hold lifted by the test")
        wait_for(lambda: completed(conn, s, 3), what="the held jobs to run after resume")
