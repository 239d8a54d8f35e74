"""How the workflow drains fare when PostgreSQL plans their statements badly (not a test).

    python -m bench.workflow_plans [--rounds 4] [--steps 10000] [--mode force_generic_plan]

The workflow statements (context load, effects ack, promotion) are prepared, and their plans
depend on statistics that are young or skewed right after a burst of steps (a wide fan-in owns
most edges). With ``plan_cache_mode`` forced (``--mode``, sent as ``PGOPTIONS``) the same drains
as ``bench.workflows`` run ``--rounds`` times; each prints its rate and, when it is slow, the
statements that took the time (awaited seconds per statement, so the culprit is named).
``--mode auto`` shows what a default server does (no slow round in 32 since the fetch and ack
connections price sequential scans out, ``runtime.base.BY_KEY``). Forced generic plans still
make some rounds slow; the statements named are where to look next.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from typing import Any

import psycopg

from bench import common
from bench import workflows as drains

SLOW = 3_000
"""A drain under this many jobs/s is reported with its statements."""


def _timed(spent: dict[str, list[float]]) -> Any:
    original = psycopg.AsyncConnection.execute

    async def execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        began = time.perf_counter()
        try:
            return await original(self, query, params, **kw)
        finally:
            key = " ".join(str(query).split())[:72]
            spent[key].append(time.perf_counter() - began)

    psycopg.AsyncConnection.execute = execute  # type: ignore[method-assign]
    return original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workflow_plans")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--mode", default="force_generic_plan", help="plan_cache_mode to force")
    args = parser.parse_args(argv)
    if args.mode != "auto":
        os.environ["PGOPTIONS"] = f"-c plan_cache_mode={args.mode}"
    settings = common.settings()
    url = common.fresh_schema(settings)
    schema = settings.prefix
    common.print_rows("machine", common.machine())
    common.print_rows("database", common.postgres(url))
    print(f"method: plan_cache_mode={args.mode}, {args.rounds} rounds of declared + fan-out")
    spent: dict[str, list[float]] = collections.defaultdict(list)
    original = _timed(spent)
    slow = 0
    try:
        for n in range(args.rounds):
            for kind in ("declared", "fan-out"):
                spent.clear()
                if kind == "declared":
                    rate = drains.declared(url, schema, args.steps, args.concurrency)[0]
                else:
                    rate = drains.fan_out(url, schema, args.steps, args.concurrency)
                print(f"  round {n + 1} {kind:<9} {rate:>9,.0f} jobs/s", flush=True)
                if rate < SLOW:
                    slow += 1
                    top = sorted(spent.items(), key=lambda kv: -sum(kv[1]))[:4]
                    for query, times in top:
                        print(f"      {sum(times):7.2f} s in {len(times):4d} calls  {query}")
    finally:
        psycopg.AsyncConnection.execute = original  # type: ignore[method-assign]
        drains.truncate(url, schema)
    print(f"slow drains (< {SLOW:,} jobs/s): {slow} of {2 * args.rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
