"""What every benchmark prints first (machine, PostgreSQL, transport) and shared setup."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from powertools_core.config import Settings, load_settings
from powertools_core.db.connection import resolve_url
from powertools_core.jobs.model import Job
from powertools_core.migrate import install
from powertools_core.workers import Worker

BENCH_SCHEMA = "powertools_bench"

STARTED: dict[int, float] = {}
"""job id -> perf_counter() when perform began (latency bench)."""


class Noop(Worker):
    """A no-op job: measures the runtime, not the work."""

    queue = "bench"

    async def perform(self, job: Job) -> None:
        return None


class NoopSync(Worker):
    queue = "bench"

    def perform(self, job: Job) -> None:
        return None


class Stamp(Worker):
    """Notes when it started (enqueue -> start latency)."""

    queue = "latency"

    async def perform(self, job: Job) -> None:
        import time

        STARTED[job.id] = time.perf_counter()


def settings() -> Settings:
    return load_settings(prefix=os.environ.get("POWERTOOLS_BENCH_PREFIX", BENCH_SCHEMA))


def fresh_schema(s: Settings) -> str:
    url = resolve_url(s)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s.prefix)))
    install(s.model_copy(update={"database_url": url}))
    return url


def machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f"{pages / 2**30:.1f} GiB"
    except (ValueError, OSError):
        pass
    return [
        ("cpu", f"{cpu} ({os.cpu_count()} logical cores)"),
        ("ram", mem),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("psycopg", f"{psycopg.__version__} ({psycopg.pq.__impl__})"),
    ]


def postgres(url: str) -> list[tuple[str, str]]:
    info = conninfo_to_dict(url)
    host = str(info.get("host") or "")
    transport = "unix socket" if (not host or host.startswith("/")) else f"TCP ({host})"
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        rows = [("postgresql", str(version)), ("transport", transport)]
        for name in ("synchronous_commit", "shared_buffers", "fsync", "max_connections"):
            value = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            rows.append((name, str(value[0]) if value else "?"))
        import time

        t0 = time.perf_counter()
        for _ in range(200):
            conn.execute("SELECT 1")
        rows.append(("round trip (SELECT 1)", f"{(time.perf_counter() - t0) / 200 * 1e6:.0f} µs"))
    return rows


def print_rows(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    print(title)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")


def seed_copy(url: str, schema: str, worker: str, queue: str, count: int) -> None:
    """COPY ``count`` available jobs, then VACUUM ANALYZE (a clean table for every run)."""
    with psycopg.connect(url, autocommit=True) as conn:
        table = sql.Identifier(schema, "oban_jobs")
        conn.execute(sql.SQL("TRUNCATE {}").format(table))
        with conn.cursor() as cur:
            copy = sql.SQL("COPY {} (worker, queue, args) FROM STDIN").format(table)
            with cur.copy(copy) as cp:
                for i in range(count):
                    cp.write_row((worker, queue, f'{{"n": {i}}}'))
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))


def count_state(url: str, schema: str, state: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.oban_jobs WHERE state = %s").format(
                sql.Identifier(schema)
            ),
            (state,),
        ).fetchone()
    return int(row[0]) if row else 0


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]
