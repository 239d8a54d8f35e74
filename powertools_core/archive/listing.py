"""Reading the archive: ``archive list`` (jobs or runs) and ``archive show`` (a job or a run)."""

from __future__ import annotations

import uuid
from typing import Any, Final

import psycopg

from powertools_core.archive import sql
from powertools_core.archive.preview import deny_list
from powertools_core.archive.restore import ArchiveFilter, check_states
from powertools_core.archive.results import (
    ArchivedJob,
    ArchiveListResult,
    ArchiveRunsResult,
    ArchiveShowResult,
    RunRecord,
)
from powertools_core.archive.run import with_connection
from powertools_core.config import Settings
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput, NotFound
from powertools_core.redaction import DenyList, redact, redact_value

DEFAULT_LIST_LIMIT: Final = 50
COUNT_CAP: Final = 10_000
_JOB_FIELDS: Final = tuple(ArchivedJob.model_fields)
_RUN_FIELDS: Final = tuple(RunRecord.model_fields)
RUN_KINDS: Final = ("archive", "audit_archive", "restore", "prune", "audit_prune")


def _job(row: tuple[Any, ...], deny: DenyList) -> ArchivedJob:
    """An archived row as operators see it: args and meta redacted like ``ops show``."""
    from powertools_core import workers

    values = dict(zip(_JOB_FIELDS, row, strict=True))
    worker_cls = workers.registered().get(values["worker"])  # never imported from the row
    args = values["args"]
    values["args"] = redact(args, worker_cls, deny) if isinstance(args, dict) else args
    values["meta"] = redact_value(values["meta"], deny)
    return ArchivedJob.model_validate(values)


def _deny(settings: Settings) -> DenyList:
    return deny_list(settings)


def _run(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord.model_validate(dict(zip(_RUN_FIELDS, row, strict=True)))


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= 10_000:
        raise InvalidInput(f"invalid --limit {limit}", hint="use a number from 1 to 10,000")
    return limit


def list_archived(
    settings: Settings, selection: ArchiveFilter, *, limit: int = DEFAULT_LIST_LIMIT
) -> ArchiveListResult:
    """Archived jobs matching ``selection``, highest id (newest job) first; ``total`` counts at
    most ``COUNT_CAP`` of them (``total_capped`` says there are more)."""
    check_states(selection.states)
    _check_limit(limit)
    deny = _deny(settings)

    async def work(conn: psycopg.AsyncConnection[Any]) -> ArchiveListResult:
        params = {**selection.params(), "limit": limit, "count_cap": COUNT_CAP + 1}
        async with conn.transaction():
            await conn.execute("SET TRANSACTION READ ONLY")
            cur = await conn.execute(
                sql.job_sql(sql.COUNT_ARCHIVED, settings.prefix, where=selection.where()), params
            )
            row = await cur.fetchone()
            cur = await conn.execute(
                sql.job_sql(sql.LIST_ARCHIVED, settings.prefix, where=selection.where()), params
            )
            jobs = [_job(r, deny) for r in await cur.fetchall()]
        total = int(row[0]) if row else 0
        return ArchiveListResult(
            filter=selection.as_json(),
            total=min(total, COUNT_CAP),
            total_capped=total > COUNT_CAP,
            limit=limit,
            jobs=jobs,
        )

    return with_connection(settings, work)


def list_runs(
    settings: Settings, *, kind: str | None = None, limit: int = DEFAULT_LIST_LIMIT
) -> ArchiveRunsResult:
    """Archive, restore and prune runs, newest first."""
    _check_limit(limit)
    if kind is not None and kind not in RUN_KINDS:
        raise InvalidInput(f"unknown run kind {kind!r}", hint=f"use {', '.join(RUN_KINDS)}")

    async def work(conn: psycopg.AsyncConnection[Any]) -> ArchiveRunsResult:
        async with conn.transaction():
            cur = await conn.execute(
                qualify(sql.SELECT_RUNS, settings.prefix),
                {"cls": sql.RUN_LOCK_CLASS, "kind": kind, "limit": limit},
            )
            return ArchiveRunsResult(runs=[_run(r) for r in await cur.fetchall()])

    return with_connection(settings, work)


def parse_target(text: str) -> int | uuid.UUID:
    """``archive show`` takes a job id (a number) or a run id (a UUID)."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is neither a job id nor a run id",
            hint="e.g. powertools archive show 42, or a run id from `powertools archive runs`",
        ) from None


def show(settings: Settings, target: str) -> ArchiveShowResult:
    """One archived job (every column) or one run (filter, counts, status)."""
    what = parse_target(target)
    deny = _deny(settings)

    async def work(conn: psycopg.AsyncConnection[Any]) -> ArchiveShowResult:
        async with conn.transaction():
            if isinstance(what, int):
                cur = await conn.execute(
                    qualify(sql.SELECT_ARCHIVED, settings.prefix), {"id": what}
                )
                row = await cur.fetchone()
                if row is None:
                    raise NotFound(
                        f"job {what} is not in the archive",
                        hint="powertools archive list shows what is archived",
                    )
                job = _job(row, deny)
                run = None
                if job.archive_run_id is not None:
                    cur = await conn.execute(
                        qualify(sql.SELECT_RUN, settings.prefix),
                        {"cls": sql.RUN_LOCK_CLASS, "id": job.archive_run_id},
                    )
                    found = await cur.fetchone()
                    run = _run(found) if found else None
                return ArchiveShowResult(job=job, run=run)
            cur = await conn.execute(
                qualify(sql.SELECT_RUN, settings.prefix), {"cls": sql.RUN_LOCK_CLASS, "id": what}
            )
            found = await cur.fetchone()
            if found is None:
                raise NotFound(f"no archive run {what}", hint="powertools archive runs lists them")
            return ArchiveShowResult(run=_run(found))

    return with_connection(settings, work)
