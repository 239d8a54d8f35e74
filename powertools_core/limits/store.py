"""Where limits live in the database: configured limits and the live state of their gates.

``sync`` records declared limits in ``powertools_rate_limits`` (at worker start, by admission
the first time a process meets a limit, and on demand by the CLI). Operator cooldowns sit on
the same row (whole limit) or on a gate row (one partition) and are never touched by ``sync``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.limits.declarations import (
    ConcurrencyLimit,
    Gate,
    Limit,
    RateLimit,
    describe_resolver,
)
from powertools_core.limits.reservation import GateState

UPSERT_LIMITS: Final = """
INSERT INTO {prefix}.powertools_rate_limits AS l
    (name, kind, scope, partition_by, bucket_capacity, bucket_span_ms, global_limit,
     partition_limit, weight, weight_by, workers, source, updated_at)
SELECT u.name, u.kind, u.scope, u.partition_by, u.capacity, u.span_ms, u.global_limit,
       u.partition_limit, u.weight, u.weight_by,
       ARRAY(SELECT jsonb_array_elements_text(u.workers)), 'code', timezone('UTC', now())
FROM unnest(
    %(name)s::text[], %(kind)s::text[], %(scope)s::text[], %(partition_by)s::text[],
    %(capacity)s::integer[], %(span_ms)s::bigint[], %(global_limit)s::integer[],
    %(partition_limit)s::integer[], %(weight)s::integer[], %(weight_by)s::text[],
    %(workers)s::jsonb[]
) AS u(name, kind, scope, partition_by, capacity, span_ms, global_limit, partition_limit,
       weight, weight_by, workers)
ORDER BY u.name COLLATE "C"
ON CONFLICT (name) DO UPDATE
SET kind = EXCLUDED.kind, scope = EXCLUDED.scope, partition_by = EXCLUDED.partition_by,
    bucket_capacity = EXCLUDED.bucket_capacity, bucket_span_ms = EXCLUDED.bucket_span_ms,
    global_limit = EXCLUDED.global_limit, partition_limit = EXCLUDED.partition_limit,
    weight = EXCLUDED.weight, weight_by = EXCLUDED.weight_by,
    workers = ARRAY(SELECT DISTINCT w FROM unnest(l.workers || EXCLUDED.workers) AS w ORDER BY w),
    source = 'code', updated_at = EXCLUDED.updated_at
WHERE (l.kind, l.scope, l.partition_by, l.bucket_capacity, l.bucket_span_ms, l.global_limit,
       l.partition_limit, l.weight, l.weight_by)
      IS DISTINCT FROM
      (EXCLUDED.kind, EXCLUDED.scope, EXCLUDED.partition_by, EXCLUDED.bucket_capacity,
       EXCLUDED.bucket_span_ms, EXCLUDED.global_limit, EXCLUDED.partition_limit,
       EXCLUDED.weight, EXCLUDED.weight_by)
   OR NOT (l.workers @> EXCLUDED.workers)
"""

SELECT_LIMITS: Final = """
SELECT name, kind, scope, partition_by, bucket_capacity, bucket_span_ms, global_limit,
       partition_limit, weight, weight_by, workers, source, cooldown_until, cooldown_actor,
       cooldown_reason, updated_at
FROM {prefix}.powertools_rate_limits
ORDER BY name
"""

SELECT_LIMIT: Final = """
SELECT name, kind, scope, partition_by, bucket_capacity, bucket_span_ms, global_limit,
       partition_limit, weight, weight_by, workers, source, cooldown_until, cooldown_actor,
       cooldown_reason, updated_at
FROM {prefix}.powertools_rate_limits
WHERE name = %(name)s
"""

# The state of some gates as admission would see it (without locking anything): the bucket's
# level, or the taken slots of a concurrency gate (executing holds plus live leased slots);
# cooldowns of the limit and the gate.
SELECT_GATE_STATES: Final = """
SELECT g.name, g.part, b.kind, b.level, b.refilled_at,
       CASE WHEN b.cooldown_until >= coalesce(l.cooldown_until, b.cooldown_until)
            THEN b.cooldown_until ELSE l.cooldown_until END,
       CASE WHEN b.cooldown_until >= coalesce(l.cooldown_until, b.cooldown_until)
            THEN b.cooldown_reason ELSE l.cooldown_reason END,
       (SELECT count(*)
        FROM {prefix}.powertools_limit_holds h
        JOIN {prefix}.oban_jobs j
          ON j.id = h.job_id AND j.state::text = 'executing' AND j.attempt = h.attempt
        WHERE h.limit_name = g.name AND h.partition_key = g.part)
       + (SELECT coalesce(sum(l.slots), 0)
          FROM {prefix}.powertools_limit_leases l
          WHERE l.limit_name = g.name AND l.partition_key = g.part
            AND l.expires_at > timezone('UTC', clock_timestamp()))
FROM unnest(%(names)s::text[], %(parts)s::text[]) AS g(name, part)
LEFT JOIN {prefix}.powertools_rate_buckets b
  ON b.limit_name = g.name AND b.partition_key = g.part
LEFT JOIN {prefix}.powertools_rate_limits l ON l.name = g.name
"""

SELECT_DB_NOW: Final = "SELECT timezone('UTC', clock_timestamp())"


@dataclass(frozen=True, slots=True)
class StoredLimit:
    name: str
    kind: str
    scope: str
    partition_by: str | None
    bucket_capacity: int | None
    bucket_span_ms: int | None
    global_limit: int | None
    partition_limit: int | None
    weight: int
    weight_by: str | None
    workers: list[str]
    source: str
    cooldown_until: datetime | None
    cooldown_actor: str | None
    cooldown_reason: str | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredLimit:
        return cls(
            name=row[0],
            kind=row[1],
            scope=row[2],
            partition_by=row[3],
            bucket_capacity=row[4],
            bucket_span_ms=row[5],
            global_limit=row[6],
            partition_limit=row[7],
            weight=row[8],
            weight_by=row[9],
            workers=list(row[10] or []),
            source=row[11],
            cooldown_until=row[12],
            cooldown_actor=row[13],
            cooldown_reason=row[14],
            updated_at=row[15],
        )


def naive_utc(moment: datetime) -> datetime:
    """The ``timestamp`` (UTC, no zone) form the Oban schema stores."""
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def aware_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sync_params(limits: Iterable[tuple[Limit, str]]) -> dict[str, list[Any]]:
    """Parameters of ``UPSERT_LIMITS`` for (limit, worker) pairs; one row per limit name."""
    from psycopg.types.json import Jsonb

    by_name: dict[str, tuple[Limit, set[str]]] = {}
    for limit, worker in limits:
        entry = by_name.setdefault(limit.name, (limit, set()))
        entry[1].add(worker)
    params: dict[str, list[Any]] = {
        k: []
        for k in (
            "name",
            "kind",
            "scope",
            "partition_by",
            "capacity",
            "span_ms",
            "global_limit",
            "partition_limit",
            "weight",
            "weight_by",
            "workers",
        )
    }
    for name in sorted(by_name):
        limit, workers = by_name[name]
        params["name"].append(name)
        params["kind"].append(limit.kind)
        params["scope"].append(limit.scope)
        params["partition_by"].append(describe_resolver(limit.partition_by))
        params["workers"].append(Jsonb(sorted(workers)))
        if isinstance(limit, RateLimit):
            params["capacity"].append(limit.bucket_capacity)
            params["span_ms"].append(limit.span_ms)
            params["global_limit"].append(None)
            params["partition_limit"].append(None)
            params["weight"].append(limit.weight)
            params["weight_by"].append(describe_resolver(limit.weight_by))
        else:
            params["capacity"].append(None)
            params["span_ms"].append(None)
            params["global_limit"].append(limit.global_limit)
            params["partition_limit"].append(limit.partition_limit)
            params["weight"].append(1)
            params["weight_by"].append(None)
    return params


def worker_limits(workers: Mapping[str, type[Any]]) -> list[tuple[Limit, str]]:
    """Every (limit, worker path) declared by the given registered workers."""
    pairs: list[tuple[Limit, str]] = []
    for path, cls in sorted(workers.items()):
        for limit in getattr(cls, "limits", ()):
            if isinstance(limit, RateLimit | ConcurrencyLimit):
                pairs.append((limit, path))
    return pairs


def sync(conn: psycopg.Connection[Any], prefix: str, limits: Iterable[tuple[Limit, str]]) -> int:
    """Record declared limits (config only; cooldowns are left alone). Returns rows written."""
    params = sync_params(limits)
    if not params["name"]:
        return 0
    cur = conn.execute(qualify(UPSERT_LIMITS, prefix), params)
    return cur.rowcount


async def sync_async(
    conn: psycopg.AsyncConnection[Any], prefix: str, limits: Iterable[tuple[Limit, str]]
) -> int:
    params = sync_params(limits)
    if not params["name"]:
        return 0
    cur = await conn.execute(qualify(UPSERT_LIMITS, prefix), params)
    return cur.rowcount


def load_limits(conn: psycopg.Connection[Any], prefix: str) -> list[StoredLimit]:
    return [StoredLimit.from_row(r) for r in conn.execute(qualify(SELECT_LIMITS, prefix))]


def load_limit(conn: psycopg.Connection[Any], prefix: str, name: str) -> StoredLimit | None:
    row = conn.execute(qualify(SELECT_LIMIT, prefix), {"name": name}).fetchone()
    return StoredLimit.from_row(row) if row else None


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute(SELECT_DB_NOW).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def gate_states(
    conn: psycopg.Connection[Any], prefix: str, gates: Sequence[Gate]
) -> dict[tuple[str, str], GateState | None]:
    """Current state of ``gates`` (None: never used, i.e. a full bucket / idle counter, unless
    the limit itself is cooling down)."""
    if not gates:
        return {}
    rows = conn.execute(
        qualify(SELECT_GATE_STATES, prefix),
        {"names": [g.name for g in gates], "parts": [g.partition for g in gates]},
    ).fetchall()
    kinds = {g.key: g.kind for g in gates}
    out: dict[tuple[str, str], GateState | None] = {}
    for name, part, _kind, level, refilled_at, cool_until, cool_reason, holds in rows:
        key = (name, part)
        if kinds[key] == "rate":
            if level is None and cool_until is None:
                out[key] = None
                continue
            gate = next(g for g in gates if g.key == key)
            out[key] = GateState(
                level if level is not None else gate.full_level,
                refilled_at,
                cool_until,
                cool_reason,
            )
        else:
            out[key] = GateState(int(holds), refilled_at, cool_until, cool_reason)
    return out
