"""The README's first command (`./dev demo`): powertools end to end on the embedded default.

It does what a new user would: install the schema, enqueue a few hundred jobs of the workers in
``examples/demo_app.py`` (some fail and retry, some are scheduled a few seconds out, a few are
discarded), run ``powertools worker run`` until the queues settle, and summarise what happened.
No configuration is needed: without a database URL the embedded PostgreSQL server is used. The
demo works in its own schema (``powertools_demo``), recreated on every run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from examples import demo_app
from powertools_core.config import load_settings
from powertools_core.db.connection import resolve_url
from powertools_core.db.urls import mask_url
from powertools_core.jobs.insert import insert_all
from powertools_core.workers import Worker

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "powertools_demo"
QUEUES = "mailers=20,media=4,webhooks=10,billing=5"
UNSETTLED = ("available", "scheduled", "retryable", "executing")
DEADLINE_S = 45.0


def powertools_exe() -> str:
    beside = Path(sys.executable).with_name("powertools")
    return str(beside) if beside.exists() else (shutil.which("powertools") or "powertools")


def cli(*args: str, check: bool = True) -> int:
    print(f"\n$ powertools {' '.join(args)}", flush=True)
    rc = subprocess.run([powertools_exe(), *args], cwd=ROOT, env=_env(), check=False).returncode
    if check and rc != 0:
        raise SystemExit(f"demo: `powertools {' '.join(args)}` exited {rc}")
    return rc


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def the_jobs(rng: random.Random) -> list[tuple[type[Worker], dict[str, Any], float | None]]:
    """(worker, args, schedule_in seconds or None) for a few hundred realistic jobs."""
    jobs: list[tuple[type[Worker], dict[str, Any], float | None]] = []
    for i in range(150):
        args = {"user_id": i, "email": f"user{i}@example.com"}
        jobs.append((demo_app.SendWelcomeEmail, args, 3.0 if i % 5 == 0 else None))
    for i in range(40):
        jobs.append((demo_app.ResizeImage, {"image_id": i, "width": 320}, None))
    for i in range(80):
        failures = rng.choices([0, 1, 2, 3], weights=[55, 15, 5, 5])[0]
        endpoint = f"https://hooks.example.com/{i}"
        jobs.append((demo_app.DeliverWebhook, {"endpoint": endpoint, "failures": failures}, None))
    for i in range(30):
        amount = 0 if i % 10 == 3 else rng.randint(100, 9000)
        jobs.append((demo_app.ChargeCard, {"order_id": 1000 + i, "amount_cents": amount}, None))
    rng.shuffle(jobs)
    return jobs


def enqueue(url: str, jobs: list[tuple[type[Worker], dict[str, Any], float | None]]) -> str:
    """All of them in one transaction, the way an application would (validated first)."""
    specs = [worker.new(args, schedule_in=delay) for worker, args, delay in jobs]
    with psycopg.connect(url) as conn:
        insert_all(specs, conn=conn, prefix=PREFIX)
    return "Worker.new + insert_all (one transaction)"


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    query = sql.SQL("SELECT state::text, count(*) FROM {}.oban_jobs GROUP BY 1 ORDER BY 1")
    return {r[0]: r[1] for r in conn.execute(query.format(sql.Identifier(PREFIX)))}


def main() -> int:
    started = time.monotonic()
    settings = load_settings(prefix=PREFIX)
    if settings.database_url:
        print(f"note: using the database from {settings.database_source}")
    url = resolve_url(settings)
    print(f"database: {mask_url(url)}  (schema {PREFIX}, recreated for this demo)")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(PREFIX)))
    cli("install", "--prefix", PREFIX)

    jobs = the_jobs(random.Random(7))
    how = enqueue(url, jobs)
    scheduled = sum(1 for _, _, d in jobs if d)
    print(f"\nenqueued {len(jobs)} jobs ({scheduled} scheduled 3s out) via {how}")

    cmd = [
        powertools_exe(),
        "worker",
        "run",
        "--app",
        "examples.demo_app",
        "--prefix",
        PREFIX,
        "--queues",
        QUEUES,
        "--grace",
        "10s",
        "-q",
    ]
    print(f"\n$ powertools {' '.join(cmd[1:])}   (until the queues settle)", flush=True)
    t0 = time.monotonic()
    worker = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    settled = False
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            last = ""
            while time.monotonic() - t0 < DEADLINE_S:
                now = counts(conn)
                line = "  " + ", ".join(f"{k} {v}" for k, v in now.items())
                if line != last:
                    print(f"{line}   [{time.monotonic() - t0:4.1f}s]", flush=True)
                    last = line
                if not any(now.get(s) for s in UNSETTLED):
                    settled = True
                    break
                if worker.poll() is not None:
                    break
                time.sleep(0.25)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        summary, _ = worker.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    print(f"worker exited {worker.returncode} after draining; its report:")
    print("\n".join("  " + ln for ln in summary.strip().splitlines()))

    with psycopg.connect(url, autocommit=True) as conn:
        final = counts(conn)
        retried, errors, discarded = conn.execute(
            sql.SQL(
                "SELECT count(*) FILTER (WHERE attempt > 1), "
                "coalesce(sum(cardinality(errors)), 0), "
                "array_agg(ARRAY[worker, errors[cardinality(errors)] ->> 'error']) "
                "FILTER (WHERE state = 'discarded') FROM {}.oban_jobs"
            ).format(sql.Identifier(PREFIX))
        ).fetchone()  # type: ignore[misc]
    print("\nsummary")
    print(f"  jobs by state     {', '.join(f'{k} {v}' for k, v in final.items())}")
    print(f"  retried           {retried} job(s) ran more than once; {errors} error(s) recorded")
    by_worker: dict[str, list[str]] = {}
    for worker_name, reason in discarded or []:
        by_worker.setdefault(worker_name.rsplit(".", 1)[-1], []).append(reason or "")
    for name, reasons in sorted(by_worker.items()):
        print(f"  discarded         {len(reasons)} {name}, e.g. {reasons[0].splitlines()[0]}")
    print(f"  worker time       {elapsed:.1f}s (scheduled jobs waited 3s; retries back off 1s)")
    if not settled:
        print("demo: the queues did not settle in time", file=sys.stderr)
        return 1

    cli("doctor", "--prefix", PREFIX, check=False)  # exit 1 on warnings: shown, not fatal
    cli("ops", "list", "--prefix", PREFIX, "--state", "discarded")
    cli("ops", "retry-all", "--prefix", PREFIX, "--state", "discarded", "--dry-run")
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
