"""Doctor fixtures: an installed schema on the shared server, a clean database of its own, and
helpers to break things the way production breaks them (as the superuser, in the test's schema)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql

from powertools_core.config import Settings, load_settings
from powertools_core.doctor import DoctorResult, doctor
from powertools_core.doctor.report import Finding
from powertools_core.migrate import install


def run(
    settings: Settings,
    *checks: str,
    strict: bool = False,
    thresholds: dict[str, str] | None = None,
) -> DoctorResult:
    return doctor(settings, checks=list(checks) or None, strict=strict, thresholds=thresholds)


def of(result: DoctorResult, check: str) -> list[Finding]:
    return [f for f in result.findings if f.check == check]


def status(result: DoctorResult, check: str) -> str:
    return next(c.status for c in result.checks if c.id == check)


def q(conn: psycopg.Connection, template: str, schema: str, params: Sequence[Any] = ()) -> None:
    """Run ``template`` with ``{s}`` as the quoted test schema."""
    conn.execute(sql.SQL(template).format(s=sql.Identifier(schema)), params)


@pytest.fixture
def clean(pg_server: Any) -> Iterator[Settings]:
    """``powertools install`` alone, in a database of its own (so other tests' sessions on the
    shared server cannot show up in the database-wide checks)."""
    name = pg_server.create_database()
    settings = load_settings(database_url=pg_server.url_for(name), prefix="public", env={})
    install(settings)
    yield settings
    pg_server.drop_database(name)


def add_job(
    conn: psycopg.Connection,
    schema: str,
    *,
    state: str = "available",
    queue: str = "default",
    worker: str = "app.workers.Noop",
    age: str = "0 seconds",
    meta: str = "{}",
    attempted_by: list[str] | None = None,
    attempted_age: str | None = None,
    completed_age: str | None = None,
) -> int:
    """One job; times are relative to now (``age`` moves scheduled/inserted into the past)."""
    done = completed_age or "0 seconds"
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {s}.oban_jobs (state, queue, worker, meta, attempt, attempted_by, "
            "inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at) "
            "VALUES (%(state)s, %(queue)s, %(worker)s, %(meta)s::jsonb, %(attempt)s, %(by)s, "
            "timezone('UTC', now()) - %(age)s::interval, "
            "timezone('UTC', now()) - %(age)s::interval, "
            "timezone('UTC', now()) - %(attempted)s::interval, "
            "timezone('UTC', now()) - %(completed)s::interval, "
            "timezone('UTC', now()) - %(discarded)s::interval, "
            "timezone('UTC', now()) - %(cancelled)s::interval) RETURNING id"
        ).format(s=sql.Identifier(schema)),
        {
            "state": state,
            "queue": queue,
            "worker": worker,
            "meta": meta,
            "attempt": 0 if state in ("available", "scheduled") else 1,
            "by": attempted_by,
            "age": age,
            "attempted": attempted_age,
            "completed": done if state == "completed" else None,
            "discarded": done if state == "discarded" else None,
            "cancelled": done if state == "cancelled" else None,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])
