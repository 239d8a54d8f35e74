"""Reading what a run would take: the plan groups and a sample, put together as an
``ArchivePreview`` with its plan hash and token (the decisions are in ``plan.py``).

Each preview reads in one ``REPEATABLE READ, READ ONLY`` transaction, so its counts, the ids it
would leave alone and its sample come from one snapshot and the hash describes one state of the
tables. Sample rows are shown like ``archive list`` shows them: args redacted through the
worker's declarations (registered workers only, never imported from a row) and the deny-list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import psycopg

from powertools_core.archive import plan
from powertools_core.archive.results import ArchivePreview, Group, RunKind, SampleRow
from powertools_core.config import Settings
from powertools_core.redaction import DenyList, redact

BEGIN_PREVIEW: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# Kinds whose rows are audit events, grouped by action (jobs: by state, queue and worker).
AUDIT_KINDS: Final = frozenset({"audit_archive", "audit_prune"})
COMMANDS: Final[dict[str, str]] = {
    "archive": "archive run",
    "audit_archive": "archive run",
    "restore": "archive restore",
    "prune": "archive prune",
    "audit_prune": "archive prune",
}


def deny_list(settings: Settings) -> DenyList:
    """The redaction a preview or a listing applies (loads ``settings.app`` so workers'
    declared secret fields are known)."""
    from powertools_core import workers

    if settings.app:
        workers.load_app(settings.app)
    return DenyList(settings.redact_keys)


def job_groups(rows: Sequence[tuple[Any, ...]], state: str | None = None) -> list[plan.PlanGroup]:
    """Rows of COUNT_ARCHIVABLE (``state`` given: queue, worker, ...) or COUNT_RESTORABLE /
    COUNT_PRUNABLE (state, queue, worker, count, oldest, sum, min, max)."""
    out = []
    for row in rows:
        if state is not None:
            queue, worker, count, oldest, id_sum, id_min, id_max = row
            key: tuple[str, ...] = (state, queue, worker)
        else:
            st, queue, worker, count, oldest, id_sum, id_min, id_max = row
            key = (st, queue, worker)
        out.append(plan.PlanGroup(key, int(count), str(id_sum), id_min, id_max, oldest))
    return out


def audit_groups(rows: Sequence[tuple[Any, ...]]) -> list[plan.PlanGroup]:
    """Rows of COUNT_AUDIT_ARCHIVABLE / COUNT_AUDIT_PRUNABLE (action, count, oldest, sum, ...)."""
    return [
        plan.PlanGroup((action,), int(count), str(id_sum), id_min, id_max, oldest)
        for action, count, oldest, id_sum, id_min, id_max in rows
    ]


def job_samples(rows: Sequence[tuple[Any, ...]], deny: DenyList) -> list[SampleRow]:
    """(id, state, queue, worker, args, attempt, max_attempts, tags, finished_at, archived_at)."""
    from powertools_core import workers

    registry = workers.registered()
    out = []
    for job_id, state, queue, worker, args, attempt, most, tags, finished, archived in rows:
        shown = redact(args, registry.get(worker), deny) if isinstance(args, dict) else args
        out.append(
            SampleRow(
                id=job_id,
                state=state,
                queue=queue,
                worker=worker,
                args=shown,
                attempt=attempt,
                max_attempts=most,
                tags=tags,
                finished_at=finished,
                archived_at=archived,
            )
        )
    return out


def event_samples(rows: Sequence[tuple[Any, ...]]) -> list[SampleRow]:
    """(id, at, actor, action, target_type, target_id, archived_at)."""
    return [
        SampleRow(
            id=event_id,
            at=at,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            archived_at=archived,
        )
        for event_id, at, actor, action, target_type, target_id, archived in rows
    ]


async def fetch(
    conn: psycopg.AsyncConnection[Any], statement: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(statement, params)
    return list(await cur.fetchall())


def build(
    kind: RunKind,
    *,
    filter: Mapping[str, Any],
    selection: Mapping[str, Any],
    groups: Sequence[plan.PlanGroup],
    sample: Sequence[SampleRow],
    as_of: datetime | None,
    conflicts: Sequence[int] = (),
    conflict_count: int = 0,
    not_found: Sequence[int] = (),
) -> ArchivePreview:
    """The preview of ``groups``; ``selection`` is what the plan hash pins of the filter (the
    cutoffs and filters, not the batch size)."""
    audit = kind in AUDIT_KINDS
    summary = plan.summarise(groups, audit=audit)
    hashed = plan.plan_hash(
        kind,
        selection,
        groups,
        left_alone=conflicts,
        left_alone_count=conflict_count,
        not_found=not_found,
    )
    shown = [
        Group(action=key[0], count=count, oldest=oldest)
        if audit
        else Group(state=key[0], queue=key[1], count=count, oldest=oldest)
        for key, count, oldest in summary.pairs
    ]
    return ArchivePreview(
        command=COMMANDS[kind],
        kind=kind,
        filter=dict(filter),
        total=summary.total,
        groups=shown,
        conflicts=list(conflicts),
        conflict_count=conflict_count,
        not_found=list(not_found),
        as_of=as_of,
        by_state=summary.by_state,
        by_queue=summary.by_queue,
        by_worker=summary.by_worker,
        sample=list(sample),
        plan_hash=hashed,
        preview_token=plan.make_token(hashed, as_of),
    )
