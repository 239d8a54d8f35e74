"""The archive run engine: move rows between a live table and its archive in chunks.

One engine serves ``archive run`` (jobs), ``archive run --audit`` (audit events), ``archive
restore`` and ``archive prune``, and the leader's retention duty calls the same functions.

A run is recorded in ``powertools_archive_runs`` (``running`` -> ``completed`` | ``interrupted``
| ``failed``). Each chunk is one short transaction that selects at most ``batch_size`` ids with
``FOR UPDATE SKIP LOCKED``, moves them with one statement, updates the run's counts and writes one
audit event for the chunk (``archive.<kind>.chunk``: count, id range, per-state/queue counts); a
run-level event (``archive.<kind>``) closes the run. Per-job audit rows would be millions; the
archived rows themselves carry ``archive_run_id``, which is the per-job record.

While a run is alive its session holds an advisory lock on the run id. A run left ``running`` by
a killed process no longer has it, so the next run marks it ``interrupted``; because every commit
leaves each row in exactly one table, re-running simply moves what is left.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, Final, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from powertools_core.archive import plan, preview, sql
from powertools_core.archive.policy import (
    DEFAULT_AUDIT_RETENTION,
    DEFAULT_BATCH_SIZE,
    check_actor_reason,
    check_batch_size,
    cutoffs,
    format_retention,
    utc_naive,
)
from powertools_core.archive.preview import AUDIT_KINDS, COMMANDS
from powertools_core.archive.results import (
    ArchivePreview,
    ArchiveRunResult,
    Group,
    RunKind,
    RunRecord,
    SampleRow,
    as_utc,
)
from powertools_core.audit import INSERT_EVENTS, AuditEvent
from powertools_core.config import Settings
from powertools_core.db.connection import connect_async, resolve_url, translated
from powertools_core.db.identifiers import qualify, quote_ident
from powertools_core.durations import format_duration
from powertools_core.redaction import DenyList

T = TypeVar("T")
Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int | None], AbstractContextManager[Advance]]
"""``progress(description, total)`` yields ``advance(n)`` (the CLI draws a bar; core does not)."""

CONFLICT_LIST_LIMIT: Final = 1000
SYSTEM_ACTOR: Final = "system"

# The audit action of a run's closing event; each chunk's event is ``<action>.chunk``.
ACTIONS: Final[dict[str, str]] = {
    "archive": "archive.run",
    "audit_archive": "archive.run_audit",
    "restore": "archive.restore",
    "prune": "archive.prune",
    "audit_prune": "archive.prune_audit",
}
APPLICATION_NAME: Final = "powertools:archive"
SCAN_FROM: Final = datetime(1, 1, 1)
"""Where each state's scan starts in the first chunk (later chunks start at the latest finish
time moved so far)."""
# After a run that moved this many rows the archive table is ANALYZEd, so the next restore,
# prune or list is planned with its real size (autovacuum may not have caught up yet).
ANALYZE_AFTER_ROWS: Final = 10_000
ARCHIVE_TABLES: Final[dict[str, str]] = {
    "archive": "powertools_job_archive",
    "restore": "powertools_job_archive",
    "prune": "powertools_job_archive",
    "audit_archive": "powertools_audit_archive",
    "audit_prune": "powertools_audit_archive",
}


@contextmanager
def no_progress(description: str, total: int | None) -> Iterator[Advance]:
    yield lambda n: None


def never_stop() -> bool:
    return False


class StopRequest:
    """Ctrl-C while a run moves chunks: the first SIGINT stops after the chunk in flight has
    committed (the run is recorded ``interrupted`` and its result returned); a second one
    interrupts at once. Installed only on the main thread (never inside a worker's leader)."""

    def __init__(self) -> None:
        self.requested = False
        self._enabled = threading.current_thread() is threading.main_thread()
        self._previous: Any = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if self._enabled:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            signal.signal(signal.SIGINT, self._previous)


# -- audit (async twin of powertools_core.audit.record, same statement) -------------------------
async def record_events(
    conn: psycopg.AsyncConnection[Any], prefix: str, events: Sequence[AuditEvent]
) -> int:
    if not events:
        return 0
    columns = ("actor", "action", "target_type", "target_id", "reason", "result", "run_id")
    params: dict[str, list[Any]] = {name: [getattr(e, name) for e in events] for name in columns}
    for name in ("before", "after"):
        params[name] = [
            Jsonb(getattr(e, name)) if getattr(e, name) is not None else None for e in events
        ]
    params["meta"] = [Jsonb(e.meta or {}) for e in events]
    await conn.execute(qualify(INSERT_EVENTS, prefix), params)
    return len(events)


# -- one run ------------------------------------------------------------------------------------
@dataclass
class Step:
    """One source of rows: a select of ids (``limit``, optional keyset ``after``) and the move
    of those ids. With ``picks`` the move statement selects its own rows (``params`` + ``limit``)
    and ``select_sql`` only answers "is anything due?" for ``skip_empty``."""

    select_sql: str
    move_sql: str
    params: dict[str, Any]
    keyset: bool = False
    picks: bool = False
    guarded_sql: str | None = None
    """For ``picks``: the move that skips ids already in the destination, used from the first
    chunk that hits one (the fast move fails on the destination's primary key and rolls back).
    A ``picks`` move returns ``(state, queue, count, min id, max id, candidates, latest finish)``
    rows; each state's ``after_<state>`` param moves up to its latest finish."""


@dataclass
class _Tally:
    moved: int = 0
    chunks: int = 0
    groups: dict[tuple[str | None, str | None], int] = field(default_factory=dict)
    min_id: int | None = None
    max_id: int | None = None

    def plus(self, rows: Sequence[tuple[Any, ...]]) -> _Tally:
        groups = dict(self.groups)
        moved, lo, hi = self.moved, self.min_id, self.max_id
        for k1, k2, count, first, last in rows:
            groups[(k1, k2)] = groups.get((k1, k2), 0) + int(count)
            moved += int(count)
            lo = first if lo is None else min(lo, first)
            hi = last if hi is None else max(hi, last)
        return _Tally(moved, self.chunks + 1, groups, lo, hi)

    def group_list(self, audit: bool) -> list[Group]:
        out = []
        for (k1, k2), count in sorted(
            self.groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")
        ):
            if audit:
                out.append(Group(action=k1, count=count))
            else:
                out.append(Group(state=k1, queue=k2, count=count))
        return out

    def as_json(self, audit: bool) -> dict[str, Any]:
        return {
            "moved": self.moved,
            "chunks": self.chunks,
            "min_id": self.min_id,
            "max_id": self.max_id,
            "groups": [g.model_dump(exclude_none=True) for g in self.group_list(audit)],
        }


def _chunk_meta(rows: Sequence[tuple[Any, ...]], audit: bool) -> dict[str, Any]:
    one = _Tally().plus(rows)
    return {
        "count": one.moved,
        "min_id": one.min_id,
        "max_id": one.max_id,
        "groups": one.as_json(audit)["groups"],
    }


async def mark_orphaned_runs(conn: psycopg.AsyncConnection[Any], prefix: str) -> list[uuid.UUID]:
    """Runs left ``running`` by a process that died become ``interrupted``."""
    async with conn.transaction():
        cur = await conn.execute(
            qualify(sql.MARK_ORPHANED_RUNS, prefix), {"cls": sql.RUN_LOCK_CLASS}
        )
        return [r[0] for r in await cur.fetchall()]


async def execute_run(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    *,
    kind: RunKind,
    actor: str,
    reason: str,
    filter: Mapping[str, Any],
    steps: Sequence[Step],
    batch_size: int,
    total: int | None = None,
    progress: ProgressFactory = no_progress,
    max_rows: int | None = None,
    conflicts: Sequence[int] = (),
    conflict_count: int | None = None,
    not_found: Sequence[int] = (),
    should_stop: Callable[[], bool] = never_stop,
    preview_token: str | None = None,
) -> ArchiveRunResult:
    """Record a run, drive its steps chunk by chunk, and close it (also when interrupted).

    ``should_stop`` is asked after every committed chunk; when it says so the run ends
    ``interrupted`` and the result reports what was moved (running again moves the rest).
    ``preview_token`` (already checked by the caller) is reported and kept in the run's
    closing audit event.
    """
    audit = kind in AUDIT_KINDS
    run_id = uuid.uuid4()
    orphaned = await mark_orphaned_runs(conn, prefix)
    lock = {"cls": sql.RUN_LOCK_CLASS, "id": str(run_id)}
    async with conn.transaction():
        await conn.execute(sql.LOCK_RUN, lock)
        cur = await conn.execute(
            qualify(sql.INSERT_RUN, prefix),
            {
                "id": run_id,
                "kind": kind,
                "actor": actor,
                "reason": reason,
                "filter": Jsonb(dict(filter)),
                "counts": Jsonb(_Tally().as_json(audit)),
            },
        )
        row = await cur.fetchone()
        assert row is not None
        started_at: datetime = row[0]
    clock = time.perf_counter()
    box = [_Tally()]  # the tally of committed chunks, kept current by _drive
    status = "failed"
    action = ACTIONS[kind]
    try:
        with progress(COMMANDS[kind], total) as advance:
            stopped = await _drive(
                conn,
                prefix,
                run_id=run_id,
                steps=steps,
                batch_size=batch_size,
                max_rows=max_rows,
                tally_box=box,
                advance=advance,
                chunk_event=lambda rows: AuditEvent(
                    actor=actor,
                    action=f"{action}.chunk",
                    target_type="archive_run",
                    target_id=str(run_id),
                    reason=reason,
                    run_id=run_id,
                    meta=_chunk_meta(rows, audit),
                ),
                audit=audit,
                should_stop=should_stop,
            )
        status = "interrupted" if stopped else "completed"
    except (asyncio.CancelledError, KeyboardInterrupt):
        status = "interrupted"
        raise
    finally:
        tally = box[0]
        finished_at = await _finish(
            conn,
            prefix,
            run_id,
            kind,
            actor,
            reason,
            status,
            tally,
            filter,
            clock,
            lock,
            preview_token,
        )
    elapsed = time.perf_counter() - clock
    if tally.moved >= ANALYZE_AFTER_ROWS:
        await _analyze(conn, prefix, ARCHIVE_TABLES[kind])
    return ArchiveRunResult(
        command=COMMANDS[kind],
        kind=kind,
        run=RunRecord(
            id=run_id,
            kind=kind,
            status=status,
            actor=actor,
            reason=reason,
            filter=dict(filter),
            counts=_final_counts(tally, audit, elapsed),
            started_at=started_at,
            finished_at=finished_at,
        ),
        moved=tally.moved,
        groups=tally.group_list(audit),
        chunks=tally.chunks,
        duration_ms=round(elapsed * 1000),
        rows_per_s=round(tally.moved / elapsed, 1) if elapsed > 0 else 0.0,
        conflicts=list(conflicts)[:CONFLICT_LIST_LIMIT],
        conflict_count=len(conflicts) if conflict_count is None else conflict_count,
        not_found=list(not_found),
        interrupted_runs=orphaned,
        preview_token=preview_token,
    )


async def _drive(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    *,
    run_id: uuid.UUID,
    steps: Sequence[Step],
    batch_size: int,
    max_rows: int | None,
    tally_box: list[_Tally],
    advance: Advance,
    chunk_event: Callable[[Sequence[tuple[Any, ...]]], AuditEvent],
    audit: bool,
    should_stop: Callable[[], bool],
) -> bool:
    """Move chunk after chunk; ``tally_box[0]`` is the tally of what has committed so far.
    Returns True when ``should_stop`` ended the run early."""
    for step in steps:
        params = dict(step.params)
        move_sql = step.move_sql
        if step.keyset:
            params.setdefault("after", 0)
        while max_rows is None or tally_box[0].moved < max_rows:
            tally = tally_box[0]
            limit = batch_size if max_rows is None else min(batch_size, max_rows - tally.moved)
            params["limit"] = limit
            try:
                async with conn.transaction():
                    if step.picks:
                        cur = await conn.execute(move_sql, {**params, "run_id": run_id})
                        found = await cur.fetchall()
                        # (state, queue, count, min id, max id, candidates, latest finish):
                        # none moved means nothing left, or every candidate locked by others
                        # (run again later)
                        rows = [r[:5] for r in found]
                        taken = int(found[0][5]) if found else 0
                        last = None
                        for state, *_, latest in found:
                            key = f"after_{state}"
                            params[key] = max(params[key], latest)
                    else:
                        cur = await conn.execute(step.select_sql, params)
                        ids = [r[0] for r in await cur.fetchall()]
                        taken, last = len(ids), max(ids, default=None)
                        rows = []
                        if ids:
                            cur = await conn.execute(step.move_sql, {"ids": ids, "run_id": run_id})
                            rows = await cur.fetchall()
                    if not taken:
                        break
                    after = tally.plus(rows)
                    await conn.execute(
                        qualify(sql.UPDATE_RUN_COUNTS, prefix),
                        {"id": run_id, "counts": Jsonb(after.as_json(audit))},
                    )
                    await record_events(conn, prefix, [chunk_event(rows)])
            except psycopg.errors.UniqueViolation:
                if step.guarded_sql is None or move_sql == step.guarded_sql:
                    raise
                move_sql = step.guarded_sql  # rolled back; redo the chunk skipping reused ids
                continue
            tally_box[0] = after
            advance(after.moved - tally.moved)
            if step.keyset:
                params["after"] = last
            if should_stop():
                return True
            if taken < limit:
                break
    return False


async def _analyze(conn: psycopg.AsyncConnection[Any], prefix: str, table: str) -> None:
    # statistics are an optimisation; autovacuum will analyze the table eventually
    with suppress(psycopg.Error):
        await conn.execute(qualify(f"ANALYZE {{prefix}}.{quote_ident(table)}", prefix))


def _final_counts(tally: _Tally, audit: bool, elapsed: float) -> dict[str, Any]:
    return {**tally.as_json(audit), "duration_ms": round(elapsed * 1000)}


async def _finish(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    run_id: uuid.UUID,
    kind: str,
    actor: str,
    reason: str,
    status: str,
    tally: _Tally,
    filter: Mapping[str, Any],
    clock: float,
    lock: dict[str, Any],
    preview_token: str | None = None,
) -> datetime | None:
    """Close the run; when the connection is gone the next run marks it interrupted instead."""
    counts = _final_counts(tally, kind in AUDIT_KINDS, time.perf_counter() - clock)
    try:
        async with conn.transaction():
            cur = await conn.execute(
                qualify(sql.FINISH_RUN, prefix),
                {"id": run_id, "status": status, "counts": Jsonb(counts)},
            )
            row = await cur.fetchone()
            await record_events(
                conn,
                prefix,
                [
                    AuditEvent(
                        actor=actor,
                        action=ACTIONS[kind],
                        target_type="archive_run",
                        target_id=str(run_id),
                        reason=reason,
                        result="ok" if status == "completed" else status,
                        run_id=run_id,
                        meta={
                            "counts": counts,
                            "filter": dict(filter),
                            **({"preview_token": preview_token} if preview_token else {}),
                        },
                    )
                ],
            )
            await conn.execute(sql.UNLOCK_RUN, lock)
    except (psycopg.Error, asyncio.CancelledError):
        return None
    return row[0] if row is not None else None


# -- archive run (jobs) -------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveRequest:
    """What ``archive run`` moves: terminal jobs older than their state's retention."""

    retention: Mapping[str, timedelta]
    queues: tuple[str, ...] = ()
    batch_size: int = DEFAULT_BATCH_SIZE
    max_rows: int | None = None
    source: str = "cli"


def _archive_filter(request: ArchiveRequest, limits: Mapping[str, datetime]) -> dict[str, Any]:
    return {
        "retention": format_retention(request.retention),
        "cutoffs": {s: iso(c) for s, c in limits.items()},
        "queues": list(request.queues) or None,
        "batch_size": request.batch_size,
        "source": request.source,
    }


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with ``Z``, like every time in the JSON output."""
    stamp = as_utc(moment)
    assert stamp is not None
    return stamp.isoformat().replace("+00:00", "Z")


def _queue_params(queues: Sequence[str]) -> dict[str, Any]:
    return {"any_queue": not queues, "queues": list(queues)}


async def db_now(conn: psycopg.AsyncConnection[Any]) -> datetime:
    """The server's clock (naive UTC), so cutoffs do not depend on the client's."""
    cur = await conn.execute(sql.SELECT_NOW)
    row = await cur.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def _selection(filter: Mapping[str, Any]) -> dict[str, Any]:
    """What a plan hash pins of a run's filter: everything but how it is chunked and who
    started it (a token from a dry run with another --batch-size still matches)."""
    return {k: v for k, v in filter.items() if k not in ("batch_size", "source")}


def _move_params(request: ArchiveRequest, limits: Mapping[str, datetime]) -> dict[str, Any]:
    params: dict[str, Any] = {**_queue_params(request.queues)}
    for state, cutoff in limits.items():
        params[f"state_{state}"] = state
        params[f"cutoff_{state}"] = cutoff
    return params


async def preview_archive(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    request: ArchiveRequest,
    now: datetime,
    *,
    deny: DenyList | None = None,
    sample_size: int = plan.SAMPLE_SIZE,
) -> ArchivePreview:
    """What ``archive run`` would move, with cutoffs from ``now`` pinned to whole seconds
    (``as_of``, carried by the token)."""
    as_of = plan.pin(now)
    limits = cutoffs(request.retention, as_of)
    groups: list[plan.PlanGroup] = []
    conflicts: list[int] = []
    sample: list[SampleRow] = []
    async with conn.transaction():
        await conn.execute(preview.BEGIN_PREVIEW)
        for state, cutoff in limits.items():
            params = {"state": state, "cutoff": cutoff, **_queue_params(request.queues)}
            found = await preview.fetch(
                conn, sql.job_sql(sql.COUNT_ARCHIVABLE, prefix, state=state), params
            )
            groups += preview.job_groups(found, state)
            found = await preview.fetch(
                conn,
                sql.job_sql(sql.SELECT_ARCHIVE_CONFLICTS, prefix, state=state),
                {**params, "limit": CONFLICT_LIST_LIMIT},
            )
            conflicts += [r[0] for r in found]
        if sample_size and groups:
            found = await preview.fetch(
                conn,
                sql.archive_sample_sql(prefix, list(limits)),
                {**_move_params(request, limits), "sample": sample_size},
            )
            sample = preview.job_samples(found, deny or DenyList())
    filter = _archive_filter(request, limits)
    return preview.build(
        "archive",
        filter=filter,
        selection=_selection(filter),
        groups=groups,
        sample=sample,
        as_of=as_of,
        conflicts=sorted(conflicts)[:CONFLICT_LIST_LIMIT],
        conflict_count=len(conflicts),
    )


def check_plan(shown: ArchivePreview, token: plan.PreviewToken | None) -> None:
    """Refuse when the live plan is not the one ``token`` was shown for (nothing written)."""
    if token is not None:
        plan.check_token(token, shown.kind, shown.plan_hash, shown.total)


async def archive_jobs(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    request: ArchiveRequest,
    *,
    actor: str,
    reason: str,
    now: datetime,
    progress: ProgressFactory = no_progress,
    count_first: bool = True,
    skip_empty: bool = False,
    should_stop: Callable[[], bool] = never_stop,
    preview_token: plan.PreviewToken | None = None,
) -> ArchiveRunResult | None:
    """Archive terminal jobs per ``request``; ``None`` when ``skip_empty`` and nothing matches.

    With ``count_first`` the cutoffs come from ``now`` pinned to whole seconds, as in the
    preview; with ``preview_token`` (pass its ``as_of`` as ``now``) the live plan must match it,
    else ``PreviewDrifted`` and nothing is recorded. The plan is checked once, before the first
    chunk: a row that joins the selection while the chunks run is moved too, one that leaves it
    is not (as without a token).
    """
    check_batch_size(request.batch_size)
    if count_first or preview_token is not None:
        now = plan.pin(now)
    limits = cutoffs(request.retention, now)
    shown = (
        await preview_archive(conn, prefix, request, now, sample_size=0)
        if count_first or preview_token is not None
        else None
    )
    if shown is not None:
        check_plan(shown, preview_token)
    known_conflicts = bool(shown and shown.conflict_count)
    states = list(limits)
    params = _move_params(request, limits)
    for state in limits:
        params[f"after_{state}"] = SCAN_FROM
    steps = [
        Step(
            select_sql="",
            move_sql=sql.archive_move_sql(prefix, states, guard=known_conflicts),
            guarded_sql=sql.archive_move_sql(prefix, states, guard=True),
            params=params,
            picks=True,
        )
    ]
    probes = [
        Step(
            select_sql=sql.job_sql(sql.SELECT_ARCHIVABLE_IDS, prefix, state=state),
            move_sql="",
            params={"state": state, "cutoff": cutoff, **_queue_params(request.queues)},
        )
        for state, cutoff in limits.items()
    ]
    if skip_empty and not await _any_rows(conn, probes):
        return None
    return await execute_run(
        conn,
        prefix,
        kind="archive",
        actor=actor,
        reason=reason,
        filter=_archive_filter(request, limits),
        steps=steps,
        batch_size=request.batch_size,
        total=shown.total if shown else None,
        progress=progress,
        max_rows=request.max_rows,
        conflicts=shown.conflicts if shown else (),
        conflict_count=shown.conflict_count if shown else 0,
        should_stop=should_stop,
        preview_token=preview_token.text if preview_token else None,
    )


async def _any_rows(conn: psycopg.AsyncConnection[Any], steps: Sequence[Step]) -> bool:
    """Whether any step's select finds a row (it reads; nothing is recorded)."""
    async with conn.transaction():
        for step in steps:
            cur = await conn.execute(step.select_sql, {"after": 0, **step.params, "limit": 1})
            if await cur.fetchone() is not None:
                return True
    return False


# -- archive run --audit ------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditArchiveRequest:
    older_than: timedelta = DEFAULT_AUDIT_RETENTION
    batch_size: int = DEFAULT_BATCH_SIZE
    max_rows: int | None = None
    source: str = "cli"


def _audit_filter(request: AuditArchiveRequest, cutoff: datetime) -> dict[str, Any]:
    return {
        "older_than": format_duration(request.older_than),
        "cutoff": iso(cutoff),
        "batch_size": request.batch_size,
        "source": request.source,
    }


async def preview_audit_archive(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    request: AuditArchiveRequest,
    now: datetime,
    *,
    sample_size: int = plan.SAMPLE_SIZE,
) -> ArchivePreview:
    as_of = plan.pin(now)
    cutoff = as_of - request.older_than
    sample: list[SampleRow] = []
    async with conn.transaction():
        await conn.execute(preview.BEGIN_PREVIEW)
        found = await preview.fetch(
            conn, qualify(sql.COUNT_AUDIT_ARCHIVABLE, prefix), {"cutoff": cutoff}
        )
        groups = preview.audit_groups(found)
        if sample_size and groups:
            found = await preview.fetch(
                conn,
                qualify(sql.SAMPLE_AUDIT_ARCHIVABLE, prefix),
                {"cutoff": cutoff, "sample": sample_size},
            )
            sample = preview.event_samples(found)
    filter = _audit_filter(request, cutoff)
    return preview.build(
        "audit_archive",
        filter=filter,
        selection=_selection(filter),
        groups=groups,
        sample=sample,
        as_of=as_of,
    )


async def archive_audit(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    request: AuditArchiveRequest,
    *,
    actor: str,
    reason: str,
    now: datetime,
    progress: ProgressFactory = no_progress,
    count_first: bool = True,
    skip_empty: bool = False,
    should_stop: Callable[[], bool] = never_stop,
    preview_token: plan.PreviewToken | None = None,
) -> ArchiveRunResult | None:
    """Move audit events older than ``request.older_than`` into ``powertools_audit_archive``
    (``count_first`` and ``preview_token`` as in ``archive_jobs``)."""
    check_batch_size(request.batch_size)
    if count_first or preview_token is not None:
        now = plan.pin(now)
    cutoff = utc_naive(now) - request.older_than
    steps = [
        Step(
            select_sql=qualify(sql.SELECT_AUDIT_IDS, prefix),
            move_sql=qualify(sql.MOVE_AUDIT_TO_ARCHIVE, prefix),
            params={"cutoff": cutoff},
        )
    ]
    if skip_empty and not await _any_rows(conn, steps):
        return None
    shown = (
        await preview_audit_archive(conn, prefix, request, now, sample_size=0)
        if count_first or preview_token is not None
        else None
    )
    if shown is not None:
        check_plan(shown, preview_token)
    return await execute_run(
        conn,
        prefix,
        kind="audit_archive",
        actor=actor,
        reason=reason,
        filter=_audit_filter(request, cutoff),
        steps=steps,
        batch_size=request.batch_size,
        total=shown.total if shown else None,
        progress=progress,
        max_rows=request.max_rows,
        should_stop=should_stop,
        preview_token=preview_token.text if preview_token else None,
    )


# -- entry points for the CLI (sync, own connection) -------------------------------------------
def with_connection(
    settings: Settings,
    work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    *,
    stop: StopRequest | None = None,
) -> T:
    """Open an autocommit connection for ``settings``, run ``work`` on it, translate errors.

    With ``stop``, SIGINT is routed to it for the duration (see ``StopRequest``).
    """
    url = resolve_url(settings)

    async def main() -> T:
        conn = await connect_async(url, autocommit=True, application_name=APPLICATION_NAME)
        async with conn:
            return await work(conn)

    with translated(url), stop if stop is not None else nullcontext():
        return asyncio.run(main())


def run_archive(
    settings: Settings,
    request: ArchiveRequest | AuditArchiveRequest,
    *,
    actor: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    preview_token: str | None = None,
    progress: ProgressFactory = no_progress,
) -> ArchivePreview | ArchiveRunResult:
    """``powertools archive run``: a preview when ``dry_run``, else the recorded run.

    ``preview_token`` (from a dry run) pins the plan: the cutoffs are computed from the instant
    of that preview, and the command refuses (``PreviewDrifted``, nothing written) when the rows
    they select are no longer the previewed ones. A dry run with a token shows that plan, or
    refuses the same way.
    """
    who, why = ("", "") if dry_run else check_actor_reason(actor, reason)
    check_batch_size(request.batch_size)
    kind = "audit_archive" if isinstance(request, AuditArchiveRequest) else "archive"
    token = plan.parse_token(preview_token, kind) if preview_token is not None else None
    deny = preview.deny_list(settings)
    prefix = settings.prefix
    stop = StopRequest()

    async def work(conn: psycopg.AsyncConnection[Any]) -> ArchivePreview | ArchiveRunResult:
        now = token.as_of if token is not None and token.as_of else plan.pin(await db_now(conn))
        if isinstance(request, AuditArchiveRequest):
            if dry_run:
                shown = await preview_audit_archive(conn, prefix, request, now)
                check_plan(shown, token)
                return shown
            done = await archive_audit(
                conn,
                prefix,
                request,
                actor=who,
                reason=why,
                now=now,
                progress=progress,
                should_stop=stop,
                preview_token=token,
            )
        else:
            if dry_run:
                shown = await preview_archive(conn, prefix, request, now, deny=deny)
                check_plan(shown, token)
                return shown
            done = await archive_jobs(
                conn,
                prefix,
                request,
                actor=who,
                reason=why,
                now=now,
                progress=progress,
                should_stop=stop,
                preview_token=token,
            )
        assert done is not None
        return done

    return with_connection(settings, work, stop=None if dry_run else stop)
