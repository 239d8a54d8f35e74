"""``archive prune``: the only permanent delete, and only from the archive tables.

Rows archived longer ago than ``--older-than`` are deleted in chunks as a recorded ``prune`` (or
``audit_prune``) run with audit events, like every other archive run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from powertools_core.archive import sql
from powertools_core.archive.policy import (
    DEFAULT_BATCH_SIZE,
    check_actor_reason,
    check_batch_size,
    utc_naive,
)
from powertools_core.archive.results import ArchivePreview, ArchiveRunResult, Group
from powertools_core.archive.run import (
    ProgressFactory,
    Step,
    StopRequest,
    db_now,
    execute_run,
    iso,
    never_stop,
    no_progress,
    with_connection,
)
from powertools_core.config import Settings
from powertools_core.db.identifiers import qualify
from powertools_core.durations import format_duration


@dataclass(frozen=True)
class PruneRequest:
    older_than: timedelta
    audit: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE


def _filter(request: PruneRequest, cutoff: datetime) -> dict[str, Any]:
    return {
        "table": "powertools_audit_archive" if request.audit else "powertools_job_archive",
        "older_than": format_duration(request.older_than),
        "archived_before": iso(cutoff),
        "batch_size": request.batch_size,
    }


async def preview_prune(
    conn: psycopg.AsyncConnection[Any], prefix: str, request: PruneRequest, now: datetime
) -> ArchivePreview:
    cutoff = utc_naive(now) - request.older_than
    async with conn.transaction():
        await conn.execute("SET TRANSACTION READ ONLY")
        if request.audit:
            cur = await conn.execute(qualify(sql.COUNT_AUDIT_PRUNABLE, prefix), {"cutoff": cutoff})
            groups = [Group(action=a, count=c, oldest=o) for a, c, o in await cur.fetchall()]
        else:
            cur = await conn.execute(qualify(sql.COUNT_PRUNABLE, prefix), {"cutoff": cutoff})
            groups = [
                Group(state=s, queue=q, count=c, oldest=o) for s, q, c, o in await cur.fetchall()
            ]
    return ArchivePreview(
        command="archive prune",
        kind="audit_prune" if request.audit else "prune",
        filter=_filter(request, cutoff),
        total=sum(g.count for g in groups),
        groups=groups,
    )


async def prune_archive(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    request: PruneRequest,
    *,
    actor: str,
    reason: str,
    now: datetime,
    progress: ProgressFactory = no_progress,
    should_stop: Callable[[], bool] = never_stop,
) -> ArchiveRunResult:
    check_batch_size(request.batch_size)
    cutoff = utc_naive(now) - request.older_than
    preview = await preview_prune(conn, prefix, request, now)
    select, move = (
        (sql.SELECT_AUDIT_PRUNABLE_IDS, sql.PRUNE_AUDIT)
        if request.audit
        else (sql.SELECT_PRUNABLE_IDS, sql.PRUNE_JOBS)
    )
    return await execute_run(
        conn,
        prefix,
        kind="audit_prune" if request.audit else "prune",
        actor=actor,
        reason=reason,
        filter=_filter(request, cutoff),
        steps=[
            Step(
                select_sql=qualify(select, prefix),
                move_sql=qualify(move, prefix),
                params={"cutoff": cutoff},
            )
        ],
        batch_size=request.batch_size,
        total=preview.total,
        progress=progress,
        should_stop=should_stop,
    )


def run_prune(
    settings: Settings,
    request: PruneRequest,
    *,
    actor: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    progress: ProgressFactory = no_progress,
) -> ArchivePreview | ArchiveRunResult:
    """``powertools archive prune``."""
    check_batch_size(request.batch_size)
    who, why = ("", "") if dry_run else check_actor_reason(actor, reason)
    stop = StopRequest()

    async def work(conn: psycopg.AsyncConnection[Any]) -> ArchivePreview | ArchiveRunResult:
        now = await db_now(conn)
        if dry_run:
            return await preview_prune(conn, settings.prefix, request, now)
        return await prune_archive(
            conn,
            settings.prefix,
            request,
            actor=who,
            reason=why,
            now=now,
            progress=progress,
            should_stop=stop,
        )

    return with_connection(settings, work, stop=None if dry_run else stop)
