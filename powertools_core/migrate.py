"""``install``: create Oban's core schema when absent, then apply powertools' own migrations.

Everything runs in one transaction under an advisory lock keyed by the schema, so concurrent
installs serialise and an interrupted install leaves nothing half-written. Alembic runs from code
with its scripts inside the package, so a plain ``pip install`` works from any directory.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from powertools_core.config import Settings
from powertools_core.db.connection import resolve_url, sqlalchemy_engine, translated
from powertools_core.db.identifiers import qualify, validate_prefix
from powertools_core.db.urls import mask_url
from powertools_core.errors import VersionMismatch
from powertools_core.results import CommandResult
from powertools_core.schema import oban
from powertools_core.schema.powertools import VERSION_TABLE
from powertools_core.version import __version__

SCRIPT_LOCATION = "powertools_core:migrations"
LOCK_SQL = "SELECT pg_advisory_xact_lock(%s)"
DRY_RUN_BEGIN = "BEGIN;"
DRY_RUN_LOCK = "SELECT pg_advisory_xact_lock({key});"
DRY_RUN_COMMIT = "COMMIT;"


class ObanCore(BaseModel):
    """What install found or did about Oban's own objects."""

    action: Literal["created", "found", "would_create"] = Field(
        description="created here, found already there (left unchanged), or would_create (dry run)"
    )
    version: int | None = Field(description="Oban migration version from the table comment")
    expected_version: int = Field(
        default=oban.OBAN_VERSION, description="the Oban version powertools is built for"
    )
    missing_tables: list[str] = Field(
        default=[], description="Oban side tables absent beside an existing oban_jobs"
    )


class InstallResult(CommandResult):
    command: Literal["install"] = "install"
    database: str = Field(description="the database URL, password masked")
    prefix: str = Field(description="the schema installed into")
    dry_run: bool
    oban: ObanCore
    revision_before: str | None = Field(description="powertools migration revision before")
    revision_after: str | None = Field(description="powertools migration revision after")
    applied: list[str] = Field(description="revisions applied (or that would be, in a dry run)")
    up_to_date: bool = Field(description="true when nothing needed doing")
    warnings: list[str] = Field(default=[], description="each one makes the exit status 1")
    notes: list[str] = Field(default=[], description="informational; do not change the exit status")
    sql: str | None = Field(default=None, description="the SQL script (dry run only)")

    def exit_status(self) -> int:
        return 1 if self.warnings else 0


class MigrationStatus(BaseModel):
    current: str | None
    head: str
    pending: list[str]
    unknown: bool


def lock_key(prefix: str) -> int:
    """A stable signed 64-bit advisory lock key per schema."""
    digest = hashlib.sha256(f"powertools:install:{prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _config(prefix: str, *, connection: Connection | None = None, buffer: Any = None) -> Config:
    cfg = Config(output_buffer=buffer) if buffer is not None else Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["schema"] = prefix
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config("public")).get_current_head()
    assert head is not None
    return head


def _revisions_between(current: str | None, prefix: str | None = None) -> list[str]:
    script = ScriptDirectory.from_config(_config("public"))
    if prefix is not None and current is not None and not _known(script, current):
        raise VersionMismatch(
            f"schema {prefix} is at powertools migration {current}, which this powertools "
            f"({__version__}) does not know: a newer powertools installed it",
            hint="upgrade powertools (pip install -U oban-powertools) and run install again",
        )
    revs = [r.revision for r in script.iterate_revisions("head", current or "base")]
    return list(reversed(revs))


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:
        return False


def current_revision(conn: Connection, prefix: str) -> str | None:
    ctx = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": prefix}
    )
    return ctx.get_current_revision()


def migration_status(conn: Connection, prefix: str) -> MigrationStatus:
    """Current vs head, for ``doctor``; an unknown revision means a newer powertools wrote it."""
    current = current_revision(conn, prefix)
    head = head_revision()
    script = ScriptDirectory.from_config(_config(prefix))
    known = current is None or script.get_revision(current) is not None
    try:
        pending = _revisions_between(current) if known else []
    except Exception:
        pending, known = [], False
    return MigrationStatus(current=current, head=head, pending=pending, unknown=not known)


def _has_v14_shape(conn: Connection, prefix: str) -> bool:
    """Whether an existing oban_jobs has every v14 column and the v14 ``suspended`` state.

    oban-py creates the v14 shape without Oban's version comment; this tells such a table apart
    from an old or foreign one.
    """
    row = conn.exec_driver_sql(oban.SELECT_V14_SHAPE, {"schema": prefix}).first()
    if row is None:
        return False
    columns, states = set(row[0] or ()), set(row[1] or ())
    return set(oban.OBAN_JOBS_COLUMNS) <= columns and set(oban.JOB_STATES) <= states


def _inspect(conn: Connection, prefix: str) -> tuple[bool, bool, int | None, list[str], bool]:
    """(schema exists, oban_jobs exists, Oban version, missing side tables, v14 shape)."""
    row = conn.exec_driver_sql(oban.SELECT_OBAN_VERSION, {"schema": prefix}).first()
    if row is None:
        return False, False, None, [], False
    present, comment = bool(row[0]), row[1]
    missing: list[str] = []
    shape = False
    if present:
        shape = _has_v14_shape(conn, prefix)
        names = ["oban_peers", "oban_producers"]
        found = {
            r[0]
            for r in conn.exec_driver_sql(
                oban.SELECT_TABLES_PRESENT, {"schema": prefix, "names": names}
            )
        }
        missing = [n for n in names if n not in found]
    return True, present, oban.parse_version(comment), missing, shape


def _oban_ddl(prefix: str, schema_exists: bool) -> list[str]:
    stmts = list(oban.CREATE_OBAN_CORE)
    if schema_exists:
        stmts = [s for s in stmts if not s.startswith("CREATE SCHEMA")]
    return [qualify(s, prefix) for s in stmts]


def _version_findings(version: int | None, v14_shape: bool) -> tuple[list[str], list[str]]:
    """(warnings, notes) about an existing oban_jobs' version."""
    if version is None and v14_shape:
        return [], [
            "oban_jobs has no Oban version comment (oban-py does not write one); its columns "
            "and states match Oban v14"
        ]
    return _version_warnings(version), []


def _version_warnings(version: int | None) -> list[str]:
    if version is None:
        return [
            "oban_jobs has no Oban version comment; powertools expects Oban v14 "
            "(powertools never alters Oban's objects: upgrade with Oban's own migrations)"
        ]
    if version < oban.OBAN_VERSION:
        return [
            f"oban_jobs is at Oban v{version}; powertools expects v{oban.OBAN_VERSION} "
            "(upgrade with Oban's own migrations; powertools never alters Oban's objects)"
        ]
    return []


def install(settings: Settings, *, dry_run: bool = False) -> InstallResult:
    prefix = validate_prefix(settings.prefix)
    url = resolve_url(settings)
    engine = sqlalchemy_engine(url)
    with translated(url), engine.connect() as conn:
        if dry_run:
            return _dry_run(conn, url, prefix)
        with conn.begin():
            conn.exec_driver_sql(LOCK_SQL, (lock_key(prefix),))
            schema_exists, oban_present, version, missing, shape = _inspect(conn, prefix)
            notes: list[str] = []
            if oban_present:
                action: Literal["created", "found"] = "found"
                warnings, notes = _version_findings(version, shape)
            else:
                for stmt in _oban_ddl(prefix, schema_exists):
                    conn.exec_driver_sql(stmt)
                action, version, missing, warnings = "created", oban.OBAN_VERSION, [], []
            before = current_revision(conn, prefix)
            applied = _revisions_between(before, prefix)
            if applied:
                command.upgrade(_config(prefix, connection=conn), "head")
            after = current_revision(conn, prefix)
    return InstallResult(
        database=mask_url(url),
        prefix=prefix,
        dry_run=False,
        oban=ObanCore(action=action, version=version, missing_tables=missing),
        revision_before=before,
        revision_after=after,
        applied=applied,
        up_to_date=not applied and action == "found",
        warnings=warnings,
        notes=notes,
    )


def _dry_run(conn: Connection, url: str, prefix: str) -> InstallResult:
    with conn.begin():
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        schema_exists, oban_present, version, missing, shape = _inspect(conn, prefix)
        before = current_revision(conn, prefix) if schema_exists else None
    parts: list[str] = []
    if not oban_present:
        parts += [s + ";" for s in _oban_ddl(prefix, schema_exists)]
    applied = _revisions_between(before, prefix)
    if applied:
        buf = io.StringIO()
        span = f"{before}:head" if before else "head"
        command.upgrade(_config(prefix, buffer=buf), span, sql=True)
        parts.append(buf.getvalue().strip())
    if parts:
        # One transaction under the same advisory lock as the online install, so the script
        # applies completely or not at all, and serialises with a concurrent install.
        parts = [DRY_RUN_BEGIN, DRY_RUN_LOCK.format(key=lock_key(prefix)), *parts, DRY_RUN_COMMIT]
    return InstallResult(
        database=mask_url(url),
        prefix=prefix,
        dry_run=True,
        oban=ObanCore(
            action="found" if oban_present else "would_create",
            version=version if oban_present else None,
            missing_tables=missing,
        ),
        revision_before=before,
        revision_after=before,
        applied=applied,
        up_to_date=oban_present and not applied,
        warnings=_version_findings(version, shape)[0] if oban_present else [],
        notes=_version_findings(version, shape)[1] if oban_present else [],
        sql="\n\n".join(parts),
    )
