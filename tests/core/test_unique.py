"""Unique jobs and idempotency keys on a real PostgreSQL, including concurrent inserters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import BaseModel

from powertools_core import InsertResult, Unique, Worker, insert_all
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput
from powertools_core.jobs.insert import prune_receipts


class UqMailer(Worker):
    queue = "mailers"

    class Args(BaseModel):
        to: str
        template: str = "welcome"

    def perform(self, job: Any) -> None:
        return None


class UqDigest(Worker):
    """A worker unique by default (class attribute)."""

    unique = Unique(keys=("user",))

    class Args(BaseModel):
        user: int
        day: str = "mon"

    def perform(self, job: Any) -> None:
        return None


def run(url: str, prefix: str, statement: str, params: list[Any] | None = None) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(sql.SQL(statement).format(p=sql.Identifier(prefix)), params or [])
        return cur.fetchall() if cur.description else []


def jobs(url: str, prefix: str) -> list[Any]:
    return run(url, prefix, "SELECT id, state::text, args FROM {p}.oban_jobs ORDER BY id")


def set_state(url: str, prefix: str, job_id: int, state: str) -> None:
    run(url, prefix, "UPDATE {p}.oban_jobs SET state = %s::{p}.oban_job_state WHERE id = %s",
        [state, job_id])  # fmt: skip


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def test_unique_by_keys_returns_the_existing_job(installed: Settings, conn: Any) -> None:
    p = installed.prefix
    first = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=Unique(keys=["to"]))
    dup = UqMailer.enqueue(
        {"to": "a", "template": "other"}, conn=conn, prefix=p, unique=Unique(keys=["to"])
    )
    other = UqMailer.enqueue({"to": "b"}, conn=conn, prefix=p, unique=Unique(keys=["to"]))
    assert first.conflict is False
    assert dup.conflict is True
    assert dup.id == first.id
    assert dup.job.args == {"to": "a", "template": "welcome"}  # the existing job, unchanged
    assert other.conflict is False and other.id != first.id
    assert len(jobs(installed.database_url or "", p)) == 2


def test_unique_without_keys_uses_all_args(installed: Settings, conn: Any) -> None:
    p = installed.prefix
    a = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=True)
    b = UqMailer.enqueue({"to": "a", "template": "other"}, conn=conn, prefix=p, unique=True)
    c = UqMailer.enqueue({"template": "welcome", "to": "a"}, conn=conn, prefix=p, unique=True)
    assert not a.conflict and not b.conflict
    assert c.conflict and c.id == a.id  # key order does not matter


def test_unique_is_per_worker(installed: Settings, conn: Any) -> None:
    p = installed.prefix
    a = UqDigest.enqueue({"user": 1}, conn=conn, prefix=p)
    b = UqMailer.enqueue({"to": "1"}, conn=conn, prefix=p, unique=True)
    assert not a.conflict and not b.conflict


def test_class_level_unique_and_opting_out(installed: Settings, conn: Any) -> None:
    p = installed.prefix
    a = UqDigest.enqueue({"user": 7, "day": "mon"}, conn=conn, prefix=p)
    b = UqDigest.enqueue({"user": 7, "day": "tue"}, conn=conn, prefix=p)
    c = UqDigest.enqueue({"user": 7}, conn=conn, prefix=p, unique=False)
    assert b.conflict and b.id == a.id
    assert not c.conflict and c.id != a.id


def test_a_terminal_job_is_taken_over(installed: Settings, conn: Any) -> None:
    p, url = installed.prefix, installed.database_url or ""
    first = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=True)
    set_state(url, p, first.id, "executing")
    assert UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=True).conflict
    set_state(url, p, first.id, "completed")
    second = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=True)
    assert second.conflict is False and second.id != first.id
    third = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=True)
    assert third.conflict and third.id == second.id
    receipts = run(url, p, "SELECT job_id FROM {p}.powertools_idempotency_receipts")
    assert receipts == [(second.id,)]


def test_states_decide_what_blocks(installed: Settings, conn: Any) -> None:
    p, url = installed.prefix, installed.database_url or ""
    rule = Unique(states=("available", "scheduled", "executing", "retryable", "completed"))
    first = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=rule)
    set_state(url, p, first.id, "completed")
    assert UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=rule).conflict
    set_state(url, p, first.id, "discarded")
    assert not UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=rule).conflict


def test_period_limits_how_long_a_job_blocks(installed: Settings, conn: Any) -> None:
    p, url = installed.prefix, installed.database_url or ""
    rule = Unique(period="1h")
    first = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=rule)
    assert UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=rule).conflict
    run(url, p, "UPDATE {p}.oban_jobs SET inserted_at = inserted_at - interval '2 hours'")
    second = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=rule)
    assert not second.conflict and second.id != first.id
    expires = run(
        url, p, "SELECT expires_at > inserted_at FROM {p}.powertools_idempotency_receipts"
    )
    assert expires == [(True,)]


def test_by_queue(installed: Settings, conn: Any) -> None:
    p = installed.prefix
    per_queue = Unique(by_queue=True)
    a = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=per_queue, queue="q1")
    b = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=per_queue, queue="q2")
    c = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, unique=per_queue, queue="q1")
    assert not a.conflict and not b.conflict and c.conflict and c.id == a.id
    d = UqMailer.enqueue({"to": "z"}, conn=conn, prefix=p, unique=True, queue="q1")
    e = UqMailer.enqueue({"to": "z"}, conn=conn, prefix=p, unique=True, queue="q2")
    assert e.conflict and e.id == d.id


def test_idempotency_key_holds_for_as_long_as_the_job_exists(
    installed: Settings, conn: Any
) -> None:
    p, url = installed.prefix, installed.database_url or ""
    first = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, idempotency_key="order-17")
    again = UqMailer.enqueue({"to": "other"}, conn=conn, prefix=p, idempotency_key="order-17")
    assert again.conflict and again.id == first.id
    set_state(url, p, first.id, "completed")
    assert UqMailer.enqueue({"to": "b"}, conn=conn, prefix=p, idempotency_key="order-17").conflict
    run(url, p, "DELETE FROM {p}.oban_jobs WHERE id = %s", [first.id])
    fresh = UqMailer.enqueue({"to": "c"}, conn=conn, prefix=p, idempotency_key="order-17")
    assert not fresh.conflict and fresh.job.args["to"] == "c"


def test_idempotency_key_with_narrower_states(installed: Settings, conn: Any) -> None:
    p, url = installed.prefix, installed.database_url or ""
    first = UqMailer.enqueue({"to": "a"}, conn=conn, prefix=p, idempotency_key="k", unique=Unique())
    set_state(url, p, first.id, "cancelled")
    second = UqMailer.enqueue(
        {"to": "a"}, conn=conn, prefix=p, idempotency_key="k", unique=Unique()
    )
    assert not second.conflict


def test_rollback_releases_the_key(installed: Settings, database_url: str) -> None:
    p = installed.prefix
    with psycopg.connect(database_url) as tx:
        UqMailer.enqueue({"to": "a"}, conn=tx, prefix=p, unique=True)
        tx.rollback()
    assert run(database_url, p, "SELECT count(*) FROM {p}.powertools_idempotency_receipts") == [
        (0,)
    ]
    with psycopg.connect(database_url, autocommit=True) as c:
        assert not UqMailer.enqueue({"to": "a"}, conn=c, prefix=p, unique=True).conflict


def test_unique_keys_must_be_args_fields() -> None:
    with pytest.raises(InvalidInput, match="nope"):
        UqMailer.new({"to": "a"}, unique=Unique(keys=["nope"]))


def test_insert_all_with_duplicates_inside_the_batch(installed: Settings, conn: Any) -> None:
    p = installed.prefix
    existing = UqMailer.enqueue({"to": "x"}, conn=conn, prefix=p, unique=True)
    specs = [UqMailer.new({"to": t}, unique=True) for t in ["a", "x", "b", "a", "x", "c"]]
    specs.insert(2, UqMailer.new({"to": "plain"}))
    result = insert_all(specs, conn=conn, prefix=p, returning=True)
    assert result.results is not None
    flags = [(r.job.args["to"], r.conflict) for r in result.results]
    assert flags == [
        ("a", False),
        ("x", True),
        ("plain", False),
        ("b", False),
        ("a", True),
        ("x", True),
        ("c", False),
    ]
    assert result.results[1].id == existing.id == result.results[5].id
    assert result.results[0].id == result.results[4].id
    assert (result.inserted, result.conflicts) == (4, 3)
    counted = insert_all(
        [UqMailer.new({"to": t}, unique=True) for t in ["a", "d", "d"]], conn=conn, prefix=p
    )
    assert (counted.inserted, counted.conflicts, counted.results) == (1, 2, None)


def test_prune_receipts_drops_only_dead_ones(installed: Settings, conn: Any) -> None:
    p, url = installed.prefix, installed.database_url or ""
    live = UqMailer.enqueue({"to": "live"}, conn=conn, prefix=p, unique=True)
    gone = UqMailer.enqueue({"to": "gone"}, conn=conn, prefix=p, unique=True)
    UqMailer.enqueue({"to": "old"}, conn=conn, prefix=p, unique=Unique(period=60))
    run(url, p, "DELETE FROM {p}.oban_jobs WHERE id = %s", [gone.id])
    run(url, p, "UPDATE {p}.powertools_idempotency_receipts SET expires_at = '2000-01-01' "
        "WHERE expires_at IS NOT NULL")  # fmt: skip
    assert prune_receipts(conn, prefix=p) == 2
    assert run(url, p, "SELECT job_id FROM {p}.powertools_idempotency_receipts") == [(live.id,)]


# Concurrency -------------------------------------------------------------------------------------


def race(workers: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` in ``workers`` threads released at the same instant."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = action(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def test_concurrent_inserters_create_exactly_one_job(
    installed: Settings, database_url: str
) -> None:
    p = installed.prefix

    def enqueue(i: int) -> InsertResult:
        with psycopg.connect(database_url) as c:
            result = UqMailer.enqueue({"to": "same", "template": f"t{i}"}, conn=c, prefix=p,
                                      unique=Unique(keys=["to"]))  # fmt: skip
            c.commit()
            return result

    for _round in range(5):
        run(database_url, p, "TRUNCATE {p}.oban_jobs, {p}.powertools_idempotency_receipts")
        results = race(16, enqueue)
        assert sum(1 for r in results if not r.conflict) == 1
        assert len({r.id for r in results}) == 1
        assert len(jobs(database_url, p)) == 1


def test_concurrent_takeover_creates_exactly_one_job(
    installed: Settings, database_url: str
) -> None:
    p = installed.prefix
    with psycopg.connect(database_url, autocommit=True) as c:
        old = UqMailer.enqueue({"to": "same"}, conn=c, prefix=p, unique=True)
    set_state(database_url, p, old.id, "completed")

    def enqueue(_i: int) -> InsertResult:
        with psycopg.connect(database_url, autocommit=True) as c:
            return UqMailer.enqueue({"to": "same"}, conn=c, prefix=p, unique=True)

    results = race(12, enqueue)
    new_ids = {r.id for r in results}
    assert len(new_ids) == 1 and old.id not in new_ids
    assert sum(1 for r in results if not r.conflict) == 1
    assert len(jobs(database_url, p)) == 2


WAITING_ON_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
)


def test_a_second_inserter_waits_for_the_first_and_sees_its_job(
    installed: Settings, database_url: str
) -> None:
    """The lock path, made deterministic: B blocks on A's receipt until A commits."""
    p = installed.prefix
    tag = f"powertools-unique-b-{p}"  # unique per test, so parallel runs cannot confuse it
    outcome: dict[str, InsertResult] = {}
    with psycopg.connect(database_url) as a:
        first = UqMailer.enqueue({"to": "same"}, conn=a, prefix=p, unique=True)

        def second() -> None:
            with psycopg.connect(database_url, autocommit=True) as b:
                b.execute("SELECT set_config('application_name', %s, false)", [tag])
                outcome["b"] = UqMailer.enqueue({"to": "same"}, conn=b, prefix=p, unique=True)

        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 30
        while True:  # poll until B is waiting on A's lock (never a fixed sleep)
            waiting = run(database_url, p, WAITING_ON_LOCK, [tag])
            if waiting == [(1,)]:
                break
            assert time.monotonic() < deadline, "second inserter never blocked on the receipt"
            time.sleep(0.01)
        a.commit()
    thread.join(timeout=30)
    assert outcome["b"].conflict and outcome["b"].id == first.id


def test_opposite_order_batches_do_not_deadlock(
    installed: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from powertools_core.jobs import insert as insert_mod

    monkeypatch.setattr(insert_mod, "CHUNK", 37)  # several chunks per batch
    p = installed.prefix
    keys = [f"user{i}" for i in range(300)]

    def bulk(i: int) -> Any:
        order = keys if i % 2 == 0 else list(reversed(keys))
        with psycopg.connect(database_url) as c:
            result = insert_all([UqMailer.new({"to": k}, unique=True) for k in order],
                                conn=c, prefix=p)  # fmt: skip
            c.commit()
            return result

    results = race(6, bulk)
    assert sum(r.inserted for r in results) == 300
    assert sum(r.conflicts for r in results) == 300 * 5
    assert len(jobs(database_url, p)) == 300
