"""Throughput of limited queues as a ratio to the unlimited queue, in the same run (DESIGN §11).

    python -m bench.limits [--jobs 20000] [--runs 3] [--concurrency 100]

Three drains of ``--jobs`` no-op jobs through one in-process runtime, same method as
``bench.throughput`` (first claim to last ack, as PostgreSQL recorded them; median of
``--runs``): an unlimited worker, a worker under a global rate limit sized so it is not
saturated (the cost of admission itself), and a worker under a per-partition concurrency limit
over 100 partitions that is not saturated either. Target: each limited drain >= 80% of the
unlimited one. Saturated limits are not measured here: by design they run at the limit's rate.
"""

from __future__ import annotations

import argparse
import sys

import psycopg
from psycopg import sql

from bench import common
from bench.throughput import NOOP, run_in_process
from powertools_core import ConcurrencyLimit, RateLimit
from powertools_core.jobs.model import Job
from powertools_core.runtime.run import event_loop_name
from powertools_core.workers import Worker

TARGET = 0.80
PARTITIONS = 100


class RateNoop(Worker):
    """A no-op under a rate limit far above the drain rate (never blocks)."""

    queue = "bench"
    limits = (RateLimit("bench-rate", bucket_capacity=1_000_000, bucket_span="1s"),)

    async def perform(self, job: Job) -> None:
        return None


class PartitionNoop(Worker):
    """A no-op under a per-partition concurrency limit (100 partitions by args.n, never full)."""

    queue = "bench"
    limits = (
        ConcurrencyLimit(
            "bench-partition",
            partition_limit=1_000,
            partition_by=lambda args: int(args["n"]) % PARTITIONS,
        ),
    )

    async def perform(self, job: Job) -> None:
        return None


WORKERS = {
    "unlimited": NOOP,
    "rate-limited (not saturated)": "bench.limits.RateNoop",
    f"partition-limited ({PARTITIONS} partitions)": "bench.limits.PartitionNoop",
}


def _reset_limits(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in (
            "powertools_rate_buckets",
            "powertools_limit_holds",
            "powertools_limit_leases",
        ):
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(schema, table)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limits")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args(argv)
    settings = common.settings()
    url = common.fresh_schema(settings)
    schema = settings.prefix
    common.print_rows("machine", common.machine())
    common.print_rows("database", common.postgres(url))
    print(f"event loop: {event_loop_name()}")
    print(
        f"method: burn-down of {args.jobs:,} no-op jobs, 1 process, concurrency "
        f"{args.concurrency}, median of {args.runs} runs, kinds interleaved",
        flush=True,
    )
    rates: dict[str, list[float]] = {name: [] for name in WORKERS}
    for _ in range(args.runs):
        for name, worker in WORKERS.items():
            _reset_limits(url, schema)
            rates[name].append(run_in_process(url, schema, args.jobs, args.concurrency, worker))
    base = common.median(rates["unlimited"])
    worst = 1.0
    for name, values in rates.items():
        rate = common.median(values)
        ratio = rate / base
        if name != "unlimited":
            worst = min(worst, ratio)
        print(f"  {name:<34} {rate:>9,.0f} jobs/s  ({ratio:.0%} of unlimited)", flush=True)
    verdict = "met" if worst >= TARGET else "NOT met"
    print(
        f"target: limited >= {TARGET:.0%} of unlimited when not saturated: {verdict} "
        f"(worst {worst:.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
