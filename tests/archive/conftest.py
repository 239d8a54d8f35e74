"""Seeding helpers for the archive tests: jobs in every state, with every column filled in."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from powertools_core.config import Settings
from powertools_core.db.identifiers import qualify
from tests.support.cli import Run, invoke, normalise

INSERT_JOB = """
INSERT INTO {prefix}.oban_jobs
    (state, queue, worker, args, errors, attempt, max_attempts, inserted_at, scheduled_at,
     attempted_at, completed_at, attempted_by, discarded_at, priority, tags, meta, cancelled_at)
VALUES (%(state)s, %(queue)s, %(worker)s, %(args)s, %(errors)s::jsonb[], %(attempt)s,
        %(max_attempts)s, %(inserted_at)s, %(scheduled_at)s, %(attempted_at)s, %(completed_at)s,
        %(attempted_by)s, %(discarded_at)s, %(priority)s, %(tags)s, %(meta)s, %(cancelled_at)s)
RETURNING id
"""
SEED_MANY = """
INSERT INTO {prefix}.oban_jobs
    (state, queue, worker, args, attempt, max_attempts, inserted_at, scheduled_at, attempted_at,
     completed_at, discarded_at, cancelled_at, attempted_by)
SELECT %(state)s::text::{prefix}.oban_job_state, %(queue)s, 'app.workers.Bulk',
    jsonb_build_object('n', g), 1, 20,
    timezone('UTC', now()) - %(age)s - interval '1 minute',
    timezone('UTC', now()) - %(age)s - interval '1 minute',
    timezone('UTC', now()) - %(age)s - interval '30 seconds',
    CASE WHEN %(state)s::text = 'completed' THEN timezone('UTC', now()) - %(age)s END,
    CASE WHEN %(state)s::text = 'discarded' THEN timezone('UTC', now()) - %(age)s END,
    CASE WHEN %(state)s::text = 'cancelled' THEN timezone('UTC', now()) - %(age)s END,
    ARRAY['node-1', 'b1946ac9-2f6d-4a8b-9c1e-1f2e3d4c5b6a']
FROM generate_series(1, %(count)s) AS g
"""
ALL_STATES = (
    "available",
    "suspended",
    "scheduled",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)
TERMINAL_COLUMN = {
    "completed": "completed_at",
    "discarded": "discarded_at",
    "cancelled": "cancelled_at",
}

Seed = Callable[..., int]


@pytest.fixture
def db(installed: Settings) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the installed test schema."""
    assert installed.database_url
    with psycopg.connect(installed.database_url, autocommit=True) as conn:
        yield conn


def insert_job(
    conn: psycopg.Connection[Any],
    prefix: str,
    *,
    state: str,
    age: timedelta = timedelta(days=60),
    queue: str = "default",
    worker: str = "app.workers.Mailer",
    **overrides: Any,
) -> int:
    """One job whose every column has a non-default value; ``age`` sets its state's timestamp."""
    (now,) = conn.execute("SELECT timezone('UTC', now())").fetchone()  # type: ignore[misc]
    at = now - age
    values: dict[str, Any] = {
        "state": state,
        "queue": queue,
        "worker": worker,
        "args": Jsonb({"to": "a@example.com", "nested": {"list": [1, 2.5, None, "x"]}}),
        "errors": [
            Jsonb({"at": "2026-01-01T00:00:00Z", "attempt": 1, "error": "boom\nline two"}),
            Jsonb({"at": "2026-01-02T00:00:00Z", "attempt": 2, "error": "ünïcode ✓"}),
        ],
        "attempt": 2,
        "max_attempts": 7,
        "inserted_at": at - timedelta(minutes=5, microseconds=123),
        "scheduled_at": at - timedelta(minutes=4, microseconds=7),
        "attempted_at": at - timedelta(seconds=3, microseconds=999_999),
        "completed_at": None,
        "attempted_by": ["node-a", "3f1c8a8e-6c0e-4d5e-9a51-1d2b3c4d5e6f"],
        "discarded_at": None,
        "priority": 3,
        "tags": ["billing", "eu-west"],
        "meta": Jsonb({"trace": "abc", "n": 1}),
        "cancelled_at": None,
    }
    if state in TERMINAL_COLUMN:
        values[TERMINAL_COLUMN[state]] = at
    values.update(overrides)
    row = conn.execute(qualify(INSERT_JOB, prefix), values).fetchone()
    assert row is not None
    return int(row[0])


def seed_many(
    conn: psycopg.Connection[Any],
    prefix: str,
    *,
    state: str,
    count: int,
    age: timedelta = timedelta(days=60),
    queue: str = "default",
) -> None:
    conn.execute(
        qualify(SEED_MANY, prefix), {"state": state, "count": count, "age": age, "queue": queue}
    )


def count(conn: psycopg.Connection[Any], prefix: str, table: str, where: str = "TRUE") -> int:
    row = conn.execute(
        qualify(f"SELECT count(*) FROM {{prefix}}.{table} WHERE {where}", prefix)
    ).fetchone()
    assert row is not None
    return int(row[0])


def job_row(conn: psycopg.Connection[Any], prefix: str, table: str, job_id: int) -> tuple[Any, ...]:
    """Every oban_jobs column of one row (state as text), from either table."""
    row = conn.execute(
        qualify(
            "SELECT id, state::text, queue, worker, args, errors, attempt, max_attempts, "
            "inserted_at, scheduled_at, attempted_at, completed_at, attempted_by, discarded_at, "
            f"priority, tags, meta, cancelled_at FROM {{prefix}}.{table} WHERE id = %s",
            prefix,
        ),
        (job_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


# -- the CLI, and output made comparable ----------------------------------------------------------
REASON = "weekly archive cleanup"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_TEXT_SUBS = [
    (UUID_RE, "<run-id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z"), "YYYY-MM-DD hh:mm:ssZ"),
    (re.compile(r"\b\d{2}-\d{2} \d{2}:\d{2}\b"), "MM-DD hh:mm"),
    (re.compile(r"\b\d+\.\ds\b"), "N.Ns"),
    (re.compile(r"\([\d,]+ rows/s\)"), "(N rows/s)"),
    (re.compile(r"\b[0-9a-f]{16}(@\d{8}T\d{6}Z)?\b"), "<token>"),
]
# A plan hash covers the cutoffs, which move with the clock (tests of tokens check them).
VOLATILE_NUMBERS = frozenset({"duration_ms", "rows_per_s", "plan_hash", "preview_token"})


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def conn_args(settings: Settings) -> list[str]:
    assert settings.database_url
    return ["--database-url", settings.database_url, "--prefix", settings.prefix]


def cli(settings: Settings, *args: str, env: dict[str, str | None] | None = None) -> Run:
    """``powertools archive ARGS`` in-process against the test schema."""
    return invoke(["archive", *args, *conn_args(settings)], env=env)


def stable_text(run: Run, settings: Settings, *, short_runs: Sequence[str] = ()) -> str:
    """ANSI output with run ids, times, durations and rates replaced by placeholders."""
    text = normalise(run.stdout, {settings.prefix: "<schema>"})
    for pattern, replacement in _TEXT_SUBS:
        text = pattern.sub(replacement, text)
    for short in short_runs:
        text = text.replace(short[:8], "<run>")
    return text


def stable(value: Any) -> Any:
    """JSON output with UUIDs, timestamps and timings replaced by placeholders."""
    if isinstance(value, dict):
        return {
            k: f"<{k}>" if k in VOLATILE_NUMBERS and v is not None else stable(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [stable(v) for v in value]
    if isinstance(value, str):
        if UUID_RE.fullmatch(value):
            return "<uuid>"
        if ISO_RE.match(value):
            return "<time>"
    return value


def stable_json(run: Run) -> Any:
    return stable(json.loads(run.stdout))


def rows(
    conn: psycopg.Connection[Any], prefix: str, query: str, *params: Any
) -> list[dict[str, Any]]:
    cur = conn.execute(qualify(query, prefix), params)
    assert cur.description is not None
    names = [d.name for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def audit_rows(conn: psycopg.Connection[Any], prefix: str) -> list[dict[str, Any]]:
    return rows(
        conn,
        prefix,
        "SELECT actor, action, target_type, target_id, reason, result, run_id, meta "
        "FROM {prefix}.powertools_audit_events ORDER BY id",
    )


def run_rows(conn: psycopg.Connection[Any], prefix: str) -> list[dict[str, Any]]:
    return rows(
        conn,
        prefix,
        "SELECT id, kind, status, actor, reason, filter, counts "
        "FROM {prefix}.powertools_archive_runs ORDER BY started_at, id",
    )


def ids_in(conn: psycopg.Connection[Any], prefix: str, table: str) -> set[int]:
    return {r["id"] for r in rows(conn, prefix, f"SELECT id FROM {{prefix}}.{table}")}


def snapshot_tables(conn: psycopg.Connection[Any], prefix: str) -> dict[str, Any]:
    """Everything a mutation could touch, to prove that something changed nothing."""
    return {
        table: rows(conn, prefix, f"SELECT * FROM {{prefix}}.{table} ORDER BY 1")
        for table in (
            "oban_jobs",
            "powertools_job_archive",
            "powertools_archive_runs",
            "powertools_audit_events",
            "powertools_audit_archive",
        )
    }
