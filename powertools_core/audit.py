"""The operator audit trail: append-only events written in the same transaction as the change.

Every mutation (ops, archive, limiter cooldown, cron, workflow commands) records one event per
run and one per affected target, so "who did this, when, why, and what changed" has an answer.
The product has no update or delete path for events: ``record`` appends, ``list_events`` reads
(newest first, keyset pages), and only ``archive`` moves old events to the archive table.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput

INSERT_EVENTS: Final = """
INSERT INTO {prefix}.powertools_audit_events
    (actor, action, target_type, target_id, reason, result, run_id, before, after, meta)
SELECT * FROM unnest(
    %(actor)s::text[], %(action)s::text[], %(target_type)s::text[], %(target_id)s::text[],
    %(reason)s::text[], %(result)s::text[], %(run_id)s::uuid[], %(before)s::jsonb[],
    %(after)s::jsonb[], %(meta)s::jsonb[]
)
"""

EVENT_COLUMNS: Final = (
    "id, at, actor, action, target_type, target_id, reason, result, run_id, before, after, meta"
)

# Reading: each filter is a constant fragment, values are bound; newest first by id (keyset).
SELECT_EVENTS: Final = """
SELECT {columns} FROM {prefix}.powertools_audit_events AS e
WHERE {where} ORDER BY e.id DESC LIMIT %(limit)s
""".replace("{columns}", EVENT_COLUMNS)
ACTOR_CLAUSE: Final = "e.actor = %(actor)s"
ACTION_CLAUSE: Final = "e.action = %(action)s"
ACTION_PREFIX_CLAUSE: Final = "starts_with(e.action, %(action_prefix)s)"
TARGET_TYPE_CLAUSE: Final = "e.target_type = %(target_type)s"
TARGET_ID_CLAUSE: Final = "e.target_id = %(target_id)s"
RUN_CLAUSE: Final = "e.run_id = %(run_id)s"
SINCE_CLAUSE: Final = "e.at >= %(since)s"
SINCE_AGO_CLAUSE: Final = "e.at >= timezone('UTC', now()) - %(since_ago)s::interval"
BEFORE_ID_CLAUSE: Final = "e.id < %(before_id)s"
MAX_PAGE: Final = 10_000


@dataclass(slots=True)
class AuditEvent:
    actor: str
    action: str
    target_type: str
    target_id: str | None = None
    reason: str | None = None
    result: str = "ok"
    run_id: uuid.UUID | None = None
    before: Any = None
    after: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    id: int | None = None


def record(conn: psycopg.Connection[Any], prefix: str, events: Sequence[AuditEvent]) -> int:
    """Insert events with one statement (in the caller's transaction). Returns how many."""
    if not events:
        return 0
    params: dict[str, list[Any]] = {
        "actor": [],
        "action": [],
        "target_type": [],
        "target_id": [],
        "reason": [],
        "result": [],
        "run_id": [],
        "before": [],
        "after": [],
        "meta": [],
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
    conn.execute(qualify(INSERT_EVENTS, prefix), params)
    return len(events)


def record_one(conn: psycopg.Connection[Any], prefix: str, event: AuditEvent) -> None:
    record(conn, prefix, [event])


def event_from_row(row: Sequence[Any]) -> AuditEvent:
    """An ``AuditEvent`` from a row in ``EVENT_COLUMNS`` order."""
    return AuditEvent(
        id=row[0],
        at=row[1],
        actor=row[2],
        action=row[3],
        target_type=row[4],
        target_id=row[5],
        reason=row[6],
        result=row[7],
        run_id=row[8],
        before=row[9],
        after=row[10],
        meta=row[11] if isinstance(row[11], dict) else {},
    )


def events_where(
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    run_id: uuid.UUID | None = None,
    since: datetime | timedelta | None = None,
    before_id: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The WHERE body (alias ``e``) and parameters for ``list_events`` (pure).

    ``action`` ending in ``*`` matches by prefix (``ops.*``); ``since`` is an absolute UTC time
    or an age (``timedelta``: events newer than that).
    """
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if actor is not None:
        clauses.append(ACTOR_CLAUSE)
        params["actor"] = actor
    if action is not None:
        if action.endswith("*"):
            clauses.append(ACTION_PREFIX_CLAUSE)
            params["action_prefix"] = action[:-1]
        else:
            clauses.append(ACTION_CLAUSE)
            params["action"] = action
    if target_type is not None:
        clauses.append(TARGET_TYPE_CLAUSE)
        params["target_type"] = target_type
    if target_id is not None:
        clauses.append(TARGET_ID_CLAUSE)
        params["target_id"] = target_id
    if run_id is not None:
        clauses.append(RUN_CLAUSE)
        params["run_id"] = run_id
    if isinstance(since, timedelta):
        clauses.append(SINCE_AGO_CLAUSE)
        params["since_ago"] = since
    elif since is not None:
        clauses.append(SINCE_CLAUSE)
        params["since"] = since
    if before_id is not None:
        clauses.append(BEFORE_ID_CLAUSE)
        params["before_id"] = before_id
    return (" AND ".join(clauses) or "TRUE"), params


def list_events(
    conn: psycopg.Connection[Any],
    prefix: str,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    run_id: uuid.UUID | None = None,
    since: datetime | timedelta | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditEvent]:
    """Events matching every given filter, newest first; page on with ``before_id`` = the last
    id of the previous page."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    where, params = events_where(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        run_id=run_id,
        since=since,
        before_id=before_id,
    )
    params["limit"] = limit
    sql = qualify(SELECT_EVENTS.replace("{where}", where), prefix)
    return [event_from_row(r) for r in conn.execute(sql, params).fetchall()]
