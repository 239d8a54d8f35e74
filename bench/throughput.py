"""Drain throughput, the bare SQL floor, and enqueue -> start latency (DESIGN §11).

    python -m bench.throughput [--jobs 20000] [--runs 3]

Burn-down method: COPY N no-op jobs into a clean table, VACUUM ANALYZE, start the worker, and
time from the first claim (min attempted_at) to the last ack (max completed_at) as recorded by
PostgreSQL, so process start-up is not counted. Each figure is the median of ``--runs`` runs.
The bare loop runs the runtime's own fetch and ack statements back to back on one connection
(batch 100, no Python work per job): the floor the runtime is compared with, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import common
from powertools_core import telemetry
from powertools_core.runtime import queries
from powertools_core.runtime.acker import ack_params
from powertools_core.runtime.config import RuntimeConfig
from powertools_core.runtime.notifier import insert_channel
from powertools_core.runtime.outcomes import Ack
from powertools_core.runtime.run import event_loop_name, freeze_startup_heap, run_loop
from powertools_core.runtime.supervisor import Runtime

ROOT = Path(__file__).resolve().parents[1]
NOOP = "bench.common.Noop"
NOOP_SYNC = "bench.common.NoopSync"


def drain_window(url: str, schema: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT extract(epoch FROM max(completed_at) - min(attempted_at)), "
                "count(*) FILTER (WHERE state = 'completed') FROM {}.oban_jobs"
            ).format(sql.Identifier(schema))
        ).fetchone()
    assert row is not None
    return float(row[0])


def run_in_process(url: str, schema: str, jobs: int, concurrency: int, worker: str) -> float:
    common.seed_copy(url, schema, worker, "bench", jobs)
    freeze_startup_heap()  # as `worker run` does before it serves
    config = RuntimeConfig(
        url=url,
        prefix=schema,
        queues={"bench": concurrency},
        node="bench",
        leader=False,
        heartbeat_interval=5.0,
    )
    done = asyncio.Event()

    async def main() -> None:
        runtime = Runtime(config, discover=False)
        loop = asyncio.get_running_loop()

        def on_ack(event: str, m: Any, md: Any) -> None:
            if runtime.acker.acked >= jobs:
                loop.call_soon(done.set)

        handle = telemetry.attach(["ack.batch"], on_ack)
        try:
            await runtime.start()
            await done.wait()
            await runtime.stop()
        finally:
            telemetry.detach(handle)

    run_loop(main())
    return jobs / drain_window(url, schema)


def run_processes(url: str, schema: str, jobs: int, concurrency: int, processes: int) -> float:
    common.seed_copy(url, schema, NOOP, "bench", jobs)
    env = dict(os.environ, PYTHONPATH=str(ROOT), POWERTOOLS_DATABASE_URL=url)
    cmd = [
        str(Path(sys.executable).with_name("powertools")),
        "worker",
        "run",
        "--app",
        "bench.common",
        "--prefix",
        schema,
        "--queues",
        f"bench={concurrency}",
        "--processes",
        str(processes),
        "-q",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while common.count_state(url, schema, "completed") < jobs:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("multi-process drain did not finish")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return jobs / drain_window(url, schema)


def run_bare(url: str, schema: str, jobs: int, batch: int = 100) -> float:
    common.seed_copy(url, schema, NOOP, "bench", jobs)
    producer = str(uuid.uuid4())
    fetch = queries.sql(queries.FETCH, schema)
    ack = queries.sql(queries.ACK, schema)

    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0)
        async with conn:
            params = {"queue": "bench", "limit": batch, "attempted_by": ["bare", producer]}
            while True:
                cur = await conn.execute(fetch, params, prepare=True)
                rows = await cur.fetchall()
                if not rows:
                    return
                acks = [Ack(r[0], r[6], producer, "completed") for r in rows]
                await conn.execute(ack, ack_params(acks), prepare=True)

    run_loop(main())
    return jobs / drain_window(url, schema)


def run_latency(url: str, schema: str, samples: int) -> tuple[float, float, int]:
    """Enqueue -> start on an idle queue: INSERT + pg_notify committed in one transaction (what
    an enqueue does), then the time until ``perform`` begins."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}.oban_jobs").format(sql.Identifier(schema)))
    config = RuntimeConfig(
        url=url, prefix=schema, queues={"latency": 10}, node="bench", heartbeat_interval=5.0
    )
    holder: dict[str, Any] = {}
    started = threading.Event()

    def serve() -> None:
        async def main() -> None:
            runtime = Runtime(config, discover=False)
            holder["runtime"] = runtime
            holder["loop"] = asyncio.get_running_loop()
            await runtime.start()
            started.set()
            await runtime.wait_stop_requested()
            await runtime.stop()

        run_loop(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(30)
    insert = sql.SQL(
        "INSERT INTO {}.oban_jobs (worker, queue, args) VALUES (%s, 'latency', '{{}}') RETURNING id"
    ).format(sql.Identifier(schema))
    latencies: list[float] = []
    missed = 0
    with psycopg.connect(url) as conn:
        time.sleep(0.5)
        for _ in range(samples):
            with conn.transaction():
                (job_id,) = conn.execute(insert, ("bench.common.Stamp",)).fetchone()  # type: ignore[misc]
                conn.execute("SELECT pg_notify(%s, 'latency')", (insert_channel(schema),))
            committed = time.perf_counter()
            deadline = committed + 5
            while job_id not in common.STARTED and time.perf_counter() < deadline:
                time.sleep(0.0002)
            if job_id in common.STARTED:
                latencies.append(common.STARTED[job_id] - committed)
            else:
                missed += 1
            time.sleep(0.06)
    loop, runtime = holder["loop"], holder["runtime"]
    loop.call_soon_threadsafe(runtime.request_stop)
    thread.join(30)
    return common.percentile(latencies, 50), common.percentile(latencies, 99), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="20,100,300")
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args(argv)
    settings = common.settings()
    url = common.fresh_schema(settings)
    schema = settings.prefix
    common.print_rows("machine", common.machine())
    common.print_rows("database", common.postgres(url))
    print(f"event loop: {event_loop_name()} (POWERTOOLS_UVLOOP=0 forces asyncio)")
    print(
        f"load average at the start: {os.getloadavg()[0]:.2f} (other work on the box skews figures)"
    )
    print(f"method: burn-down of {args.jobs:,} no-op jobs, median of {args.runs} runs", flush=True)

    spreads: list[str] = []

    def median_of(fn: Any, *fn_args: Any) -> float:
        rates = [fn(*fn_args) for _ in range(args.runs)]
        spreads.append(f"{min(rates):,.0f}-{max(rates):,.0f}")
        return common.median(rates)

    def line(label: str, rate: float) -> None:
        print(
            f"  {label:<42}{rate:>9,.0f} jobs/s  ({rate / bare:.0%} of bare; runs {spreads[-1]})",
            flush=True,
        )

    bare = median_of(run_bare, url, schema, args.jobs)
    print(
        f"  {'bare fetch+ack SQL loop (batch 100)':<42}{bare:>9,.0f} jobs/s  (runs {spreads[-1]})",
        flush=True,
    )
    best = 0.0
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    for conc in concurrencies:
        rate = median_of(run_in_process, url, schema, args.jobs, conc, NOOP)
        best = max(best, rate)
        line(f"worker, 1 process, concurrency {conc}", rate)
    conc = max(concurrencies)
    rate = median_of(run_in_process, url, schema, args.jobs, conc, NOOP_SYNC)
    line(f"worker, 1 process, sync perform, conc {conc}", rate)
    rate = median_of(run_processes, url, schema, args.jobs, conc, 2)
    best = max(best, rate)
    line(f"worker run --processes 2, conc {conc}", rate)
    p50, p99, missed = run_latency(url, schema, args.latency_samples)
    print(
        f"  {'enqueue -> start, idle queue':<42}p50 {p50 * 1000:.2f} ms, "
        f"p99 {p99 * 1000:.2f} ms ({args.latency_samples - missed} samples)",
        flush=True,
    )
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        f"targets: >= 25,000 jobs/s (best here {best:,.0f}); >= 60% of bare "
        f"(best {best / bare:.0%}); p50 <= 5 ms ({p50 * 1000:.2f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
