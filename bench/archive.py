"""Archive and restore at scale: ``archive run`` and ``archive restore`` of N terminal jobs.

Seeds N terminal jobs (80% completed, 10% discarded, 10% cancelled, 60 days old, every column
filled) with COPY, then times, through the same core calls the CLI makes:

- ``archive run``: oban_jobs -> powertools_job_archive, chunk by chunk (target >= 50,000 rows/s);
- ``archive restore --run``: the same rows back into oban_jobs with their ids.

It checks that every row made both trips, prints rows/s, and EXPLAIN (ANALYZE, BUFFERS, WAL) of
one archive chunk (rolled back) so the cost can be read per node. ``--sweep`` times archive runs
of ``--sweep-rows`` rows at several batch sizes first.

    python -m bench.archive                       # 1,000,000 jobs, batch 10,000
    python -m bench.archive --jobs 200000 --batch-size 20000 --sweep
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from bench.common import fresh_schema, machine, postgres, print_rows
from powertools_core import archive
from powertools_core.archive import sql as archive_sql
from powertools_core.archive.policy import DEFAULT_BATCH_SIZE
from powertools_core.archive.results import ArchiveRunResult
from powertools_core.archive.run import no_progress
from powertools_core.config import Settings, load_settings

SCHEMA = "powertools_bench_archive"
TARGET_ROWS_PER_S = 50_000
STATES = ("completed",) * 8 + ("discarded", "cancelled")
QUEUES = ("default", "mailers", "billing", "imports")
COPY_COLUMNS = (
    "state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at, "
    "attempted_at, completed_at, discarded_at, cancelled_at, attempted_by, priority, tags, meta"
)
COPY_TYPES = [
    "text",
    "text",
    "text",
    "jsonb",
    "jsonb[]",
    "int4",
    "int4",
    "timestamp",
    "timestamp",
    "timestamp",
    "timestamp",
    "timestamp",
    "timestamp",
    "text[]",
    "int4",
    "text[]",
    "jsonb",
]
WALL: dict[str, float] = {}
"""Wall time of the last archive/restore call, preview count and connection included."""
INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = %s AND tablename = 'oban_jobs' AND indexname <> 'oban_jobs_pkey'
"""


def seed(url: str, schema: str, count: int) -> float:
    """COPY ``count`` terminal jobs. Secondary indexes are dropped for the load and rebuilt
    afterwards (the table ends up exactly as installed, only faster to fill)."""
    began = time.perf_counter()
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        table = sql.Identifier(schema, "oban_jobs")
        indexes = conn.execute(INDEXES, (schema,)).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
        done = datetime.fromtimestamp(now, UTC).replace(tzinfo=None) - timedelta(days=60)
        node = ["bench-node", str(uuid.uuid4())]
        error = '{"at": "2026-01-01T00:00:00Z", "attempt": 3, "error": "smtp timeout"}'
        with conn.cursor() as cur:
            copy = sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(COPY_COLUMNS))
            with cur.copy(copy) as cp:
                cp.set_types(COPY_TYPES)
                for i in range(count):
                    state = STATES[i % len(STATES)]
                    at = done + timedelta(microseconds=i)
                    cp.write_row(
                        (
                            state,
                            QUEUES[i % len(QUEUES)],
                            "app.workers.SendEmail",
                            f'{{"to": "user{i}@example.com", "template": "welcome", "n": {i}}}',
                            [error] if state != "completed" else [],
                            3 if state != "completed" else 1,
                            3,
                            at,
                            at,
                            at,
                            at if state == "completed" else None,
                            at if state == "discarded" else None,
                            at if state == "cancelled" else None,
                            node,
                            0,
                            ["bench"],
                            '{"trace": "abc123"}',
                        )
                    )
        for _, definition in indexes:
            conn.execute(definition)  # pg_indexes.indexdef: schema-qualified, from the catalog
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
    return time.perf_counter() - began


SEGMENT = 100_000
SEGMENTS: dict[str, list[float]] = {}
"""Per description, the seconds each successive SEGMENT rows took (the rate's trend)."""


@contextmanager
def progress_line(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A one-line progress display on stderr (refreshed at most ten times a second)."""
    done = 0
    began = time.perf_counter()
    last = 0.0
    marks = SEGMENTS.setdefault(description, [])
    mark = began

    def advance(n: int) -> None:
        nonlocal done, last, mark
        done += n
        now = time.perf_counter()
        if done // SEGMENT > len(marks):
            marks.append(now - mark)
            mark = now
        if now - last >= 0.1 or done == total:
            last = now
            rate = done / max(now - began, 1e-9)
            sys.stderr.write(
                f"\r  {description}: {done:>10,} / {total or 0:,}  {rate:>9,.0f} rows/s"
            )
            sys.stderr.flush()

    try:
        yield advance
    finally:
        sys.stderr.write("\n")


BGWRITER = """
SELECT checkpoints_timed + checkpoints_req, buffers_backend, buffers_checkpoint, buffers_clean
FROM pg_stat_bgwriter
"""
# PostgreSQL 17 moved the checkpoint counters to pg_stat_checkpointer and the backends' writes
# to pg_stat_io (8 KiB blocks at the default op_bytes).
BGWRITER_17 = """
SELECT c.num_timed + c.num_requested,
    (SELECT coalesce(sum(writes), 0) FROM pg_stat_io WHERE backend_type = 'client backend'),
    c.buffers_written, b.buffers_clean
FROM pg_stat_checkpointer c, pg_stat_bgwriter b
"""


def bgwriter(url: str) -> tuple[int, ...]:
    with psycopg.connect(url, autocommit=True) as conn:
        query = BGWRITER_17 if conn.info.server_version >= 170000 else BGWRITER
        row = conn.execute(query).fetchone()
    return tuple(int(v) for v in row) if row else (0, 0, 0, 0)


def _trend(description: str) -> str:
    rates = [f"{SEGMENT / s / 1000:.0f}k" for s in SEGMENTS.get(description, []) if s > 0]
    return " ".join(rates) or "-"


def count(url: str, schema: str, table: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        ).fetchone()
    return int(row[0]) if row else 0


def explain_chunk(url: str, settings: Settings, batch: int) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS, WAL) of one archive chunk statement, rolled back."""
    states = ["completed", "discarded", "cancelled"]
    text = archive_sql.archive_move_sql(settings.prefix, states, guard=False)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, WAL) " + text,
            {
                **{f"state_{s}": s for s in states},
                **{f"cutoff_{s}": "3000-01-01" for s in states},
                **{f"after_{s}": "0001-01-01" for s in states},
                "any_queue": True,
                "queues": [],
                "limit": batch,
                "run_id": uuid.uuid4(),
            },
        ).fetchall()
        conn.rollback()
    return [str(r[0]) for r in rows]


def archive_once(settings: Settings, batch: int, *, bar: bool = True) -> ArchiveRunResult:
    """``archive run`` as the CLI runs it: the preview count first, then the chunks."""
    began = time.perf_counter()
    result = archive.run_archive(
        settings,
        archive.ArchiveRequest(retention=archive.resolve_retention(None, "1d"), batch_size=batch),
        actor="bench",
        reason="bench.archive run",
        progress=progress_line if bar else no_progress,
    )
    assert isinstance(result, ArchiveRunResult)
    WALL["archive"] = time.perf_counter() - began
    return result


def restore_run(settings: Settings, run_id: uuid.UUID, batch: int) -> ArchiveRunResult:
    began = time.perf_counter()
    result = archive.run_restore(
        settings,
        archive.ArchiveFilter(run_id=run_id),
        actor="bench",
        reason="bench.archive restore",
        batch_size=batch,
        progress=progress_line,
    )
    assert isinstance(result, ArchiveRunResult)
    WALL["restore"] = time.perf_counter() - began
    return result


def sweep(settings: Settings, url: str, rows: int, sizes: list[int]) -> list[tuple[str, str]]:
    """Archive ``rows`` jobs at each batch size (restoring in between)."""
    out = []
    for size in sizes:
        seed(url, settings.prefix, rows)
        done = archive_once(settings, size, bar=False)
        out.append((f"batch {size:,}", f"{done.rows_per_s:,.0f} rows/s ({done.chunks} chunks)"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("TRUNCATE {}, {}").format(
                    sql.Identifier(settings.prefix, "powertools_job_archive"),
                    sql.Identifier(settings.prefix, "oban_jobs"),
                )
            )
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="terminal jobs to seed")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--sweep", action="store_true", help="time several batch sizes first")
    parser.add_argument("--sweep-rows", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="keep the bench schema afterwards")
    args = parser.parse_args(argv)

    settings = load_settings(prefix=os.environ.get("POWERTOOLS_BENCH_PREFIX", SCHEMA))
    url = fresh_schema(settings)
    settings = settings.model_copy(update={"database_url": url})
    print_rows("machine", machine())
    print_rows("database", postgres(url))

    load_before = _load()
    results: list[tuple[str, Any]] = []
    if args.sweep:
        results += sweep(settings, url, args.sweep_rows, [2_000, 5_000, 10_000, 20_000, 50_000])

    seconds = seed(url, settings.prefix, args.jobs)
    print(f"seeded {args.jobs:,} terminal jobs in {seconds:.1f}s (COPY, indexes rebuilt)")

    writer_before = bgwriter(url)
    archived = archive_once(settings, args.batch_size)
    writer = [b - a for a, b in zip(writer_before, bgwriter(url), strict=True)]
    left, in_archive = (
        count(url, settings.prefix, "oban_jobs"),
        count(url, settings.prefix, "powertools_job_archive"),
    )
    ok_archive = archived.moved == args.jobs and left == 0 and in_archive == args.jobs

    restored = restore_run(settings, archived.run.id, args.batch_size)
    back = count(url, settings.prefix, "oban_jobs")
    ok_restore = restored.moved == args.jobs and back == args.jobs

    plan = explain_chunk(url, settings, args.batch_size)
    statement_ms = next(
        (float(line.split()[-2]) for line in plan if line.startswith("Execution Time")), 0.0
    )
    met = archived.rows_per_s >= TARGET_ROWS_PER_S
    results += [
        ("jobs", f"{args.jobs:,} (batch {args.batch_size:,})"),
        (
            "archive run",
            f"{archived.rows_per_s:,.0f} rows/s, {archived.duration_ms / 1000:.1f}s, "
            f"{archived.chunks} chunks (target >= {TARGET_ROWS_PER_S:,} rows/s: "
            f"{'met' if met else 'NOT met'}); {WALL['archive']:.1f}s wall with the preview count",
        ),
        ("archive rate per 100k rows", _trend("archive run")),
        (
            "server during archive",
            f"{writer[0]} checkpoint(s); buffers written by backends {writer[1]:,}, by "
            f"checkpoints {writer[2]:,}, by the bgwriter {writer[3]:,} (8 KiB each)",
        ),
        (
            "archive restore",
            f"{restored.rows_per_s:,.0f} rows/s, {restored.duration_ms / 1000:.1f}s "
            f"({WALL['restore']:.1f}s wall; inserts into oban_jobs and its 9 indexes, 2 GIN)",
        ),
        (
            "one chunk statement",
            f"{statement_ms:,.0f} ms for {args.batch_size:,} rows = "
            f"{args.batch_size / max(statement_ms, 1e-9) * 1000:,.0f} rows/s server-side "
            "(EXPLAIN ANALYZE below; the rest of a chunk is its audit row, run counts, commit)",
        ),
        ("every row moved", "yes" if ok_archive and ok_restore else "NO"),
        ("load average", f"{load_before} before, {_load()} after (other processes share the box)"),
    ]
    print_rows(
        "archive (through powertools_core.archive, as `powertools archive` runs it)", results
    )
    print(f"EXPLAIN (ANALYZE, BUFFERS, WAL) of one {args.batch_size:,}-row archive chunk:")
    for line in plan:
        print(f"  {line}")
    if not args.keep:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.prefix))
            )
    return 0 if ok_archive and ok_restore else 1


if __name__ == "__main__":
    sys.exit(main())
