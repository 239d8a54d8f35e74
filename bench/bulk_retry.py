"""Bulk retry at scale: ``ops retry-all`` over N discarded jobs through the core API.

Seeds N discarded jobs (one INSERT … SELECT generate_series), then runs
``powertools_core.ops.execute("retry", state=discarded)`` with a live progress line and prints
rows/s, the total time (target: 1,000,000 jobs in under 60 s) and the longest single chunk
transaction (target: no lock held for a second or more). Checks afterwards that every job is
``available`` and that there is exactly one audit event per job plus the run's summary.

    python -m bench.bulk_retry                 # 1,000,000 jobs, batch 5,000
    python -m bench.bulk_retry --jobs 100000 --batch-size 10000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from bench.common import fresh_schema, machine, postgres, print_rows
from powertools_core import ops
from powertools_core.config import load_settings
from powertools_core.ops.bulk import DEFAULT_CONCURRENCY, ChunkReport

SCHEMA = "powertools_bench_ops"
TARGET_SECONDS = 60.0
TARGET_LOCK_SECONDS = 1.0

SEED = """
INSERT INTO {schema}.oban_jobs
    (state, queue, worker, args, errors, attempt, max_attempts, attempted_at, attempted_by,
     discarded_at, inserted_at, scheduled_at)
SELECT 'discarded', 'mailers', 'app.workers.SendEmail',
       jsonb_build_object('to', 'user' || g || '@example.com', 'template', 'welcome'),
       ARRAY[jsonb_build_object('at', now(), 'attempt', 3, 'error', 'smtp timeout')],
       3, 3, now(), ARRAY['node-1', 'producer-1'], now(), now(), now()
FROM generate_series(1, %s) AS g
"""


@contextmanager
def progress_line(total: int) -> Iterator[Callable[[int], None]]:
    """A one-line progress display on stderr (refreshed at most ten times a second)."""
    done = 0
    began = time.perf_counter()
    last = 0.0

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.perf_counter()
        if now - last >= 0.1 or done == total:
            last = now
            rate = done / max(now - began, 1e-9)
            sys.stderr.write(f"\r  retrying {done:>10,} / {total:,}  {rate:>10,.0f} jobs/s")
            sys.stderr.flush()

    try:
        yield advance
    finally:
        sys.stderr.write("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_retry")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="discarded jobs to seed")
    parser.add_argument("--batch-size", type=int, default=ops.DEFAULT_BATCH_SIZE)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = parser.parse_args(argv)

    settings = load_settings(prefix=os.environ.get("POWERTOOLS_BENCH_PREFIX", SCHEMA))
    url = fresh_schema(settings)
    settings = settings.model_copy(update={"database_url": url})
    print_rows("machine", machine())
    print_rows("database", postgres(url))

    schema = sql.Identifier(settings.prefix)
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL(SEED).format(schema=schema), (args.jobs,))
        conn.execute(sql.SQL("VACUUM ANALYZE {}.oban_jobs").format(schema))
    print(f"seeded {args.jobs:,} discarded jobs in {time.perf_counter() - began:.1f}s")

    chunk_seconds: list[float] = []

    def on_chunk(report: ChunkReport) -> None:
        chunk_seconds.append(report.seconds)

    began = time.perf_counter()
    result = ops.execute(
        settings,
        "retry",
        ops.build_filter(states=["discarded"], queue="mailers"),
        actor="bench",
        reason="bench: bulk retry at scale",
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        on_chunk=on_chunk,
        progress=progress_line,
    )
    total = time.perf_counter() - began
    s = result.summary
    selection = total - s.seconds

    with psycopg.connect(url, autocommit=True) as conn:
        available = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.oban_jobs WHERE state = 'available'").format(schema)
        ).fetchone()
        audited = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.powertools_audit_events").format(schema)
        ).fetchone()
    ordered = sorted(chunk_seconds)
    p50 = ordered[len(ordered) // 2] if ordered else 0.0
    ok_time = total < TARGET_SECONDS
    ok_lock = s.longest_chunk_seconds < TARGET_LOCK_SECONDS
    correct = (
        s.done == args.jobs
        and available is not None
        and available[0] == args.jobs
        and audited is not None
        and audited[0] == args.jobs + 1
    )
    print_rows(
        "bulk retry",
        [
            ("jobs", f"{s.done:,} retried, {s.skipped:,} skipped, {s.failed:,} failed"),
            (
                "batch size",
                f"{args.batch_size:,} ({s.chunks:,} chunks, {args.concurrency} at a time)",
            ),
            ("selection", f"{selection:.2f}s (plan hash + id snapshot)"),
            ("chunks", f"{s.seconds:.2f}s"),
            (
                "total",
                f"{total:.2f}s  (target < {TARGET_SECONDS:.0f}s: {'ok' if ok_time else 'MISSED'})",
            ),
            ("rate", f"{s.done / total:,.0f} jobs/s"),
            (
                "chunk transaction",
                f"p50 {p50 * 1000:.0f} ms, longest {s.longest_chunk_seconds * 1000:.0f} ms "
                f"(target < {TARGET_LOCK_SECONDS:.0f}s: {'ok' if ok_lock else 'MISSED'})",
            ),
            ("audit events", f"{audited[0] if audited else 0:,} (one per job + the run summary)"),
            ("check", "all jobs available, audited once" if correct else "MISMATCH"),
        ],
    )
    return 0 if (ok_time and ok_lock and correct) else 1


if __name__ == "__main__":
    sys.exit(main())
