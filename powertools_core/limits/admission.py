"""Admission: which jobs of a just-claimed batch may run, decided in the database.

The runtime claims a batch with its fetch statement, then calls :func:`admit` when any claimed
job's worker declares limits, and releases the refused jobs back to ``available`` (attempt
restored). Admission is one autocommit call of ``powertools_limits_admit`` (migration 0003): it
locks each gate the batch needs (sorted, so pickers never deadlock), reads the gates with a
fresh snapshot, decides the batch in priority order with the rule of
:mod:`powertools_core.limits.reservation`, and writes the debited levels and concurrency holds
back. The bucket's CHECK (``0 <= level <= capacity * span``) makes an over-debit impossible to
commit; the gate row lock is the serialisation point for concurrency across nodes. A job holds a
concurrency slot while it is ``executing`` that attempt, so any outcome (ack, rescue, release)
frees it without further writes.

What an unsaturated batch costs is kept small: a concurrency gate carries a counter that never
counts fewer than its live holds, so a batch that fits every gate is granted without reading
the holds (they are recounted, and the dead ones forgotten, only when a counter says a gate may
be full); a batch whose jobs all use one token bucket is one conditional UPDATE
(``FAST_DEBIT``); arrays travel as literals.

A small per-process cache remembers gates that blocked ("saturated until t"), so a saturated
limit refuses jobs without a round trip until t (at most ``CACHE_MAX``; cooldowns are
re-checked at that pace so ``limiter resume`` takes effect quickly).

A worker process passes its :class:`~powertools_core.limits.leases.LeaseBook`: jobs whose
limits are all concurrency limits are then admitted from slots the process leases
(``powertools_limits_lease``, migration 0004) and freed in memory when they finish, so an
unsaturated concurrency limit costs a round trip only when a lease must grow, and a keep-alive
(:func:`keep_alive`) twice a second. Jobs under a rate limit take the function above.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final

import psycopg

from powertools_core.db.arrays import int_array, text_array
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput
from powertools_core.jobs.model import Job
from powertools_core.limits.declarations import Demand, Gate, worker_demands
from powertools_core.limits.leases import Grant, LeaseBook, Request
from powertools_core.limits.store import naive_utc, sync_async, worker_limits

log = logging.getLogger("powertools.limits")

CACHE_MAX: Final = timedelta(seconds=1)

HOLDS_KEY: Final = "powertools_limit_holds_pkey"

# One row per refused job (admitted jobs are implied). The arrays travel as array literals built
# by ``db.arrays``: psycopg's per-element array adaptation cost more than the
# function itself on an unsaturated batch.
ADMIT: Final = """
SELECT o_job, o_code, o_gate, o_retry_at
FROM {prefix}.powertools_limits_admit(
    %(now)s::timestamp, %(g_name)s::text[], %(g_part)s::text[], %(g_kind)s::text[],
    %(g_cap)s::integer[], %(g_span)s::bigint[], %(g_jobs)s::integer[], %(g_weight)s::bigint[],
    %(g_heaviest)s::integer[], %(jobs)s::bigint[], %(attempts)s::integer[],
    %(d_job)s::integer[], %(d_gate)s::integer[], %(d_weight)s::integer[], %(replace)s::boolean
)
"""


# The common case in one statement: a batch whose jobs all need one token bucket that holds
# enough for all of them (and no hold on it). The sequential rule then admits every job and
# debits the sum, so this is the rule itself, not an approximation; the WHERE is re-checked on
# the latest row version under concurrency, so two pickers cannot both spend the same tokens.
# Anything else (no row yet, not enough tokens, a cooldown, several gates) takes the function.
FAST_DEBIT: Final = """
WITH c AS (SELECT coalesce(%(now)s::timestamp, timezone('UTC', clock_timestamp())) AS now)
UPDATE {prefix}.powertools_rate_buckets b
SET level = CASE
        WHEN c.now > b.refilled_at THEN least(b.capacity::bigint * b.span_us, b.level + least(
            round(extract(epoch FROM (c.now - b.refilled_at)) * 1000000)::bigint, b.span_us)
            * b.capacity)
        ELSE least(b.level, b.capacity::bigint * b.span_us) END - %(need)s,
    refilled_at = greatest(c.now, b.refilled_at)
FROM c
WHERE b.limit_name = %(name)s AND b.partition_key = %(part)s
  AND b.kind = 'rate' AND b.capacity = %(cap)s AND b.span_us = %(span)s
  AND (b.cooldown_until IS NULL OR b.cooldown_until <= c.now)
  AND NOT EXISTS (
      SELECT 1 FROM {prefix}.powertools_rate_limits l
      WHERE l.name = b.limit_name AND l.cooldown_until > c.now)
  AND CASE
        WHEN c.now > b.refilled_at THEN least(b.capacity::bigint * b.span_us, b.level + least(
            round(extract(epoch FROM (c.now - b.refilled_at)) * 1000000)::bigint, b.span_us)
            * b.capacity)
        ELSE least(b.level, b.capacity::bigint * b.span_us) END >= %(need)s
RETURNING b.level
"""


# One owner's leases changed in one call (see migration 0004): one row per gate.
LEASE: Final = """
SELECT o_gate, o_granted, o_slots, o_code, o_retry_at
FROM {prefix}.powertools_limits_lease(
    %(now)s::timestamp, %(owner)s::text, %(ttl_us)s::bigint, %(g_name)s::text[],
    %(g_part)s::text[], %(g_kind)s::text[], %(g_cap)s::integer[], %(need)s::integer[],
    %(extra)s::integer[]
)
"""

LEASE_TTL: Final = 30.0
"""Seconds a lease counts in the database without a renewal by default (the runtime passes its
``rescue_after``: a process that stopped renewing is treated as gone when its jobs are
rescued)."""


@cache
def _lease_sql(prefix: str) -> str:
    return qualify(LEASE, prefix)


@cache
def _admit_sql(prefix: str) -> str:
    return qualify(ADMIT, prefix)


@cache
def _fast_sql(prefix: str) -> str:
    return qualify(FAST_DEBIT, prefix)


def _single_bucket(jobs: Sequence[tuple[Job, Sequence[Demand]]]) -> tuple[Gate, int] | None:
    """The one rate gate every job needs (and nothing else), with the batch's total weight."""
    gate = jobs[0][1][0].gate if jobs and jobs[0][1] else None
    if gate is None or gate.kind != "rate":
        return None
    total = 0
    for _, demands in jobs:
        if len(demands) != 1 or demands[0].gate.key != gate.key:
            return None
        total += demands[0].weight
    return gate, total


async def _fast_path(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    jobs: Sequence[tuple[Job, Sequence[Demand]]],
    now: datetime | None,
) -> bool:
    single = _single_bucket(jobs)
    if single is None:
        return False
    gate, total = single
    if total > gate.capacity:
        return False
    cur = await conn.execute(
        _fast_sql(prefix),
        {
            "now": naive_utc(now) if now is not None else None,
            "name": gate.name,
            "part": gate.partition,
            "cap": gate.capacity,
            "span": gate.span_us,
            "need": total * gate.span_us,
        },
        prepare=True,
    )
    return await cur.fetchone() is not None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why admission refused a job (the first gate that blocked it)."""

    job_id: int
    code: str
    limit: str
    partition: str
    retry_at: datetime | None


@dataclass
class SaturationCache:
    """Gates known to refuse until a moment, per schema: ``(prefix, name, partition) -> t``."""

    until: dict[tuple[str, str, str], datetime] = field(default_factory=dict)

    def blocked(self, prefix: str, gate: Gate, now: datetime) -> datetime | None:
        t = self.until.get((prefix, gate.name, gate.partition))
        if t is None:
            return None
        if t <= now:
            del self.until[(prefix, gate.name, gate.partition)]
            return None
        return t

    def remember(self, prefix: str, gate: Gate, until: datetime, now: datetime) -> None:
        self.until[(prefix, gate.name, gate.partition)] = min(until, now + CACHE_MAX)

    def next_opening(self, prefix: str, now: datetime) -> datetime | None:
        """The soonest moment a remembered gate of ``prefix`` may admit again (None: none is
        remembered). A producer whose whole batch was refused can sleep until then instead of
        claiming the same jobs again at once."""
        now = naive_utc(now)
        times = [t for (p, _, _), t in self.until.items() if p == prefix and t > now]
        return min(times) if times else None

    def clear(self) -> None:
        self.until.clear()


CACHE: Final = SaturationCache()


def next_opening(prefix: str, now: datetime | None = None) -> datetime | None:
    """``CACHE.next_opening`` at ``now`` (default: the wall clock), as naive UTC."""
    return CACHE.next_opening(prefix, now if now is not None else datetime.now(UTC))


_SYNCED: set[tuple[str, str]] = set()


def _worker_class(name: str) -> type[Any] | None:
    from powertools_core.workers import registered, resolve

    found = registered().get(name)
    if found is not None:
        return found
    try:
        return resolve(name)
    except InvalidInput:
        return None


def _constant(limits: tuple[Any, ...]) -> bool:
    """Limits whose demands do not depend on args (global, fixed weight)."""
    return all(
        lim.partition_by is None and getattr(lim, "weight_by", None) is None for lim in limits
    )


def _demands(
    job: Job, memo: dict[str, tuple[tuple[Any, ...], list[Demand] | None]]
) -> list[Demand]:
    """The gates ``job`` must pass. ``memo`` caches, per worker name and for one batch, its
    limits and (when they do not depend on args) its demands."""
    known = memo.get(job.worker)
    if known is None:
        cls = _worker_class(job.worker)
        limits = tuple(getattr(cls, "limits", ()) or ())
        fixed = worker_demands(limits, {}) if limits and _constant(limits) else None
        known = memo[job.worker] = (limits, fixed)
    limits, fixed = known
    if not limits:
        return []
    if fixed is not None:
        return fixed
    try:
        args = job.raw_args if job.raw_args is not None else job.args
        if len(limits) == 1:
            demands: list[Demand] = limits[0].demands(args)
            return demands
        return worker_demands(limits, args)
    except InvalidInput as exc:
        # The job cannot be placed in a partition; refusing it would strand it forever, so it
        # runs (and its perform sees the same args). This is logged, never silent.
        log.warning("limits: job %d admitted without limits: %s", job.id, exc.one_line())
        return []


def build_params(
    jobs: Sequence[tuple[Job, Sequence[Demand]]], now: datetime | None
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The function's parameters and the gate keys in their order: the distinct gates (first
    seen first; the function sorts them itself to lock them) with what the batch asks of each
    (jobs, total weight, heaviest job), then one row per (job, gate) demand."""
    index: dict[tuple[str, str], int] = {}
    ordered: list[Gate] = []
    count: list[int] = [0]
    weight: list[int] = [0]
    heaviest: list[int] = [0]
    d_job: list[int] = []
    d_gate: list[int] = []
    d_weight: list[int] = []
    single = True
    for i, (_, demands) in enumerate(jobs, start=1):
        if len(demands) != 1:
            single = False
        seen: set[tuple[str, str]] | None = None if len(demands) == 1 else set()
        for d in demands:
            gate = d.gate
            key = (gate.name, gate.partition)
            if seen is not None:
                if key in seen:
                    continue
                seen.add(key)
            g = index.get(key)
            if g is None:
                g = index[key] = len(ordered) + 1
                ordered.append(gate)
                count.append(0)
                weight.append(0)
                heaviest.append(0)
            w = d.weight
            d_job.append(i)
            d_gate.append(g)
            d_weight.append(w)
            count[g] += 1
            weight[g] += w
            if w > heaviest[g]:
                heaviest[g] = w
    # The common case travels light (see the function): one demand per job needs no job
    # index, and weights of 1 need no weights.
    ones = max(heaviest) <= 1
    params: dict[str, Any] = {
        "now": naive_utc(now) if now is not None else None,
        "g_name": text_array([g.name for g in ordered]),
        "g_part": text_array([g.partition for g in ordered]),
        "g_kind": text_array([g.kind for g in ordered]),
        "g_cap": int_array([g.capacity for g in ordered]),
        "g_span": int_array([g.span_us for g in ordered]),
        "g_jobs": int_array(count[1:]),
        "g_weight": None if ones else int_array(weight[1:]),
        "g_heaviest": None if ones else int_array(heaviest[1:]),
        "jobs": int_array([j.id for j, _ in jobs]),
        "attempts": int_array([j.attempt for j, _ in jobs]),
        "d_job": None if single else int_array(d_job),
        "d_gate": int_array(d_gate),
        "d_weight": None if ones else int_array(d_weight),
        "replace": False,
    }
    return params, list(index)


async def run_admission(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    jobs: Sequence[tuple[Job, Sequence[Demand]]],
    now: datetime | None,
) -> list[Refusal | None]:
    """Decide ``jobs`` (with their demands, in priority order) in one call; one entry per job:
    None when admitted."""
    if not jobs:
        return []
    if await _fast_path(conn, prefix, jobs, now):
        return [None] * len(jobs)
    params, order = build_params(jobs, now)
    try:
        cur = await conn.execute(_admit_sql(prefix), params, prepare=True)
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name != HOLDS_KEY:
            raise
        # A job of the batch still has a hold row on one of its gates from an earlier
        # admission (the statement rolled back whole): decide again, replacing such rows.
        params["replace"] = True
        cur = await conn.execute(_admit_sql(prefix), params, prepare=True)
    out: list[Refusal | None] = [None] * len(jobs)
    for job_index, code, gate_index, retry_at in await cur.fetchall():
        name, part = order[gate_index - 1]
        out[job_index - 1] = Refusal(jobs[job_index - 1][0].id, code, name, part, retry_at)
    return out


async def lease(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    book: LeaseBook,
    owner: str,
    requests: Sequence[Request],
    *,
    now: datetime | None = None,
    ttl: float = LEASE_TTL,
) -> None:
    """Ask the database for ``requests`` (grow, shrink or renew ``owner``'s leases) and record
    the answers in ``book``. On a database error the leases asked about become unusable until
    the next successful call, and the error propagates."""
    if not requests:
        return
    asked = time.monotonic()
    params = {
        "now": naive_utc(now) if now is not None else None,
        "owner": owner,
        "ttl_us": int(ttl * 1_000_000),
        "g_name": text_array([r.gate.name for r in requests]),
        "g_part": text_array([r.gate.partition for r in requests]),
        "g_kind": text_array([r.gate.kind for r in requests]),
        "g_cap": int_array([r.gate.capacity for r in requests]),
        "need": int_array([r.need for r in requests]),
        "extra": int_array([r.extra for r in requests]),
    }
    try:
        cur = await conn.execute(_lease_sql(prefix), params, prepare=True)
        rows = await cur.fetchall()
    except psycopg.Error:
        book.forget(r.key for r in requests)
        raise
    for index, granted, slots, code, retry_at in rows:
        book.apply(requests[index - 1], Grant(granted, slots, code, retry_at), asked)


async def keep_alive(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    book: LeaseBook,
    owner: str,
    *,
    ttl: float = LEASE_TTL,
) -> None:
    """Give back the slots no job needed since the last keep-alive and renew the rest."""
    await lease(conn, prefix, book, owner, book.keep_alive(), ttl=ttl)


async def release_leases(
    conn: psycopg.AsyncConnection[Any], prefix: str, book: LeaseBook, owner: str
) -> None:
    """Give back every free leased slot (shutdown). Slots of jobs still running stay leased
    until they lapse, like the jobs themselves are left to the lifeline."""
    await lease(conn, prefix, book, owner, book.release_all())


async def _lease_admission(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    jobs: Sequence[tuple[Job, Sequence[Demand]]],
    book: LeaseBook,
    owner: str,
    ttl: float,
) -> list[Refusal | None]:
    wall = naive_utc(datetime.now(UTC))
    requests = book.requests(prefix, [d for _, d in jobs], time.monotonic(), wall)
    if requests:
        await lease(conn, prefix, book, owner, requests, ttl=ttl)
    verdicts = book.decide(prefix, [(j.id, d) for j, d in jobs], time.monotonic(), wall)
    return [
        None if v is None else Refusal(job.id, v.code, v.gate.name, v.gate.partition, v.retry_at)
        for (job, _), v in zip(jobs, verdicts, strict=True)
    ]


async def _split_admission(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    pending: Sequence[tuple[Job, Sequence[Demand]]],
    book: LeaseBook,
    owner: str,
    ttl: float,
) -> list[Refusal | None]:
    """Leased slots for jobs under concurrency limits only, the function for the rest."""
    leased = [i for i, (_, ds) in enumerate(pending) if all(d.gate.kind != "rate" for d in ds)]
    if len(leased) == len(pending):
        return await _lease_admission(conn, prefix, pending, book, owner, ttl)
    out: list[Refusal | None] = [None] * len(pending)
    chosen = set(leased)
    rest = [i for i in range(len(pending)) if i not in chosen]
    for i, refusal in zip(
        rest, await run_admission(conn, prefix, [pending[i] for i in rest], None), strict=True
    ):
        out[i] = refusal
    if leased:
        verdicts = await _lease_admission(
            conn, prefix, [pending[i] for i in leased], book, owner, ttl
        )
        for i, refusal in zip(leased, verdicts, strict=True):
            out[i] = refusal
    return out


async def _sync_new(conn: psycopg.AsyncConnection[Any], prefix: str, jobs: Sequence[Job]) -> None:
    fresh: dict[str, type[Any]] = {}
    for worker in {job.worker for job in jobs}:
        if (prefix, worker) in _SYNCED:
            continue
        cls = _worker_class(worker)
        if cls is not None and tuple(getattr(cls, "limits", None) or ()):
            fresh[worker] = cls
    if not fresh:
        return
    await sync_async(conn, prefix, worker_limits(fresh))
    _SYNCED.update((prefix, w) for w in fresh)


async def admit(
    conn: psycopg.AsyncConnection[Any],
    prefix: str,
    jobs: Sequence[Job],
    now: datetime | None = None,
    *,
    cache: SaturationCache | None = CACHE,
    leases: LeaseBook | None = None,
    owner: str = "",
    lease_ttl: float = LEASE_TTL,
) -> tuple[list[Job], list[Job]]:
    """Split a claimed batch into (admitted, refused), both in the given (priority) order.

    ``conn`` is an autocommit connection (admission is a single statement, so it may be shared
    with other statements). ``now`` is the admission clock; None uses the database's clock,
    which keeps every node on one timeline. ``cache`` None disables the saturation cache.
    With ``leases`` (and the process's unique ``owner``), jobs under concurrency limits only
    are admitted from leased slots; the caller frees them with ``leases.free(job_id)``.
    """
    if not jobs:
        return [], []
    wall = now if now is not None else datetime.now(UTC)
    wall_naive = naive_utc(wall)
    pending: list[tuple[Job, Sequence[Demand]]] = []
    verdict: dict[int, bool] = {}
    memo: dict[str, tuple[tuple[Any, ...], list[Demand] | None]] = {}
    remembered = cache is not None and bool(cache.until)
    for job in jobs:
        demands = _demands(job, memo)
        if not demands:
            verdict[job.id] = True
            continue
        if remembered and any(
            cache.blocked(prefix, d.gate, wall_naive) is not None  # type: ignore[union-attr]
            for d in demands
        ):
            verdict[job.id] = False
            continue
        pending.append((job, demands))
    try:
        if pending:
            await _sync_new(conn, prefix, [j for j, _ in pending])
        if leases is not None and now is None and pending:
            refusals = await _split_admission(conn, prefix, pending, leases, owner, lease_ttl)
        else:
            refusals = await run_admission(conn, prefix, pending, now)
    except psycopg.Error as exc:
        # Without a decision no limited job may run: refuse them (the runtime gives them back)
        # and say why; unlimited jobs of the batch are unaffected.
        log.error("limits: admission failed, %d limited job(s) refused: %s", len(pending), exc)
        refusals = [Refusal(j.id, "admission_failed", "", "", None) for j, _ in pending]
    if len(pending) == len(jobs) and not any(refusals):
        return list(jobs), []
    for (job, wanted), refusal in zip(pending, refusals, strict=True):
        verdict[job.id] = refusal is None
        if refusal is not None and cache is not None and refusal.retry_at is not None:
            gate = next(d.gate for d in wanted if d.gate.key == (refusal.limit, refusal.partition))
            cache.remember(prefix, gate, refusal.retry_at, wall_naive)
    admitted = [j for j in jobs if verdict[j.id]]
    refused = [j for j in jobs if not verdict[j.id]]
    return admitted, refused
