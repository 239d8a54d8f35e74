"""The SQL admission path agrees with the pure specification, verdict for verdict.

Hypothesis drives both with the same random sequences: batches of requests over rate and
concurrency gates, clock steps (a clock parameter, never now()), jobs finishing, and cooldowns.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.limits.admission import run_admission
from powertools_core.limits.declarations import Demand, Gate
from powertools_core.limits.reservation import US, Blocked, GateState, decide_batch

T0 = datetime(2026, 3, 1, 9, 0, 0)


@st.composite
def gates(draw: st.DrawFn) -> list[Gate]:
    out: list[Gate] = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        cap = draw(st.integers(min_value=1, max_value=5))
        span = draw(st.sampled_from([1_000, 7_777, 250_000, 1_000_000, 60_000_000]))
        out.append(Gate(f"r{i}", draw(st.sampled_from(["", "acme", "b"])), "rate", cap, span))
    if draw(st.booleans()):
        out.append(Gate("c", "", "concurrency", draw(st.integers(min_value=1, max_value=3))))
        out.append(Gate("c", "t1", "partition_concurrency", 1))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Gate], list[tuple[Any, ...]]]:
    gs = draw(gates())
    n = len(gs)
    request = st.lists(
        st.tuples(st.integers(min_value=0, max_value=n - 1), st.integers(1, 5)),
        min_size=1,
        max_size=min(3, n),
        unique_by=lambda t: t[0],
    )
    op = st.one_of(
        st.tuples(st.just("batch"), st.lists(request, min_size=1, max_size=4)),
        st.tuples(st.just("tick"), st.integers(min_value=0, max_value=1_500_000)),
        st.tuples(st.just("finish"), st.integers(min_value=0, max_value=20)),
        st.tuples(
            st.just("cooldown"),
            st.integers(min_value=0, max_value=n - 1),
            st.integers(min_value=1, max_value=2_000_000),
        ),
    )
    return gs, draw(st.lists(op, min_size=1, max_size=12))


@dataclass
class Model:
    rate: dict[tuple[str, str], GateState | None] = field(default_factory=dict)
    cool: dict[tuple[str, str], datetime] = field(default_factory=dict)
    running: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)

    def states(self, gs: list[Gate]) -> dict[tuple[str, str], GateState | None]:
        out: dict[tuple[str, str], GateState | None] = {}
        for g in gs:
            until = self.cool.get(g.key)
            if g.kind == "rate":
                base = self.rate.get(g.key)
                if until is not None:
                    base = replace(base or GateState(g.full_level, T0), cooldown_until=until)
                out[g.key] = base
            else:
                used = sum(1 for _, keys in self.running if g.key in keys)
                out[g.key] = GateState(used, None, until)
        return out


async def _play(url: str, prefix: str, gs: list[Gate], ops: list[tuple[Any, ...]]) -> None:
    q = f'"{prefix}"'
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute(
            f"TRUNCATE {q}.powertools_rate_buckets, {q}.powertools_limit_holds, {q}.oban_jobs"
        )
        model = Model()
        now = T0
        seen: set[tuple[str, str]] = set()
        for op in ops:
            if op[0] == "tick":
                now += op[1] * US
            elif op[0] == "finish":
                if model.running:
                    job_id, _ = model.running.pop(op[1] % len(model.running))
                    await conn.execute(
                        f"UPDATE {q}.oban_jobs SET state = 'completed' WHERE id = %s", (job_id,)
                    )
            elif op[0] == "cooldown":
                gate = gs[op[1]]
                if gate.key not in seen:
                    continue
                until = now + op[2] * US
                model.cool[gate.key] = until
                await conn.execute(
                    f"UPDATE {q}.powertools_rate_buckets SET cooldown_until = %s "
                    "WHERE limit_name = %s AND partition_key = %s",
                    (until, gate.name, gate.partition),
                )
            else:
                requests = [[Demand(gs[i], w) for i, w in req] for req in op[1]]
                jobs: list[tuple[Job, list[Demand]]] = []
                for demands in requests:
                    cur = await conn.execute(
                        f"INSERT INTO {q}.oban_jobs (state, queue, worker, args, attempt) "
                        "VALUES ('executing', 'q', 'w', '{}', 1) RETURNING id"
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    jobs.append((Job(row[0], "executing", "q", "w", {}, attempt=1), demands))
                expected, changed = decide_batch(model.states(gs), requests, now)
                got = await run_admission(conn, prefix, jobs, now)
                for (job, demands), want, have in zip(jobs, expected, got, strict=True):
                    if want is None:
                        assert have is None, (op, want, have)
                        model.running.append(
                            (job.id, [d.gate.key for d in demands if d.gate.kind != "rate"])
                        )
                    else:
                        assert isinstance(want, Blocked) and have is not None, (op, want, have)
                        assert (have.code, have.limit, have.partition, have.retry_at) == (
                            want.code,
                            want.limit,
                            want.partition,
                            want.retry_at,
                        )
                        await conn.execute(
                            f"UPDATE {q}.oban_jobs SET state = 'available' WHERE id = %s",
                            (job.id,),
                        )
                for key, state in changed.items():
                    gate = next(g for g in gs if g.key == key)
                    if gate.kind == "rate":
                        model.rate[key] = replace(state, cooldown_until=None)
                seen.update(d.gate.key for _, ds in jobs for d in ds)
                cur = await conn.execute(
                    f"SELECT limit_name, partition_key, level, refilled_at "
                    f"FROM {q}.powertools_rate_buckets WHERE kind = 'rate'"
                )
                for name, part, level, refilled in await cur.fetchall():
                    st_ = model.rate.get((name, part))
                    if st_ is not None:
                        assert (level, refilled) == (st_.level, st_.refilled_at)
                    else:
                        full = next(g for g in gs if g.key == (name, part)).full_level
                        assert level == full
    finally:
        await conn.close()


@pytest.mark.slow
@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenarios())
def test_sql_admission_gives_the_same_verdicts_as_the_pure_rule(
    installed: Settings, scenario: tuple[list[Gate], list[tuple[Any, ...]]]
) -> None:
    gs, ops = scenario
    assert installed.database_url
    asyncio.run(_play(installed.database_url, installed.prefix, gs, ops))
