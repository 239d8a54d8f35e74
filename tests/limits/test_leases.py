"""Concurrency leases: the book admits only from confirmed free slots, and the database never
grants more slots than a limit holds across owners (holds and leases together)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.limits.admission import _lease_admission, lease, run_admission
from powertools_core.limits.declarations import Demand, Gate
from powertools_core.limits.duties import LimitsSweeper
from powertools_core.limits.leases import Grant, LeaseBook, Request
from powertools_core.limits.reservation import Blocked, GateState, compute_reservation

WALL = datetime(2026, 6, 1, 12, 0, 0)
G1 = Gate("c", "t1", "partition_concurrency", 3)
G2 = Gate("c", "", "concurrency", 5)


def _d(*gates: Gate) -> list[Demand]:
    return [Demand(g, 1) for g in gates]


def _grant_all(book: LeaseBook, requests: list[Request], mono: float) -> None:
    for r in requests:
        held = book.leases[r.key].slots if r.key in book.leases else 0
        book.apply(r, Grant(r.need + r.extra, held + r.need + r.extra), mono)


# --- the book, without a database ------------------------------------------------------------


def test_a_new_gate_asks_for_what_the_batch_lacks_and_as_much_headroom() -> None:
    book = LeaseBook()
    reqs = book.requests("s", [_d(G1), _d(G1)], 0.0, WALL)
    assert [(r.gate, r.need, r.extra) for r in reqs] == [(G1, 2, 2)]


def test_jobs_run_from_free_slots_and_finishing_frees_them() -> None:
    book = LeaseBook()
    _grant_all(book, book.requests("s", [_d(G1)], 0.0, WALL), 0.0)  # 2 slots
    verdicts = book.decide("s", [(1, _d(G1)), (2, _d(G1)), (3, _d(G1))], 0.1, WALL)
    assert [v is None for v in verdicts] == [True, True, False]
    assert verdicts[2] is not None and verdicts[2].code == "partition_concurrency_reached"
    # Nothing is asked of the database while the lease has room for the batch.
    book.free(1)
    assert book.requests("s", [_d(G1)], 0.2, WALL) == []
    assert book.decide("s", [(4, _d(G1))], 0.2, WALL) == [None]
    book.free(4)
    book.free(4)  # idempotent
    assert book.leases[("s", "c", "t1")].used == 1


def test_a_lease_not_confirmed_recently_is_not_used() -> None:
    book = LeaseBook(confirm_for=2.0)
    _grant_all(book, book.requests("s", [_d(G1)], 0.0, WALL), 0.0)
    assert book.decide("s", [(1, _d(G1))], 2.5, WALL)[0] is not None
    reqs = book.requests("s", [_d(G1)], 2.5, WALL)
    assert [(r.need, r.extra) for r in reqs] == [(0, 0)]  # renew, nothing more needed


def test_a_job_needs_a_slot_of_every_gate_and_takes_none_when_one_is_short() -> None:
    book = LeaseBook()
    book.apply(Request(("s", "c", "t1"), G1, 1, 0), Grant(1, 1), 0.0)
    book.apply(Request(("s", "c", ""), G2, 2, 0), Grant(2, 2), 0.0)
    verdicts = book.decide("s", [(1, _d(G2, G1)), (2, _d(G2, G1)), (3, _d(G2))], 0.1, WALL)
    assert [v is None for v in verdicts] == [True, False, True]
    assert book.leases[("s", "c", "")].used == 2
    assert book.leases[("s", "c", "t1")].used == 1


def test_a_cooldown_refuses_until_it_ends() -> None:
    book = LeaseBook()
    until = WALL + timedelta(seconds=30)
    book.apply(Request(("s", "c", "t1"), G1, 1, 1), Grant(0, 2, "cooldown", until), 0.0)
    refused = book.decide("s", [(1, _d(G1))], 0.1, WALL)[0]
    assert refused is not None and (refused.code, refused.retry_at) == ("cooldown", until)
    assert book.requests("s", [_d(G1)], 0.1, WALL) == []  # known: no round trip
    later = WALL + timedelta(seconds=31)
    assert book.decide("s", [(1, _d(G1))], 0.2, later) == [None]


def test_keep_alive_gives_back_only_slots_nobody_needed_for_a_whole_interval() -> None:
    book = LeaseBook()
    key = ("s", "c", "t1")
    book.apply(Request(key, G1, 3, 0), Grant(3, 3), 0.0)
    book.decide("s", [(1, _d(G1)), (2, _d(G1))], 0.1, WALL)
    book.free(2)
    # First interval: the lease was fresh, nothing given back.
    assert [(r.need) for r in book.keep_alive()] == [0]
    book.apply(Request(key, G1, 0, 0), Grant(0, 3), 0.5)
    # Second interval: two slots stayed free all along; job 1 still runs.
    (back,) = book.keep_alive()
    assert back.need == -2
    book.apply(back, Grant(-2, 1), 1.0)
    assert (book.leases[key].slots, book.leases[key].used) == (1, 1)
    assert book.release_all() == []  # the running job keeps its slot
    book.free(1)
    assert [r.need for r in book.release_all()] == [-1]


@st.composite
def book_ops(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    op = st.one_of(
        st.tuples(st.just("batch"), st.lists(st.sampled_from(["g1", "g2", "both"]), max_size=6)),
        st.tuples(st.just("grant"), st.integers(min_value=0, max_value=4)),
        st.tuples(st.just("finish"), st.integers(min_value=0, max_value=10)),
        st.tuples(st.just("keep"), st.booleans()),
        st.tuples(st.just("clock"), st.floats(min_value=0.0, max_value=3.0)),
    )
    return draw(st.lists(op, max_size=40))


@settings(max_examples=200)
@given(book_ops())
def test_the_book_never_runs_more_jobs_than_its_confirmed_slots(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the database grants (any amount up to the ask, shrinking leases included), a
    job is admitted only from a free slot of a lease confirmed within ``confirm_for``, slots in
    use are never given back, and every slot taken is freed by its job."""
    book = LeaseBook(confirm_for=2.0)
    mono = 0.0
    next_id = 1
    running: list[int] = []
    pending: list[Request] = []
    shapes = {"g1": _d(G1), "g2": _d(G2), "both": _d(G1, G2)}
    for op in ops:
        if op[0] == "batch":
            jobs = [(next_id + i, shapes[s]) for i, s in enumerate(op[1])]
            next_id += len(jobs)
            pending = book.requests("s", [d for _, d in jobs], mono, WALL)
            before = {k: (le.slots - le.used, le.confirmed) for k, le in book.leases.items()}
            for (job_id, demands), v in zip(jobs, book.decide("s", jobs, mono, WALL), strict=True):
                if v is None:
                    for d in demands:
                        key = ("s", d.gate.name, d.gate.partition)
                        free, confirmed = before[key]
                        assert free > 0 and mono - confirmed <= 2.0
                        before[key] = (free - 1, confirmed)
                    running.append(job_id)
        elif op[0] == "grant":
            for r in pending:
                lease = book.leases.get(r.key)
                slots = lease.slots if lease is not None else 0
                granted = min(op[1], r.need + r.extra) if r.need >= 0 else max(r.need, -slots)
                book.apply(r, Grant(granted, max(slots + granted, 0)), mono)
            pending = []
        elif op[0] == "finish":
            if running:
                book.free(running.pop(op[1] % len(running)))
        elif op[0] == "keep":
            for r in book.keep_alive():
                lease = book.leases[r.key]
                assert -r.need <= lease.slots - lease.used  # never a slot in use
                if op[1]:
                    book.apply(r, Grant(r.need, lease.slots + r.need), mono)
        else:
            mono += op[1]
        for lease in book.leases.values():
            assert lease.used >= 0
    for job_id in running:
        book.free(job_id)
    assert all(le.used == 0 for le in book.leases.values())
    assert book.taken == {}


# --- the database ------------------------------------------------------------------------------


def _ask(
    settings: Settings,
    book: LeaseBook,
    owner: str,
    asks: list[tuple[Gate, int, int]],
    now: datetime,
    ttl: float = 30.0,
) -> dict[str, tuple[int, str | None]]:
    """One lease call; per partition: (owner's slots now, blocker code)."""
    reqs = [Request(("x", g.name, g.partition), g, need, extra) for g, need, extra in asks]

    async def go() -> None:
        assert settings.database_url
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True
        ) as c:
            await lease(c, settings.prefix, book, owner, reqs, now=now, ttl=ttl)

    asyncio.run(go())
    out = {}
    for r in reqs:
        le = book.leases[r.key]
        out[r.gate.partition] = (le.slots, le.blocked_code if le.blocked_until else None)
    return out


def _held(conn: psycopg.Connection, prefix: str, partition: str) -> tuple[Any, ...]:
    row = conn.execute(
        f'SELECT b.held, (SELECT coalesce(sum(slots), 0) FROM "{prefix}".powertools_limit_leases l '
        f"WHERE l.limit_name = b.limit_name AND l.partition_key = b.partition_key) "
        f'FROM "{prefix}".powertools_rate_buckets b '
        "WHERE b.limit_name = 'c' AND b.partition_key = %s",
        (partition,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_leases_of_two_owners_never_exceed_the_limit(
    installed: Settings, conn: psycopg.Connection
) -> None:
    a, b = LeaseBook(), LeaseBook()
    # A asks for 2 and 2 more: the headroom comes out of half the room left (0 of 1).
    assert _ask(installed, a, "A", [(G1, 2, 2)], WALL) == {"t1": (2, None)}
    assert _ask(installed, b, "B", [(G1, 2, 2)], WALL) == {"t1": (1, None)}
    assert _held(conn, installed.prefix, "t1") == (3, 3)
    assert _ask(installed, b, "B", [(G1, 1, 0)], WALL) == {"t1": (1, None)}  # full
    _ask(installed, a, "A", [(G1, -2, 0)], WALL)  # A gives its two back
    assert _held(conn, installed.prefix, "t1") == (1, 1)
    assert _ask(installed, b, "B", [(G1, 2, 2)], WALL) == {"t1": (3, None)}
    assert _held(conn, installed.prefix, "t1") == (3, 3)
    assert a.leases[("x", "c", "t1")].slots == 0


def test_a_refused_need_says_the_limit_is_reached(installed: Settings) -> None:
    _ask(installed, LeaseBook(), "A", [(G1, 3, 0)], WALL)

    async def go() -> list[Any]:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as c:
            cur = await c.execute(
                f'SELECT * FROM "{installed.prefix}".powertools_limits_lease(%s, %s, %s, '
                "%s, %s, %s, %s, %s, %s)",
                (WALL, "B", 30_000_000, ["c"], ["t1"], [G1.kind], [3], [1], [0]),
            )
            return await cur.fetchall()

    assert [tuple(r[1:4]) for r in asyncio.run(go())] == [(0, 0, "partition_concurrency_reached")]


def test_a_lapsed_lease_counts_for_nothing_and_its_owner_starts_again(
    installed: Settings, conn: psycopg.Connection
) -> None:
    a, b = LeaseBook(), LeaseBook()
    _ask(installed, a, "A", [(G1, 3, 0)], WALL, ttl=1.0)
    later = WALL + timedelta(seconds=2)
    assert _ask(installed, b, "B", [(G1, 2, 0)], later) == {"t1": (2, None)}
    assert _held(conn, installed.prefix, "t1") == (2, 2)  # A's lapsed lease was dropped
    # A comes back: its old lease is gone, so it holds nothing until granted again.
    assert _ask(installed, a, "A", [(G1, 0, 0)], later) == {"t1": (0, None)}
    assert _ask(installed, a, "A", [(G1, 2, 0)], later) == {"t1": (1, None)}


def test_admission_of_rate_limited_batches_counts_leased_slots(
    installed: Settings, conn: psycopg.Connection
) -> None:
    """A job that takes the per-job path (its batch also needs a bucket) sees the slots other
    processes lease: a full lease refuses it."""
    _ask(installed, LeaseBook(), "A", [(G1, 3, 0)], WALL)
    p = installed.prefix
    row = conn.execute(
        f'INSERT INTO "{p}".oban_jobs (state, queue, worker, args, attempt) '
        "VALUES ('executing', 'q', 'w', '{}', 1) RETURNING id"
    ).fetchone()
    assert row is not None
    job = Job(id=row[0], state="executing", queue="q", worker="w", args={}, attempt=1)
    bucket = Gate("r", "", "rate", 100, 1_000_000)

    async def go() -> list[Any]:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as c:
            return await run_admission(c, p, [(job, _d(bucket, G1))], WALL)

    (refusal,) = asyncio.run(go())
    assert refusal is not None and refusal.code == "partition_concurrency_reached"


def test_a_cooldown_is_reported_to_the_lease_owner(
    installed: Settings, conn: psycopg.Connection
) -> None:
    until = WALL + timedelta(minutes=5)
    conn.execute(
        f'INSERT INTO "{installed.prefix}".powertools_rate_limits '
        "(name, kind, scope, cooldown_until) VALUES ('c', 'concurrency', 'partitioned', %s)",
        (until,),
    )
    book = LeaseBook()
    assert _ask(installed, book, "A", [(G1, 1, 1)], WALL) == {"t1": (0, "cooldown")}
    assert book.leases[("x", "c", "t1")].blocked_until == until


def test_the_sweep_keeps_leased_gates_and_drops_lapsed_leases(
    installed: Settings, conn: psycopg.Connection
) -> None:
    g3 = Gate("c", "t3", "partition_concurrency", 3)
    _ask(installed, LeaseBook(), "A", [(G1, 1, 0)], WALL, ttl=600.0)
    _ask(installed, LeaseBook(), "B", [(g3, 1, 0)], WALL, ttl=1.0)

    async def sweep() -> int:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as c:
            return await LimitsSweeper().run_once(c, installed.prefix, WALL + timedelta(minutes=1))

    asyncio.run(sweep())
    p = installed.prefix
    leases = conn.execute(
        f'SELECT owner, partition_key FROM "{p}".powertools_limit_leases ORDER BY 1'
    ).fetchall()
    assert leases == [("A", "t1")]
    gates = conn.execute(
        f'SELECT partition_key FROM "{p}".powertools_rate_buckets ORDER BY 1'
    ).fetchall()
    assert ("t1",) in gates


def test_leases_the_database_could_not_confirm_are_not_used() -> None:
    """After a failed lease call the book refuses from those leases until one succeeds."""
    book = LeaseBook()
    r = Request(("s", "c", "t1"), G1, 2, 0)
    book.apply(r, Grant(2, 2), 0.0)
    book.forget([r.key])
    assert book.decide("s", [(1, _d(G1))], 0.1, WALL)[0] is not None
    assert [(q.need, q.extra) for q in book.requests("s", [_d(G1)], 0.1, WALL)] == [(0, 0)]


@st.composite
def lease_ops(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    shape = st.sampled_from(["p1", "p2", "global", "p1+global"])
    op = st.one_of(
        st.tuples(st.just("batch"), st.lists(shape, min_size=1, max_size=6)),
        st.tuples(st.just("finish"), st.integers(min_value=0, max_value=20)),
        st.tuples(st.just("keep"), st.just(0)),
        st.tuples(st.just("unconfirmed"), st.just(0)),
    )
    return draw(st.lists(op, min_size=1, max_size=14))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lease_ops())
def test_one_process_on_leases_gives_the_verdicts_of_the_pure_rule(
    installed: Settings, ops: list[tuple[Any, ...]]
) -> None:
    """With no other process on its gates, admission from leased slots (growing, giving back
    and renewing them against the database) admits exactly the jobs ``compute_reservation``
    admits, counting the running jobs, in priority order."""
    p1 = Gate("lp", "p1", "partition_concurrency", 2)
    p2 = Gate("lp", "p2", "partition_concurrency", 1)
    glob = Gate("lg", "", "concurrency", 3)
    shapes = {"p1": [p1], "p2": [p2], "global": [glob], "p1+global": [p1, glob]}

    async def play() -> None:
        assert installed.database_url
        async with await psycopg.AsyncConnection.connect(
            installed.database_url, autocommit=True
        ) as c:
            await c.execute(
                f'TRUNCATE "{installed.prefix}".powertools_rate_buckets, '
                f'"{installed.prefix}".powertools_limit_leases'
            )
            book = LeaseBook()
            running: dict[int, list[Gate]] = {}
            next_id = 1
            for op in ops:
                if op[0] == "batch":
                    jobs = []
                    for name in op[1]:
                        job = Job(id=next_id, state="executing", queue="q", worker="w", args={})
                        jobs.append((job, _d(*shapes[name])))
                        next_id += 1
                    got = await _lease_admission(c, installed.prefix, jobs, book, "solo", 30.0)
                    for (job, demands), refusal in zip(jobs, got, strict=True):
                        counts = {
                            g: sum(g in gs for gs in running.values()) for g in (p1, p2, glob)
                        }
                        verdicts = [
                            compute_reservation(GateState(counts[d.gate], WALL), d.gate, 1, WALL)
                            for d in demands
                        ]
                        expected = next((v for v in verdicts if isinstance(v, Blocked)), None)
                        if expected is None:
                            assert refusal is None
                            running[job.id] = [d.gate for d in demands]
                        else:
                            assert refusal is not None and refusal.code == expected.code
                elif op[0] == "finish":
                    if running:
                        job_id = sorted(running)[op[1] % len(running)]
                        del running[job_id]
                        book.free(job_id)
                elif op[0] == "keep":
                    await lease(c, installed.prefix, book, "solo", book.keep_alive())
                else:
                    book.forget(list(book.leases))

    asyncio.run(play())
