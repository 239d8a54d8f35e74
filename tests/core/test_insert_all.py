"""insert_all on a real PostgreSQL: the COPY path, the unnest path with results, mixing with
unique specs, atomicity in the caller's transaction, and the async twin."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import BaseModel

from powertools_core import BulkInsertResult, Worker, insert_all, insert_all_async
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput, SchemaNotInstalled
from powertools_core.jobs import insert as insert_mod


class BulkA(Worker):
    queue = "bulk"

    class Args(BaseModel):
        n: int
        text: str = "x"

    def perform(self, job: Any) -> None:
        return None


class BulkB(Worker):
    queue = "other"
    priority = 3

    def perform(self, job: Any) -> None:
        return None


def rows(url: str, prefix: str) -> list[dict[str, Any]]:
    with (
        psycopg.connect(url, autocommit=True) as c,
        c.cursor(row_factory=psycopg.rows.dict_row) as cur,
    ):
        query = sql.SQL(
            "SELECT id, state::text AS state, queue, worker, args, tags, meta, priority, "
            "max_attempts, scheduled_at, inserted_at FROM {}.oban_jobs ORDER BY id"
        ).format(sql.Identifier(prefix))
        return cur.execute(query).fetchall()


def mixed_specs(count: int) -> list[Any]:
    specs = []
    for i in range(count):
        if i % 3 == 0:
            specs.append(BulkB.new({"i": i, "nested": {"a": [1, 2]}}, tags=["b", f"t{i}"]))
        elif i % 3 == 1:
            specs.append(BulkA.new({"n": i, "text": "quote ' and \\ and \t tab, {brace}"}))
        else:
            specs.append(
                BulkA.new(
                    {"n": i},
                    scheduled_at=datetime(2999, 1, 1, 0, 0, i % 60),
                    meta={"k": "é"},
                    priority=1,
                )
            )
    return specs


@pytest.mark.parametrize("returning", [False, True])
def test_insert_all_writes_every_column(
    installed: Settings, database_url: str, returning: bool
) -> None:
    specs = mixed_specs(300)
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = insert_all(specs, conn=conn, prefix=installed.prefix, returning=returning)
    assert isinstance(result, BulkInsertResult)
    assert (result.inserted, result.conflicts) == (300, 0)
    stored = rows(database_url, installed.prefix)
    assert len(stored) == 300
    # Both paths insert in input order, so ids follow the specs.
    for spec, row in zip(specs, stored, strict=True):
        assert row["worker"] == spec.worker
        assert row["queue"] == spec.queue
        assert row["args"] == spec.args
        assert row["tags"] == list(spec.tags)
        assert row["meta"] == spec.meta
        assert row["priority"] == spec.priority
        assert row["state"] == spec.state
        if spec.scheduled_at is not None:
            assert row["scheduled_at"] == spec.scheduled_at
        else:
            assert row["scheduled_at"] == row["inserted_at"]
    if returning:
        assert result.results is not None
        assert [r.id for r in result.results] == [r["id"] for r in stored]
        assert all(not r.conflict for r in result.results)
        for got, row in zip(result.results, stored, strict=True):
            job = got.job
            assert (job.state, job.queue, job.worker, job.priority) == (
                row["state"], row["queue"], row["worker"], row["priority"]
            )  # fmt: skip
            assert (job.args, job.tags, job.meta) == (row["args"], row["tags"], row["meta"])
            assert (job.inserted_at, job.scheduled_at) == (row["inserted_at"], row["scheduled_at"])
            assert (job.attempt, job.max_attempts, job.errors) == (0, row["max_attempts"], [])
    else:
        assert result.results is None
        with pytest.raises(InvalidInput, match="returning=True"):
            _ = result.ids


def test_returning_keeps_input_order_across_chunks(
    installed: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(insert_mod, "CHUNK", 64)
    specs = [BulkA.new({"n": i}) for i in range(1000)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = insert_all(specs, conn=conn, prefix=installed.prefix, returning=True)
    assert result.results is not None
    assert [r.job.args["n"] for r in result.results] == list(range(1000))
    assert result.ids == sorted(result.ids)


def test_mixed_plain_and_unique_specs(installed: Settings, database_url: str) -> None:
    specs = [
        BulkA.new({"n": 1}),
        BulkA.new({"n": 2}, unique=True),
        BulkA.new({"n": 3}),
        BulkA.new({"n": 2}, unique=True),
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        counted = insert_all(specs, conn=conn, prefix=installed.prefix)
        returned = insert_all(specs, conn=conn, prefix=installed.prefix, returning=True)
    assert (counted.inserted, counted.conflicts) == (3, 1)
    assert (returned.inserted, returned.conflicts) == (2, 2)
    assert returned.results is not None
    assert [r.job.args["n"] for r in returned.results] == [1, 2, 3, 2]
    assert [r.conflict for r in returned.results] == [False, True, False, True]
    assert len(rows(database_url, installed.prefix)) == 5


@pytest.mark.parametrize("returning", [False, True])
def test_rolled_back_with_the_callers_transaction(
    installed: Settings, database_url: str, returning: bool
) -> None:
    with psycopg.connect(database_url) as conn:
        specs = [*mixed_specs(20), BulkA.new({"n": 99}, unique=True)]
        result = insert_all(specs, conn=conn, prefix=installed.prefix, returning=returning)
        assert result.inserted == 21
        conn.rollback()
    assert rows(database_url, installed.prefix) == []


def test_bad_input_is_refused_before_sql(installed: Settings, database_url: str) -> None:
    closed = psycopg.connect(database_url)
    closed.close()
    with pytest.raises(InvalidInput, match="JobSpec"):
        insert_all([{"worker": "x"}], conn=closed, prefix=installed.prefix)  # type: ignore[list-item]
    empty = insert_all([], conn=closed, prefix=installed.prefix)
    assert (empty.inserted, empty.results) == (0, None)
    assert insert_all([], conn=closed, prefix=installed.prefix, returning=True).results == ()


def test_async_insert_all(installed: Settings, database_url: str) -> None:
    async def scenario() -> tuple[BulkInsertResult, BulkInsertResult]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            copied = await insert_all_async(mixed_specs(50), conn=conn, prefix=installed.prefix)
            returned = await insert_all_async(
                [BulkA.new({"n": i}, unique=True) for i in (1, 2, 1)],
                conn=conn,
                prefix=installed.prefix,
                returning=True,
            )
            await conn.commit()
            return copied, returned

    copied, returned = asyncio.run(scenario())
    assert copied.inserted == 50
    assert returned.results is not None
    assert [r.conflict for r in returned.results] == [False, False, True]
    assert len(rows(database_url, installed.prefix)) == 52


def test_a_failing_bulk_insert_leaves_nothing(installed: Settings, database_url: str) -> None:
    """One transaction for the whole call even on an autocommit connection."""
    good = [BulkA.new({"n": i}) for i in range(10)]
    # A spec built by hand can break a table constraint (worker over 127 characters).
    broken = dataclasses.replace(BulkA.new({"n": 0}), worker="w" * 200)
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        # On the caller's connection driver errors stay themselves (retry loops see them).
        pytest.raises(psycopg.errors.CheckViolation, match="worker_length"),
    ):
        insert_all([*good, broken], conn=conn, prefix=installed.prefix)
    assert rows(database_url, installed.prefix) == []


NASTY = ["a,b", 'q"uote', "back\\slash", "NULL", "{x}", "tab\there", "new\nline", "ü ✓", "\\N"]


@pytest.mark.parametrize("returning", [False, True])
def test_awkward_text_survives_both_paths(
    installed: Settings, database_url: str, returning: bool
) -> None:
    args = {"n": 1, "text": "\\N\t\n\r\\\\ \"'{}[] \u2028 ü"}
    specs = [
        BulkA.new(args, tags=NASTY, queue="queue\twith tab", meta={"m": "\\x"}),
        BulkB.new({"k\\ey": ["\\N", None, 1.5]}, tags=["only"]),
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        insert_all(specs, conn=conn, prefix=installed.prefix, returning=returning)
    stored = rows(database_url, installed.prefix)
    assert stored[0]["args"] == args
    assert stored[0]["tags"] == NASTY
    assert stored[0]["queue"] == "queue\twith tab"
    assert stored[0]["meta"] == {"m": "\\x"}
    assert stored[1]["args"] == {"k\\ey": ["\\N", None, 1.5]}
    assert stored[1]["tags"] == ["only"]


def test_a_schema_that_is_not_installed_says_so(settings: Settings, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(SchemaNotInstalled) as err:
            insert_all([BulkA.new({"n": 1})], conn=conn, prefix=settings.prefix)
        assert "powertools install" in err.value.one_line()
        with pytest.raises(SchemaNotInstalled):
            BulkA.enqueue({"n": 1}, conn=conn, prefix=settings.prefix)


# insert_ids: the ids-returning COPY that workflows use ------------------------------------


def test_insert_ids_writes_every_column_and_returns_ids_in_input_order(
    installed: Settings, database_url: str
) -> None:
    specs = [*mixed_specs(300), BulkA.new({"n": 1, "text": "\\N\t\n tab"}, tags=NASTY)]
    with psycopg.connect(database_url) as conn:
        ids = insert_mod.insert_ids(conn, specs, installed.prefix)
        conn.commit()
    stored = {r["id"]: r for r in rows(database_url, installed.prefix)}
    assert len(ids) == len(set(ids)) == len(stored) == 301
    assert ids == sorted(ids)
    for spec, job_id in zip(specs, ids, strict=True):
        row = stored[job_id]
        assert (row["worker"], row["queue"], row["state"]) == (spec.worker, spec.queue, spec.state)
        assert (row["args"], row["tags"], row["meta"]) == (spec.args, list(spec.tags), spec.meta)
        assert row["priority"] == spec.priority
        if spec.scheduled_at is not None:
            assert row["scheduled_at"] == spec.scheduled_at


def test_insert_ids_async_rolls_back_with_the_callers_transaction(
    installed: Settings, database_url: str
) -> None:
    async def run() -> list[int]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            ids = await insert_mod.insert_ids_async(conn, mixed_specs(10), installed.prefix)
            await conn.rollback()
            return ids

    assert len(asyncio.run(run())) == 10
    assert rows(database_url, installed.prefix) == []


def test_insert_ids_takes_the_unnest_path_for_unique_specs(
    installed: Settings, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = insert_mod.insert_ids(
            conn, [BulkA.new({"n": 10}), BulkA.new({"n": 11}, unique=True)], installed.prefix
        )
    stored = {r["id"]: r["args"]["n"] for r in rows(database_url, installed.prefix)}
    assert [stored[i] for i in ids] == [10, 11]


def test_insert_ids_draws_from_an_identity_column_too(
    installed: Settings, database_url: str
) -> None:
    # A foreign schema whose id is GENERATED ALWAYS AS IDENTITY (COPY writes given values).
    table = sql.Identifier(installed.prefix, "oban_jobs")
    serial = sql.Identifier(installed.prefix, "oban_jobs_id_seq")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN id DROP DEFAULT").format(table))
        conn.execute(sql.SQL("DROP SEQUENCE {}").format(serial))
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY").format(table)
        )
        ids = insert_mod.insert_ids(conn, [BulkA.new({"n": i}) for i in range(5)], installed.prefix)
        (later,) = insert_all(
            [BulkA.new({"n": 5})], conn=conn, prefix=installed.prefix, returning=True
        ).ids
    stored = {r["id"]: r["args"]["n"] for r in rows(database_url, installed.prefix)}
    assert [stored[i] for i in ids] == [0, 1, 2, 3, 4]
    assert later > max(ids)


def test_insert_ids_takes_the_unnest_path_when_no_sequence_owns_the_id(
    installed: Settings, database_url: str
) -> None:
    # An id filled by a default that is not an owned sequence: nothing to reserve ids from.
    seq = sql.Identifier(installed.prefix, "loose_ids")
    table = sql.Identifier(installed.prefix, "oban_jobs")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SEQUENCE {} START 1000").format(seq))
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN id SET DEFAULT nextval({})").format(
                table, sql.Literal(f'"{installed.prefix}".loose_ids')
            )
        )
        conn.execute(
            sql.SQL("ALTER SEQUENCE {} OWNED BY NONE").format(
                sql.Identifier(installed.prefix, "oban_jobs_id_seq")
            )
        )
        ids = insert_mod.insert_ids(conn, [BulkA.new({"n": i}) for i in range(3)], installed.prefix)
    assert ids == [1000, 1001, 1002]
