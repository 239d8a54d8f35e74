"""Cron rows: entries, slot claims (slot + job in one transaction), coverage, follow-ups.

A fire happens at most once because its slot row is unique per (entry, fire time) and is
inserted in the same transaction as the job: two schedulers, a restart or a clock jump that
plan the same fire find the row taken and insert nothing. The entry row is locked first, so two
claims of one entry are serialised and the overlap decision sees the previous claim's job.

All functions take an async psycopg connection in autocommit mode and open their own short
transactions; operator actions write their audit event in the same transaction as the change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from powertools_core.audit import INSERT_EVENTS, AuditEvent
from powertools_core.cron.entry import EntryConfig
from powertools_core.cron.expression import Schedule, parse_schedule
from powertools_core.cron.overlap import (
    ACTIVE_STATES,
    INSERTS_JOB,
    Decision,
    Overlap,
    decide,
)
from powertools_core.cron.slots import CatchUp
from powertools_core.db.identifiers import qualify
from powertools_core.errors import PowertoolsError
from powertools_core.jobs.spec import JobSpec

log = logging.getLogger("powertools.cron")

UNDECLARED: Final = "system:undeclared"
"""``paused_by`` of a code entry the leader's app no longer declares (kept for its history)."""

ENTRY_COLUMNS: Final = (
    "name, expression, timezone, worker, args, queue, overlap, catch_up, max_catch_up, source, "
    "paused_at, paused_by, planned_until, inserted_at, updated_at"
)

SELECT_ENTRIES: Final = """
SELECT {columns} FROM {prefix}.powertools_cron_entries ORDER BY name
""".replace("{columns}", ENTRY_COLUMNS)
SELECT_ENTRY: Final = """
SELECT {columns} FROM {prefix}.powertools_cron_entries WHERE name = %(name)s
""".replace("{columns}", ENTRY_COLUMNS)
LOCK_ENTRY: Final = SELECT_ENTRY.rstrip() + " FOR UPDATE"

# Code entries: insert new ones (planned from now), update changed ones, take over a runtime
# entry of the same name (code wins), and un-retire an entry declared again.
SYNC_CODE_ENTRY: Final = """
INSERT INTO {prefix}.powertools_cron_entries AS e
    (name, expression, timezone, worker, args, queue, overlap, catch_up, max_catch_up, source,
     planned_until)
VALUES (%(name)s, %(expression)s, %(timezone)s, %(worker)s, %(args)s, %(queue)s, %(overlap)s,
        %(catch_up)s, %(max_catch_up)s, 'code', %(now)s)
ON CONFLICT (name) DO UPDATE SET
    expression = EXCLUDED.expression, timezone = EXCLUDED.timezone, worker = EXCLUDED.worker,
    args = EXCLUDED.args, queue = EXCLUDED.queue, overlap = EXCLUDED.overlap,
    catch_up = EXCLUDED.catch_up, max_catch_up = EXCLUDED.max_catch_up, source = 'code',
    paused_at = CASE WHEN e.paused_by = %(undeclared)s THEN NULL ELSE e.paused_at END,
    paused_by = CASE WHEN e.paused_by = %(undeclared)s THEN NULL ELSE e.paused_by END,
    updated_at = %(now)s
WHERE (e.expression, e.timezone, e.worker, e.args, e.queue, e.overlap, e.catch_up,
       e.max_catch_up, e.source)
      IS DISTINCT FROM
      (EXCLUDED.expression, EXCLUDED.timezone, EXCLUDED.worker, EXCLUDED.args, EXCLUDED.queue,
       EXCLUDED.overlap, EXCLUDED.catch_up, EXCLUDED.max_catch_up, EXCLUDED.source)
   OR e.paused_by = %(undeclared)s
RETURNING (xmax = 0) AS inserted
"""

RETIRE_UNDECLARED: Final = """
UPDATE {prefix}.powertools_cron_entries
SET paused_at = %(now)s, paused_by = %(undeclared)s, updated_at = %(now)s
WHERE source = 'code' AND paused_at IS NULL AND NOT (name = ANY(%(names)s::text[]))
RETURNING name
"""

INSERT_RUNTIME_ENTRY: Final = """
INSERT INTO {prefix}.powertools_cron_entries
    (name, expression, timezone, worker, args, queue, overlap, catch_up, max_catch_up, source,
     planned_until)
VALUES (%(name)s, %(expression)s, %(timezone)s, %(worker)s, %(args)s, %(queue)s, %(overlap)s,
        %(catch_up)s, %(max_catch_up)s, 'runtime', timezone('UTC', now()))
ON CONFLICT (name) DO NOTHING
RETURNING name
"""

UPDATE_RUNTIME_ENTRY: Final = """
UPDATE {prefix}.powertools_cron_entries
SET expression = %(expression)s, timezone = %(timezone)s, worker = %(worker)s,
    args = %(args)s, queue = %(queue)s, overlap = %(overlap)s, catch_up = %(catch_up)s,
    max_catch_up = %(max_catch_up)s, updated_at = timezone('UTC', now())
WHERE name = %(name)s AND source = 'runtime'
"""

DELETE_RUNTIME_ENTRY: Final = """
WITH gone AS (
    DELETE FROM {prefix}.powertools_cron_entries WHERE name = %(name)s AND source = 'runtime'
    RETURNING name
), slots AS (
    DELETE FROM {prefix}.powertools_cron_slots AS s USING gone WHERE s.entry_name = gone.name
)
SELECT count(*) FROM gone
"""

SET_PAUSED: Final = """
UPDATE {prefix}.powertools_cron_entries
SET paused_at = CASE WHEN %(paused)s THEN timezone('UTC', now()) END,
    paused_by = CASE WHEN %(paused)s THEN %(actor)s END,
    planned_until = CASE WHEN %(paused)s THEN planned_until
                         ELSE GREATEST(planned_until, timezone('UTC', now())) END,
    updated_at = timezone('UTC', now())
WHERE name = %(name)s
"""

ADVANCE_PLANNED: Final = """
UPDATE {prefix}.powertools_cron_entries
SET planned_until = %(now)s
WHERE name = ANY(%(names)s::text[]) AND (planned_until IS NULL OR planned_until < %(now)s)
"""

INSERT_SLOT: Final = """
INSERT INTO {prefix}.powertools_cron_slots
    (entry_name, slot_at, claimed_at, decision, manual, node)
VALUES (%(name)s, %(slot_at)s, %(now)s, 'pending', %(manual)s, %(node)s)
ON CONFLICT (entry_name, slot_at) DO NOTHING
RETURNING id
"""

FINISH_SLOT: Final = """
UPDATE {prefix}.powertools_cron_slots
SET decision = %(decision)s, job_id = %(job_id)s, details = %(details)s
WHERE id = %(id)s
"""

INSERT_MISSED: Final = """
INSERT INTO {prefix}.powertools_cron_slots
    (entry_name, slot_at, claimed_at, decision, node, details)
SELECT %(name)s, t, %(now)s, 'missed', %(node)s, %(details)s
FROM unnest(%(slots)s::timestamp[]) AS t
ON CONFLICT (entry_name, slot_at) DO NOTHING
"""

# The entry's jobs that are still to run or running (follow-ups are suspended, listed apart).
ENTRY_JOBS: Final = """
SELECT j.id, j.state::text
FROM {prefix}.oban_jobs AS j
WHERE j.meta @> %(marker)s::jsonb
  AND j.state IN ('available', 'scheduled', 'executing', 'retryable', 'suspended')
ORDER BY j.id
"""

CANCEL_JOBS: Final = """
UPDATE {prefix}.oban_jobs
SET state = 'cancelled', cancelled_at = timezone('UTC', now())
WHERE id = ANY(%(ids)s::bigint[])
  AND state IN ('available', 'scheduled', 'executing', 'retryable')
RETURNING id
"""

# Running attempts stop when their process gets this (delivered at commit).
NOTIFY_CANCEL: Final = """
SELECT pg_notify(%(channel)s, json_build_object('action', 'cancel', 'job_id', i)::text)
FROM unnest(%(ids)s::bigint[]) AS i
"""

# queue_one: a waiting follow-up becomes available once its entry has no active job left.
PROMOTE_FOLLOW_UPS: Final = """
WITH ready AS (
    SELECT f.id
    FROM {prefix}.oban_jobs AS f
    WHERE f.state = 'suspended' AND f.meta @> '{"cron_follow_up": true}'::jsonb
      AND NOT EXISTS (
          SELECT 1 FROM {prefix}.oban_jobs AS a
          WHERE a.meta @> jsonb_build_object('cron_name', f.meta -> 'cron_name')
            AND a.state IN ('available', 'scheduled', 'executing', 'retryable'))
    ORDER BY f.id
    LIMIT %(limit)s
    FOR UPDATE OF f SKIP LOCKED
)
UPDATE {prefix}.oban_jobs AS j
SET state = 'available', scheduled_at = timezone('UTC', now())
FROM ready
WHERE j.id = ready.id
RETURNING j.id, j.queue
"""

NOTIFY_QUEUES: Final = "SELECT pg_notify(%(channel)s, q) FROM unnest(%(queues)s::text[]) AS q"

RECORD_COVERAGE: Final = """
INSERT INTO {prefix}.powertools_cron_coverage AS c (minute, node, seen_at)
VALUES (date_trunc('minute', %(now)s::timestamp), %(node)s, %(now)s)
ON CONFLICT (minute) DO UPDATE SET node = EXCLUDED.node, seen_at = EXCLUDED.seen_at
WHERE c.seen_at < EXCLUDED.seen_at
"""

SELECT_SLOTS: Final = """
SELECT s.slot_at, s.claimed_at, s.decision, s.job_id, s.manual, s.node, s.details,
       j.state::text
FROM {prefix}.powertools_cron_slots AS s
LEFT JOIN {prefix}.oban_jobs AS j ON j.id = s.job_id
WHERE s.entry_name = %(name)s
ORDER BY s.slot_at DESC
LIMIT %(limit)s
"""

SELECT_LAST_SLOTS: Final = """
SELECT DISTINCT ON (s.entry_name) s.entry_name, s.slot_at, s.decision, s.job_id
FROM {prefix}.powertools_cron_slots AS s
ORDER BY s.entry_name, s.slot_at DESC
"""

SELECT_RECORDED_SINCE: Final = """
SELECT s.slot_at, s.decision FROM {prefix}.powertools_cron_slots AS s
WHERE s.entry_name = %(name)s AND s.slot_at > %(since)s
"""

SELECT_COVERAGE_SINCE: Final = """
SELECT c.minute FROM {prefix}.powertools_cron_coverage AS c WHERE c.minute > %(since)s
"""

SELECT_LAST_COVERAGE: Final = "SELECT max(minute) FROM {prefix}.powertools_cron_coverage"


@dataclass(frozen=True, slots=True)
class EntryRow:
    """An entry as stored."""

    name: str
    schedule: Schedule
    worker: str
    args: dict[str, Any]
    queue: str | None
    overlap: Overlap
    catch_up: CatchUp
    max_catch_up: int
    source: str
    paused_at: datetime | None
    paused_by: str | None
    planned_until: datetime | None
    inserted_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> EntryRow:
        return cls(
            name=row[0],
            schedule=parse_schedule(row[1], row[2]),
            worker=row[3],
            args=row[4] if isinstance(row[4], dict) else {},
            queue=row[5],
            overlap=Overlap(row[6]),
            catch_up=CatchUp(row[7]),
            max_catch_up=int(row[8]),
            source=row[9],
            paused_at=row[10],
            paused_by=row[11],
            planned_until=row[12],
            inserted_at=row[13],
            updated_at=row[14],
        )

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.schedule.expression,
            "timezone": self.schedule.timezone,
            "worker": self.worker,
            "args": self.args,
            "queue": self.queue,
            "overlap": self.overlap.value,
            "catch_up": self.catch_up.value,
            "max_catch_up": self.max_catch_up,
        }


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """One claim: ``decision`` ``None`` means the slot was already claimed (nothing done)."""

    entry: str
    slot_at: datetime
    decision: Decision | None
    job_id: int | None = None
    cancelled: tuple[int, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


def config_params(config: EntryConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "expression": config.schedule.expression,
        "timezone": config.schedule.timezone,
        "worker": config.worker,
        "args": Jsonb(config.args),
        "queue": config.queue,
        "overlap": config.overlap.value,
        "catch_up": config.catch_up.value,
        "max_catch_up": config.max_catch_up,
    }


def signal_channel(prefix: str) -> str:
    return f"powertools.{prefix}.signal"


async def record_audit(
    conn: psycopg.AsyncConnection[Any], prefix: str, events: Sequence[AuditEvent]
) -> None:
    """``audit.record`` for an async connection (same statement, same columns)."""
    params: dict[str, list[Any]] = {
        k: []
        for k in (
            "actor",
            "action",
            "target_type",
            "target_id",
            "reason",
            "result",
            "run_id",
            "before",
            "after",
            "meta",
        )
    }
    for e in events:
        params["actor"].append(e.actor)
        params["action"].append(e.action)
        params["target_type"].append(e.target_type)
        params["target_id"].append(e.target_id)
        params["reason"].append(e.reason)
        params["result"].append(e.result)
        params["run_id"].append(e.run_id)
        params["before"].append(Jsonb(e.before) if e.before is not None else None)
        params["after"].append(Jsonb(e.after) if e.after is not None else None)
        params["meta"].append(Jsonb(e.meta or {}))
    await conn.execute(qualify(INSERT_EVENTS, prefix), params)


# Reading --------------------------------------------------------------------------------------


async def list_entries(
    conn: psycopg.AsyncConnection[Any], prefix: str, *, skip_invalid: bool = False
) -> list[EntryRow]:
    """Every entry by name. A row that no longer parses (e.g. its zone left tzdata) raises,
    or with ``skip_invalid`` is logged and left out (the scheduler keeps the others firing)."""
    cur = await conn.execute(qualify(SELECT_ENTRIES, prefix))
    out = []
    for row in await cur.fetchall():
        try:
            out.append(EntryRow.from_row(row))
        except (PowertoolsError, ValueError) as exc:
            if not skip_invalid:
                raise
            log.warning("cron: entry %s is not valid any more and is skipped: %s", row[0], exc)
    return out


async def get_entry(
    conn: psycopg.AsyncConnection[Any], prefix: str, name: str, *, lock: bool = False
) -> EntryRow | None:
    cur = await conn.execute(qualify(LOCK_ENTRY if lock else SELECT_ENTRY, prefix), {"name": name})
    row = await cur.fetchone()
    return EntryRow.from_row(row) if row else None


# Code entries ---------------------------------------------------------------------------------


async def sync_code_entries(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    configs: Sequence[EntryConfig],
    now: datetime,
) -> tuple[int, list[str]]:
    """Upsert the app's declared entries; retire code entries it no longer declares.

    Returns (entries inserted or changed, names retired). Retired entries are paused with
    ``paused_by`` = ``system:undeclared`` so their history stays; declaring them again resumes.
    An app that declares no entries at all retires nothing: that is a worker pool started
    without the modules that declare cron (a partial ``--app``), not a decision to stop them.
    """
    changed = 0
    async with conn.transaction():
        for config in configs:
            cur = await conn.execute(
                qualify(SYNC_CODE_ENTRY, prefix),
                {**config_params(config), "now": now, "undeclared": UNDECLARED},
            )
            changed += cur.rowcount
        retired: list[str] = []
        if configs:
            cur = await conn.execute(
                qualify(RETIRE_UNDECLARED, prefix),
                {"now": now, "undeclared": UNDECLARED, "names": [c.name for c in configs]},
            )
            retired = [r[0] for r in await cur.fetchall()]
        if changed or retired:
            await record_audit(
                conn,
                prefix,
                [
                    AuditEvent(
                        actor="system",
                        action="cron.synced",
                        target_type="cron",
                        target_id=None,
                        meta={"declared": [c.name for c in configs], "retired": retired},
                    )
                ],
            )
    return changed, retired


# Claims ---------------------------------------------------------------------------------------


def _job_spec(entry: EntryRow, slot_at: datetime, manual: bool, decision: Decision) -> JobSpec:
    from powertools_core.errors import InvalidInput
    from powertools_core.workers import registered, resolve

    meta: dict[str, Any] = {
        "cron": True,
        "cron_name": entry.name,
        "cron_expr": entry.schedule.expression,
        "cron_slot_at": slot_at.isoformat(),
    }
    if manual:
        meta["cron_manual"] = True
    if decision is Decision.queued:
        meta["cron_follow_up"] = True
    spec: JobSpec
    cls = registered().get(entry.worker)
    if cls is None:
        try:
            cls = resolve(entry.worker)
        except InvalidInput:
            cls = None
    if cls is not None:
        spec = cls.new(entry.args, queue=entry.queue, meta=meta)
    else:
        # A worker this process cannot import: a plain Oban job (another runtime may run it).
        spec = JobSpec(
            worker=entry.worker, queue=entry.queue or "default", args=dict(entry.args), meta=meta
        )
    if decision is Decision.queued:
        spec = replace(spec, state="suspended", scheduled_at=None)
    return spec


async def claim_slot(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    name: str,
    slot_at: datetime,
    *,
    now: datetime,
    node: str | None = None,
    manual: bool = False,
    audit: AuditEvent | None = None,
) -> ClaimOutcome:
    """Claim one fire of entry ``name``: slot row, overlap decision and job, one transaction.

    A slot already claimed (by anyone) returns ``decision=None`` and changes nothing. With
    ``audit``, that event is written in the same transaction (its meta gains the decision).
    """
    from powertools_core.jobs.insert import insert_job_async

    async with conn.transaction():
        entry = await get_entry(conn, prefix, name, lock=True)
        if entry is None:
            from powertools_core.errors import NotFound

            raise NotFound(f"no cron entry named {name!r}", hint="see `powertools cron list`")
        cur = await conn.execute(
            qualify(INSERT_SLOT, prefix),
            {"name": name, "slot_at": slot_at, "now": now, "manual": manual, "node": node},
        )
        slot = await cur.fetchone()
        if slot is None:
            return ClaimOutcome(entry=name, slot_at=slot_at, decision=None)
        cur = await conn.execute(
            qualify(ENTRY_JOBS, prefix), {"marker": json.dumps({"cron_name": name})}
        )
        jobs = await cur.fetchall()
        active = [int(r[0]) for r in jobs if r[1] in ACTIVE_STATES]
        waiting = [int(r[0]) for r in jobs if r[1] == "suspended"]
        decision = decide(entry.overlap, active=bool(active), follow_up_waiting=bool(waiting))
        details: dict[str, Any] = {"overlap": entry.overlap.value}
        if active:
            details["active_job_ids"] = active
        if waiting:
            details["waiting_job_ids"] = waiting
        cancelled: tuple[int, ...] = ()
        job_id: int | None = None
        if decision in INSERTS_JOB:
            try:
                spec = _job_spec(entry, slot_at, manual, decision)
            except PowertoolsError as exc:
                decision = Decision.failed
                details["error"] = exc.one_line()
            else:
                if decision is Decision.cancelled_previous:
                    cur = await conn.execute(qualify(CANCEL_JOBS, prefix), {"ids": active})
                    cancelled = tuple(int(r[0]) for r in await cur.fetchall())
                    if cancelled:
                        await conn.execute(
                            NOTIFY_CANCEL,
                            {"channel": signal_channel(prefix), "ids": list(cancelled)},
                        )
                    details["cancelled_job_ids"] = list(cancelled)
                result = await insert_job_async(spec, conn=conn, prefix=prefix)
                job_id = result.id
                if result.conflict:
                    details["unique_conflict"] = True
        await conn.execute(
            qualify(FINISH_SLOT, prefix),
            {
                "id": slot[0],
                "decision": decision.value,
                "job_id": job_id,
                "details": Jsonb(details),
            },
        )
        if audit is not None:
            audit.meta = {
                **audit.meta,
                "slot_at": slot_at.isoformat(),
                "decision": decision.value,
                "job_id": job_id,
            }
            await record_audit(conn, prefix, [audit])
    return ClaimOutcome(
        entry=name,
        slot_at=slot_at,
        decision=decision,
        job_id=job_id,
        cancelled=cancelled,
        details=details,
    )


async def record_missed(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    name: str,
    slots: Sequence[datetime],
    *,
    now: datetime,
    node: str | None,
    catch_up: CatchUp,
) -> int:
    if not slots:
        return 0
    cur = await conn.execute(
        qualify(INSERT_MISSED, prefix),
        {
            "name": name,
            "slots": list(slots),
            "now": now,
            "node": node,
            "details": Jsonb({"catch_up": catch_up.value}),
        },
    )
    return cur.rowcount


async def advance_planned(
    conn: psycopg.AsyncConnection[Any], prefix: str, names: Sequence[str], now: datetime
) -> None:
    if names:
        await conn.execute(qualify(ADVANCE_PLANNED, prefix), {"names": list(names), "now": now})


async def record_coverage(
    conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime, node: str | None
) -> None:
    await conn.execute(qualify(RECORD_COVERAGE, prefix), {"now": now, "node": node})


async def promote_follow_ups(
    conn: psycopg.AsyncConnection[Any], prefix: str, *, limit: int = 1000
) -> list[int]:
    """Make waiting ``queue_one`` follow-ups available once their entry has nothing active."""
    from powertools_core.jobs.notify import insert_channel

    async with conn.transaction():
        cur = await conn.execute(qualify(PROMOTE_FOLLOW_UPS, prefix), {"limit": limit})
        rows = await cur.fetchall()
        queues = sorted({r[1] for r in rows})
        if queues:
            await conn.execute(NOTIFY_QUEUES, {"channel": insert_channel(prefix), "queues": queues})
    return [int(r[0]) for r in rows]
