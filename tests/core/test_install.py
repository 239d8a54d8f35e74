from __future__ import annotations

import psycopg

from powertools_core.config import Settings
from powertools_core.migrate import head_revision, install
from powertools_core.schema import oban
from powertools_core.schema.powertools import TABLES


def _tables(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
    ).fetchall()
    return {r[0] for r in rows}


def test_fresh_install_creates_oban_core_and_powertools_tables(
    settings: Settings, conn: psycopg.Connection
) -> None:
    result = install(settings)

    assert result.oban.action == "created"
    assert result.applied == ["0001"]
    assert result.revision_after == head_revision()
    assert not result.up_to_date
    tables = _tables(conn, settings.prefix)
    assert {"oban_jobs", "oban_peers", "oban_producers", *TABLES} <= tables
    version = conn.execute(
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'oban_jobs'",
        (settings.prefix,),
    ).fetchone()
    assert version == ("14",)
    states = conn.execute(
        "SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
        "JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typname = 'oban_job_state' AND n.nspname = %s ORDER BY e.enumsortorder",
        (settings.prefix,),
    ).fetchall()
    assert tuple(s[0] for s in states) == oban.JOB_STATES


def test_second_install_is_a_no_op(settings: Settings) -> None:
    install(settings)
    again = install(settings)
    assert again.up_to_date
    assert again.applied == []
    assert again.oban.action == "found"
    assert again.exit_status() == 0
