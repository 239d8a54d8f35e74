"""Running the checks: one read-only transaction, a savepoint per check, a report at the end.

The transaction is ``REPEATABLE READ, READ ONLY`` with ``statement_timeout`` and
``lock_timeout`` set locally: doctor reads catalogs, statistics and bounded index probes, so it
holds nothing stronger than ``AccessShareLock`` (which never blocks inserts or updates) and only
for the second or so it runs. It needs ``USAGE`` on the schema and ``SELECT`` on its tables;
``pg_read_all_stats`` (or ``pg_monitor``) lets it see other roles' transactions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy.exc import DBAPIError

from powertools_core.config import Settings
from powertools_core.db.connection import resolve_url, sqlalchemy_engine, translated
from powertools_core.db.identifiers import quote_ident, validate_prefix
from powertools_core.db.urls import mask_url
from powertools_core.doctor import sql
from powertools_core.doctor.checks import CHECK_IDS, CHECKS, OUR_TABLES, STRICT_PROMOTED, CheckSpec
from powertools_core.doctor.context import CannotRun, CheckContext, Inventory, Problem
from powertools_core.doctor.report import (
    CheckResult,
    DatabaseInfo,
    DoctorResult,
    Finding,
    Status,
    exit_code_for,
    summarise,
)
from powertools_core.doctor.thresholds import (
    Thresholds,
    exact_duration,
    resolve_retention,
    resolve_thresholds,
)
from powertools_core.errors import InvalidInput
from powertools_core.schema import oban


def select_checks(ids: Sequence[str] | None) -> list[CheckSpec]:
    """The checks to run, in their fixed order; an unknown id is a usage error (exit 2)."""
    if not ids:
        return list(CHECKS)
    wanted = {i.strip() for chunk in ids for i in chunk.split(",") if i.strip()}
    unknown = sorted(wanted - set(CHECK_IDS))
    if unknown:
        raise InvalidInput(
            f"unknown check {unknown[0]!r}", hint=f"known checks: {', '.join(CHECK_IDS)}"
        )
    return [c for c in CHECKS if c.id in wanted]


def _ms(value: Any) -> str:
    return str(max(1, round(value.total_seconds() * 1000)))


def _inventory(conn: Any, prefix: str) -> Inventory:
    exists = bool(conn.exec_driver_sql(sql.SCHEMA_EXISTS, {"schema": prefix}).scalar())
    if not exists:
        return Inventory(False, frozenset(), False, None, None, ())
    tables = frozenset(
        r[0]
        for r in conn.exec_driver_sql(
            sql.TABLES_PRESENT, {"schema": prefix, "names": list(OUR_TABLES)}
        )
    )
    row = conn.exec_driver_sql(oban.SELECT_OBAN_VERSION, {"schema": prefix}).first()
    present = bool(row and row[0])
    comment = row[1] if row and present else None
    states = tuple(r[0] for r in conn.exec_driver_sql(sql.JOB_STATE_LABELS, {"schema": prefix}))
    return Inventory(True, tables, present, comment, oban.parse_version(comment), states)


@contextmanager
def doctor_session(
    url: str,
    prefix: str,
    thresholds: Thresholds,
    *,
    retention: Mapping[str, Any] | None = None,
    app: Sequence[str] = (),
) -> Iterator[tuple[CheckContext, str]]:
    """Open the read-only transaction and yield the context checks run in (and the server
    version string); the transaction is rolled back at the end, never committed."""
    engine = sqlalchemy_engine(url)
    try:
        with translated(url), engine.connect() as conn:
            trans = conn.begin()
            try:
                conn.exec_driver_sql(sql.BEGIN_READ_ONLY)
                conn.exec_driver_sql(
                    sql.SESSION_LIMITS,
                    {
                        "statement_timeout": _ms(thresholds.statement_timeout),
                        "lock_timeout": _ms(thresholds.lock_timeout),
                    },
                )
                version, version_num, database, role, now = conn.exec_driver_sql(
                    sql.SERVER_INFO
                ).one()
                ctx = CheckContext(
                    conn=conn,
                    prefix=prefix,
                    thresholds=thresholds,
                    retention=dict(retention or resolve_retention(None)),
                    inventory=_inventory(conn, prefix),
                    server_version_num=version_num,
                    database=database,
                    role=role,
                    now=now,
                    app=tuple(app),
                )
                yield ctx, str(version).split(" ")[0]
            finally:
                trans.rollback()
    finally:
        engine.dispose()


def _driver_error(exc: BaseException) -> psycopg.Error | None:
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, psycopg.Error):
        return exc.orig
    return exc if isinstance(exc, psycopg.Error) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _failure(ctx: CheckContext, exc: BaseException) -> Problem:
    """What a check that blew up reports: an error naming the cause and what to do."""
    where = f"schema:{ctx.prefix}"
    err = _driver_error(exc)
    if isinstance(err, pg_errors.InsufficientPrivilege):
        role = quote_ident(ctx.role)
        schema = quote_ident(ctx.prefix)
        return Problem(
            "error",
            f"cannot run {ctx.check_id}: permission denied for role {ctx.role}: {_first_line(err)}",
            f"GRANT USAGE ON SCHEMA {schema} TO {role}; "
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};",
            where,
        )
    if isinstance(err, pg_errors.QueryCanceled):
        limit = exact_duration(ctx.thresholds.statement_timeout)
        return Problem(
            "error",
            f"cannot run {ctx.check_id}: it exceeded the {limit} statement timeout",
            f"powertools doctor --check {ctx.check_id} --threshold statement_timeout=30s",
            where,
        )
    if isinstance(err, pg_errors.LockNotAvailable):
        return Problem(
            "error",
            f"cannot run {ctx.check_id}: a lock it needs is held by another session "
            f"(waited {exact_duration(ctx.thresholds.lock_timeout)}; DDL in progress?)",
            "SELECT pid, mode, relation::regclass FROM pg_locks WHERE NOT granted;",
            where,
        )
    if isinstance(err, pg_errors.UndefinedTable | pg_errors.UndefinedColumn):
        return Problem(
            "error",
            f"cannot run {ctx.check_id}: {_first_line(err)} in schema {ctx.prefix}",
            f"powertools install --prefix {ctx.prefix}   # Oban objects: run Oban's migrations",
            where,
        )
    if err is not None:
        return Problem(
            "error",
            f"cannot run {ctx.check_id}: database error: {_first_line(err)}",
            f"powertools doctor --check {ctx.check_id} -v",
            where,
        )
    return Problem(
        "error",
        f"cannot run {ctx.check_id}: internal error {type(exc).__name__}: {_first_line(exc)}",
        "this is a bug in powertools: report it with the output of "
        f"`powertools doctor --check {ctx.check_id} -v`",
        where,
    )


def run_checks(
    ctx: CheckContext, specs: Sequence[CheckSpec], *, strict: bool = False
) -> tuple[list[CheckResult], list[Finding]]:
    """Run each check in its own savepoint, so one that fails cannot spoil the others."""
    results: list[CheckResult] = []
    findings: list[Finding] = []
    for spec in specs:
        ctx.check_id = spec.id
        started = time.perf_counter()
        try:
            with ctx.conn.begin_nested():
                problems = spec.run(ctx)
        except CannotRun as stop:
            problems = [*stop.partial, stop.problem]
        except Exception as exc:
            problems = [_failure(ctx, exc)]
        elapsed = (time.perf_counter() - started) * 1000
        mine = [
            Finding(
                check=spec.id,
                severity="error" if strict and spec.id in STRICT_PROMOTED else p.severity,
                message=p.message,
                remediation=p.remediation,
                object=p.object,
            )
            for p in problems
        ]
        status: Status = "ok"
        if mine:
            status = "error" if any(f.severity == "error" for f in mine) else "warning"
        results.append(CheckResult(id=spec.id, status=status, duration_ms=round(elapsed, 2)))
        findings.extend(mine)
    return results, findings


def doctor(
    settings: Settings,
    *,
    checks: Sequence[str] | None = None,
    strict: bool = False,
    thresholds: Mapping[str, str] | None = None,
) -> DoctorResult:
    """``powertools doctor``: run the checks read-only and report (never raises for findings;
    raises ``PowertoolsError`` only when it cannot connect or the arguments are wrong)."""
    prefix = validate_prefix(settings.prefix)
    specs = select_checks(checks)
    limits = resolve_thresholds(settings.doctor, thresholds)
    retention = resolve_retention(settings.archive)
    url = resolve_url(settings)
    with doctor_session(url, prefix, limits, retention=retention, app=settings.app) as (
        ctx,
        version,
    ):
        results, findings = run_checks(ctx, specs, strict=strict)
        oban_version = ctx.inventory.oban_version
    return DoctorResult(
        prefix=prefix,
        strict=strict,
        database=DatabaseInfo(server_version=version, url=mask_url(url)),
        oban_version_db=oban_version,
        exit_code=exit_code_for(findings),
        summary=summarise(findings),
        checks=results,
        findings=findings,
        thresholds=limits.as_strings(),
    )
