"""Real processes: `powertools archive run` killed (-9) or interrupted (Ctrl-C) while it moves
chunks, and a real `powertools worker run` draining a queue while an archive run works on the
same table. Every wait polls the database with a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from powertools_core.archive import list_runs
from powertools_core.config import Settings
from powertools_core.db.identifiers import qualify
from tests.archive.conftest import REASON, conn_args, count, rows, run_rows, seed_many
from tests.runtime.helpers import make_runs_table, notify, runs, seed, wait_for
from tests.support.cli import process_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
POWERTOOLS = Path(sys.executable).with_name("powertools")
TOTAL = 30_000
BATCH = 300


def _archive_process(settings: Settings, *args: str) -> subprocess.Popen[str]:
    cmd = [
        str(POWERTOOLS),
        "archive",
        "run",
        "--batch-size",
        str(BATCH),
        "--actor",
        "tester",
        "--reason",
        REASON,
        "--yes",
        "--format",
        "json",
        *args,
        *conn_args(settings),
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _moved_so_far(conn: psycopg.Connection[Any], prefix: str) -> int:
    found = rows(
        conn,
        prefix,
        "SELECT (counts->>'moved')::int AS moved FROM {prefix}.powertools_archive_runs "
        "WHERE kind = 'archive' AND status = 'running'",
    )
    return found[0]["moved"] if found else 0


def _both_tables(conn: psycopg.Connection[Any], prefix: str) -> int:
    (both,) = conn.execute(
        qualify(
            "SELECT count(*) FROM {prefix}.oban_jobs j "
            "JOIN {prefix}.powertools_job_archive a USING (id)",
            prefix,
        )
    ).fetchone()  # type: ignore[misc]
    return int(both)


def _wait_mid_run(proc: subprocess.Popen[str], conn: psycopg.Connection[Any], prefix: str) -> int:
    """Until at least two chunks have committed, while the process is still running."""

    def moved() -> int:
        assert proc.poll() is None, "the archive run finished before it could be stopped"
        return _moved_so_far(conn, prefix) >= 2 * BATCH

    wait_for(moved, timeout=60, message="two committed chunks")
    return _moved_so_far(conn, prefix)


def test_kill_9_mid_run_loses_nothing_and_a_rerun_completes(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    seed_many(db, p, state="completed", count=TOTAL)
    proc = _archive_process(installed)
    try:
        _wait_mid_run(proc, db, p)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (dead,) = run_rows(db, p)
    # the killed session's locks go with it; reading runs then shows it interrupted
    wait_for(
        lambda: list_runs(installed).runs[0].status == "interrupted",
        timeout=30,
        message="the killed run's session to end",
    )
    archived = count(db, p, "powertools_job_archive")
    assert 2 * BATCH <= archived < TOTAL, "killed while moving chunks"
    assert count(db, p, "oban_jobs") + archived == TOTAL
    assert _both_tables(db, p) == 0
    # what the killed run recorded matches what it committed (counts updated in each chunk)
    (recorded,) = rows(
        db,
        p,
        "SELECT (counts->>'moved')::int AS moved FROM {prefix}.powertools_archive_runs",
    )
    assert (
        recorded["moved"]
        == archived
        == count(db, p, "powertools_job_archive", f"archive_run_id = '{dead['id']}'")
    )

    rerun = _archive_process(installed)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    result = json.loads(out)
    assert result["moved"] == TOTAL - archived
    assert result["interrupted_runs"] == [str(dead["id"])]
    assert count(db, p, "oban_jobs") == 0
    assert count(db, p, "powertools_job_archive") == TOTAL
    statuses = [r["status"] for r in run_rows(db, p)]
    assert statuses == ["interrupted", "completed"]


def test_ctrl_c_stops_after_the_chunk_and_reports_what_moved(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    seed_many(db, p, state="discarded", count=TOTAL)
    proc = _archive_process(installed)
    try:
        _wait_mid_run(proc, db, p)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    result = json.loads(out)
    assert result["run"]["status"] == "interrupted"
    archived = count(db, p, "powertools_job_archive")
    assert result["moved"] == archived < TOTAL
    assert count(db, p, "oban_jobs") + archived == TOTAL
    (recorded,) = run_rows(db, p)
    assert recorded["status"] == "interrupted" and recorded["counts"]["moved"] == archived
    events = rows(
        db, p, "SELECT action, result FROM {prefix}.powertools_audit_events ORDER BY id DESC"
    )
    assert events[0] == {"action": "archive.run", "result": "interrupted"}


def _worker(settings: Settings, cwd: Path) -> subprocess.Popen[str]:
    """`powertools worker run` on the recorder app, from ``cwd`` (its config file applies)."""
    assert settings.database_url
    env = dict(os.environ)
    env.update(
        PT_RECORD_URL=settings.database_url,
        PYTHONPATH=str(ROOT),
        POWERTOOLS_DATABASE_URL=settings.database_url,
        POWERTOOLS_PREFIX=settings.prefix,
    )
    env.pop("POWERTOOLS_APP", None)
    cmd = [
        str(POWERTOOLS),
        "worker",
        "run",
        "--app",
        "tests.support.apps.recorder",
        "--queues",
        "default=10",
        "--election-interval",
        "200ms",
        "--poll-interval",
        "200ms",
    ]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


def test_a_worker_keeps_draining_while_archive_runs_on_the_same_table(
    installed: Settings, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    p = installed.prefix
    make_runs_table(db, p)
    # the worker's own retention duty is off here: the archive run below is the only mover
    (tmp_path / "powertools.toml").write_text("[archive]\nenabled = false\n")
    seed_many(db, p, state="completed", count=TOTAL)
    worker = _worker(installed, tmp_path)
    archive = _archive_process(installed)
    try:
        _wait_mid_run(archive, db, p)
        jobs = seed(db, p, "Record", 1_000)
        notify(db, p)
        wait_for(
            lambda: _count_ids(db, p, "oban_jobs", jobs, "state = 'completed'") == len(jobs),
            timeout=60,
            message="the worker to drain its queue",
        )
        out, err = archive.communicate(timeout=120)
    finally:
        if archive.poll() is None:
            archive.kill()
            archive.wait()
        worker_err = _stop(worker)
    assert archive.returncode == 0, err
    assert "Traceback" not in worker_err, worker_err
    result = json.loads(out)
    assert len(run_rows(db, p)) == 1
    # every worker job ran exactly once and completed; none of them (too fresh) was archived
    ran = runs(db, p)
    assert sorted(r[0] for r in ran) == sorted(jobs)
    assert _count_ids(db, p, "powertools_job_archive", jobs) == 0
    # the archive moved exactly the old rows, and the two overlapped in time
    assert result["moved"] == TOTAL == count(db, p, "powertools_job_archive")
    started, finished = (
        datetime.fromisoformat(result["run"][k]).replace(tzinfo=None)
        for k in ("started_at", "finished_at")
    )
    (overlap,) = db.execute(
        qualify(
            "SELECT count(*) FROM {prefix}.oban_jobs "
            "WHERE id = ANY(%s) AND completed_at BETWEEN %s AND %s",
            p,
        ),
        (jobs, started, finished),
    ).fetchone()  # type: ignore[misc]
    assert overlap > 0, "the worker completed jobs while the archive run was moving chunks"


def _count_ids(
    conn: psycopg.Connection[Any], prefix: str, table: str, ids: list[int], where: str = "TRUE"
) -> int:
    query = f"SELECT count(*) FROM {{prefix}}.{table} WHERE id = ANY(%s) AND {where}"
    (found,) = conn.execute(qualify(query, prefix), (ids,)).fetchone()  # type: ignore[misc]
    return int(found)


def test_the_worker_leader_applies_the_configured_retention_as_system(
    installed: Settings, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    p = installed.prefix
    make_runs_table(db, p)
    (tmp_path / "powertools.toml").write_text(
        '[archive]\nretention = { completed = "1h" }\ninterval = "1s"\n'
    )
    seed_many(db, p, state="completed", count=50, age=timedelta(hours=2))
    seed_many(db, p, state="completed", count=7, age=timedelta(minutes=10))
    seed_many(db, p, state="discarded", count=5, age=timedelta(days=2))  # default 30d: stays
    worker = _worker(installed, tmp_path)
    try:
        wait_for(
            lambda: count(db, p, "powertools_job_archive") == 50,
            timeout=60,
            message="the leader's retention duty",
        )
    finally:
        err = _stop(worker)
    assert "Traceback" not in err, err
    assert count(db, p, "oban_jobs") == 12
    recorded = run_rows(db, p)
    assert recorded and {r["actor"] for r in recorded} == {"system"}
    assert {r["filter"]["source"] for r in recorded} == {"duty"}
    assert sum(r["counts"]["moved"] for r in recorded) == 50
