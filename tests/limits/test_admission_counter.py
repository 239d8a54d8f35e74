"""The concurrency counter behind admission's fast path never admits past the holds' truth.

A concurrency gate keeps ``held`` (live holds at the last recount plus every hold granted since)
so an unsaturated batch is decided without reading the holds. These tests drive the situations
where a counter could lie: many batches against small limits with jobs finishing in between
(hypothesis, against the pure rule), a gate row that disappears while jobs still hold it, and a
limit whose number changes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.limits.admission import Refusal, run_admission
from powertools_core.limits.declarations import Demand, Gate
from tests.limits.test_admission_matches_spec import _play

T0 = datetime(2026, 3, 1, 9, 0, 0)


@st.composite
def busy_gates(draw: st.DrawFn) -> tuple[list[Gate], list[tuple[Any, ...]]]:
    """Small concurrency limits (global and per partition), sometimes with a roomy bucket in
    the same batches, and ops that mostly admit and finish jobs."""
    gs = [
        Gate("c", "", "concurrency", draw(st.integers(min_value=1, max_value=4))),
        Gate("c", "t1", "partition_concurrency", draw(st.integers(min_value=1, max_value=2))),
        Gate("c", "t2", "partition_concurrency", draw(st.integers(min_value=1, max_value=2))),
    ]
    if draw(st.booleans()):
        gs.append(Gate("r", "", "rate", 50, 1_000))
    n = len(gs)
    request = st.lists(
        st.tuples(st.integers(min_value=0, max_value=n - 1), st.just(1)),
        min_size=1,
        max_size=min(3, n),
        unique_by=lambda t: t[0],
    )
    op = st.one_of(
        st.tuples(st.just("batch"), st.lists(request, min_size=1, max_size=5)),
        st.tuples(st.just("batch"), st.lists(request, min_size=1, max_size=2)),
        st.tuples(st.just("finish"), st.integers(min_value=0, max_value=20)),
        st.tuples(st.just("tick"), st.integers(min_value=0, max_value=5_000)),
        st.tuples(
            st.just("cooldown"),
            st.integers(min_value=0, max_value=n - 1),
            st.integers(min_value=1, max_value=3_000),
        ),
    )
    return gs, draw(st.lists(op, min_size=2, max_size=16))


@pytest.mark.slow
@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(busy_gates())
def test_small_concurrency_limits_give_the_same_verdicts_as_the_pure_rule(
    installed: Settings, scenario: tuple[list[Gate], list[tuple[Any, ...]]]
) -> None:
    gs, ops = scenario
    assert installed.database_url
    asyncio.run(_play(installed.database_url, installed.prefix, gs, ops))


def _executing(conn: psycopg.Connection, prefix: str, n: int) -> list[Job]:
    jobs = []
    for _ in range(n):
        row = conn.execute(
            f'INSERT INTO "{prefix}".oban_jobs (state, queue, worker, args, attempt) '
            "VALUES ('executing', 'q', 'w', '{}', 1) RETURNING id"
        ).fetchone()
        assert row is not None
        jobs.append(Job(row[0], "executing", "q", "w", {}, attempt=1))
    return jobs


def _decide(settings: Settings, jobs: list[Job], gate: Gate, at: datetime) -> list[Refusal | None]:
    async def go() -> list[Refusal | None]:
        assert settings.database_url
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True
        ) as conn:
            return await run_admission(
                conn, settings.prefix, [(j, [Demand(gate, 1)]) for j in jobs], at
            )

    return asyncio.run(go())


def test_a_gate_row_lost_while_jobs_hold_it_is_recounted_from_the_holds(
    installed: Settings, conn: psycopg.Connection
) -> None:
    gate = Gate("lost", "", "concurrency", 2)
    first = _executing(conn, installed.prefix, 2)
    assert _decide(installed, first, gate, T0) == [None, None]
    # The row goes (as a sweep racing an admission could make it go); its holds stay.
    conn.execute(f'DELETE FROM "{installed.prefix}".powertools_rate_buckets')
    (third,) = _executing(conn, installed.prefix, 1)
    (verdict,) = _decide(installed, [third], gate, T0 + timedelta(seconds=1))
    assert verdict is not None and verdict.code == "concurrency_reached"


def test_a_lowered_limit_refuses_at_once(installed: Settings, conn: psycopg.Connection) -> None:
    wide = Gate("shrinks", "", "concurrency", 3)
    assert _decide(installed, _executing(conn, installed.prefix, 2), wide, T0) == [None, None]
    narrow = Gate("shrinks", "", "concurrency", 1)
    (verdict,) = _decide(installed, _executing(conn, installed.prefix, 1), narrow, T0)
    assert verdict is not None and verdict.code == "concurrency_reached"


def test_finished_jobs_free_their_slots_even_when_the_counter_is_full(
    installed: Settings, conn: psycopg.Connection
) -> None:
    gate = Gate("busy", "", "concurrency", 3)
    p = f'"{installed.prefix}"'
    for round_ in range(4):
        jobs = _executing(conn, installed.prefix, 4)
        verdicts = _decide(installed, jobs, gate, T0 + timedelta(seconds=round_))
        assert [v is None for v in verdicts] == [True, True, True, False]
        conn.execute(
            f"UPDATE {p}.oban_jobs SET state = 'completed' WHERE id = ANY(%s)",
            ([j.id for j in jobs],),
        )
    live = conn.execute(
        f"SELECT count(*) FROM {p}.powertools_limit_holds h JOIN {p}.oban_jobs j "
        "ON j.id = h.job_id AND j.state = 'executing'"
    ).fetchone()
    assert live == (0,)


def test_a_job_admitted_again_keeps_one_hold_per_gate(
    installed: Settings, conn: psycopg.Connection
) -> None:
    """A claim given back unstarted (a drain) and claimed again has the same attempt: its
    second admission replaces the hold its first one left."""
    gate = Gate("again", "", "concurrency", 5)
    (job,) = _executing(conn, installed.prefix, 1)
    assert _decide(installed, [job], gate, T0) == [None]
    assert _decide(installed, [job], gate, T0 + timedelta(seconds=1)) == [None]
    holds = conn.execute(
        f'SELECT job_id, attempt FROM "{installed.prefix}".powertools_limit_holds'
    ).fetchall()
    assert holds == [(job.id, 1)]
