from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from powertools_core.config import Settings, load_settings
from powertools_core.errors import PermissionDenied, VersionMismatch
from powertools_core.migrate import InstallResult, head_revision, install
from powertools_core.schema import oban
from powertools_core.schema.powertools import OBAN_JOBS_INDEXES, TABLES, VERSION_TABLE
from tests.support.catalog import shape, snapshot
from tests.support.oban_migrations import migrate_like_oban
from tests.support.roles import as_url, unprivileged_url

VERSION_COMMENT = """
SELECT obj_description(c.oid, 'pg_class') FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'oban_jobs'
"""


def _tables(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
    ).fetchall()
    return {r[0] for r in rows}


def _indexes(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
    ).fetchall()
    return {r[0] for r in rows}


def _version_rows(conn: psycopg.Connection, schema: str) -> list[tuple[str]]:
    table = sql.Identifier(schema, VERSION_TABLE)
    return conn.execute(sql.SQL("SELECT version_num FROM {}").format(table)).fetchall()


def _all_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    from powertools_core.migrate import _config

    script = ScriptDirectory.from_config(_config("public"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_fresh_install_creates_oban_core_and_powertools_tables(
    settings: Settings, conn: psycopg.Connection
) -> None:
    result = install(settings)

    assert result.oban.action == "created"
    assert result.applied == _all_revisions()
    assert result.revision_before is None
    assert result.revision_after == head_revision()
    assert not result.up_to_date
    assert result.exit_status() == 0
    tables = _tables(conn, settings.prefix)
    assert {"oban_jobs", "oban_peers", "oban_producers", VERSION_TABLE, *TABLES} <= tables
    assert conn.execute(VERSION_COMMENT, (settings.prefix,)).fetchone() == ("14",)
    states = conn.execute(
        "SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
        "JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typname = 'oban_job_state' AND n.nspname = %s ORDER BY e.enumsortorder",
        (settings.prefix,),
    ).fetchall()
    assert tuple(s[0] for s in states) == oban.JOB_STATES
    assert {*oban.OBAN_INDEXES, *OBAN_JOBS_INDEXES} <= _indexes(conn, settings.prefix)
    assert _version_rows(conn, settings.prefix) == [(head_revision(),)]


def test_second_install_is_a_no_op(settings: Settings, database_url: str) -> None:
    install(settings)
    before = snapshot(database_url, settings.prefix, include_ours=True)

    again = install(settings)

    assert again.up_to_date
    assert again.applied == []
    assert again.oban.action == "found"
    assert again.revision_before == again.revision_after == head_revision()
    assert again.warnings == []
    assert again.exit_status() == 0
    assert snapshot(database_url, settings.prefix, include_ours=True) == before


def test_install_into_the_default_public_schema(fresh_database: str) -> None:
    result = install(load_settings(database_url=fresh_database, env={}))

    assert result.prefix == "public"
    with psycopg.connect(fresh_database) as c:
        assert c.execute("SELECT obj_description('public.oban_jobs'::regclass)").fetchone() == (
            "14",
        )
        assert _version_rows(c, "public") == [(head_revision(),)]


def test_install_into_a_named_prefix_touches_no_other_schema(fresh_database: str) -> None:
    tenant_a = load_settings(database_url=fresh_database, prefix="tenant_a", env={})
    tenant_b = load_settings(database_url=fresh_database, prefix="tenant_b", env={})

    install(tenant_a)

    with psycopg.connect(fresh_database) as c:
        assert "oban_jobs" in _tables(c, "tenant_a")
        assert _tables(c, "public") == set()
        assert c.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_b'"
        ).fetchone() == (0,)
    before_a = snapshot(fresh_database, "tenant_a", include_ours=True)

    second = install(tenant_b)

    assert second.oban.action == "created"
    assert snapshot(fresh_database, "tenant_a", include_ours=True) == before_a
    with psycopg.connect(fresh_database) as c:
        assert _version_rows(c, "tenant_a") == _version_rows(c, "tenant_b")
        # alembic's default version table is never used, so an app's own alembic is unaffected
        assert c.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'alembic_version'"
        ).fetchone() == (0,)


def test_created_oban_schema_is_what_obans_own_migrations_build(
    database_url: str, schema: str, settings: Settings
) -> None:
    """Our Oban DDL, compared with Oban's v1..v14 migrations replayed step by step."""
    oban_built = f"{schema}_oban"
    try:
        migrate_like_oban(database_url, oban_built, jobs=0)
        install(settings)

        ours = shape(database_url, settings.prefix)
        theirs = shape(database_url, oban_built)
    finally:
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(oban_built))
            )

    def without_producers(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        # oban_producers is oban-py's (and Oban Pro's) table, not created by Oban's migrations.
        return [r for r in rows if not str(r[0]).startswith("oban_producers")]

    for section in theirs:
        assert without_producers(ours[section]) == theirs[section], section


def test_existing_oban_v14_is_left_byte_for_byte_unchanged(
    database_url: str, schema: str, settings: Settings
) -> None:
    migrate_like_oban(database_url, schema)
    before = snapshot(database_url, schema)
    with psycopg.connect(database_url) as c:
        rows_before = c.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(schema, "oban_jobs"))
        ).fetchall()

    result = install(settings)

    assert result.oban.action == "found"
    assert result.oban.version == 14
    assert result.oban.missing_tables == ["oban_producers"]
    assert result.warnings == []
    assert result.exit_status() == 0
    assert result.applied == _all_revisions()
    assert snapshot(database_url, schema) == before
    with psycopg.connect(database_url) as c:
        assert set(TABLES) <= _tables(c, schema)
        assert set(OBAN_JOBS_INDEXES) <= _indexes(c, schema)
        assert "oban_producers" not in _tables(c, schema)
        assert (
            c.execute(
                sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(schema, "oban_jobs"))
            ).fetchall()
            == rows_before
        )

    again = install(settings)
    assert again.up_to_date
    assert snapshot(database_url, schema) == before


def test_older_oban_version_is_reported_and_not_altered(
    database_url: str, schema: str, settings: Settings
) -> None:
    migrate_like_oban(database_url, schema, version=12)
    before = snapshot(database_url, schema)

    result = install(settings)

    assert result.oban.action == "found"
    assert result.oban.version == 12
    assert len(result.warnings) == 1
    assert "v12" in result.warnings[0] and "v14" in result.warnings[0]
    assert result.exit_status() == 1
    assert snapshot(database_url, schema) == before
    with psycopg.connect(database_url) as c:
        assert c.execute(VERSION_COMMENT, (schema,)).fetchone() == ("12",)


def test_dry_run_on_an_empty_schema_changes_nothing_and_its_sql_installs(
    database_url: str, schema: str, settings: Settings
) -> None:
    before = snapshot(database_url, schema, include_ours=True)

    result = install(settings, dry_run=True)

    assert snapshot(database_url, schema, include_ours=True) == before
    assert before["schema"] == [(0,)]
    assert result.dry_run
    assert result.oban.action == "would_create"
    assert result.applied == _all_revisions()
    assert result.sql is not None
    assert result.sql.startswith("BEGIN;") and result.sql.rstrip().endswith("COMMIT;")

    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(result.sql)  # type: ignore[arg-type]
        assert c.execute(VERSION_COMMENT, (schema,)).fetchone() == ("14",)
        assert _version_rows(c, schema) == [(head_revision(),)]

    # What the script built is exactly what `install` builds.
    reference = load_settings(database_url=database_url, prefix=f"{schema}_ref", env={})
    try:
        install(reference)
        assert shape(database_url, schema, include_ours=True) == shape(
            database_url, reference.prefix, include_ours=True
        )
    finally:
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(reference.prefix))
            )
    assert install(settings).up_to_date


def test_dry_run_beside_existing_oban_prints_only_our_migrations(
    database_url: str, schema: str, settings: Settings
) -> None:
    migrate_like_oban(database_url, schema)
    before = snapshot(database_url, schema, include_ours=True)

    result = install(settings, dry_run=True)

    assert snapshot(database_url, schema, include_ours=True) == before
    assert result.oban.action == "found"
    assert result.sql is not None
    assert "CREATE TABLE" in result.sql
    assert "oban_job_state" not in result.sql
    assert "COMMENT ON TABLE" not in result.sql


def test_dry_run_when_up_to_date_prints_no_sql(installed: Settings) -> None:
    result = install(installed, dry_run=True)
    assert result.up_to_date
    assert result.applied == []
    assert result.sql == ""


def test_concurrent_installs_serialise(settings: Settings, database_url: str) -> None:
    """Eight threads released together on one fresh schema: one creates, the rest find it."""
    barrier = threading.Barrier(8)
    results: list[InstallResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(install(settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(r.oban.action for r in results) == ["created"] + ["found"] * 7
    assert sum(1 for r in results if r.applied) == 1
    with psycopg.connect(database_url) as c:
        assert _version_rows(c, settings.prefix) == [(head_revision(),)]


def test_role_without_create_privilege_gets_permission_denied(fresh_database: str) -> None:
    with unprivileged_url(fresh_database) as url:
        with pytest.raises(PermissionDenied) as caught:
            install(load_settings(database_url=url, env={}))
        with pytest.raises(PermissionDenied):
            install(load_settings(database_url=url, prefix="app_jobs", env={}))
    message = caught.value.one_line()
    assert "permission denied" in message
    assert "GRANT" in message
    with psycopg.connect(fresh_database) as c:
        assert _tables(c, "public") == set()


def test_results_never_contain_the_password(fresh_database: str) -> None:
    # The limited role has a real password; a dry run only reads, so it succeeds with it.
    with unprivileged_url(fresh_database) as conninfo:
        password = str(conninfo_to_dict(conninfo)["password"])
        url = as_url(conninfo)
        assert password in url
        result = install(load_settings(database_url=url, env={}), dry_run=True)
    assert result.oban.action == "would_create"
    assert password not in result.model_dump_json()
    assert ":***@" in result.database


def test_schema_from_a_newer_powertools_is_refused_clearly(
    installed: Settings, database_url: str
) -> None:
    with psycopg.connect(database_url) as c:
        c.execute(
            sql.SQL("UPDATE {} SET version_num = 'f00dfeed'").format(
                sql.Identifier(installed.prefix, VERSION_TABLE)
            )
        )
    before = snapshot(database_url, installed.prefix, include_ours=True)

    for dry_run in (False, True):
        with pytest.raises(VersionMismatch) as caught:
            install(installed, dry_run=dry_run)
        assert "f00dfeed" in caught.value.one_line()
        assert "upgrade powertools" in caught.value.one_line()
    assert snapshot(database_url, installed.prefix, include_ours=True) == before


def _drop_version_comment(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(
            sql.SQL("COMMENT ON TABLE {} IS NULL").format(sql.Identifier(schema, "oban_jobs"))
        )


def test_oban_py_table_without_version_comment_is_accepted_with_a_note(
    database_url: str, schema: str, settings: Settings
) -> None:
    """oban-py builds the v14 shape but writes no version comment: that is not a warning."""
    migrate_like_oban(database_url, schema)
    _drop_version_comment(database_url, schema)
    before = snapshot(database_url, schema)

    result = install(settings)

    assert result.oban.action == "found"
    assert result.oban.version is None
    assert result.warnings == []
    assert len(result.notes) == 1 and "v14" in result.notes[0]
    assert result.exit_status() == 0
    assert snapshot(database_url, schema) == before


def test_old_table_without_version_comment_is_still_a_warning(
    database_url: str, schema: str, settings: Settings
) -> None:
    """Before v14 there is no ``suspended`` state: without a comment that must not pass."""
    migrate_like_oban(database_url, schema, version=12)
    _drop_version_comment(database_url, schema)

    result = install(settings)

    assert result.notes == []
    assert len(result.warnings) == 1 and "no Oban version comment" in result.warnings[0]
    assert result.exit_status() == 1
