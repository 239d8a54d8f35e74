"""How doctor touches the database: read-only, bounded, no writer-blocking locks, and usable by a
role that has only USAGE + SELECT (what it cannot see is reported, never passed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from powertools_core.config import Settings, load_settings
from powertools_core.doctor import CHECKS
from powertools_core.doctor.runner import doctor_session, run_checks
from powertools_core.doctor.thresholds import resolve_thresholds
from tests.doctor.conftest import add_job, of, q, run, status


def test_checks_run_read_only_and_hold_only_access_share_locks(
    installed: Settings, conn: psycopg.Connection
) -> None:
    add_job(conn, installed.prefix)
    assert installed.database_url
    limits = resolve_thresholds(overrides={"statement_timeout": "7s", "lock_timeout": "2s"})
    with doctor_session(installed.database_url, installed.prefix, limits) as (ctx, _version):
        results, findings = run_checks(ctx, CHECKS)
        assert {r.status for r in results} == {"ok"}, findings
        settings = ctx.conn.exec_driver_sql(
            "SELECT current_setting('transaction_read_only'), "
            "current_setting('statement_timeout'), current_setting('lock_timeout'), "
            "current_setting('transaction_isolation'), current_setting('jit'), "
            "current_setting('TimeZone')"
        ).one()
        assert tuple(settings) == ("on", "7s", "2s", "repeatable read", "off", "UTC")
        modes = {
            row[0]
            for row in ctx.conn.exec_driver_sql(
                "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"
            )
        }
        assert modes == {"AccessShareLock"}
        with pytest.raises(Exception) as caught:
            ctx.conn.exec_driver_sql(
                sql.SQL("DELETE FROM {}.oban_jobs")
                .format(sql.Identifier(installed.prefix))
                .as_string(None)
            )
        assert isinstance(getattr(caught.value, "orig", None), pg_errors.ReadOnlySqlTransaction)


def test_a_writer_holding_row_locks_does_not_block_doctor(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    job = add_job(conn, installed.prefix, state="executing", attempted_age="1 second")
    with psycopg.connect(database_url) as writer:
        q(writer, "UPDATE {s}.oban_jobs SET attempt = 2 WHERE id = %s", installed.prefix, (job,))
        q(writer, "SELECT * FROM {s}.oban_jobs FOR UPDATE", installed.prefix)
        # doctor reads through the writer's locks (a lock wait would hit lock_timeout: an error)
        result = run(installed, thresholds={"lock_timeout": "100ms", "long_transaction": "1h"})
        assert result.summary.error == 0, result.findings
        writer.rollback()


@pytest.fixture
def restricted(database_url: str, installed: Settings) -> Iterator[tuple[str, str]]:
    """A login role with only USAGE on the schema and SELECT on its tables."""
    role = f"doctor_ro_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    ident, schema = sql.Identifier(role), sql.Identifier(installed.prefix)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password))
        )
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, ident))
        admin.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, ident)
        )
    try:
        yield role, make_conninfo(database_url, user=role, password=password)
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            admin.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            admin.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_a_select_only_role_runs_every_check(
    restricted: tuple[str, str], installed: Settings, conn: psycopg.Connection
) -> None:
    role, url = restricted
    settings = load_settings(database_url=url, prefix=installed.prefix, env={})
    result = run(settings)
    # the superuser sessions of this test are invisible to the role: said, not passed over
    [hidden] = of(result, "long_running_transactions")
    assert "hidden from role" in hidden.message and role in hidden.remediation
    assert [f for f in result.findings if f is not hidden] == []
    assert result.exit_code == 1

    conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(role)))
    assert run(settings, thresholds={"long_transaction": "1h"}).exit_code == 0


def test_a_table_the_role_cannot_read_is_an_error_not_a_pass(
    restricted: tuple[str, str], installed: Settings, conn: psycopg.Connection
) -> None:
    role, url = restricted
    conn.execute(
        sql.SQL("REVOKE SELECT ON {}.powertools_producers FROM {}").format(
            sql.Identifier(installed.prefix), sql.Identifier(role)
        )
    )
    result = run(load_settings(database_url=url, prefix=installed.prefix, env={}))
    [denied] = of(result, "stale_producers")
    assert denied.severity == "error" and "permission denied" in denied.message
    assert denied.remediation.startswith(f'GRANT USAGE ON SCHEMA "{installed.prefix}"')
    assert status(result, "orphaned_executing_jobs") == "error"
    assert status(result, "missing_indexes") == "ok"  # catalog-only checks still ran
    assert result.exit_code == 2


def test_a_lock_it_cannot_get_in_time_is_an_error_finding(
    installed: Settings, database_url: str
) -> None:
    with psycopg.connect(database_url) as ddl:
        # an ACCESS EXCLUSIVE lock held elsewhere: doctor's reads wait, then give up
        q(ddl, "LOCK TABLE {s}.powertools_producers IN ACCESS EXCLUSIVE MODE", installed.prefix)
        result = run(installed, "stale_producers", thresholds={"lock_timeout": "50ms"})
        [finding] = result.findings
        assert finding.severity == "error" and "lock" in finding.message
        assert result.exit_code == 2
        ddl.rollback()


def test_a_statement_timeout_is_an_error_finding(installed: Settings, database_url: str) -> None:
    with psycopg.connect(database_url) as ddl:
        # the lock wait outlasts the statement timeout (not the lock timeout): cancelled
        q(ddl, "LOCK TABLE {s}.powertools_producers IN ACCESS EXCLUSIVE MODE", installed.prefix)
        limits = {"statement_timeout": "50ms", "lock_timeout": "1h"}
        result = run(installed, "stale_producers", "queue_backlog_age", thresholds=limits)
        [finding] = result.findings
        assert finding.check == "stale_producers"
        assert "exceeded the 50ms statement timeout" in finding.message
        assert "--threshold statement_timeout=30s" in finding.remediation
        assert [c.status for c in result.checks] == ["error", "ok"]  # the next check still ran
        ddl.rollback()
