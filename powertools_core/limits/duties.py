"""The limiter's housekeeping, run by the elected leader (a ``LeaderDuty``).

Admission forgets the dead holds of a gate when it recounts it (when the gate's counter says it
may be full); this sweep covers the rest, so the tables stay close to the live state:

- a concurrency hold whose job is no longer ``executing`` that attempt is deleted;
- a token bucket that would be full by now (idle for at least its span) and is not cooling
  down is deleted: a missing bucket is minted full, so the verdicts do not change;
- a concurrency gate row with no live hold, no live lease and no cooldown is deleted likewise;
- a lease that lapsed (its process stopped renewing it) is deleted.

Rows another transaction holds are skipped (``SKIP LOCKED``), so admission never waits on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg

from powertools_core.db.identifiers import qualify
from powertools_core.limits.store import naive_utc

if TYPE_CHECKING:
    from powertools_core.runtime.leader import DutyContext

SWEEP: Final = """
WITH dead_holds AS (
    SELECT h.limit_name, h.partition_key, h.job_id
    FROM {prefix}.powertools_limit_holds h
    WHERE NOT EXISTS (
        SELECT 1 FROM {prefix}.oban_jobs j
        WHERE j.id = h.job_id AND j.state::text = 'executing' AND j.attempt = h.attempt)
    LIMIT %(limit)s
    FOR UPDATE OF h SKIP LOCKED
), gone_holds AS (
    DELETE FROM {prefix}.powertools_limit_holds h
    USING dead_holds d
    WHERE h.limit_name = d.limit_name AND h.partition_key = d.partition_key
      AND h.job_id = d.job_id
    RETURNING 1
), idle AS (
    SELECT b.limit_name, b.partition_key
    FROM {prefix}.powertools_rate_buckets b
    WHERE (b.cooldown_until IS NULL OR b.cooldown_until <= %(now)s)
      AND CASE WHEN b.kind = 'rate'
               THEN b.refilled_at + b.span_us * interval '1 microsecond' <= %(now)s
               ELSE NOT EXISTS (
                   SELECT 1
                   FROM {prefix}.powertools_limit_holds h
                   JOIN {prefix}.oban_jobs j
                     ON j.id = h.job_id AND j.state::text = 'executing'
                    AND j.attempt = h.attempt
                   WHERE h.limit_name = b.limit_name AND h.partition_key = b.partition_key)
                AND NOT EXISTS (
                   SELECT 1
                   FROM {prefix}.powertools_limit_leases l
                   WHERE l.limit_name = b.limit_name AND l.partition_key = b.partition_key
                     AND l.expires_at > %(now)s)
          END
    LIMIT %(limit)s
    FOR UPDATE OF b SKIP LOCKED
), gone_buckets AS (
    DELETE FROM {prefix}.powertools_rate_buckets b
    USING idle i
    WHERE b.limit_name = i.limit_name AND b.partition_key = i.partition_key
    RETURNING 1
), lapsed AS (
    SELECT l.limit_name, l.partition_key, l.owner
    FROM {prefix}.powertools_limit_leases l
    WHERE l.expires_at <= %(now)s
    LIMIT %(limit)s
    FOR UPDATE OF l SKIP LOCKED
), gone_leases AS (
    DELETE FROM {prefix}.powertools_limit_leases l
    USING lapsed x
    WHERE l.limit_name = x.limit_name AND l.partition_key = x.partition_key
      AND l.owner = x.owner
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone_holds), (SELECT count(*) FROM gone_buckets),
       (SELECT count(*) FROM gone_leases)
"""


class LimitsSweeper:
    """``LeaderDuty``: forget dead concurrency holds, lapsed leases and idle gates (bounded
    per run)."""

    name = "limits.sweep"

    def __init__(self, interval: float = 60.0, limit: int = 5000) -> None:
        self.interval = interval
        self.limit = limit

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        cur = await conn.execute(
            qualify(SWEEP, prefix), {"now": naive_utc(now), "limit": self.limit}
        )
        row = await cur.fetchone()
        return int(row[0]) + int(row[1]) + int(row[2]) if row else 0


def leader_duties(ctx: DutyContext) -> Iterable[LimitsSweeper]:
    """The limiter's duties for the runtime's discovery (``runtime.leader.DUTY_MODULES``)."""
    return [LimitsSweeper()]
