"""Enqueue against a real PostgreSQL: columns written, scheduling, validation before any SQL,
the caller's transaction (psycopg sync/async, SQLAlchemy Connection/Session), and NOTIFY."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import BaseModel
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from powertools_core import InsertResult, Worker, insert_all
from powertools_core.config import Settings
from powertools_core.db.connection import sqlalchemy_engine
from powertools_core.errors import InvalidInput
from powertools_core.jobs import insert as insert_mod
from powertools_core.jobs.notify import DEBOUNCER, insert_channel


class EnqMailer(Worker):
    queue = "mailers"
    priority = 2
    max_attempts = 5
    tags = ("email",)

    class Args(BaseModel):
        to: str
        template: str = "welcome"
        count: int = 1

    def perform(self, job: Any) -> None:
        return None


class EnqPlain(Worker):
    def perform(self, job: Any) -> None:
        return None


def count_jobs(url: str, prefix: str, where: str = "true") -> int:
    with psycopg.connect(url, autocommit=True) as c:
        query = sql.SQL("SELECT count(*) FROM {}.oban_jobs WHERE " + where).format(
            sql.Identifier(prefix)
        )
        row = c.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def fetch_job(url: str, prefix: str, job_id: int) -> dict[str, Any]:
    with (
        psycopg.connect(url, autocommit=True) as c,
        c.cursor(row_factory=psycopg.rows.dict_row) as cur,
    ):
        query = sql.SQL("SELECT *, state::text AS state_text FROM {}.oban_jobs WHERE id = %s")
        row = cur.execute(query.format(sql.Identifier(prefix)), [job_id]).fetchone()
        assert row is not None
        return row


@pytest.fixture(autouse=True)
def _fresh_debouncer() -> Iterator[None]:
    DEBOUNCER.reset()
    yield
    DEBOUNCER.reset()


def test_enqueue_writes_the_oban_columns(installed: Settings, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = EnqMailer.enqueue(
            {"to": "a@example.com"}, conn=conn, prefix=installed.prefix, meta={"trace": "t1"}
        )
    assert isinstance(result, InsertResult)
    assert result.conflict is False
    row = fetch_job(database_url, installed.prefix, result.id)
    assert row["worker"] == "tests.core.test_enqueue.EnqMailer"
    assert row["state_text"] == "available"
    assert row["queue"] == "mailers"
    assert row["priority"] == 2
    assert row["max_attempts"] == 5
    assert row["tags"] == ["email"]
    assert row["meta"] == {"trace": "t1"}
    assert row["args"] == {"to": "a@example.com", "template": "welcome", "count": 1}
    assert row["attempt"] == 0
    assert result.job.id == row["id"]
    assert result.job.args == row["args"]


def test_options_override_the_class_attributes(installed: Settings, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = EnqMailer.enqueue(
            {"to": "b"},
            conn=conn,
            prefix=installed.prefix,
            queue="urgent",
            priority=0,
            max_attempts=1,
            tags=["x", " x ", "y"],
        )
    row = fetch_job(database_url, installed.prefix, result.id)
    assert (row["queue"], row["priority"], row["max_attempts"]) == ("urgent", 0, 1)
    assert row["tags"] == ["x", "y"]


@pytest.mark.parametrize("delay", [30, 30.5, "30s", "10m", timedelta(hours=2)])
def test_schedule_in_makes_a_scheduled_job(
    installed: Settings, database_url: str, delay: Any
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, schedule_in=delay)
    row = fetch_job(database_url, installed.prefix, result.id)
    assert row["state_text"] == "scheduled"
    assert row["scheduled_at"] > row["inserted_at"]


def test_scheduled_at_is_stored_exactly_and_aware_times_become_utc(
    installed: Settings, database_url: str
) -> None:
    at = datetime(2999, 1, 2, 15, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, scheduled_at=at)
    row = fetch_job(database_url, installed.prefix, result.id)
    assert row["state_text"] == "scheduled"
    assert row["scheduled_at"] == datetime(2999, 1, 2, 13, 4, 5)


def test_a_time_in_the_past_is_available_at_once(installed: Settings, database_url: str) -> None:
    past = datetime(2000, 1, 1, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        a = EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, scheduled_at=past)
        b = EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, schedule_in=0)
    assert fetch_job(database_url, installed.prefix, a.id)["state_text"] == "available"
    assert fetch_job(database_url, installed.prefix, a.id)["scheduled_at"] == datetime(2000, 1, 1)
    assert fetch_job(database_url, installed.prefix, b.id)["state_text"] == "available"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({}, "to"),
        ({"to": "a", "count": "many"}, "count"),
        ({"to": ["not", "a", "string"]}, "to"),
    ],
)
def test_invalid_args_name_the_field_and_touch_nothing(
    installed: Settings, database_url: str, args: dict[str, Any], field: str
) -> None:
    closed = psycopg.connect(database_url)
    closed.close()  # any SQL on it would raise a database error, not InvalidInput
    with pytest.raises(InvalidInput) as err:
        EnqMailer.enqueue(args, conn=closed, prefix=installed.prefix)
    assert field in err.value.message
    assert "EnqMailer" in err.value.message
    assert count_jobs(database_url, installed.prefix) == 0


def test_invalid_args_without_conn_never_connect(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # An unreachable database: if validation did not come first this would be a connection error.
    monkeypatch.setenv("POWERTOOLS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput, match="to"):
        EnqMailer.enqueue({"template": "x"})


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"priority": -1}, "priority"),
        ({"priority": True}, "priority"),
        ({"queue": ""}, "queue"),
        ({"queue": "q" * 200}, "queue"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2**31}, "max_attempts"),
        ({"priority": 2**40}, "priority"),
        ({"schedule_in": "soon"}, "schedule_in"),
        ({"schedule_in": -5}, "schedule_in"),
        ({"schedule_in": 5, "scheduled_at": datetime(2999, 1, 1)}, "not both"),
        ({"meta": {"x": object()}}, "meta"),
        ({"tags": [1]}, "tags"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_invalid_options_are_one_line_errors(
    installed: Settings, database_url: str, options: dict[str, Any], needle: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(InvalidInput) as err:
        EnqMailer.enqueue({"to": "a"}, conn=conn, prefix=installed.prefix, **options)
    assert needle in err.value.one_line()
    assert "\n" not in err.value.one_line()
    assert err.value.exit_code == 2
    assert count_jobs(database_url, installed.prefix) == 0


# The caller's transaction ---------------------------------------------------------------------


def test_psycopg_transaction_rollback_leaves_no_job(installed: Settings, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        EnqMailer.enqueue({"to": "a"}, conn=conn, prefix=installed.prefix)
        EnqMailer.enqueue({"to": "b"}, conn=conn, prefix=installed.prefix, unique=True)
        assert count_jobs(database_url, installed.prefix) == 0  # not visible before commit
        conn.rollback()
    assert count_jobs(database_url, installed.prefix) == 0
    with psycopg.connect(database_url) as conn:
        EnqMailer.enqueue({"to": "a"}, conn=conn, prefix=installed.prefix)
        conn.commit()
    assert count_jobs(database_url, installed.prefix) == 1


def test_psycopg_transaction_block_rollback(installed: Settings, database_url: str) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        pytest.raises(RuntimeError),
        conn.transaction(),
    ):
        EnqMailer.enqueue({"to": "a"}, conn=conn, prefix=installed.prefix)
        raise RuntimeError("the business write failed")
    assert count_jobs(database_url, installed.prefix) == 0


def test_async_transaction_rollback_leaves_no_job(installed: Settings, database_url: str) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            result = await EnqMailer.enqueue_async({"to": "a"}, conn=conn, prefix=installed.prefix)
            assert result.job.state == "available"
            await conn.rollback()
            await EnqMailer.enqueue_async({"to": "b"}, conn=conn, prefix=installed.prefix)
            await conn.commit()

    asyncio.run(scenario())
    assert count_jobs(database_url, installed.prefix) == 1
    assert count_jobs(database_url, installed.prefix, "args->>'to' = 'b'") == 1


def test_sync_api_refuses_an_async_connection(installed: Settings, database_url: str) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            with pytest.raises(InvalidInput, match="enqueue_async"):
                EnqMailer.enqueue({"to": "a"}, conn=conn, prefix=installed.prefix)

    asyncio.run(scenario())
    with pytest.raises(InvalidInput, match="conn must be"):
        EnqMailer.enqueue({"to": "a"}, conn="postgresql://x", prefix=installed.prefix)


def test_sqlalchemy_connection_rollback_and_commit(installed: Settings, database_url: str) -> None:
    engine = sqlalchemy_engine(database_url)
    try:
        with engine.connect() as conn:
            EnqMailer.enqueue({"to": "a"}, conn=conn, prefix=installed.prefix)
            conn.rollback()
        assert count_jobs(database_url, installed.prefix) == 0
        # A connection that never "began" before enqueue: commit() must still persist the job.
        with engine.connect() as conn:
            EnqMailer.enqueue({"to": "b"}, conn=conn, prefix=installed.prefix)
            conn.commit()
        assert count_jobs(database_url, installed.prefix) == 1
        with engine.begin() as conn:
            insert_all([EnqMailer.new({"to": "c"})], conn=conn, prefix=installed.prefix)
        assert count_jobs(database_url, installed.prefix) == 2
    finally:
        engine.dispose()


def test_sqlalchemy_session_rollback_and_commit(installed: Settings, database_url: str) -> None:
    engine = sqlalchemy_engine(database_url)
    try:
        with Session(engine) as session:
            EnqMailer.enqueue({"to": "a"}, conn=session, prefix=installed.prefix)
            session.rollback()
        assert count_jobs(database_url, installed.prefix) == 0
        with Session(engine) as session, session.begin():
            EnqMailer.enqueue({"to": "b"}, conn=session, prefix=installed.prefix)
        assert count_jobs(database_url, installed.prefix) == 1
        scoped = scoped_session(sessionmaker(engine))
        EnqMailer.enqueue({"to": "c"}, conn=scoped, prefix=installed.prefix)
        scoped.rollback()
        EnqMailer.enqueue({"to": "d"}, conn=scoped, prefix=installed.prefix)
        scoped.commit()
        scoped.remove()
        assert count_jobs(database_url, installed.prefix) == 2
        assert count_jobs(database_url, installed.prefix, "args->>'to' = 'c'") == 0
    finally:
        engine.dispose()


def test_sqlalchemy_async_session_rollback(installed: Settings, database_url: str) -> None:
    pytest.importorskip("greenlet", reason="SQLAlchemy asyncio needs sqlalchemy[asyncio]")
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    async def scenario() -> None:
        engine = create_async_engine(
            "postgresql+psycopg://",
            async_creator=lambda: psycopg.AsyncConnection.connect(database_url),
        )
        try:
            async with AsyncSession(engine) as session:
                await EnqMailer.enqueue_async({"to": "a"}, conn=session, prefix=installed.prefix)
                await session.rollback()
            async with AsyncSession(engine) as session:
                await EnqMailer.enqueue_async({"to": "b"}, conn=session, prefix=installed.prefix)
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert count_jobs(database_url, installed.prefix) == 1


def test_without_conn_uses_the_configured_database(
    installed: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("POWERTOOLS_DATABASE_URL", database_url)
    monkeypatch.setenv("POWERTOOLS_PREFIX", installed.prefix)
    monkeypatch.chdir(tmp_path)
    try:
        first = EnqMailer.enqueue({"to": "a"})
        second = asyncio.run(EnqMailer.enqueue_async({"to": "b"}))
        bulk = insert_all([EnqMailer.new({"to": str(i)}) for i in range(3)])
    finally:
        insert_mod.close_pools()
    assert second.id > first.id
    assert bulk.inserted == 3
    assert count_jobs(database_url, installed.prefix) == 5


# NOTIFY -------------------------------------------------------------------------------------------


def collect_until(listener: psycopg.Connection[Any], sentinel: str) -> list[str]:
    """Payloads received up to and including ``sentinel`` (notifications arrive in commit
    order, so anything sent before the sentinel's commit is in the list)."""
    seen: list[str] = []
    for note in listener.notifies(timeout=10.0):
        seen.append(note.payload)
        if note.payload == sentinel:
            return seen
    raise AssertionError(f"no {sentinel!r} notification within the deadline; got {seen}")


@pytest.fixture
def listener(installed: Settings, database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(insert_channel(installed.prefix))))
        yield conn


def test_notify_is_sent_on_commit_with_the_queue(
    installed: Settings, database_url: str, listener: psycopg.Connection[Any]
) -> None:
    with (
        psycopg.connect(database_url) as conn,
        psycopg.connect(database_url, autocommit=True) as other,
    ):
        EnqMailer.enqueue({"to": "a"}, conn=conn, prefix=installed.prefix)
        # Still open: a later commit elsewhere is delivered, ours is not (yet).
        EnqPlain.enqueue({}, conn=other, prefix=installed.prefix, queue="sentinel")
        assert collect_until(listener, "sentinel") == ["sentinel"]
        conn.commit()
        EnqPlain.enqueue({}, conn=other, prefix=installed.prefix, queue="sentinel2")
    assert collect_until(listener, "sentinel2") == ["mailers", "sentinel2"]


def test_no_notify_on_rollback_nor_for_scheduled_jobs(
    installed: Settings, database_url: str, listener: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(database_url) as conn:
        EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, queue="rolled")
        conn.rollback()
    with psycopg.connect(database_url, autocommit=True) as conn:
        EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, queue="later", schedule_in="1h")
        EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, queue="sentinel")
    assert collect_until(listener, "sentinel") == ["sentinel"]


def test_notify_is_debounced_per_queue(
    installed: Settings,
    database_url: str,
    listener: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DEBOUNCER, "window", 3600.0)  # every later send falls in the window
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(5):
            EnqMailer.enqueue({"to": str(i)}, conn=conn, prefix=installed.prefix)
        insert_all(
            [EnqMailer.new({"to": "x"}), EnqPlain.new({}, queue="other")],
            conn=conn,
            prefix=installed.prefix,
        )
        EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, queue="sentinel")
    assert collect_until(listener, "sentinel") == ["mailers", "other", "sentinel"]
    assert count_jobs(database_url, installed.prefix) == 8


def test_insert_all_notifies_each_queue_once(
    installed: Settings, database_url: str, listener: psycopg.Connection[Any]
) -> None:
    specs = [EnqPlain.new({}, queue=q) for q in ("a", "b", "a", "b", "a")]
    specs.append(EnqPlain.new({}, queue="sched", schedule_in=60))
    with psycopg.connect(database_url, autocommit=True) as conn:
        insert_all(specs, conn=conn, prefix=installed.prefix)
        EnqPlain.enqueue({}, conn=conn, prefix=installed.prefix, queue="sentinel")
    assert collect_until(listener, "sentinel") == ["a", "b", "sentinel"]
