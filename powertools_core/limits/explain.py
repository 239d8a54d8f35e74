"""``limiter explain`` and ``limiter list``: why a limit, a worker or a job is blocked *now*, and
when it clears. Read-only (one ``READ ONLY`` transaction); verdicts come from the pure rule
applied to the live gate states, so explain says exactly what admission would decide.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from powertools_core.config import Settings
from powertools_core.db.connection import connect, resolve_url, translated
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput
from powertools_core.limits.declarations import (
    GLOBAL_PARTITION,
    ConcurrencyLimit,
    Demand,
    Gate,
    Limit,
    RateLimit,
    declared,
    describe_resolver,
    worker_demands,
)
from powertools_core.limits.reservation import (
    Blocked,
    GateState,
    compute_reservation,
    level_at,
    tokens,
)
from powertools_core.limits.results import (
    Blocker,
    ExplainResult,
    GateView,
    LimitSummary,
    ListResult,
    Status,
)
from powertools_core.limits.store import (
    StoredLimit,
    aware_utc,
    db_now,
    gate_states,
    load_limit,
    load_limits,
)

PRODUCER_FRESH: Final = timedelta(seconds=30)
"""A producer whose last heartbeat is older than this does not count as serving its queue (the
runtime's default rescue threshold)."""

SUMMARIES: Final = {
    "limit_reached": "not enough tokens in the bucket",
    "cooldown": "an operator put the limit on hold",
    "concurrency_reached": "the limit's executing slots are all taken",
    "partition_concurrency_reached": "this partition's executing slots are all taken",
    "queue_paused": "every live producer of the queue is paused",
    "no_producer": "no live worker process serves the queue",
    "scheduled_in_future": "the job is scheduled for later",
    "out_of_attempts": "the job has used all its attempts",
    "suspended": "the job is suspended (a workflow step waiting on dependencies or a signal)",
}

SELECT_JOB: Final = """
SELECT id, state::text, queue, worker, args, attempt, max_attempts, scheduled_at, priority
FROM {prefix}.oban_jobs WHERE id = %(id)s
"""

SELECT_PRODUCERS: Final = """
SELECT count(*) FILTER (WHERE beat_at >= %(fresh)s),
       count(*) FILTER (WHERE beat_at >= %(fresh)s AND NOT paused)
FROM {prefix}.powertools_producers WHERE queue = %(queue)s
"""

SELECT_BUCKETS: Final = """
SELECT b.limit_name, b.partition_key, b.kind, b.capacity, b.span_us, b.level, b.refilled_at,
       b.cooldown_until, b.cooldown_reason,
       (SELECT count(*)
        FROM {prefix}.powertools_limit_holds h
        JOIN {prefix}.oban_jobs j
          ON j.id = h.job_id AND j.state::text = 'executing' AND j.attempt = h.attempt
        WHERE h.limit_name = b.limit_name AND h.partition_key = b.partition_key)
       + (SELECT coalesce(sum(l.slots), 0)
          FROM {prefix}.powertools_limit_leases l
          WHERE l.limit_name = b.limit_name AND l.partition_key = b.partition_key
            AND l.expires_at > timezone('UTC', clock_timestamp()))
FROM {prefix}.powertools_rate_buckets b
WHERE b.limit_name = ANY(%(names)s::text[])
ORDER BY b.limit_name, b.partition_key
"""

COUNT_AVAILABLE: Final = """
SELECT w, (SELECT count(*) FROM {prefix}.oban_jobs j WHERE j.state = 'available' AND j.worker = w)
FROM unnest(%(workers)s::text[]) AS w
"""

READ_ONLY: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


@contextmanager
def _reading(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    url = resolve_url(settings)
    with translated(url):
        conn = connect(url)
        try:
            with conn.transaction():
                conn.execute(READ_ONLY)
                yield conn
        finally:
            conn.close()


def _iso(moment: datetime | None) -> str | None:
    value = aware_utc(moment)
    return value.isoformat() if value is not None else None


def _blocker(b: Blocked) -> Blocker:
    details = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in b.details.items()}
    return Blocker(
        code=b.code,
        summary=SUMMARIES[b.code],
        retry_at=aware_utc(b.retry_at),
        limit=b.limit,
        partition=b.partition or None,
        details=details,
    )


def _view(gate: Gate, state: GateState | None, now: datetime) -> GateView:
    view = GateView(
        limit=gate.name,
        partition=gate.partition or None,
        kind=gate.kind,
        capacity=gate.capacity,
    )
    if state is not None and state.cooldown_until is not None and state.cooldown_until > now:
        view.cooldown_until = aware_utc(state.cooldown_until)
        view.cooldown_reason = state.cooldown_reason
    if gate.kind == "rate":
        level = gate.full_level if state is None else level_at(state, gate, now)
        view.tokens = round(tokens(level, gate), 6)
        view.refilled_at = aware_utc(state.refilled_at) if state else None
    else:
        view.executing = state.level if state is not None else 0
    return view


def _verdicts(
    conn: psycopg.Connection[Any], prefix: str, demands: Sequence[Demand], now: datetime
) -> tuple[list[Blocker], list[GateView]]:
    states = gate_states(conn, prefix, [d.gate for d in demands])
    blockers: list[Blocker] = []
    views: list[GateView] = []
    for d in demands:
        state = states.get(d.gate.key)
        views.append(_view(d.gate, state, now))
        verdict = compute_reservation(state, d.gate, d.weight, now)
        if isinstance(verdict, Blocked):
            blockers.append(_blocker(verdict))
    return blockers, views


def _limit_from_row(row: StoredLimit) -> Limit:
    """A stand-in declaration rebuilt from the stored config (resolvers are not needed to read
    a given partition)."""
    if row.kind == "rate":
        return RateLimit(
            row.name,
            bucket_capacity=row.bucket_capacity or 1,
            bucket_span=timedelta(milliseconds=row.bucket_span_ms or 1000),
            partition_by="partition" if row.scope == "partitioned" else None,
            weight=min(row.weight, row.bucket_capacity or 1),
        )
    return ConcurrencyLimit(
        row.name,
        global_limit=row.global_limit,
        partition_limit=row.partition_limit,
        partition_by="partition" if row.partition_limit is not None else None,
    )


def _find_limit(conn: psycopg.Connection[Any], prefix: str, name: str) -> Limit:
    local = declared().get(name)
    if local is not None:
        return local
    row = load_limit(conn, prefix, name)
    if row is None:
        known = sorted({*declared(), *(r.name for r in load_limits(conn, prefix))})
        raise InvalidInput(
            f"unknown limit {name!r}",
            hint=f"known limits: {', '.join(known) or 'none'}; pass --app so declared limits "
            "are known",
        )
    return _limit_from_row(row)


def _limit_gates(limit: Limit, partition: str | None) -> list[Demand]:
    if isinstance(limit, RateLimit):
        if limit.partition_by is None:
            if partition:
                raise InvalidInput(f"limit {limit.name!r} is not partitioned; drop --partition")
            return [Demand(limit.gate(GLOBAL_PARTITION), limit.weight)]
        if not partition:
            return []
        return [Demand(limit.gate(partition), limit.weight)]
    out: list[Demand] = []
    glob = limit.global_gate()
    if glob is not None:
        out.append(Demand(glob, 1))
    if partition:
        part = limit.partition_gate(partition)
        if part is None:
            raise InvalidInput(f"limit {limit.name!r} is not partitioned; drop --partition")
        out.append(Demand(part, 1))
    return out


def _status(blockers: Sequence[Blocker]) -> Status:
    return "blocked" if blockers else "runnable"


def explain_limit(
    conn: psycopg.Connection[Any], prefix: str, name: str, partition: str | None, now: datetime
) -> ExplainResult:
    limit = _find_limit(conn, prefix, name)
    demands = _limit_gates(limit, partition)
    blockers, views = _verdicts(conn, prefix, demands, now)
    message = None
    if not demands:
        stored = load_limit(conn, prefix, name)
        if stored and stored.cooldown_until and stored.cooldown_until > now:
            blockers.append(
                Blocker(
                    code="cooldown",
                    summary=SUMMARIES["cooldown"],
                    retry_at=aware_utc(stored.cooldown_until),
                    limit=name,
                    details={"reason": stored.cooldown_reason},
                )
            )
        message = "a partitioned limit: pass --partition KEY to explain one partition"
    target = name if not partition else f"{name} [{partition}]"
    return ExplainResult(
        subject="limit",
        target=target,
        status=_status(blockers),
        now=aware_utc(now) or now,
        blockers=blockers,
        gates=views,
        message=message,
    )


def _queue_blockers(
    conn: psycopg.Connection[Any], prefix: str, queue: str, now: datetime
) -> list[Blocker]:
    row = conn.execute(
        qualify(SELECT_PRODUCERS, prefix), {"queue": queue, "fresh": now - PRODUCER_FRESH}
    ).fetchone()
    live, unpaused = row if row is not None else (0, 0)
    if not live:
        return [
            Blocker(
                code="no_producer",
                summary=SUMMARIES["no_producer"],
                retry_at=None,
                details={"queue": queue},
            )
        ]
    if not unpaused:
        return [
            Blocker(
                code="queue_paused",
                summary=SUMMARIES["queue_paused"],
                retry_at=None,
                details={"queue": queue, "producers": live},
            )
        ]
    return []


def explain_worker(
    conn: psycopg.Connection[Any],
    prefix: str,
    worker: type[Any],
    args: Mapping[str, Any],
    now: datetime,
) -> ExplainResult:
    limits = tuple(getattr(worker, "limits", ()) or ())
    demands = worker_demands(limits, args)
    blockers, views = _verdicts(conn, prefix, demands, now)
    blockers.extend(_queue_blockers(conn, prefix, worker.queue, now))
    return ExplainResult(
        subject="worker",
        target=worker.name(),
        status=_status(blockers),
        now=aware_utc(now) or now,
        blockers=blockers,
        gates=views,
        message=None if limits else "the worker declares no limits",
    )


def _job_demands(
    conn: psycopg.Connection[Any], prefix: str, worker_path: str, args: Mapping[str, Any]
) -> tuple[list[Demand], str | None]:
    from powertools_core.workers import registered

    cls = registered().get(worker_path)
    if cls is not None:
        try:
            return worker_demands(tuple(cls.limits or ()), args), None
        except InvalidInput as exc:
            return [], f"limits not checked: {exc.one_line()}"
    rows = [r for r in load_limits(conn, prefix) if worker_path in r.workers]
    demands: list[Demand] = []
    unknown: list[str] = []
    for row in rows:
        limit = _limit_from_row(row)
        partition = GLOBAL_PARTITION
        if row.partition_by is not None:
            key = row.partition_by.removeprefix("args.")
            if not row.partition_by.startswith("args.") or key not in args:
                unknown.append(row.name)
                continue
            value = args[key]
            partition = value if isinstance(value, str) else str(value)
        demands.extend(_limit_gates(limit, partition or None) or [])
    note = None
    if unknown:
        note = f"partition of {', '.join(unknown)} unknown here; pass --app to resolve it"
    elif not rows:
        note = "worker not registered here (pass --app); limits recorded for it: none"
    return demands, note


def _suspended_blocker(conn: psycopg.Connection[Any], prefix: str, job_id: int) -> Blocker:
    """A suspended job's reason: its workflow blocker (dependencies, a signal, a cancelled
    workflow) when it is a step or a durable wait, else the generic ``suspended``."""
    from powertools_core.workflows.diagnose import step_blockers

    found = step_blockers(conn, prefix, [job_id]).get(job_id)
    if found is None:
        return Blocker(code="suspended", summary=SUMMARIES["suspended"], retry_at=None)
    details: dict[str, Any] = {"workflow_id": found.workflow_id, "step": found.step}
    if found.waiting_on:
        details["waiting_on"] = found.waiting_on
    return Blocker(
        code=found.code,
        summary=found.summary,
        retry_at=aware_utc(found.until),
        details={k: v for k, v in details.items() if v is not None},
    )


def explain_job(
    conn: psycopg.Connection[Any], prefix: str, job_id: int, now: datetime
) -> ExplainResult:
    row = conn.execute(qualify(SELECT_JOB, prefix), {"id": job_id}).fetchone()
    if row is None:
        raise InvalidInput(f"no job with id {job_id}")
    jid, state, queue, worker, args, attempt, max_attempts, scheduled_at, priority = row
    job = {
        "id": jid,
        "state": state,
        "queue": queue,
        "worker": worker,
        "attempt": attempt,
        "max_attempts": max_attempts,
        "scheduled_at": _iso(scheduled_at),
        "priority": priority,
    }

    def result(
        status: Status,
        blockers: list[Blocker],
        message: str | None,
        gates: list[GateView] | None = None,
    ) -> ExplainResult:
        return ExplainResult(
            subject="job",
            target=str(jid),
            now=aware_utc(now) or now,
            job=job,
            status=status,
            blockers=blockers,
            gates=gates or [],
            message=message,
        )

    if state in ("completed", "cancelled", "discarded"):
        return result("finished", [], f"the job is {state}; nothing waits")
    if state == "executing":
        return result("running", [], "the job is running")
    blockers: list[Blocker] = []
    if state == "suspended":
        blockers.append(_suspended_blocker(conn, prefix, jid))
    if state in ("scheduled", "retryable") and scheduled_at is not None and scheduled_at > now:
        blockers.append(
            Blocker(
                code="scheduled_in_future",
                summary=SUMMARIES["scheduled_in_future"],
                retry_at=aware_utc(scheduled_at),
                details={"state": state},
            )
        )
    if attempt >= max_attempts:
        blockers.append(
            Blocker(
                code="out_of_attempts",
                summary=SUMMARIES["out_of_attempts"],
                retry_at=None,
                details={"attempt": attempt, "max_attempts": max_attempts},
            )
        )
    blockers.extend(_queue_blockers(conn, prefix, queue, now))
    demands, note = _job_demands(conn, prefix, worker, args if isinstance(args, dict) else {})
    limit_blockers, views = _verdicts(conn, prefix, demands, now)
    blockers.extend(limit_blockers)
    return result(_status(blockers), blockers, note, views)


def explain(
    settings: Settings,
    *,
    name: str | None = None,
    partition: str | None = None,
    worker: type[Any] | None = None,
    args: Mapping[str, Any] | None = None,
    job_id: int | None = None,
) -> ExplainResult:
    """Exactly one of ``name``, ``worker`` or ``job_id``."""
    chosen = [x for x in (name, worker, job_id) if x is not None]
    if len(chosen) != 1:
        raise InvalidInput(
            "explain needs exactly one of NAME, --worker or --job",
            hint="e.g. powertools limiter explain stripe --partition acme",
        )
    if partition is not None and name is None:
        raise InvalidInput("--partition goes with a limit NAME")
    if args is not None and worker is None:
        raise InvalidInput("--args goes with --worker")
    with _reading(settings) as conn:
        now = db_now(conn)
        if name is not None:
            return explain_limit(conn, settings.prefix, name, partition or None, now)
        if worker is not None:
            return explain_worker(conn, settings.prefix, worker, args or {}, now)
        assert job_id is not None
        return explain_job(conn, settings.prefix, job_id, now)


# list -------------------------------------------------------------------------------------------


def list_limits(settings: Settings, *, top: int = 5) -> ListResult:
    """Every limit recorded in the database or declared by the loaded workers, with its busiest
    partitions (fewest tokens left, most jobs executing) and the jobs waiting for it."""
    from powertools_core.limits.store import worker_limits
    from powertools_core.workers import registered

    if not 0 <= top <= 1000:
        raise InvalidInput("--top must be between 0 and 1000")
    with _reading(settings) as conn:
        now = db_now(conn)
        stored = {r.name: r for r in load_limits(conn, settings.prefix)}
        local: dict[str, tuple[Limit, set[str]]] = {}
        for limit, path in worker_limits(registered()):
            local.setdefault(limit.name, (limit, set()))[1].add(path)
        names = sorted({*stored, *local})
        rows = conn.execute(qualify(SELECT_BUCKETS, settings.prefix), {"names": names}).fetchall()
        workers = sorted(
            {w for r in stored.values() for w in r.workers}
            | {w for _, ws in local.values() for w in ws}
        )
        waiting = dict(
            conn.execute(qualify(COUNT_AVAILABLE, settings.prefix), {"workers": workers}).fetchall()
        )
    by_limit: dict[str, list[GateView]] = {}
    busy: dict[str, list[float]] = {}
    for name, part, kind, cap, span_us, level, refilled, cool, cool_reason, holds in rows:
        gate = Gate(name, part, kind, cap, span_us)
        state = GateState(level if kind == "rate" else int(holds), refilled, cool, cool_reason)
        view = _view(gate, state, now)
        by_limit.setdefault(name, []).append(view)
        fill = (view.tokens or 0.0) / cap if kind == "rate" else -float(view.executing or 0) / cap
        busy.setdefault(name, []).append(fill)
    summaries: list[LimitSummary] = []
    for name in names:
        row = stored.get(name)
        limit = local[name][0] if name in local else _limit_from_row(row)  # type: ignore[arg-type]
        limit_workers = sorted(
            set(row.workers if row else []) | (local.get(name, (None, set()))[1])
        )
        views = by_limit.get(name, [])
        order = sorted(range(len(views)), key=lambda i: busy[name][i])
        summaries.append(
            LimitSummary(
                name=name,
                kind=limit.kind,
                scope=limit.scope,
                describe=limit.describe(),
                partition_by=row.partition_by if row else describe_resolver(limit.partition_by),
                bucket_capacity=limit.bucket_capacity if isinstance(limit, RateLimit) else None,
                bucket_span_ms=limit.span_ms if isinstance(limit, RateLimit) else None,
                global_limit=getattr(limit, "global_limit", None),
                partition_limit=getattr(limit, "partition_limit", None),
                weight=limit.weight if isinstance(limit, RateLimit) else 1,
                weight_by=row.weight_by
                if row
                else describe_resolver(getattr(limit, "weight_by", None)),
                workers=limit_workers,
                source=row.source if row else "declared (not yet recorded)",
                cooldown_until=aware_utc(row.cooldown_until)
                if row and row.cooldown_until and row.cooldown_until > now
                else None,
                cooldown_reason=row.cooldown_reason
                if row and row.cooldown_until and row.cooldown_until > now
                else None,
                partitions=len(views),
                gates=[views[i] for i in order[:top]],
                available_jobs=sum(int(waiting.get(w, 0)) for w in limit_workers),
            )
        )
    return ListResult(now=aware_utc(now) or datetime.now(UTC), limits=summaries)
