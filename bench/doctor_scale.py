"""``powertools doctor`` on a 10-million-row oban_jobs (target: under one second).

    python -m bench.doctor_scale [--rows 10000000] [--repeat 3] [--database-url URL] [--keep]

Builds ``oban_jobs`` in a scratch schema with ``powertools install``, fills it with one
``INSERT ... SELECT generate_series`` (a realistic mix: mostly completed, some discarded and
cancelled, a backlog of available/scheduled/retryable jobs, a few executing ones under live and
dead producers, 1% with a deadline), builds the indexes after the load, VACUUM ANALYZEs, then
times ``doctor`` (every check, median of ``--repeat`` runs) and prints the figures with the
machine, PostgreSQL version and settings. The schema is dropped at the end unless ``--keep``.
The database comes from --database-url, $POWERTOOLS_DATABASE_URL, $DATABASE_URL or the embedded
server. Building 10M rows takes a few minutes; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from powertools_core.config import load_settings
from powertools_core.db.connection import resolve_url
from powertools_core.doctor import DoctorResult, doctor
from powertools_core.migrate import install

# Per 10,000 rows: how many land in each state (the rest are completed).
MIX = (
    ("executing", 1),
    ("retryable", 99),
    ("scheduled", 300),
    ("available", 500),
    ("cancelled", 200),
    ("discarded", 300),
)

FILL = """
INSERT INTO {s}.oban_jobs (
    state, queue, worker, args, attempt, max_attempts, priority, meta, tags,
    inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at,
    attempted_by)
SELECT st::{s}.oban_job_state,
       'queue_' || (mod(i, 8)),
       'bench.workers.Worker' || (mod(i, 20)),
       jsonb_build_object('id', i, 'email', 'user' || (mod(i, 50000)) || '@example.com'),
       CASE WHEN st IN ('available', 'scheduled') THEN 0 ELSE 1 END,
       20,
       mod(i, 4),
       CASE WHEN mod(i, 100) = 0
            THEN jsonb_build_object('deadline_at',
                 to_char(ins + interval '2 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
            ELSE '{{}}'::jsonb END,
       ARRAY['bench'],
       ins,
       CASE WHEN st = 'scheduled' THEN now_utc + interval '1 hour' ELSE ins END,
       CASE WHEN st IN ('available', 'scheduled') THEN NULL ELSE ins + interval '1 second' END,
       CASE WHEN st = 'completed' THEN ins + interval '2 seconds' END,
       CASE WHEN st = 'discarded' THEN ins + interval '2 seconds' END,
       CASE WHEN st = 'cancelled' THEN ins + interval '2 seconds' END,
       CASE WHEN st = 'executing' THEN ARRAY['bench-node',
            CASE WHEN mod(i / 10000, 2) = 0 THEN %(live)s ELSE %(dead)s END] END
FROM (
    SELECT i, now_utc,
           -- spread over 30 days, newest last; the backlog is the newest minutes
           CASE WHEN st IN ('available', 'scheduled', 'retryable', 'executing')
                THEN now_utc - make_interval(secs => mod(%(rows)s - i, 600))
                ELSE now_utc - make_interval(secs => (%(rows)s - i)::float8 * 2592000 / %(rows)s)
           END AS ins,
           st
    FROM (
        SELECT i, timezone('UTC', now()) AS now_utc,
               CASE {cases} ELSE 'completed' END AS st
        FROM generate_series(1, %(rows)s) AS i
    ) AS base
) AS shaped
"""

PRODUCERS = """
INSERT INTO {s}.powertools_producers (uuid, node, queue, pid, concurrency, beat_at)
VALUES (%(live)s, 'bench-node', 'queue_0', 1, 10, timezone('UTC', now())),
       (%(dead)s, 'bench-node', 'queue_1', 2, 10, timezone('UTC', now()) - interval '1 hour')
"""

SETTINGS = (
    "server_version",
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "max_parallel_workers_per_gather",
    "random_page_cost",
    "jit",
    "autovacuum",
)


def _cases() -> str:
    parts, edge = [], 0
    for state, share in MIX:
        edge += share
        parts.append(f"WHEN mod(i, 10000) < {edge} THEN '{state}'")
    return " ".join(parts)


def _step(label: str, started: float) -> float:
    now = time.perf_counter()
    print(f"  {label:<34} {now - started:7.1f}s", flush=True)
    return now


def build(conn: psycopg.Connection[Any], schema: str, rows: int) -> None:
    s = sql.Identifier(schema)
    t = time.perf_counter()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
        "AND tablename = 'oban_jobs' AND indexname <> 'oban_jobs_pkey'",
        (schema,),
    ).fetchall()
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}.{}").format(s, sql.Identifier(name)))
    conn.execute(sql.SQL("ALTER TABLE {}.oban_jobs DROP CONSTRAINT oban_jobs_pkey").format(s))
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '1GB'")
    live, dead = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    fill = sql.SQL(FILL.replace("{cases}", _cases())).format(s=s)
    conn.execute(fill, {"rows": rows, "live": live, "dead": dead})
    conn.execute(sql.SQL(PRODUCERS).format(s=s), {"live": live, "dead": dead})
    t = _step(f"insert {rows:,} rows", t)
    conn.execute(sql.SQL("ALTER TABLE {}.oban_jobs ADD PRIMARY KEY (id)").format(s))
    t = _step("primary key", t)
    for name, definition in indexes:
        conn.execute(definition)
        t = _step(name[:34], t)
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}.oban_jobs").format(s))
    _step("vacuum analyze", t)


def describe(conn: psycopg.Connection[Any], schema: str) -> None:
    values = conn.execute(
        "SELECT " + ", ".join(f"current_setting('{name}')" for name in SETTINGS)
    ).fetchone()
    assert values is not None
    size = conn.execute(
        "SELECT pg_size_pretty(pg_total_relation_size(%s::regclass)), "
        "(SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass)",
        (f'"{schema}".oban_jobs', f'"{schema}".oban_jobs'),
    ).fetchone()
    assert size is not None
    print(f"machine      {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"python       {platform.python_version()}")
    for name, value in zip(SETTINGS, values, strict=True):
        print(f"{name:<32} {value}")
    print(f"oban_jobs    {size[1]:,} rows (estimate), {size[0]} with indexes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.doctor_scale", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema")
    args = parser.parse_args(argv)

    schema = f"bench_doctor_{os.getpid()}"
    settings = load_settings(database_url=args.database_url, prefix=schema)
    url = resolve_url(settings)
    settings = settings.model_copy(update={"database_url": url})
    print(f"building {args.rows:,} jobs in schema {schema}", flush=True)
    install(settings)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            build(conn, schema, args.rows)
            describe(conn, schema)
        runs: list[tuple[float, DoctorResult]] = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = doctor(settings)
            runs.append((time.perf_counter() - started, result))
        times = sorted(t for t, _ in runs)
        median = statistics.median(times)
        _, sample = min(runs, key=lambda run: abs(run[0] - median))
        print("\nper check (median run):")
        for check in sample.checks:
            print(f"  {check.id:<28} {check.status:<8} {check.duration_ms:8.1f} ms")
        print("findings:", ", ".join(f"{f.check}({f.severity})" for f in sample.findings) or "-")
        print(
            f"\ndoctor on {args.rows:,} jobs: median {median * 1000:.0f} ms of {args.repeat} "
            f"runs ({', '.join(f'{t * 1000:.0f}' for t in times)} ms; target < 1000 ms) "
            f"{'OK' if median < 1 else 'SLOW'}"
        )
        return 0 if median < 1 else 1
    finally:
        if not args.keep:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    sys.exit(main())
