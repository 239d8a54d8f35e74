"""Insert rates (DESIGN §11: >= 100,000 jobs/s bulk via COPY, >= 2,000/s single inserts).

``python -m bench.insert [--bulk 100000] [--single 5000] [--runs 3]`` against
``POWERTOOLS_DATABASE_URL`` (or the embedded server), in its own schema
(``POWERTOOLS_BENCH_INSERT_PREFIX``, default ``powertools_bench_insert``), so it can run next
to the other benches. Every figure is the median of ``--runs`` runs on a truncated table;
"build" is ``Worker.new`` (pydantic validation) and is reported apart from the database write.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel

from bench import common
from powertools_core import Unique, Worker, insert_all
from powertools_core.config import load_settings
from powertools_core.jobs.insert import COPY_JOBS, SELECT_NOW, copy_text
from powertools_core.jobs.model import Job
from powertools_core.jobs.notify import DEBOUNCER

PREFIX = os.environ.get("POWERTOOLS_BENCH_INSERT_PREFIX", "powertools_bench_insert")


class BenchMail(Worker):
    """A typical small job: two string fields and an int."""

    queue = "bench_insert"

    class Args(BaseModel):
        to: str
        template: str
        n: int

    def perform(self, job: Job) -> None:
        return None


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}, {}").format(
                sql.Identifier(PREFIX, "oban_jobs"),
                sql.Identifier(PREFIX, "powertools_idempotency_receipts"),
            )
        )


def args_for(i: int) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "template": "welcome", "n": i}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bulk(
    url: str, count: int, *, returning: bool = False, unique: bool = False
) -> tuple[float, float]:
    """(build seconds, insert seconds) for ``count`` jobs in one insert_all."""
    truncate(url)
    rule = Unique(keys=("to",)) if unique else None
    built: list[Any] = []
    build = timed(
        lambda: built.extend(BenchMail.new(args_for(i), unique=rule) for i in range(count))
    )
    with psycopg.connect(url, autocommit=True) as conn:
        write = timed(lambda: insert_all(built, conn=conn, prefix=PREFIX, returning=returning))
    return build, write


def server_copy(url: str, count: int) -> float:
    """Seconds for the server alone to COPY ``count`` jobs into the same table: the rows are
    formatted once, before the clock starts, so this is what PostgreSQL and Oban's indexes can
    take on this machine, the ceiling for ``insert_all``."""
    truncate(url)
    specs = [BenchMail.new(args_for(i)) for i in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        now = conn.execute(SELECT_NOW).fetchone()[0]  # type: ignore[index]
        blocks = list(copy_text(specs, now))
        statement = COPY_JOBS.replace("{prefix}", PREFIX)

        def body() -> None:
            with conn.transaction(), conn.cursor().copy(statement) as copy:
                for block in blocks:
                    copy.write(block)

        return timed(body)


def single(url: str, count: int) -> float:
    """Seconds for ``count`` enqueues, each its own autocommit transaction (one round trip)."""
    truncate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        return timed(
            lambda: [BenchMail.enqueue(args_for(i), conn=conn, prefix=PREFIX) for i in range(count)]
        )


def single_in_transaction(url: str, count: int) -> float:
    """Seconds for ``count`` enqueues inside one caller transaction (the transactional pattern)."""
    truncate(url)
    with psycopg.connect(url) as conn:

        def body() -> None:
            for i in range(count):
                BenchMail.enqueue(args_for(i), conn=conn, prefix=PREFIX)
            conn.commit()

        return timed(body)


def single_threads(url: str, count: int, threads: int = 8, *, sync_commit: bool = True) -> float:
    """Seconds for ``count`` enqueues spread over ``threads`` threads, one connection each,
    every enqueue its own commit: how a web app with many request threads enqueues. Commits
    from concurrent sessions share WAL flushes (group commit), so this scales past fsync."""
    truncate(url)
    share = count // threads
    barrier = threading.Barrier(threads + 1)

    def body(t: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            if not sync_commit:
                conn.execute("SET synchronous_commit = off")
            barrier.wait()
            for i in range(share):
                BenchMail.enqueue(args_for(t * share + i), conn=conn, prefix=PREFIX)

    workers = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return (time.perf_counter() - start) * count / (share * threads)


def single_no_sync(url: str, count: int) -> float:
    """One connection with ``synchronous_commit = off`` (a crash may lose the last few
    hundred ms of enqueues; the server stays consistent)."""
    truncate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        return timed(
            lambda: [BenchMail.enqueue(args_for(i), conn=conn, prefix=PREFIX) for i in range(count)]
        )


def single_unique(url: str, count: int) -> float:
    truncate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        return timed(
            lambda: [
                BenchMail.enqueue(args_for(i), conn=conn, prefix=PREFIX, unique=True)
                for i in range(count)
            ]
        )


def single_async(url: str, count: int) -> float:
    truncate(url)

    async def body() -> float:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            for i in range(count):
                await BenchMail.enqueue_async(args_for(i), conn=conn, prefix=PREFIX)
            return time.perf_counter() - start

    return asyncio.run(body())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.insert")
    parser.add_argument("--bulk", type=int, default=100_000)
    parser.add_argument("--unique", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    settings = load_settings(prefix=PREFIX)
    url = common.fresh_schema(settings)
    common.print_rows("machine", common.machine())
    common.print_rows("database", common.postgres(url))
    print(f"method: median of {args.runs} runs, table truncated before each", flush=True)

    def median(fn: Callable[[], float]) -> float:
        return common.median([fn() for _ in range(args.runs)])

    def report_bulk(label: str, count: int, **kw: bool) -> float:
        runs = [bulk(url, count, **kw) for _ in range(args.runs)]
        build = common.median([b for b, _ in runs])
        write = common.median([w for _, w in runs])
        print(
            f"  {label:<44}{count / write:>10,.0f} jobs/s write"
            f"   ({count / build:,.0f}/s Worker.new, {count / (build + write):,.0f}/s end to end)",
            flush=True,
        )
        return count / write

    print(f"bulk ({args.bulk:,} jobs per insert_all)")
    ceiling = args.bulk / median(lambda: server_copy(url, args.bulk))
    print(
        f"  {'server COPY of pre-formatted rows (ceiling)':<44}{ceiling:>10,.0f} jobs/s write",
        flush=True,
    )
    copy_rate = report_bulk("insert_all, COPY (counts only)", args.bulk)
    print(f"  {'insert_all COPY vs the ceiling':<44}{copy_rate / ceiling:>10.0%}", flush=True)
    report_bulk("insert_all(returning=True), unnest", args.bulk, returning=True)
    report_bulk(f"insert_all unique ({args.unique:,}), receipts", args.unique, unique=True)

    print(f"single ({args.single:,} enqueues)")
    DEBOUNCER.reset()
    rate = args.single / median(lambda: single(url, args.single))
    print(f"  {'enqueue, autocommit (1 round trip each)':<44}{rate:>10,.0f} jobs/s", flush=True)
    tx = args.single / median(lambda: single_in_transaction(url, args.single))
    print(f"  {'enqueue, all in one caller transaction':<44}{tx:>10,.0f} jobs/s", flush=True)
    threaded = args.single / median(lambda: single_threads(url, args.single))
    print(f"  {'enqueue, 8 threads, autocommit each':<44}{threaded:>10,.0f} jobs/s", flush=True)
    no_sync = args.single / median(lambda: single_no_sync(url, args.single))
    print(f"  {'enqueue, autocommit, synchronous_commit=off':<44}{no_sync:>10,.0f} jobs/s")
    rate_async = args.single / median(lambda: single_async(url, args.single))
    print(f"  {'enqueue_async, autocommit':<44}{rate_async:>10,.0f} jobs/s", flush=True)
    uniq = args.single / median(lambda: single_unique(url, args.single))
    print(f"  {'enqueue unique, autocommit':<44}{uniq:>10,.0f} jobs/s", flush=True)
    print(
        f"targets: bulk >= 100,000 jobs/s (COPY {copy_rate:,.0f}; the server's own ceiling "
        f"with Oban's indexes here {ceiling:,.0f}); "
        f"single >= 2,000/s (autocommit {rate:,.0f}, 8 threads {threaded:,.0f}, "
        f"synchronous_commit=off {no_sync:,.0f})"
    )
    truncate(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
