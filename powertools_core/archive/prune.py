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

from powertools_core.archive import plan, preview, sql
from powertools_core.archive.policy import (
    DEFAULT_BATCH_SIZE,
    check_actor_reason,
    check_batch_size,
    utc_naive,
)
from powertools_core.archive.results import ArchivePreview, ArchiveRunResult, SampleRow
from powertools_core.archive.run import (
    ProgressFactory,
    Step,
    StopRequest,
    check_plan,
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
from powertools_core.redaction import DenyList


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
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    request: PruneRequest,
    now: datetime,
    *,
    deny: DenyList | None = None,
    sample_size: int = plan.SAMPLE_SIZE,
) -> ArchivePreview:
    """What ``archive prune`` would delete, archived before ``now`` (pinned to whole seconds,
    carried by the token) minus ``--older-than``."""
    as_of = plan.pin(now)
    cutoff = as_of - request.older_than
    sample: list[SampleRow] = []
    params = {"cutoff": cutoff, "sample": sample_size}
    async with conn.transaction():
        await conn.execute(preview.BEGIN_PREVIEW)
        if request.audit:
            found = await preview.fetch(conn, qualify(sql.COUNT_AUDIT_PRUNABLE, prefix), params)
            groups = preview.audit_groups(found)
            if sample_size and groups:
                found = await preview.fetch(
                    conn, qualify(sql.SAMPLE_AUDIT_PRUNABLE, prefix), params
                )
                sample = preview.event_samples(found)
        else:
            found = await preview.fetch(conn, qualify(sql.COUNT_PRUNABLE, prefix), params)
            groups = preview.job_groups(found)
            if sample_size and groups:
                found = await preview.fetch(conn, qualify(sql.SAMPLE_PRUNABLE, prefix), params)
                sample = preview.job_samples(found, deny or DenyList())
    filter = _filter(request, cutoff)
    return preview.build(
        "audit_prune" if request.audit else "prune",
        filter=filter,
        selection={k: v for k, v in filter.items() if k != "batch_size"},
        groups=groups,
        sample=sample,
        as_of=as_of,
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
    preview_token: plan.PreviewToken | None = None,
) -> ArchiveRunResult:
    """Delete what ``preview_prune`` shows for ``now`` (pinned to whole seconds); with
    ``preview_token`` (pass its ``as_of`` as ``now``) only if the plan still matches, checked
    once before the first chunk (``PreviewDrifted`` and nothing recorded otherwise)."""
    check_batch_size(request.batch_size)
    now = plan.pin(now)
    cutoff = utc_naive(now) - request.older_than
    shown = await preview_prune(conn, prefix, request, now, sample_size=0)
    check_plan(shown, preview_token)
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
        total=shown.total,
        progress=progress,
        should_stop=should_stop,
        preview_token=preview_token.text if preview_token else None,
    )


def run_prune(
    settings: Settings,
    request: PruneRequest,
    *,
    actor: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    preview_token: str | None = None,
    progress: ProgressFactory = no_progress,
) -> ArchivePreview | ArchiveRunResult:
    """``powertools archive prune``; ``preview_token`` (from a dry run) pins the plan: the
    cutoff is computed from the instant of that preview, and the command refuses
    (``PreviewDrifted``, nothing deleted) when the rows it selects are not the previewed ones."""
    check_batch_size(request.batch_size)
    who, why = ("", "") if dry_run else check_actor_reason(actor, reason)
    kind = "audit_prune" if request.audit else "prune"
    token = plan.parse_token(preview_token, kind) if preview_token is not None else None
    deny = preview.deny_list(settings)
    stop = StopRequest()

    async def work(conn: psycopg.AsyncConnection[Any]) -> ArchivePreview | ArchiveRunResult:
        now = token.as_of if token is not None and token.as_of else await db_now(conn)
        if dry_run:
            shown = await preview_prune(conn, settings.prefix, request, now, deny=deny)
            check_plan(shown, token)
            return shown
        return await prune_archive(
            conn,
            settings.prefix,
            request,
            actor=who,
            reason=why,
            now=now,
            progress=progress,
            should_stop=stop,
            preview_token=token,
        )

    return with_connection(settings, work, stop=None if dry_run else stop)
