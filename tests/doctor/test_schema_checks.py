"""Schema checks: indexes, Oban's version marker, powertools migrations, unique-job risk."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from powertools_core.config import Settings, load_settings
from powertools_core.doctor import CHECK_IDS
from powertools_core.schema import oban
from powertools_core.schema.powertools import (
    OBAN_JOBS_INDEXES,
    OBAN_JOBS_UNIQUE_INDEXES,
    TABLES,
)
from tests.doctor.conftest import add_job, of, q, run, status
from tests.support.oban_migrations import migrate_like_oban

EXPECTED_INDEXES = [*oban.OBAN_INDEXES, *OBAN_JOBS_INDEXES, *OBAN_JOBS_UNIQUE_INDEXES]


def test_a_fresh_install_is_clean(clean: Settings) -> None:
    result = run(clean)
    assert result.findings == []
    assert [c.id for c in result.checks] == list(CHECK_IDS)
    assert {c.status for c in result.checks} == {"ok"}
    assert (result.exit_code, result.exit_status()) == (0, 0)
    assert result.oban_version_db == oban.OBAN_VERSION
    assert run(clean, strict=True).exit_code == 0


@pytest.mark.parametrize("index", EXPECTED_INDEXES)
def test_each_missing_index_is_an_error_whose_remediation_recreates_it(
    installed: Settings, conn: psycopg.Connection, index: str
) -> None:
    schema = installed.prefix
    conn.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(schema), sql.Identifier(index)))

    result = run(installed, "missing_indexes")
    [finding] = of(result, "missing_indexes")
    assert finding.severity == "error"
    assert finding.object == f"{schema}.{index}"
    assert index in finding.message and f"{schema}.oban_jobs" in finding.message
    assert result.exit_code == 2
    assert run(installed, "missing_indexes", strict=True).exit_code == 2

    conn.execute(finding.remediation)  # copy-pasted as is
    assert run(installed, "missing_indexes").exit_code == 0


@pytest.mark.parametrize("index", list(OBAN_JOBS_UNIQUE_INDEXES))
def test_a_missing_unique_index_is_rebuilt_unique(
    installed: Settings, conn: psycopg.Connection, index: str
) -> None:
    schema = installed.prefix
    conn.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(schema), sql.Identifier(index)))
    [finding] = of(run(installed, "missing_indexes"), "missing_indexes")
    assert finding.remediation.startswith("CREATE UNIQUE INDEX CONCURRENTLY")
    assert "duplicate" in finding.message
    conn.execute(finding.remediation)
    row = conn.execute(
        "SELECT indisunique FROM pg_index WHERE indexrelid = %s::regclass",
        (f'"{schema}".{index}',),
    ).fetchone()
    assert row == (True,)


def test_missing_primary_key(installed: Settings, conn: psycopg.Connection) -> None:
    q(conn, "ALTER TABLE {s}.oban_jobs DROP CONSTRAINT oban_jobs_pkey", installed.prefix)
    [finding] = of(run(installed, "missing_indexes"), "missing_indexes")
    assert "no primary key" in finding.message
    conn.execute(finding.remediation)
    assert run(installed, "missing_indexes").exit_code == 0


def test_an_invalid_index_is_an_error_and_reindex_fixes_it(
    installed: Settings, conn: psycopg.Connection
) -> None:
    schema = installed.prefix
    conn.execute(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
        (f'"{schema}".oban_jobs_meta_index',),
    )
    result = run(installed)
    [finding] = of(result, "index_validity")
    assert finding.severity == "error"
    assert finding.object == f"{schema}.oban_jobs_meta_index"
    assert "INVALID" in finding.message
    assert finding.remediation.startswith("REINDEX INDEX CONCURRENTLY")
    assert result.exit_code == 2
    assert run(installed, "index_validity", strict=True).exit_code == 2

    conn.execute(finding.remediation)
    assert run(installed, "index_validity").exit_code == 0


def test_an_invalid_index_on_a_powertools_table_is_found(
    installed: Settings, conn: psycopg.Connection
) -> None:
    conn.execute(
        "UPDATE pg_index SET indisready = false, indisvalid = false "
        "WHERE indexrelid = %s::regclass",
        (f'"{installed.prefix}".powertools_audit_events_at_index',),
    )
    [finding] = of(run(installed, "index_validity"), "index_validity")
    assert finding.object == f"{installed.prefix}.powertools_audit_events_at_index"


@pytest.mark.parametrize(
    ("comment", "severity", "exit_code", "strict_exit"),
    [("12", "error", 2, 2), ("15", "warning", 1, 2), ("∞", "warning", 1, 2)],
)
def test_oban_version_comment(
    installed: Settings,
    conn: psycopg.Connection,
    comment: str,
    severity: str,
    exit_code: int,
    strict_exit: int,
) -> None:
    conn.execute(
        sql.SQL("COMMENT ON TABLE {}.oban_jobs IS {}").format(
            sql.Identifier(installed.prefix), sql.Literal(comment)
        )
    )
    result = run(installed)
    [finding] = of(result, "oban_migration_version")
    assert (finding.severity, result.exit_code) == (severity, exit_code)
    assert f"{installed.prefix}.oban_jobs" in finding.message
    assert f"v{comment}" in finding.message
    assert result.oban_version_db == oban.parse_version(comment)

    strict = run(installed, strict=True)
    [promoted] = of(strict, "oban_migration_version")
    assert (promoted.severity, strict.exit_code) == ("error", strict_exit)


def test_a_missing_comment_on_a_v14_shaped_table_is_a_warning(
    installed: Settings, conn: psycopg.Connection
) -> None:
    """oban-py leaves the v14 shape without a comment: a warning (an error under --strict)."""
    q(conn, "COMMENT ON TABLE {s}.oban_jobs IS NULL", installed.prefix)
    result = run(installed)
    [finding] = of(result, "oban_migration_version")
    assert finding.severity == "warning" and "no Oban version comment" in finding.message
    assert finding.remediation.endswith("IS '14';")
    assert result.oban_version_db is None and result.exit_code == 1
    strict = run(installed, strict=True)
    assert strict.exit_code == 2


def test_a_missing_comment_on_an_older_table_is_an_error(
    settings: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    """Without ``suspended`` the table predates v14: an unknown version is an error."""
    migrate_like_oban(database_url, settings.prefix, version=12)
    q(conn, "COMMENT ON TABLE {s}.oban_jobs IS NULL", settings.prefix)
    result = run(settings)
    [finding] = of(result, "oban_migration_version")
    assert finding.severity == "error" and "version is unknown" in finding.message
    assert result.oban_version_db is None and result.exit_code == 2


def test_no_oban_jobs_is_an_error_with_the_install_hint_and_nothing_passes(
    settings: Settings, conn: psycopg.Connection
) -> None:
    q(conn, "CREATE SCHEMA {s}", settings.prefix)
    result = run(settings)
    [finding] = of(result, "oban_migration_version")
    assert finding.severity == "error"
    assert finding.remediation.startswith(f"powertools install --prefix {settings.prefix}")
    assert f"{settings.prefix}.oban_jobs does not exist" in finding.message
    # every check that needs oban_jobs says it could not look: none passes silently (only the
    # database-wide long_running_transactions could look at everything it covers)
    assert {c.id for c in result.checks if c.status != "error"} == {"long_running_transactions"}
    assert result.oban_version_db is None
    assert result.exit_code == 2


def test_a_bogus_prefix_fails_every_check(database_url: str) -> None:
    settings = load_settings(database_url=database_url, prefix="no_such_schema_here", env={})
    result = run(settings)
    assert {c.id for c in result.checks if c.status != "error"} == {"long_running_transactions"}
    assert all("schema no_such_schema_here" in f.message for f in result.findings)
    assert len(result.findings) == len(CHECK_IDS) - 1
    assert result.exit_code == 2
    assert run(settings, strict=True).exit_code == 2


def test_a_missing_powertools_table_is_an_error(
    installed: Settings, conn: psycopg.Connection
) -> None:
    q(conn, "DROP TABLE {s}.powertools_lifeline_incidents", installed.prefix)
    result = run(installed)
    [finding] = of(result, "powertools_migrations")
    assert finding.severity == "error"
    assert finding.object == f"{installed.prefix}.powertools_lifeline_incidents"
    assert result.exit_code == 2


def test_powertools_not_installed_on_an_oban_only_schema(
    installed: Settings, conn: psycopg.Connection
) -> None:
    for table in (*TABLES, "powertools_alembic_version"):
        conn.execute(
            sql.SQL("DROP TABLE {}.{}").format(
                sql.Identifier(installed.prefix), sql.Identifier(table)
            )
        )
    result = run(installed)
    [finding] = of(result, "powertools_migrations")
    assert "not installed" in finding.message
    assert finding.remediation == f"powertools install --prefix {installed.prefix}"
    # without powertools_producers, heartbeats cannot be checked: an error, never a pass
    assert status(result, "stale_producers") == "error"
    assert status(result, "orphaned_executing_jobs") == "error"
    assert result.exit_code == 2


def test_pending_and_unknown_revisions(installed: Settings, conn: psycopg.Connection) -> None:
    q(conn, "DELETE FROM {s}.powertools_alembic_version", installed.prefix)
    [pending] = of(run(installed, "powertools_migrations"), "powertools_migrations")
    assert pending.severity == "error" and "pending" in pending.message

    q(conn, "INSERT INTO {s}.powertools_alembic_version VALUES ('9999_future')", installed.prefix)
    result = run(installed, "powertools_migrations")
    [unknown] = of(result, "powertools_migrations")
    assert unknown.severity == "warning" and "9999_future" in unknown.message
    assert result.exit_code == 1
    assert run(installed, "powertools_migrations", strict=True).exit_code == 2


def test_uniqueness_backlog_over_the_threshold(
    installed: Settings, conn: psycopg.Connection
) -> None:
    for _ in range(4):
        add_job(conn, installed.prefix)
    add_job(conn, installed.prefix, state="completed", completed_age="1 second")
    below = run(installed, "uniqueness_timeout_risk", thresholds={"uniqueness_backlog": "5"})
    assert below.exit_code == 0  # the completed job does not count

    add_job(conn, installed.prefix, state="scheduled")
    result = run(installed, "uniqueness_timeout_risk", thresholds={"uniqueness_backlog": "5"})
    [finding] = of(result, "uniqueness_timeout_risk")
    assert finding.severity == "warning" and "at least 5 jobs" in finding.message
    assert result.exit_code == 1
    strict = run(
        installed, "uniqueness_timeout_risk", strict=True, thresholds={"uniqueness_backlog": "5"}
    )
    assert [f.severity for f in strict.findings] == ["error"] and strict.exit_code == 2


def test_missing_gin_index_is_a_uniqueness_risk_too(
    installed: Settings, conn: psycopg.Connection
) -> None:
    q(conn, "DROP INDEX {s}.oban_jobs_args_index", installed.prefix)
    result = run(installed, "uniqueness_timeout_risk")
    [finding] = of(result, "uniqueness_timeout_risk")
    assert finding.severity == "warning" and finding.object.endswith(".oban_jobs_args_index")
    assert result.exit_code == 1
    assert run(installed, "uniqueness_timeout_risk", strict=True).exit_code == 2
