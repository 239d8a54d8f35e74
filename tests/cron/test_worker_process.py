"""Cron inside ``powertools worker run``: two workers on one database fire each minute once;
both killed and a worker restarted after a (simulated) ten-minute outage catches up per policy.

The processes run the scheduler on a fast clock (``POWERTOOLS_CRON_CLOCK``: 20 simulated seconds
per real second) so minute-granular fires happen within seconds; every wait polls the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest

from powertools_core.config import Settings
from tests.runtime.helpers import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
POWERTOOLS = Path(sys.executable).with_name("powertools")
NAME = "e2e-minute"


def start(settings: Settings, node: str, clock: str) -> subprocess.Popen[str]:
    assert settings.database_url
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        POWERTOOLS_DATABASE_URL=settings.database_url,
        POWERTOOLS_PREFIX=settings.prefix,
        POWERTOOLS_CRON_CLOCK=clock,
    )
    env.pop("POWERTOOLS_APP", None)
    cmd = [
        str(POWERTOOLS),
        "worker",
        "run",
        "--app",
        "tests.cron.app_e2e",
        "--queues",
        "cron_e2e=5,cron_gated=5",
        "--node",
        node,
        "--election-interval",
        "200ms",
        "--heartbeat",
        "200ms",
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], sig: int) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


def slot_rows(conn: psycopg.Connection, s: str, name: str = NAME) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT slot_at, decision, job_id, claimed_at FROM "{s}".powertools_cron_slots '
        "WHERE entry_name = %s ORDER BY slot_at",
        (name,),
    ).fetchall()


def job_rows(conn: psycopg.Connection, s: str, name: str = NAME) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, state::text, meta ->> 'cron_slot_at', attempted_at, completed_at "
        f"FROM \"{s}\".oban_jobs WHERE meta ->> 'cron_name' = %s ORDER BY id",
        (name,),
    ).fetchall()


def one_job_per_made_slot(conn: psycopg.Connection, s: str) -> None:
    made = [r for r in slot_rows(conn, s) if r[1] != "missed"]
    jobs = job_rows(conn, s)
    assert {r[1] for r in made} <= {"enqueued", "allowed"}
    assert sorted(r[2] for r in made) == [j[0] for j in jobs]
    assert sorted(j[2] for j in jobs) == sorted(r[0].isoformat() for r in made)


def consecutive(minutes: list[Any]) -> bool:
    return all(b - a == timedelta(minutes=1) for a, b in pairwise(minutes))


def test_two_workers_fire_each_minute_once_and_a_restart_catches_up(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    clock = f"{time.time():.3f}:20"
    workers = [start(installed, f"cron-{i}", clock) for i in range(2)]
    try:
        wait_for(lambda: len(slot_rows(conn, s)) >= 4, timeout=60, message="four fires")
        wait_for(
            lambda: {j[1] for j in job_rows(conn, s)[:4]} == {"completed"},
            timeout=30,
            message="the first jobs ran",
        )
    finally:
        errors = [finish(w, signal.SIGKILL) for w in workers]
    before = slot_rows(conn, s)
    assert before, errors
    assert {r[1] for r in before} <= {"enqueued", "allowed"}
    assert consecutive([r[0] for r in before])
    one_job_per_made_slot(conn, s)
    last = before[-1][0]

    # Restart ten simulated minutes later: the outage's fires are caught up (3) or missed.
    restarted = start(installed, "cron-restart", f"{clock}:600")
    try:
        wait_for(
            lambda: slot_rows(conn, s)[-1][0] >= last + timedelta(minutes=10),
            timeout=60,
            message="the restarted scheduler fired after the gap",
        )
    finally:
        assert finish(restarted, signal.SIGTERM) is not None
    after = [r for r in slot_rows(conn, s) if r[0] > last]
    assert consecutive([r[0] for r in after])  # every minute of the gap is accounted for
    late_made = [r for r in after if r[1] != "missed" and r[3] - r[0] > timedelta(minutes=1)]
    missed = [r for r in after if r[1] == "missed"]
    assert len(late_made) == 3 and missed
    assert max(m[0] for m in missed) < min(r[0] for r in late_made)  # the newest are made
    one_job_per_made_slot(conn, s)


def test_queue_one_follow_up_really_runs_when_the_active_job_finishes(
    installed: Settings, conn: psycopg.Connection, database_url: str
) -> None:
    from tests.cron.app_e2e import GATE_KEY

    s = installed.prefix
    gated = "e2e-gated"
    with psycopg.connect(database_url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_KEY,))
        worker = start(installed, "cron-gated", f"{time.time():.3f}:20")
        try:

            def waiting() -> bool:
                decisions = [r[1] for r in slot_rows(conn, s, gated)]
                return "queued" in decisions and decisions[-1] == "skipped"

            wait_for(waiting, timeout=60, message="a queued follow-up, then a skip")
            states = [j[1] for j in job_rows(conn, s, gated)]
            assert states == ["executing", "suspended"]  # one follow-up, waiting
            gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_KEY,))
            wait_for(
                lambda: [j[1] for j in job_rows(conn, s, gated)][:2] == ["completed"] * 2,
                timeout=30,
                message="the first job and its follow-up completed",
            )
        finally:
            finish(worker, signal.SIGTERM)
    first, follow_up = job_rows(conn, s, gated)[:2]
    queued = [r for r in slot_rows(conn, s, gated) if r[1] == "queued"]
    assert queued[0][2] == follow_up[0]
    assert follow_up[3] >= first[4]  # it started only after the active one finished
