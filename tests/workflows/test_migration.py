"""Migration 0002: an install at 0001 upgrades in place, keeping workflows that exist."""

from __future__ import annotations

from typing import Any

import psycopg
from alembic import command

from powertools_core import migrate
from powertools_core.config import Settings
from powertools_core.db.connection import sqlalchemy_engine
from powertools_core.schema.powertools import OBAN_JOBS_INDEXES, OBAN_JOBS_UNIQUE_INDEXES


def _install_0001(settings: Settings) -> None:
    assert settings.database_url
    engine = sqlalchemy_engine(settings.database_url)
    with engine.begin() as c:
        for stmt in migrate._oban_ddl(settings.prefix, schema_exists=False):
            c.exec_driver_sql(stmt)
        command.upgrade(migrate._config(settings.prefix, connection=c), "0001")


def _indexes(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    rows = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [schema])
    return {r[0] for r in rows}


def test_install_upgrades_a_0001_schema_to_head(
    settings: Settings, conn: psycopg.Connection
) -> None:
    s = settings.prefix
    _install_0001(settings)
    conn.execute(f"INSERT INTO \"{s}\".powertools_workflows (name) VALUES ('old')")
    conn.execute(
        f'INSERT INTO "{s}".powertools_workflow_edges (workflow_id, step, dep, on_failure) '
        "SELECT id, 'b', 'a', 'cascade' FROM \"" + s + '".powertools_workflows'
    )
    assert not {*OBAN_JOBS_INDEXES, *OBAN_JOBS_UNIQUE_INDEXES} <= _indexes(conn, s)

    result = migrate.install(settings)

    assert result.revision_before == "0001"
    assert result.applied[0] == "0002" and result.revision_after == migrate.head_revision()
    assert {*OBAN_JOBS_INDEXES, *OBAN_JOBS_UNIQUE_INDEXES} <= _indexes(conn, s)
    assert conn.execute(f'SELECT kind FROM "{s}".powertools_workflow_edges').fetchall() == [
        ("step",)
    ]
    assert conn.execute(f'SELECT kind FROM "{s}".powertools_workflows').fetchall() == [
        ("workflow",)
    ]
    assert migrate.install(settings).up_to_date


def test_the_correlation_index_is_unique_among_live_jobs_only(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    insert = (
        f'INSERT INTO "{s}".oban_jobs (worker, state, meta) '
        f"VALUES ('w', %s::\"{s}\".oban_job_state, %s::jsonb)"
    )
    conn.execute(insert, ["completed", '{"correlation_key": "order-1"}'])
    conn.execute(insert, ["suspended", '{"correlation_key": "order-1"}'])
    try:
        conn.execute(insert, ["available", '{"correlation_key": "order-1"}'])
    except psycopg.errors.UniqueViolation as exc:
        assert "powertools_oban_jobs_correlation_index" in str(exc)
    else:
        raise AssertionError("a second live job took the same correlation key")
    conn.execute(insert, ["available", '{"correlation_key": "order-2"}'])
