"""``limiter cooldown`` / ``limiter resume``: an operator hold on a limit or one partition.

A hold blocks admission regardless of tokens or slots until it ends or is lifted. Both actions
run in one transaction with their audit event (``limiter.cooldown`` / ``limiter.resume``).
Worker processes notice within a second (their saturation cache never trusts a cooldown
longer than that).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from powertools_core.audit import AuditEvent, record
from powertools_core.config import Settings
from powertools_core.db.connection import connect, resolve_url, translated
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput
from powertools_core.limits.declarations import ConcurrencyLimit, Gate, RateLimit
from powertools_core.limits.explain import _find_limit
from powertools_core.limits.results import CooldownResult
from powertools_core.limits.store import aware_utc, db_now, load_limit, naive_utc, sync
from powertools_core.limits.store import worker_limits as _worker_limits

MIN_REASON: Final = 8
MAX_HOLD: Final = timedelta(days=365)

LOCK_LIMIT: Final = """
SELECT cooldown_until FROM {prefix}.powertools_rate_limits WHERE name = %(name)s FOR UPDATE
"""
SET_LIMIT_COOLDOWN: Final = """
UPDATE {prefix}.powertools_rate_limits
SET cooldown_until = %(until)s, cooldown_actor = %(actor)s, cooldown_reason = %(reason)s,
    updated_at = timezone('UTC', now())
WHERE name = %(name)s
"""
LOCK_GATE: Final = """
SELECT cooldown_until FROM {prefix}.powertools_rate_buckets
WHERE limit_name = %(name)s AND partition_key = %(part)s FOR UPDATE
"""
UPSERT_GATE_COOLDOWN: Final = """
INSERT INTO {prefix}.powertools_rate_buckets AS b
    (limit_name, partition_key, kind, capacity, span_us, level, refilled_at, cooldown_until,
     cooldown_actor, cooldown_reason)
VALUES (%(name)s, %(part)s, %(kind)s, %(cap)s, %(span)s, %(level)s, %(now)s, %(until)s,
        %(actor)s, %(reason)s)
ON CONFLICT (limit_name, partition_key) DO UPDATE
SET cooldown_until = EXCLUDED.cooldown_until, cooldown_actor = EXCLUDED.cooldown_actor,
    cooldown_reason = EXCLUDED.cooldown_reason
"""
CLEAR_GATES: Final = """
UPDATE {prefix}.powertools_rate_buckets
SET cooldown_until = NULL, cooldown_actor = NULL, cooldown_reason = NULL
WHERE limit_name = %(name)s AND cooldown_until IS NOT NULL
  AND (%(part)s::text IS NULL OR partition_key = %(part)s)
"""


def check_intent(actor: str | None, reason: str | None) -> tuple[str, str]:
    who = (actor or "").strip()
    why = " ".join((reason or "").split())
    if not who:
        raise InvalidInput(
            "an actor is required to change a limit",
            hint="pass --actor NAME or set POWERTOOLS_ACTOR",
        )
    if len(why) < MIN_REASON:
        raise InvalidInput(
            f"a reason of at least {MIN_REASON} characters is required to change a limit",
            hint='e.g. --reason "provider returns 429, backing off"',
        )
    return who, why


def _gate(limit: RateLimit | ConcurrencyLimit, partition: str) -> Gate:
    if isinstance(limit, RateLimit):
        if limit.partition_by is None:
            raise InvalidInput(f"limit {limit.name!r} is not partitioned; drop --partition")
        return limit.gate(partition)
    gate = limit.partition_gate(partition)
    if gate is None:
        raise InvalidInput(f"limit {limit.name!r} is not partitioned; drop --partition")
    return gate


def _prepare(conn: psycopg.Connection[Any], prefix: str, name: str) -> RateLimit | ConcurrencyLimit:
    """The limit (declared or recorded); a declared one not yet recorded is recorded now."""
    from powertools_core.workers import registered

    limit = _find_limit(conn, prefix, name)
    if load_limit(conn, prefix, name) is None:
        sync(conn, prefix, [p for p in _worker_limits(registered()) if p[0].name == name])
    return limit


def cooldown(
    settings: Settings,
    name: str,
    *,
    partition: str | None = None,
    until: datetime | None = None,
    duration: timedelta | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> CooldownResult:
    """Hold ``name`` (or one partition) until ``until`` or for ``duration``; audited."""
    who, why = check_intent(actor or settings.actor, reason)
    if (until is None) == (duration is None):
        raise InvalidInput(
            "give exactly one of --until TIME or --for DURATION", hint="e.g. --for 10m"
        )
    if partition == "":
        raise InvalidInput("--partition must not be empty")
    url = resolve_url(settings)
    prefix = settings.prefix
    with translated(url), connect(url) as conn, conn.transaction():
        now = db_now(conn)
        end = naive_utc(until) if until is not None else now + (duration or timedelta(0))
        if end <= now:
            raise InvalidInput("the cooldown must end in the future")
        if end - now > MAX_HOLD:
            raise InvalidInput("a cooldown may last at most 365d")
        limit = _prepare(conn, prefix, name)
        if partition is None:
            row = conn.execute(qualify(LOCK_LIMIT, prefix), {"name": name}).fetchone()
            previous = row[0] if row else None
            conn.execute(
                qualify(SET_LIMIT_COOLDOWN, prefix),
                {"name": name, "until": end, "actor": who, "reason": why},
            )
        else:
            gate = _gate(limit, partition)
            row = conn.execute(
                qualify(LOCK_GATE, prefix), {"name": name, "part": partition}
            ).fetchone()
            previous = row[0] if row else None
            conn.execute(
                qualify(UPSERT_GATE_COOLDOWN, prefix),
                {
                    "name": name,
                    "part": partition,
                    "kind": gate.kind,
                    "cap": gate.capacity,
                    "span": gate.span_us,
                    "level": gate.full_level,
                    "now": now,
                    "until": end,
                    "actor": who,
                    "reason": why,
                },
            )
        event = AuditEvent(
            actor=who,
            action="limiter.cooldown",
            target_type="limiter",
            target_id=name,
            reason=why,
            before={"cooldown_until": _iso(previous)},
            after={"cooldown_until": _iso(end)},
            meta={"partition": partition},
        )
        record(conn, prefix, [event])
    return CooldownResult(
        command="limiter cooldown",
        limit=name,
        partition=partition,
        action="cooldown",
        cooldown_until=aware_utc(end),
        previous_until=aware_utc(previous),
        actor=who,
        reason=why,
    )


def resume(
    settings: Settings,
    name: str,
    *,
    partition: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> CooldownResult:
    """Lift the hold on ``name``: the whole limit and every partition, or only ``partition``."""
    who, why = check_intent(actor or settings.actor, reason)
    url = resolve_url(settings)
    prefix = settings.prefix
    with translated(url), connect(url) as conn, conn.transaction():
        limit = _prepare(conn, prefix, name)
        previous = None
        if partition is None:
            row = conn.execute(qualify(LOCK_LIMIT, prefix), {"name": name}).fetchone()
            previous = row[0] if row else None
            conn.execute(
                qualify(SET_LIMIT_COOLDOWN, prefix),
                {"name": name, "until": None, "actor": None, "reason": None},
            )
        else:
            _gate(limit, partition)
            row = conn.execute(
                qualify(LOCK_GATE, prefix), {"name": name, "part": partition}
            ).fetchone()
            previous = row[0] if row else None
        cleared = conn.execute(
            qualify(CLEAR_GATES, prefix), {"name": name, "part": partition}
        ).rowcount
        record(
            conn,
            prefix,
            [
                AuditEvent(
                    actor=who,
                    action="limiter.resume",
                    target_type="limiter",
                    target_id=name,
                    reason=why,
                    before={"cooldown_until": _iso(previous)},
                    after={"cooldown_until": None},
                    meta={"partition": partition, "cleared_partitions": cleared},
                )
            ],
        )
    return CooldownResult(
        command="limiter resume",
        limit=name,
        partition=partition,
        action="resume",
        cooldown_until=None,
        previous_until=aware_utc(previous),
        actor=who,
        reason=why,
        cleared_partitions=cleared if partition is None else 0,
    )


def _iso(moment: datetime | None) -> str | None:
    value = aware_utc(moment)
    return value.isoformat() if value else None
