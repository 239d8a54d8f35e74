"""Drain throughput against Python peers, in one run on one database (DESIGN §11: >= 3x pgqueuer).

    python -m bench.peers [--jobs 20000] [--runs 3] [--concurrency 100,300]

Each system drains the same number of no-op jobs on the same PostgreSQL server and machine:

* powertools: ``bench.throughput.run_in_process`` (COPY-seeded, VACUUM ANALYZE, one process), at
  each ``--concurrency``; the best median is the figure compared.
* pgqueuer (optional, ``pip install -e '.[bench]'``): installed with its own ``Queries.install``
  into a scratch database that is dropped at the end; N jobs enqueued with its batch ``enqueue``
  (lists), VACUUM ANALYZE, then ``QueueManager.run(mode=drain)`` with a no-op async entrypoint over
  its asyncpg driver, at each ``--pgq-batch``; the best median is the figure compared. Its window
  runs from the first entrypoint call to the return of ``run`` (all status logs flushed), so it
  includes pgqueuer's own drain detection and final flush.

A peer that is not installed or fails is reported as such and left out of the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import common, throughput
from powertools_core.runtime.run import event_loop_name, run_loop

SCRATCH_DB = "powertools_bench_peers"
TARGET = 3.0


class PeerUnavailable(Exception):
    """The peer cannot be imported or set up here; the message says why."""


def scratch_url(url: str) -> str:
    info = conninfo_to_dict(url)
    info["dbname"] = SCRATCH_DB
    return make_conninfo(**info)  # type: ignore[arg-type]


def create_scratch(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(SCRATCH_DB))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SCRATCH_DB)))
    return scratch_url(url)


def drop_scratch(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(SCRATCH_DB))
        )


def asyncpg_kwargs(url: str) -> dict[str, Any]:
    info = conninfo_to_dict(url)
    kwargs: dict[str, Any] = {
        "host": info.get("host") or None,
        "user": info.get("user") or None,
        "password": info.get("password") or None,
        "database": info.get("dbname") or None,
    }
    if info.get("port"):
        kwargs["port"] = int(str(info["port"]))
    return {k: v for k, v in kwargs.items() if v is not None}


# --- pgqueuer ---------------------------------------------------------------------------------


def pgqueuer_version() -> str:
    try:
        import asyncpg
        import pgqueuer
    except ImportError as exc:
        raise PeerUnavailable(
            f"not installed ({exc.name}); pip install -e '.[bench]' to include it"
        ) from exc
    return f"pgqueuer {pgqueuer.__version__}, asyncpg {asyncpg.__version__} driver"


def pgqueuer_install(url: str) -> None:
    import asyncpg
    from pgqueuer import Queries

    async def main() -> None:
        conn = await asyncpg.connect(**asyncpg_kwargs(url))
        try:
            await Queries.from_asyncpg_connection(conn).install()
        finally:
            await conn.close()

    run_loop(main())


def pgqueuer_drain(url: str, jobs: int, batch: int) -> float:
    import asyncpg
    from pgqueuer import Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    marks: dict[str, float] = {}

    async def main() -> float:
        setup = await asyncpg.connect(**asyncpg_kwargs(url))
        try:
            await setup.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
            queries = Queries.from_asyncpg_connection(setup)
            chunk = 5_000
            for start in range(0, jobs, chunk):
                n = min(chunk, jobs - start)
                await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
            await setup.execute("VACUUM ANALYZE pgqueuer")
        finally:
            await setup.close()

        conn = await asyncpg.connect(**asyncpg_kwargs(url))
        qm = QueueManager(Queries.from_asyncpg_connection(conn))

        @qm.entrypoint("noop")
        async def noop(job: Any) -> None:
            if "first" not in marks:
                marks["first"] = time.perf_counter()

        try:
            await asyncio.wait_for(
                qm.run(batch_size=batch, mode=QueueExecutionMode.drain), timeout=300
            )
        finally:
            if not conn.is_closed():
                await conn.close()
        end = time.perf_counter()
        check = await asyncpg.connect(**asyncpg_kwargs(url))
        try:
            left = await check.fetchval("SELECT count(*) FROM pgqueuer")
            done = await check.fetchval(
                "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
            )
        finally:
            await check.close()
        if left or done != jobs:
            raise RuntimeError(f"pgqueuer drain incomplete: {left} left, {done} successful")
        return jobs / (end - marks["first"])

    return run_loop(main())


# --- report -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="100,300", help="powertools settings to try")
    parser.add_argument("--pgq-batch", default="10,100", help="pgqueuer batch sizes to try")
    args = parser.parse_args(argv)

    settings = common.settings()
    url = common.fresh_schema(settings)
    schema = settings.prefix
    common.print_rows("machine", common.machine())
    common.print_rows("database", common.postgres(url))
    print(f"event loop: {event_loop_name()} (used by every system here)")
    print("load average at the start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        f"method: burn-down of {args.jobs:,} no-op jobs per run, median of {args.runs} runs, "
        "same server and machine, one process per system",
        flush=True,
    )

    def median_of(fn: Callable[..., float], *fn_args: Any) -> tuple[float, str]:
        rates = [fn(*fn_args) for _ in range(args.runs)]
        return common.median(rates), f"{min(rates):,.0f}-{max(rates):,.0f}"

    def line(label: str, rate: float, spread: str) -> None:
        print(f"  {label:<46}{rate:>9,.0f} jobs/s  (runs {spread})", flush=True)

    best: dict[str, float] = {}

    print("powertools (worker runtime, bench.throughput.run_in_process)")
    for conc in (int(c) for c in args.concurrency.split(",")):
        rate, spread = median_of(
            throughput.run_in_process, url, schema, args.jobs, conc, throughput.NOOP
        )
        line(f"1 process, concurrency {conc}", rate, spread)
        best["powertools"] = max(best.get("powertools", 0.0), rate)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    missing: list[str] = []
    try:
        label = pgqueuer_version()
    except PeerUnavailable as exc:
        missing.append(f"pgqueuer: {exc}")
        print(f"pgqueuer: skipped, {exc}")
    else:
        print(f"pgqueuer ({label}, scratch database {SCRATCH_DB})")
        try:
            peer_url = create_scratch(url)
            try:
                pgqueuer_install(peer_url)
                for batch in (int(b) for b in args.pgq_batch.split(",")):
                    rate, spread = median_of(pgqueuer_drain, peer_url, args.jobs, batch)
                    line(f"QueueManager drain, batch_size {batch}", rate, spread)
                    best["pgqueuer"] = max(best.get("pgqueuer", 0.0), rate)
            finally:
                drop_scratch(url)
        except Exception as exc:
            traceback.print_exc()
            missing.append(f"pgqueuer: failed here ({exc!r}); no figure")
            print(f"  pgqueuer failed: {exc!r} (no figure reported)")

    missing.append("procrastinate: not measured by this script")
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for note in missing:
        print(f"missing: {note}")
    peers = {k: v for k, v in best.items() if k != "powertools"}
    if "powertools" in best and peers:
        name, rate = max(peers.items(), key=lambda kv: kv[1])
        ratio = best["powertools"] / rate
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(
            f"ratio: powertools {best['powertools']:,.0f} / {name} {rate:,.0f} = {ratio:.2f}x "
            f"(target >= {TARGET:.0f}x: {verdict})"
        )
    else:
        print("ratio: no peer figure in this run, so no ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
