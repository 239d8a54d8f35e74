"""The operator audit trail: append-only events written in the same transaction as the change.

Every mutation (ops, archive, limiter cooldown, cron, workflow commands) records one event per
run and one per affected target, so "who did this, when, why, and what changed" has an answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from powertools_core.db.identifiers import qualify

INSERT_EVENTS: Final = """
INSERT INTO {prefix}.powertools_audit_events
    (actor, action, target_type, target_id, reason, result, run_id, before, after, meta)
SELECT * FROM unnest(
    %(actor)s::text[], %(action)s::text[], %(target_type)s::text[], %(target_id)s::text[],
    %(reason)s::text[], %(result)s::text[], %(run_id)s::uuid[], %(before)s::jsonb[],
    %(after)s::jsonb[], %(meta)s::jsonb[]
)
"""


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
