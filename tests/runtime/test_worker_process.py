"""``powertools worker run`` as real processes: drain, crash and rescue, several processes."""

from __future__ import annotations

import signal
import socket
import urllib.request
import uuid
from collections import Counter

import psycopg
import pytest
from psycopg import sql

from powertools_core.config import Settings
from tests.runtime.helpers import notify, runs, seed, states, wait_for
from tests.runtime.process import start_worker, stop

pytestmark = pytest.mark.slow


def executing_ids(conn: psycopg.Connection, schema: str) -> set[int]:
    query = sql.SQL("SELECT id FROM {}.oban_jobs WHERE state = 'executing'")
    return {r[0] for r in conn.execute(query.format(sql.Identifier(schema))).fetchall()}


def test_sigterm_drains_without_losing_or_stranding_jobs(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    ids = seed(conn, s, "Record", 30, args={"sleep": 0.3})
    proc = start_worker(rt_settings, "--queues", "default=3", "--grace", "20s")
    try:
        wait_for(lambda: len(runs(conn, s)) >= 4, message="some jobs ran")
    finally:
        rc = stop(proc)
    _out, err = proc.communicate()
    assert rc == 0, err
    counts = states(conn, s)
    assert "executing" not in counts
    assert counts.get("completed", 0) + counts.get("available", 0) == len(ids)
    first = Counter(r[0] for r in runs(conn, s))
    assert set(first.values()) == {1}
    # Everything left is picked up by the next worker; nothing runs twice.
    proc = start_worker(rt_settings, "--queues", "default=10")
    try:
        wait_for(lambda: states(conn, s) == {"completed": len(ids)}, message="all completed")
    finally:
        assert stop(proc) == 0
    total = Counter(r[0] for r in runs(conn, s))
    assert sorted(total) == sorted(ids) and set(total.values()) == {1}


def test_grace_expiry_leaves_the_job_to_the_lifeline(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    (job_id,) = seed(conn, s, "RecordSync", args={"sleep": 60, "sleep_attempts": 1})
    proc = start_worker(rt_settings, "--grace", "500ms")
    try:
        wait_for(lambda: runs(conn, s), message="sync job running")
    finally:
        rc = stop(proc, timeout=20)
    assert rc == 0, "a stuck sync job must not keep the process alive past the grace"
    assert executing_ids(conn, s) == {job_id}
    rescuer = start_worker(rt_settings)
    try:
        wait_for(lambda: states(conn, s) == {"completed": 1}, message="rescued and completed")
    finally:
        assert stop(rescuer) == 0
    assert [r[1] for r in runs(conn, s)] == [1, 2]


def test_kill_9_then_rescue_reruns_only_the_jobs_in_flight(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    ids = seed(conn, s, "Record", 40, args={"sleep": 0.2})
    node = f"victim-{uuid.uuid4().hex[:8]}"
    victim = start_worker(rt_settings, "--queues", "default=5", "--node", node)
    try:
        wait_for(lambda: len(runs(conn, s)) >= 10, message="victim ran some jobs")
    finally:
        stop(victim, signal.SIGKILL)
    # A statement the victim had already sent may still commit: wait for its backends to end.
    alive = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s"
    wait_for(
        lambda: conn.execute(alive, (f"powertools:%:{node}",)).fetchone() == (0,),
        message="the victim's sessions to end",
    )
    in_flight = executing_ids(conn, s)
    assert in_flight, "the kill should leave claimed jobs behind"
    before = Counter(r[0] for r in runs(conn, s))
    rescuer = start_worker(rt_settings, "--queues", "default=10")
    try:
        wait_for(lambda: states(conn, s) == {"completed": len(ids)}, timeout=60, message="all done")
    finally:
        assert stop(rescuer) == 0
    after = Counter(r[0] for r in runs(conn, s))
    assert sorted(after) == sorted(ids), "every job ran"
    twice = {job for job, n in after.items() if n > 1}
    detail = f"twice={sorted(twice)} in_flight={sorted(in_flight)} before={sorted(before)}"
    assert twice <= in_flight, f"only jobs claimed by the killed worker may run again: {detail}"
    assert all(n <= 2 for n in after.values()), detail
    assert twice <= set(before), f"a job that ran twice had started in the killed worker: {detail}"
    incidents = conn.execute(
        sql.SQL("SELECT job_id FROM {}.powertools_lifeline_incidents").format(sql.Identifier(s))
    ).fetchall()
    assert {r[0] for r in incidents} == in_flight


def test_two_processes_never_run_a_job_twice(
    rt_settings: Settings, conn: psycopg.Connection
) -> None:
    s = rt_settings.prefix
    port = _free_port()
    proc = start_worker(
        rt_settings, "--queues", "default=5", "--processes", "2", "--health-port", str(port)
    )
    try:
        # Ready means every child runs its producers; only then seed, so both take jobs.
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, message="ready")
        ids = seed(conn, s, "Record", 300, args={"sleep": 0.005})
        notify(conn, s)
        wait_for(lambda: states(conn, s) == {"completed": len(ids)}, timeout=60, message="all done")
    finally:
        rc = stop(proc)
    assert rc == 0, proc.communicate()[1]
    executions = runs(conn, s)
    per_job = Counter(r[0] for r in executions)
    assert sorted(per_job) == sorted(ids) and set(per_job.values()) == {1}
    assert len({r[2] for r in executions}) == 2, "both processes took jobs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_health_endpoints(rt_settings: Settings) -> None:
    port = _free_port()
    proc = start_worker(rt_settings, "--health-port", str(port), "--log-format", "json")
    try:
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, message="ready")
        assert _status(f"http://127.0.0.1:{port}/livez") == 200
        assert _status(f"http://127.0.0.1:{port}/nope") == 404
    finally:
        assert stop(proc) == 0
    _out, err = proc.communicate()
    assert '"message": "worker started' in err


def test_second_signal_exits_at_once(rt_settings: Settings, conn: psycopg.Connection) -> None:
    s = rt_settings.prefix
    (job_id,) = seed(conn, s, "Record", args={"sleep": 120})
    node = f"twice-{uuid.uuid4().hex[:8]}"
    proc = start_worker(rt_settings, "--grace", "120s", "--node", node)
    leader = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    try:
        wait_for(lambda: runs(conn, s), message="job running")
        wait_for(
            lambda: conn.execute(leader, (f"powertools:leader:{node}",)).fetchone() == (1,),
            message="leader connected",
        )
        proc.send_signal(signal.SIGTERM)
        # Draining resigns leadership first: its connection closing shows the drain began.
        wait_for(
            lambda: conn.execute(leader, (f"powertools:leader:{node}",)).fetchone() == (0,),
            message="drain started",
        )
        rc = stop(proc, signal.SIGTERM, timeout=10)
    finally:
        stop(proc, signal.SIGKILL)
    assert rc == 128 + signal.SIGTERM
    assert executing_ids(conn, s) == {job_id}, "the running job is left for the lifeline"
