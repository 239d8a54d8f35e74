"""Helpers for ops tests: jobs inserted straight into a test schema, in any state."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from powertools_core.config import Settings

INSERT_JOB = """
INSERT INTO {schema}.oban_jobs
    (state, queue, worker, args, attempt, max_attempts, attempted_at, attempted_by,
     completed_at, discarded_at, cancelled_at, tags, meta, errors)
VALUES (%(state)s::{schema}.oban_job_state, %(queue)s, %(worker)s, %(args)s::jsonb, %(attempt)s,
        %(max_attempts)s,
        CASE WHEN %(attempt)s > 0 THEN timezone('UTC', now()) END,
        CASE WHEN %(attempt)s > 0 THEN ARRAY['node-a', 'producer-1'] END,
        CASE WHEN %(state)s = 'completed' THEN timezone('UTC', now()) END,
        CASE WHEN %(state)s = 'discarded' THEN timezone('UTC', now()) END,
        CASE WHEN %(state)s = 'cancelled' THEN timezone('UTC', now()) END,
        %(tags)s, %(meta)s::jsonb, %(errors)s::jsonb[])
RETURNING id
"""

ATTEMPTS = {
    "available": 0,
    "suspended": 0,
    "scheduled": 0,
    "executing": 1,
    "retryable": 1,
    "completed": 1,
    "discarded": 3,
    "cancelled": 1,
}

InsertJob = Callable[..., int]


@pytest.fixture
def insert_job(installed: Settings, conn: psycopg.Connection) -> InsertJob:
    schema = sql.Identifier(installed.prefix)
    statement = sql.SQL(INSERT_JOB).format(schema=schema)

    def insert(
        state: str = "discarded",
        *,
        queue: str = "default",
        worker: str = "app.workers.SendEmail",
        args: dict[str, Any] | None = None,
        attempt: int | None = None,
        max_attempts: int = 3,
        tags: list[str] | None = None,
        meta: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> int:
        tried = ATTEMPTS[state] if attempt is None else attempt
        if errors is None and state in ("retryable", "discarded"):
            errors = [
                {"at": "2026-01-01T00:00:00", "attempt": n, "error": f"boom {n}"}
                for n in range(1, tried + 1)
            ]
        row = conn.execute(
            statement,
            {
                "state": state,
                "queue": queue,
                "worker": worker,
                "args": json.dumps(args or {}),
                "attempt": tried,
                "max_attempts": max(max_attempts, tried),
                "tags": tags or [],
                "meta": json.dumps(meta or {}),
                "errors": [json.dumps(e) for e in errors or []],
            },
        ).fetchone()
        assert row is not None
        return int(row[0])

    return insert


def job_row(conn: psycopg.Connection, schema: str, job_id: int) -> dict[str, Any]:
    cur = conn.execute(
        sql.SQL(
            "SELECT state::text, attempt, max_attempts, scheduled_at, completed_at, "
            "discarded_at, cancelled_at FROM {}.oban_jobs WHERE id = %s"
        ).format(sql.Identifier(schema)),
        (job_id,),
    )
    row = cur.fetchone()
    assert row is not None
    names = [c.name for c in cur.description or []]
    return dict(zip(names, row, strict=True))


def audit_rows(conn: psycopg.Connection, schema: str, **where: Any) -> list[dict[str, Any]]:
    clauses = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in where]
    cur = conn.execute(
        sql.SQL("SELECT * FROM {}.powertools_audit_events {} ORDER BY id").format(
            sql.Identifier(schema),
            sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL(""),
        ),
        list(where.values()),
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
