"""Workflow throughput against plain jobs (DESIGN §11 / issue 9: a 10,000-step fan-out/fan-in at
>= 70% of the same number of plain jobs, in the same run).

    python -m bench.workflows [--steps 10000] [--runs 3] [--concurrency 100]

Three drains per run, each timed by PostgreSQL from the first claim (min attempted_at) to the
last ack (max completed_at), on one in-process runtime with the leader off (so promotion comes
from the acks themselves, not the reconciler):

- plain: ``--steps`` no-op jobs COPYed in;
- declared: a workflow ``start`` -> ``--steps`` no-op children -> ``join`` (depends on every
  child), inserted with ``Workflow.insert`` (its insert rate is printed too);
- fan-out at run time: a ``split`` step adds ``--steps`` children with ``job.workflow.add`` and
  ``join`` depends on ``added_by("split")``.

The workflow figures count every step (children + 2) and are printed as a ratio of plain.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psycopg
from psycopg import sql

from bench import common
from powertools_core import Worker, Workflow, telemetry
from powertools_core.jobs.model import Job
from powertools_core.runtime.config import RuntimeConfig
from powertools_core.runtime.run import event_loop_name, freeze_startup_heap, run_loop
from powertools_core.runtime.supervisor import Runtime
from powertools_core.workflows import added_by

NOOP = "bench.common.Noop"
TARGET = 0.70


class Split(Worker):
    """Adds ``count`` no-op children to its own workflow (run-time fan-out)."""

    queue = "bench"

    async def perform(self, job: Job) -> None:
        for i in range(int(job.args.model_dump()["count"])):
            job.workflow.add(f"c{i}", common.Noop.new({}))


class Join(Worker):
    """The fan-in: runs once every child has ended."""

    queue = "bench"

    async def perform(self, job: Job) -> None:
        return None


def truncate(url: str, schema: str) -> None:
    tables = ["oban_jobs", "powertools_workflows", "powertools_workflow_steps"]
    tables += ["powertools_workflow_edges"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
            )
        )


def window(url: str, schema: str) -> tuple[float, int]:
    """(seconds from the first claim to the last ack, completed jobs)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT extract(epoch FROM max(completed_at) - min(attempted_at)), "
                "count(*) FILTER (WHERE state = 'completed') FROM {}.oban_jobs"
            ).format(sql.Identifier(schema))
        ).fetchone()
    assert row is not None
    return float(row[0]), int(row[1])


def drain(url: str, schema: str, total: int, concurrency: int) -> float:
    """Run the runtime until ``total`` jobs are acked; jobs per second over the drain window."""
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
            if runtime.acker.acked >= total:
                loop.call_soon_threadsafe(done.set)

        handle = telemetry.attach(["ack.batch"], on_ack)
        try:
            await runtime.start()
            await asyncio.wait_for(done.wait(), timeout=600)
            await runtime.stop()
        finally:
            telemetry.detach(handle)

    run_loop(main())
    seconds, completed = window(url, schema)
    if completed != total:
        raise RuntimeError(f"expected {total} completed jobs, found {completed}")
    return total / seconds


def plain(url: str, schema: str, steps: int, concurrency: int) -> float:
    truncate(url, schema)
    common.seed_copy(url, schema, NOOP, "bench", steps)
    return drain(url, schema, steps, concurrency)


def declared(url: str, schema: str, steps: int, concurrency: int) -> tuple[float, float]:
    """(drain jobs/s, insert steps/s) of start -> N children -> join."""
    truncate(url, schema)
    children = [f"c{i}" for i in range(steps)]
    wf = Workflow("bench-fan").add("start", common.Noop.new({}))
    for name in children:
        wf.add(name, common.Noop.new({}), deps=["start"])
    wf.add("join", Join.new({}), deps=children)
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        wf.insert(conn=conn, prefix=schema)
        inserted = (steps + 2) / (time.perf_counter() - began)
    return drain(url, schema, steps + 2, concurrency), inserted


def fan_out(url: str, schema: str, steps: int, concurrency: int) -> float:
    truncate(url, schema)
    wf = (
        Workflow("bench-split")
        .add("split", Split.new({"count": steps}))
        .add("join", Join.new({}), deps=[added_by("split")])
    )
    with psycopg.connect(url, autocommit=True) as conn:
        wf.insert(conn=conn, prefix=schema)
    return drain(url, schema, steps + 2, concurrency)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workflows")
    parser.add_argument("--steps", type=int, default=10_000)
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
        f"method: {args.steps:,} steps per workflow vs {args.steps:,} plain no-op jobs, "
        f"1 process, concurrency {args.concurrency}, leader off, median of {args.runs} runs, "
        "kinds interleaved",
        flush=True,
    )
    rates: dict[str, list[float]] = {"plain": [], "declared": [], "fan-out": [], "insert": []}
    for _ in range(args.runs):
        rates["plain"].append(plain(url, schema, args.steps, args.concurrency))
        drained, inserted = declared(url, schema, args.steps, args.concurrency)
        rates["declared"].append(drained)
        rates["insert"].append(inserted)
        rates["fan-out"].append(fan_out(url, schema, args.steps, args.concurrency))
    base = common.median(rates["plain"])
    rows = [
        ("plain jobs", base),
        ("declared fan-out/fan-in workflow", common.median(rates["declared"])),
        ("run-time fan-out (job.workflow.add)", common.median(rates["fan-out"])),
    ]
    for label, rate in rows:
        print(f"  {label:<40}{rate:>10,.0f} jobs/s  ({rate / base:.0%} of plain)", flush=True)
    print(
        f"  {'Workflow.insert of the declared DAG':<40}{common.median(rates['insert']):>10,.0f}"
        " steps/s"
    )
    worst = min(r for _, r in rows[1:]) / base
    verdict = "met" if worst >= TARGET else "NOT met"
    print(f"target: workflows >= {TARGET:.0%} of plain: {verdict} (worst {worst:.0%})")
    truncate(url, schema)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
