"""Signals to durable jobs: ``signal(target, name, payload, dedupe_key=None)``.

A signal is a row in ``powertools_signals`` addressed to one live job (by id, or by its
correlation key), kept until a step that awaits its name consumes it. Sending:

1. lock the target's row (``SELECT … FOR UPDATE``): a park (the acker's ``Await`` ack) holds the
   same row lock from its ack statement to its commit;
2. insert the signal (``ON CONFLICT (target, dedupe_key) DO NOTHING``: a duplicate is a no-op);
3. if the row, as locked (its latest committed version), is parked on this name: wake it.

No wake-up is lost when a send races a park. If the send locks first, the park's ack waits for
it, and the park's re-check (a later statement, so a fresh snapshot) sees the signal. If the
park locks first, the send waits for the park to commit and then sees the parked row. A send
that only updated rows ``WHERE state = 'suspended'`` would skip a row whose park has not
committed yet, without waiting: that is the lost wake-up this order rules out.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Final, Literal

import psycopg
from pydantic import Field

from powertools_core.audit import AuditEvent, record
from powertools_core.db.connection import connect, translated
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput, NotFound
from powertools_core.jobs.insert import (
    _default_target,
    _pool,
    async_connection,
    caller_errors,
    default_prefix,
    sync_connection,
)
from powertools_core.jobs.notify import NOTIFY_QUEUES, insert_channel
from powertools_core.results import CommandResult
from powertools_core.workflows.durable import check_key, check_signal_name
from powertools_core.workflows.values import NotJSON, encode

LIVE_STATES: Final = ("available", "scheduled", "executing", "retryable", "suspended")

_TARGET_COLUMNS: Final = """
SELECT id, state::text, queue,
       coalesce(ARRAY(SELECT jsonb_array_elements_text(meta -> 'durable' -> 'await' -> 'signals')),
                '{}'),
       meta ->> 'correlation_key'
FROM {prefix}.oban_jobs
"""

TARGET_BY_ID: Final = _TARGET_COLUMNS + "WHERE id = %(id)s\n"

# The predicate of powertools_oban_jobs_correlation_index, so the lookup uses it.
TARGET_BY_KEY: Final = (
    _TARGET_COLUMNS
    + """WHERE meta ? 'correlation_key'
  AND state IN ('available', 'scheduled', 'executing', 'retryable', 'suspended')
  AND (meta ->> 'correlation_key') = %(key)s
"""
)

LOCK: Final = "FOR UPDATE"

INSERT_SIGNAL: Final = """
INSERT INTO {prefix}.powertools_signals (target, name, payload, dedupe_key)
VALUES (%(target)s, %(name)s, %(payload)s::jsonb, %(dedupe)s)
ON CONFLICT (target, dedupe_key) DO NOTHING
RETURNING id
"""

FIND_DUPLICATE: Final = """
SELECT id FROM {prefix}.powertools_signals WHERE target = %(target)s AND dedupe_key = %(dedupe)s
"""

# The row is locked by this transaction and was just read as parked on this name.
WAKE: Final = """
UPDATE {prefix}.oban_jobs
SET state = 'available', scheduled_at = timezone('UTC', now())
WHERE id = %(id)s AND state = 'suspended'
RETURNING queue
"""


class SignalResult(CommandResult):
    """``signal(...)`` and ``powertools workflow signal``."""

    command: Literal["workflow signal"] = "workflow signal"
    target: str = Field(description="the target as given: a job id or a correlation key")
    job_id: int = Field(description="the live job the signal is for")
    job_state: str = Field(description="its state when the signal was sent")
    correlation_key: str | None = Field(description="its correlation key, if any")
    awaiting: list[str] = Field(description="signal names it was parked on (empty: not parked)")
    name: str = Field(description="the signal's name")
    signal_id: int | None = Field(description="the stored signal (null in a dry run)")
    delivered: bool = Field(description="a new signal was stored")
    duplicate: bool = Field(description="a signal with this dedupe key was already there")
    woke: bool = Field(description="the job was parked on this name and is runnable again")
    dry_run: bool = Field(default=False, description="nothing was written")


def parse_target(target: int | str, *, by_key: bool = False) -> tuple[int | None, str | None]:
    """(job id, correlation key): an int (or, from the CLI, all digits) is a job id."""
    if isinstance(target, bool):
        raise InvalidInput(f"a signal target is a job id or a correlation key, not {target!r}")
    if isinstance(target, int):
        return target, None
    if not by_key and isinstance(target, str) and target.isdigit():
        return int(target), None
    return None, check_key(target)


def _check(name: str, payload: Any, dedupe_key: str | None) -> str:
    check_signal_name(name)
    if dedupe_key is not None and (not isinstance(dedupe_key, str) or not dedupe_key):
        raise InvalidInput("dedupe_key must be a non-empty string (or None)")
    try:
        return encode(payload, "the signal payload")
    except NotJSON as exc:
        raise InvalidInput(str(exc)) from None


def check_request(
    target: int | str, name: str, payload: Any, *, dedupe_key: str | None, by_key: bool = False
) -> None:
    """Refuse a malformed signal before anything else is asked or read (the CLI checks it ahead
    of its confirmation prompt, so a bad target is reported as such, not as a missing --yes)."""
    _check(name, payload, dedupe_key)
    parse_target(target, by_key=by_key)


def _target_sql(job_id: int | None, prefix: str, lock: bool) -> str:
    text = TARGET_BY_ID if job_id is not None else TARGET_BY_KEY
    return qualify(text + (LOCK if lock else ""), prefix)


def _refuse_missing(target: int | str, row: Any) -> tuple[Any, ...]:
    if row is None:
        what = f"job {target}" if isinstance(target, int) else f"live job with key {target!r}"
        raise NotFound(f"no {what} to signal")
    if row[1] not in LIVE_STATES:
        raise InvalidInput(f"job {row[0]} has ended ({row[1]}): there is nothing to signal")
    return tuple(row)


def _result(target: int | str, row: tuple[Any, ...], name: str, **kwargs: Any) -> SignalResult:
    return SignalResult(
        target=str(target),
        job_id=row[0],
        job_state=row[1],
        correlation_key=row[4],
        awaiting=list(row[3] or []),
        name=name,
        **kwargs,
    )


def _audit(actor: str, reason: str | None, result: SignalResult, dedupe: str | None) -> AuditEvent:
    return AuditEvent(
        actor=actor,
        action="workflow.signal",
        target_type="job",
        target_id=str(result.job_id),
        reason=reason,
        before={"state": result.job_state},
        after={"state": "available" if result.woke else result.job_state},
        meta={
            "name": result.name,
            "dedupe_key": dedupe,
            "signal_id": result.signal_id,
            "duplicate": result.duplicate,
            "woke": result.woke,
            "correlation_key": result.correlation_key,
        },
    )


def send_sync(
    pg: psycopg.Connection[Any],
    prefix: str,
    target: int | str,
    name: str,
    payload: Any = None,
    *,
    dedupe_key: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    by_key: bool = False,
) -> SignalResult:
    """Send on ``pg`` in its transaction (its own one on an autocommit connection)."""
    text = _check(name, payload, dedupe_key)
    job_id, key = parse_target(target, by_key=by_key)
    params = {"id": job_id, "key": key}
    with pg.transaction() if pg.autocommit else nullcontext():
        row = _refuse_missing(
            target, pg.execute(_target_sql(job_id, prefix, not dry_run), params).fetchone()
        )
        awaited = name in (row[3] or [])
        if dry_run:
            dup = None
            if dedupe_key is not None:
                dup = pg.execute(
                    qualify(FIND_DUPLICATE, prefix), {"target": str(row[0]), "dedupe": dedupe_key}
                ).fetchone()
            return _result(
                target,
                row,
                name,
                signal_id=None,
                delivered=False,
                duplicate=dup is not None,
                woke=dup is None and awaited and row[1] == "suspended",
                dry_run=True,
            )
        inserted = pg.execute(
            qualify(INSERT_SIGNAL, prefix),
            {"target": str(row[0]), "name": name, "payload": text, "dedupe": dedupe_key},
        ).fetchone()
        signal_id, duplicate, woke = None, inserted is None, False
        if inserted is not None:
            signal_id = inserted[0]
            if awaited and row[1] == "suspended":
                woken = pg.execute(qualify(WAKE, prefix), {"id": row[0]}).fetchone()
                if woken is not None:
                    woke = True
                    pg.execute(NOTIFY_QUEUES, (insert_channel(prefix), [woken[0]]))
        else:
            found = pg.execute(
                qualify(FIND_DUPLICATE, prefix), {"target": str(row[0]), "dedupe": dedupe_key}
            ).fetchone()
            signal_id = found[0] if found else None
        result = _result(
            target,
            row,
            name,
            signal_id=signal_id,
            delivered=not duplicate,
            duplicate=duplicate,
            woke=woke,
        )
        if actor is not None:
            record(pg, prefix, [_audit(actor, reason, result, dedupe_key)])
    return result


async def send_async(
    pg: psycopg.AsyncConnection[Any],
    prefix: str,
    target: int | str,
    name: str,
    payload: Any = None,
    *,
    dedupe_key: str | None = None,
    by_key: bool = False,
) -> SignalResult:
    """Async twin of :func:`send_sync` (no audit, no dry run: that is the CLI's)."""
    text = _check(name, payload, dedupe_key)
    job_id, key = parse_target(target, by_key=by_key)
    tx = pg.transaction() if pg.autocommit else nullcontext()
    async with tx:
        cur = await pg.execute(_target_sql(job_id, prefix, True), {"id": job_id, "key": key})
        row = _refuse_missing(target, await cur.fetchone())
        cur = await pg.execute(
            qualify(INSERT_SIGNAL, prefix),
            {"target": str(row[0]), "name": name, "payload": text, "dedupe": dedupe_key},
        )
        inserted = await cur.fetchone()
        signal_id, woke = None, False
        if inserted is not None:
            signal_id = inserted[0]
            if name in (row[3] or []) and row[1] == "suspended":
                cur = await pg.execute(qualify(WAKE, prefix), {"id": row[0]})
                woken = await cur.fetchone()
                if woken is not None:
                    woke = True
                    await pg.execute(NOTIFY_QUEUES, (insert_channel(prefix), [woken[0]]))
        else:
            cur = await pg.execute(
                qualify(FIND_DUPLICATE, prefix), {"target": str(row[0]), "dedupe": dedupe_key}
            )
            found = await cur.fetchone()
            signal_id = found[0] if found else None
    return _result(
        target,
        row,
        name,
        signal_id=signal_id,
        delivered=inserted is not None,
        duplicate=inserted is None,
        woke=woke,
    )


def signal(
    target: int | str,
    name: str,
    payload: Any = None,
    *,
    dedupe_key: str | None = None,
    conn: Any = None,
    prefix: str | None = None,
) -> SignalResult:
    """Send signal ``name`` (with a JSON ``payload``) to a live job: its id, or its correlation
    key (``correlate``). Kept until a step awaiting ``name`` consumes it; wakes the job when it
    is parked on ``name``. A repeat with the same ``dedupe_key`` is a no-op (``duplicate``).

    With ``conn`` (psycopg or SQLAlchemy) it runs in the caller's transaction. Raises
    ``NotFound`` when no live job has that id or key.
    """
    if conn is None:
        where = _default_target(prefix)
        with translated(where.url), _pool(where.url).connection() as pg:
            return send_sync(pg, where.prefix, target, name, payload, dedupe_key=dedupe_key)
    pg = sync_connection(conn)
    with caller_errors():
        return send_sync(pg, default_prefix(prefix), target, name, payload, dedupe_key=dedupe_key)


async def signal_async(
    target: int | str,
    name: str,
    payload: Any = None,
    *,
    dedupe_key: str | None = None,
    conn: Any = None,
    prefix: str | None = None,
) -> SignalResult:
    """:func:`signal` for asyncio (``conn``: psycopg ``AsyncConnection`` or SQLAlchemy async)."""
    if conn is None:
        where = _default_target(prefix)
        with translated(where.url):
            from powertools_core.db.connection import connect_async

            async with await connect_async(where.url, autocommit=True) as pg:
                return await send_async(
                    pg, where.prefix, target, name, payload, dedupe_key=dedupe_key
                )
    apg = await async_connection(conn)
    with caller_errors():
        return await send_async(
            apg, default_prefix(prefix), target, name, payload, dedupe_key=dedupe_key
        )


def signal_command(
    url: str,
    prefix: str,
    target: str,
    name: str,
    payload: Any,
    *,
    dedupe_key: str | None,
    actor: str,
    reason: str,
    dry_run: bool,
    by_key: bool,
) -> SignalResult:
    """``powertools workflow signal``: one connection, audited in the same transaction."""
    with translated(url), connect(url, autocommit=True) as pg:
        return send_sync(
            pg,
            prefix,
            target,
            name,
            payload,
            dedupe_key=dedupe_key,
            actor=None if dry_run else actor,
            reason=reason,
            dry_run=dry_run,
            by_key=by_key,
        )
