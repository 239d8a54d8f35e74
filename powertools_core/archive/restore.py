"""``archive restore``: put archived jobs back into ``oban_jobs`` with their ids and every column.

A job whose id is in ``oban_jobs`` again is never overwritten: it stays in the archive and is
reported in ``conflicts`` (exit 1). Ids that are not in the archive are reported in ``not_found``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from powertools_core.archive import plan, preview, sql
from powertools_core.archive.policy import (
    DEFAULT_BATCH_SIZE,
    check_actor_reason,
    check_batch_size,
)
from powertools_core.archive.results import ArchivePreview, ArchiveRunResult, SampleRow
from powertools_core.archive.run import (
    CONFLICT_LIST_LIMIT,
    ProgressFactory,
    Step,
    StopRequest,
    check_plan,
    execute_run,
    never_stop,
    no_progress,
    with_connection,
)
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput
from powertools_core.redaction import DenyList
from powertools_core.schema.oban import TERMINAL_STATES


@dataclass(frozen=True)
class ArchiveFilter:
    """Which archived jobs: explicit ids, one run's jobs, and/or state/queue/worker filters."""

    ids: tuple[int, ...] = ()
    run_id: uuid.UUID | None = None
    states: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.ids or self.run_id or self.states or self.queues or self.workers)

    def params(self) -> dict[str, Any]:
        return {
            "ids": sorted(set(self.ids)) or None,
            "run_id": self.run_id,
            "states": list(self.states) or None,
            "queues": list(self.queues) or None,
            "workers": list(self.workers) or None,
        }

    def where(self) -> str:
        """The SQL condition (constant fragments only; values are the ``params``)."""
        return sql.filter_sql(name for name, value in self.params().items() if value)

    def as_json(self) -> dict[str, Any]:
        return {
            "ids": sorted(set(self.ids)) or None,
            "run_id": str(self.run_id) if self.run_id else None,
            "states": list(self.states) or None,
            "queues": list(self.queues) or None,
            "workers": list(self.workers) or None,
        }


def check_states(states: Sequence[str]) -> tuple[str, ...]:
    for state in states:
        if state not in TERMINAL_STATES:
            raise InvalidInput(
                f"archived jobs are never in state {state!r}",
                hint=f"use {', '.join(TERMINAL_STATES)}",
            )
    return tuple(states)


async def _conflicts_and_missing(
    conn: psycopg.AsyncConnection[Any], prefix: str, selection: ArchiveFilter
) -> tuple[list[int], list[int]]:
    params = {**selection.params(), "limit": CONFLICT_LIST_LIMIT}
    cur = await conn.execute(
        sql.job_sql(sql.SELECT_RESTORE_CONFLICTS, prefix, where=selection.where()), params
    )
    conflicts = [r[0] for r in await cur.fetchall()]
    missing: list[int] = []
    if selection.ids:
        wanted = sorted(set(selection.ids))
        cur = await conn.execute(sql.job_sql(sql.SELECT_ARCHIVED_PRESENT, prefix), {"ids": wanted})
        present = {r[0] for r in await cur.fetchall()}
        missing = [i for i in wanted if i not in present]
    return conflicts, missing


async def preview_restore(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    selection: ArchiveFilter,
    *,
    deny: DenyList | None = None,
    sample_size: int = plan.SAMPLE_SIZE,
) -> ArchivePreview:
    """What ``archive restore`` would put back (no clock: the token is the plan hash alone)."""
    sample: list[SampleRow] = []
    where = selection.where()
    async with conn.transaction():
        await conn.execute(preview.BEGIN_PREVIEW)
        found = await preview.fetch(
            conn, sql.job_sql(sql.COUNT_RESTORABLE, prefix, where=where), selection.params()
        )
        groups = preview.job_groups(found)
        conflicts, missing = await _conflicts_and_missing(conn, prefix, selection)
        if sample_size and groups:
            found = await preview.fetch(
                conn,
                sql.job_sql(sql.SAMPLE_RESTORABLE, prefix, where=where),
                {**selection.params(), "sample": sample_size},
            )
            sample = preview.job_samples(found, deny or DenyList())
    return preview.build(
        "restore",
        filter=selection.as_json(),
        selection=selection.as_json(),
        groups=groups,
        sample=sample,
        as_of=None,
        conflicts=conflicts,
        conflict_count=len(conflicts),
        not_found=missing,
    )


async def restore_jobs(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    selection: ArchiveFilter,
    *,
    actor: str,
    reason: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressFactory = no_progress,
    should_stop: Callable[[], bool] = never_stop,
    preview_token: plan.PreviewToken | None = None,
) -> ArchiveRunResult:
    """Move the selected archived jobs back, chunk by chunk, as a recorded ``restore`` run;
    with ``preview_token`` only if the plan is still the previewed one (checked once, before
    the first chunk; ``PreviewDrifted`` and nothing recorded otherwise)."""
    if selection.empty:
        raise InvalidInput(
            "say what to restore", hint="give job ids, --run RUN_ID, or --state/--queue/--worker"
        )
    check_batch_size(batch_size)
    shown = await preview_restore(conn, prefix, selection, sample_size=0)
    check_plan(shown, preview_token)
    step = Step(
        select_sql=sql.job_sql(sql.SELECT_RESTORABLE_IDS, prefix, where=selection.where()),
        move_sql=sql.job_sql(sql.RESTORE_JOBS, prefix),
        params=selection.params(),
        keyset=True,
    )
    return await execute_run(
        conn,
        prefix,
        kind="restore",
        actor=actor,
        reason=reason,
        filter={**selection.as_json(), "batch_size": batch_size},
        steps=[step],
        batch_size=batch_size,
        total=shown.total,
        progress=progress,
        conflicts=shown.conflicts,
        conflict_count=shown.conflict_count,
        not_found=shown.not_found,
        should_stop=should_stop,
        preview_token=preview_token.text if preview_token else None,
    )


def run_restore(
    settings: Settings,
    selection: ArchiveFilter,
    *,
    actor: str | None = None,
    reason: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    preview_token: str | None = None,
    progress: ProgressFactory = no_progress,
) -> ArchivePreview | ArchiveRunResult:
    """``powertools archive restore``; ``preview_token`` (from a dry run) pins the plan: the
    command refuses (``PreviewDrifted``, nothing written) when the rows it would restore, or
    the ids it would refuse, are no longer the previewed ones."""
    if selection.empty:
        raise InvalidInput(
            "say what to restore", hint="give job ids, --run RUN_ID, or --state/--queue/--worker"
        )
    check_states(selection.states)
    check_batch_size(batch_size)
    who, why = ("", "") if dry_run else check_actor_reason(actor, reason)
    token = plan.parse_token(preview_token, "restore") if preview_token is not None else None
    deny = preview.deny_list(settings)
    stop = StopRequest()

    async def work(conn: psycopg.AsyncConnection[Any]) -> ArchivePreview | ArchiveRunResult:
        if dry_run:
            shown = await preview_restore(conn, settings.prefix, selection, deny=deny)
            check_plan(shown, token)
            return shown
        return await restore_jobs(
            conn,
            settings.prefix,
            selection,
            actor=who,
            reason=why,
            batch_size=batch_size,
            progress=progress,
            should_stop=stop,
            preview_token=token,
        )

    return with_connection(settings, work, stop=None if dry_run else stop)
