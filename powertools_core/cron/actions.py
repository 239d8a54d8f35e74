"""What ``powertools cron`` does: read entries and slots, and the audited operator actions.

Each function takes ``Settings``, opens one connection and returns a result model. Actions check
actor and reason before any SQL, lock the entry, write the change and its audit event in one
transaction, and with ``dry_run`` change nothing. Code-managed entries can be paused, resumed and
run, but not edited or removed here (their truth is the application's ``Cron(...)`` line).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg

from powertools_core.audit import AuditEvent
from powertools_core.config import Settings
from powertools_core.cron import store
from powertools_core.cron.entry import EntryConfig, build_config
from powertools_core.cron.results import (
    CronActionResult,
    CronListResult,
    CronShowResult,
    EntryView,
    FireView,
    SlotView,
)
from powertools_core.cron.slots import Evidence, classify_fires, minute_of
from powertools_core.db.connection import connect_async, resolve_url, translated
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput, NotFound, PowertoolsError
from powertools_core.ops.errors import (
    MIN_REASON_LENGTH,
    ActorRequired,
    ReasonRequired,
    ReasonTooShort,
)

T = TypeVar("T")

SELECT_NOW: Final = "SELECT timezone('UTC', now())"
MISSED_WINDOW: Final = timedelta(days=1)
MAX_MISSED_SHOWN: Final = 50


class CodeManagedEntry(InvalidInput):
    code = "code_managed_entry"


class EntryExists(InvalidInput):
    code = "entry_exists"


def check_intent(actor: str | None, reason: str | None) -> tuple[str, str]:
    """Trimmed actor and reason, or the one-line refusal naming what is missing."""
    who = (actor or "").strip()
    why = " ".join((reason or "").split())
    if not who:
        raise ActorRequired(
            "an actor is required to change cron entries",
            hint="pass --actor NAME or set POWERTOOLS_ACTOR",
        )
    if not why:
        raise ReasonRequired(
            "a reason is required to change cron entries",
            hint=f'pass --reason "..." (at least {MIN_REASON_LENGTH} characters)',
        )
    if len(why) < MIN_REASON_LENGTH:
        raise ReasonTooShort(
            f"the reason is too short ({len(why)} characters; at least {MIN_REASON_LENGTH})",
            hint='say why, e.g. --reason "report rerun for ticket 4411"',
        )
    return who, why


def _run(settings: Settings, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    url = resolve_url(settings)

    async def main() -> T:
        async with await connect_async(url, autocommit=True) as conn:
            return await fn(conn)

    with translated(url):
        return asyncio.run(main())


async def _now(conn: psycopg.AsyncConnection[Any]) -> datetime:
    cur = await conn.execute(SELECT_NOW)
    row = await cur.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


async def _entry(conn: psycopg.AsyncConnection[Any], prefix: str, name: str) -> store.EntryRow:
    entry = await store.get_entry(conn, prefix, name)
    if entry is None:
        raise NotFound(f"no cron entry named {name!r}", hint="see `powertools cron list`")
    return entry


def _view(entry: store.EntryRow, now: datetime, last: tuple[Any, ...] | None) -> EntryView:
    return EntryView(
        name=entry.name,
        expression=entry.schedule.expression,
        timezone=entry.schedule.timezone,
        explain=entry.schedule.explain(),
        worker=entry.worker,
        queue=entry.queue,
        args=entry.args,
        overlap=entry.overlap.value,
        catch_up=entry.catch_up.value,
        max_catch_up=entry.max_catch_up,
        source="code" if entry.source == "code" else "runtime",
        paused=entry.paused,
        paused_at=entry.paused_at,
        paused_by=entry.paused_by,
        next_fire=None if entry.paused else entry.schedule.next_fire(now),
        last_slot_at=last[1] if last else None,
        last_decision=last[2] if last else None,
        last_job_id=last[3] if last else None,
    )


async def _last_coverage(conn: psycopg.AsyncConnection[Any], prefix: str) -> datetime | None:
    cur = await conn.execute(qualify(store.SELECT_LAST_COVERAGE, prefix))
    row = await cur.fetchone()
    return row[0] if row else None


# Reading --------------------------------------------------------------------------------------


def list_cron(settings: Settings) -> CronListResult:
    prefix = settings.prefix

    async def go(conn: psycopg.AsyncConnection[Any]) -> CronListResult:
        now = await _now(conn)
        entries = await store.list_entries(conn, prefix)
        cur = await conn.execute(qualify(store.SELECT_LAST_SLOTS, prefix))
        last = {r[0]: tuple(r) for r in await cur.fetchall()}
        return CronListResult(
            now=now,
            scheduler_last_seen=await _last_coverage(conn, prefix),
            entries=[_view(e, now, last.get(e.name)) for e in entries],
        )

    return _run(settings, go)


def show_cron(settings: Settings, name: str, *, limit: int = 20, fires: int = 5) -> CronShowResult:
    prefix = settings.prefix
    if not 1 <= limit <= 1000:
        raise InvalidInput("--limit must be between 1 and 1000")

    async def go(conn: psycopg.AsyncConnection[Any]) -> CronShowResult:
        now = await _now(conn)
        entry = await _entry(conn, prefix, name)
        cur = await conn.execute(
            qualify(store.SELECT_SLOTS, prefix), {"name": name, "limit": limit}
        )
        rows = await cur.fetchall()
        slot_views = [
            SlotView(
                slot_at=r[0],
                claimed_at=r[1],
                decision=r[2],
                job_id=r[3],
                job_state=r[7],
                manual=r[4],
                node=r[5],
                details=r[6] or {},
            )
            for r in rows
        ]
        start = now - MISSED_WINDOW
        if entry.inserted_at is not None:
            start = max(start, entry.inserted_at)
        cur = await conn.execute(
            qualify(store.SELECT_RECORDED_SINCE, prefix), {"name": name, "since": start}
        )
        recorded = {r[0]: r[1] for r in await cur.fetchall()}
        cur = await conn.execute(qualify(store.SELECT_COVERAGE_SINCE, prefix), {"since": start})
        covered = [r[0] for r in await cur.fetchall()]
        # Up to the last completed minute only: the current one may still be claimed.
        expected = list(entry.schedule.fires_between(start, minute_of(now) - timedelta(minutes=1)))
        missed: list[FireView] = []
        for at, evidence, decision in reversed(classify_fires(expected, recorded, covered)):
            recorded_missed = evidence is Evidence.recorded and decision == "missed"
            if recorded_missed or evidence is Evidence.missed:
                missed.append(FireView(at=at, evidence="missed"))
            elif evidence is Evidence.no_evidence and not entry.paused:
                missed.append(FireView(at=at, evidence="no_evidence"))
            if len(missed) >= MAX_MISSED_SHOWN:
                break
        last = (name, rows[0][0], rows[0][2], rows[0][3]) if rows else None
        return CronShowResult(
            now=now,
            entry=_view(entry, now, last),
            next_fires=[] if entry.paused else entry.schedule.next_fires(now, fires),
            slots=slot_views,
            missed=missed,
            window_start=start,
        )

    return _run(settings, go)


# Operator actions -----------------------------------------------------------------------------


def _event(action: str, name: str, actor: str, reason: str, **kw: Any) -> AuditEvent:
    return AuditEvent(
        actor=actor,
        action=f"cron.{action}",
        target_type="cron_entry",
        target_id=name,
        reason=reason,
        **kw,
    )


def set_paused(
    settings: Settings,
    name: str,
    *,
    paused: bool,
    actor: str | None,
    reason: str | None,
    dry_run: bool = False,
) -> CronActionResult:
    """Pause or resume an entry (code or runtime). Resuming does not catch up the pause."""
    action = "pause" if paused else "resume"
    command = f"cron {action}"
    who, why = ("", "") if dry_run else check_intent(actor, reason)
    prefix = settings.prefix

    async def go(conn: psycopg.AsyncConnection[Any]) -> CronActionResult:
        async with conn.transaction():
            entry = await store.get_entry(conn, prefix, name, lock=not dry_run)
            if entry is None:
                raise NotFound(f"no cron entry named {name!r}", hint="see `powertools cron list`")
            before = {"paused": entry.paused, "paused_by": entry.paused_by}
            if entry.paused == paused:
                state = "paused" if paused else "not paused"
                return CronActionResult(
                    command=command,
                    action=action,
                    name=name,
                    dry_run=dry_run,
                    changed=False,
                    message=f"{name} is already {state}; nothing to do",
                    before=before,
                    after=before,
                )
            after = {"paused": paused, "paused_by": who if paused else None}
            if dry_run:
                return CronActionResult(
                    command=command,
                    action=action,
                    name=name,
                    dry_run=True,
                    changed=False,
                    message=f"would {action} {name} (dry run: nothing changed)",
                    before=before,
                    after=after,
                )
            await conn.execute(
                qualify(store.SET_PAUSED, prefix), {"paused": paused, "actor": who, "name": name}
            )
            event = _event(
                "paused" if paused else "resumed",
                name,
                who,
                why,
                before=before,
                after=after,
                meta={"source": entry.source},
            )
            await store.record_audit(conn, prefix, [event])
        done = "paused" if paused else "resumed"
        return CronActionResult(
            command=command,
            action=action,
            name=name,
            dry_run=False,
            changed=True,
            message=f"{name} {done}",
            before=before,
            after=after,
        )

    return _run(settings, go)


def run_now(
    settings: Settings,
    name: str,
    *,
    actor: str | None,
    reason: str | None,
    dry_run: bool = False,
) -> CronActionResult:
    """Fire an entry now through the slot path (overlap policy applies; audited)."""
    who, why = ("", "") if dry_run else check_intent(actor, reason)
    prefix = settings.prefix

    async def go(conn: psycopg.AsyncConnection[Any]) -> CronActionResult:
        entry = await _entry(conn, prefix, name)
        if dry_run:
            return CronActionResult(
                command="cron run",
                action="run",
                name=name,
                dry_run=True,
                changed=False,
                message=f"would fire {name} now through its slot (overlap "
                f"{entry.overlap.value}); dry run: nothing changed",
            )
        now = await _now(conn)
        event = _event("run", name, who, why, meta={"source": entry.source})
        outcome = await store.claim_slot(
            conn, prefix, name, now, now=now, node=None, manual=True, audit=event
        )
        decision = outcome.decision.value if outcome.decision else "duplicate"
        job = f" as job {outcome.job_id}" if outcome.job_id is not None else ""
        return CronActionResult(
            command="cron run",
            action="run",
            name=name,
            dry_run=False,
            changed=outcome.decision is not None,
            message=f"{name} fired: {decision}{job}",
            decision=decision,
            job_id=outcome.job_id,
        )

    return _run(settings, go)


def add_entry(
    settings: Settings,
    config: EntryConfig,
    *,
    actor: str | None,
    reason: str | None,
    dry_run: bool = False,
) -> CronActionResult:
    """Create a runtime entry (its first fire is the first one after now)."""
    who, why = ("", "") if dry_run else check_intent(actor, reason)
    prefix = settings.prefix
    after = config.as_dict()

    async def go(conn: psycopg.AsyncConnection[Any]) -> CronActionResult:
        async with conn.transaction():
            existing = await store.get_entry(conn, prefix, config.name)
            if existing is not None:
                raise EntryExists(
                    f"cron entry {config.name!r} already exists ({existing.source})",
                    hint=f"change it with `powertools cron set {config.name} ...`"
                    if existing.source == "runtime"
                    else "it is declared in code; choose another name",
                )
            if dry_run:
                return CronActionResult(
                    command="cron add",
                    action="add",
                    name=config.name,
                    dry_run=True,
                    changed=False,
                    message=f"would add {config.name} (dry run: nothing changed)",
                    after=after,
                )
            cur = await conn.execute(
                qualify(store.INSERT_RUNTIME_ENTRY, prefix), store.config_params(config)
            )
            if await cur.fetchone() is None:
                raise EntryExists(f"cron entry {config.name!r} already exists")
            await store.record_audit(
                conn, prefix, [_event("added", config.name, who, why, after=after)]
            )
        return CronActionResult(
            command="cron add",
            action="add",
            name=config.name,
            dry_run=False,
            changed=True,
            message=f"added {config.name}",
            after=after,
        )

    return _run(settings, go)


def _refuse_code(entry: store.EntryRow, verb: str) -> None:
    if entry.source == "code":
        raise CodeManagedEntry(
            f"cron entry {entry.name!r} is declared in code and cannot be {verb} at runtime",
            hint="change its Cron(...) line and redeploy; pause/resume/run work on it",
        )


def set_entry(
    settings: Settings,
    name: str,
    changes: dict[str, Any],
    *,
    actor: str | None,
    reason: str | None,
    dry_run: bool = False,
) -> CronActionResult:
    """Change fields of a runtime entry (``changes``: expression, worker, args, timezone,
    queue, overlap, catch_up, max_catch_up); the whole result is validated again."""
    if not changes:
        raise InvalidInput(
            "nothing to change", hint="pass at least one of --expr, --worker, --args, ..."
        )
    who, why = ("", "") if dry_run else check_intent(actor, reason)
    prefix = settings.prefix

    async def go(conn: psycopg.AsyncConnection[Any]) -> CronActionResult:
        async with conn.transaction():
            entry = await store.get_entry(conn, prefix, name, lock=not dry_run)
            if entry is None:
                raise NotFound(f"no cron entry named {name!r}", hint="see `powertools cron list`")
            _refuse_code(entry, "edited")
            before = entry.config()
            merged = {**before, **changes}
            config = build_config(
                merged["expression"],
                merged["worker"],
                args=merged["args"],
                name=name,
                timezone=merged["timezone"],
                queue=merged["queue"],
                overlap=merged["overlap"],
                catch_up=merged["catch_up"],
                max_catch_up=merged["max_catch_up"],
            )
            after = config.as_dict()
            changed = after != before
            if dry_run or not changed:
                what = "would change" if changed else "no change to"
                return CronActionResult(
                    command="cron set",
                    action="set",
                    name=name,
                    dry_run=dry_run,
                    changed=False,
                    message=f"{what} {name}" + (" (dry run: nothing changed)" if dry_run else ""),
                    before=before,
                    after=after,
                )
            await conn.execute(
                qualify(store.UPDATE_RUNTIME_ENTRY, prefix), store.config_params(config)
            )
            await store.record_audit(
                conn,
                prefix,
                [_event("reconfigured", name, who, why, before=before, after=after)],
            )
        return CronActionResult(
            command="cron set",
            action="set",
            name=name,
            dry_run=False,
            changed=True,
            message=f"changed {name}",
            before=before,
            after=after,
        )

    return _run(settings, go)


def remove_entry(
    settings: Settings,
    name: str,
    *,
    actor: str | None,
    reason: str | None,
    dry_run: bool = False,
) -> CronActionResult:
    """Delete a runtime entry and its slots (jobs it inserted stay)."""
    who, why = ("", "") if dry_run else check_intent(actor, reason)
    prefix = settings.prefix

    async def go(conn: psycopg.AsyncConnection[Any]) -> CronActionResult:
        async with conn.transaction():
            entry = await store.get_entry(conn, prefix, name, lock=not dry_run)
            if entry is None:
                raise NotFound(f"no cron entry named {name!r}", hint="see `powertools cron list`")
            _refuse_code(entry, "removed")
            before = entry.config()
            if dry_run:
                return CronActionResult(
                    command="cron remove",
                    action="remove",
                    name=name,
                    dry_run=True,
                    changed=False,
                    message=f"would remove {name} (dry run: nothing changed)",
                    before=before,
                )
            await conn.execute(qualify(store.DELETE_RUNTIME_ENTRY, prefix), {"name": name})
            await store.record_audit(
                conn, prefix, [_event("removed", name, who, why, before=before)]
            )
        return CronActionResult(
            command="cron remove",
            action="remove",
            name=name,
            dry_run=False,
            changed=True,
            message=f"removed {name}",
            before=before,
        )

    return _run(settings, go)


__all__ = [
    "CodeManagedEntry",
    "EntryExists",
    "PowertoolsError",
    "add_entry",
    "check_intent",
    "list_cron",
    "remove_entry",
    "run_now",
    "set_entry",
    "set_paused",
    "show_cron",
]
