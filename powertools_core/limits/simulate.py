"""``limiter simulate``: replay requests through the pure reservation rule, touching nothing.

No connection is opened, nothing is written, nothing is sent (no NOTIFY, no telemetry): the
simulation starts from a fresh (full) bucket at ``start`` and sends ``count`` requests
``every`` apart through :func:`~powertools_core.limits.reservation.compute_reservation`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from powertools_core.durations import format_duration
from powertools_core.errors import InvalidInput
from powertools_core.limits.declarations import (
    GLOBAL_PARTITION,
    ConcurrencyLimit,
    Gate,
    RateLimit,
    parse_named_duration,
    resolve_partition,
    resolve_weight,
)
from powertools_core.limits.reservation import (
    Blocked,
    GateState,
    Reserved,
    compute_reservation,
    tokens,
)
from powertools_core.limits.results import SimulatedLimit, SimulateResult

MAX_COUNT = 100_000


def parse_args_json(text: str | None) -> dict[str, Any]:
    """``--args``: a JSON object (anything else is a one-line error)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"--args is not valid JSON: {exc.msg} at position {exc.pos}",
            hint='pass a JSON object, e.g. --args \'{"tenant": "acme"}\'',
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(
            "--args must be a JSON object", hint='e.g. --args \'{"tenant": "acme"}\''
        )
    return value


def parse_time(text: str, *, what: str) -> datetime:
    """An ISO-8601 time; without a zone it is UTC. Returned aware (UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"invalid {what} {text!r}", hint="write an ISO-8601 time, e.g. 2026-01-01T12:00:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise InvalidInput(f"{flag} must be a positive integer, got {value}")


def _plan(
    worker_name: str,
    limits: tuple[Any, ...],
    args: Mapping[str, Any],
    capacity: int | None,
    span: str | None,
    weight: int | None,
    partition: str | None,
) -> tuple[list[tuple[RateLimit, str, int, str]], list[str]]:
    rate = [lim for lim in limits if isinstance(lim, RateLimit)]
    ignored = [
        f"concurrency limit {lim.name!r} (requests in a simulation have no duration)"
        for lim in limits
        if isinstance(lim, ConcurrencyLimit)
    ]
    overriding = any(v is not None for v in (capacity, span, weight, partition))
    if overriding and len(rate) > 1:
        raise InvalidInput(
            f"{worker_name} declares {len(rate)} rate limits; overrides would be ambiguous",
            hint="simulate without overrides, or declare the limit you want to try alone",
        )
    if not rate:
        if capacity is None or span is None:
            raise InvalidInput(
                f"{worker_name} declares no rate limit; nothing to simulate",
                hint="pass --bucket-capacity and --bucket-span to try one, e.g. "
                "--bucket-capacity 10 --bucket-span 1s",
            )
        if weight is not None and weight > capacity:
            raise _too_heavy(weight, capacity)
        trial = RateLimit(
            f"{worker_name} (simulated)",
            bucket_capacity=capacity,
            bucket_span=span,
            weight=weight or 1,
        )
        return [(trial, partition or GLOBAL_PARTITION, trial.weight, "override")], ignored
    plan: list[tuple[RateLimit, str, int, str]] = []
    for lim in rate:
        source = "declared"
        if capacity is not None or span is not None:
            new_cap = capacity if capacity is not None else lim.bucket_capacity
            new_weight = weight if weight is not None else lim.weight
            if new_weight > new_cap:
                raise _too_heavy(new_weight, new_cap)
            lim = replace(
                lim,
                bucket_capacity=new_cap,
                bucket_span=span if span is not None else lim.span,
                weight=min(lim.weight, new_cap),
            )
            source = "overridden"
        part = partition if partition is not None else resolve_partition(lim, args)
        if weight is not None:
            if weight > lim.bucket_capacity:
                raise _too_heavy(weight, lim.bucket_capacity)
            w, source = weight, "overridden"
        else:
            w = resolve_weight(lim, args)
        if partition is not None:
            source = "overridden"
        plan.append((lim, part, w, source))
    return plan, ignored


def _too_heavy(weight: int, capacity: int) -> InvalidInput:
    return InvalidInput(
        f"weight {weight} exceeds bucket_capacity {capacity}; such a job could never run"
    )


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC, written with ``Z`` like every other time in the JSON output."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def simulate(
    worker: type[Any],
    *,
    count: int = 1,
    every: str | None = None,
    args: Mapping[str, Any] | None = None,
    bucket_capacity: int | None = None,
    bucket_span: str | None = None,
    weight: int | None = None,
    partition: str | None = None,
    start: datetime | None = None,
) -> SimulateResult:
    """Verdicts of ``count`` requests of ``worker``'s job, ``every`` apart, from a full bucket."""
    if not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"--count must be between 1 and {MAX_COUNT}, got {count}")
    _positive(bucket_capacity, "--bucket-capacity")
    _positive(weight, "--weight")
    if bucket_span is not None:
        parse_named_duration(bucket_span, "--bucket-span")
    step = parse_named_duration(every, "--every") if every is not None else timedelta(0)
    if partition is not None and partition == "":
        raise InvalidInput("--partition must not be empty")
    name = worker.name() if hasattr(worker, "name") else str(worker)
    plan, ignored = _plan(
        name,
        tuple(getattr(worker, "limits", ()) or ()),
        args or {},
        bucket_capacity,
        bucket_span,
        weight,
        partition,
    )
    begin = (start or datetime.now(UTC)).astimezone(UTC)
    gates: list[tuple[Gate, int]] = [(lim.gate(part), w) for lim, part, w, _ in plan]
    states: dict[tuple[str, str], GateState | None] = {}
    verdicts: list[dict[str, Any]] = []
    reserved = 0
    for i in range(count):
        at = begin + i * step
        passed: list[tuple[Gate, Reserved]] = []
        blocked: Blocked | None = None
        for gate, w in gates:
            verdict = compute_reservation(states.get(gate.key), gate, w, at)
            if isinstance(verdict, Blocked):
                blocked = verdict
                break
            passed.append((gate, verdict))
        if blocked is None:
            for gate, ok in passed:
                states[gate.key] = ok.state
            tightest = min(passed, key=lambda p: tokens(p[1].state.level, p[0]))
            reserved += 1
            verdicts.append(
                {
                    "request": i + 1,
                    "at": iso(at),
                    "result": "reserved",
                    "limit": tightest[0].name,
                    "tokens_left": round(tightest[1].tokens_left or 0.0, 6),
                }
            )
        else:
            verdicts.append(
                {
                    "request": i + 1,
                    "at": iso(at),
                    "result": "blocked",
                    "code": blocked.code,
                    "limit": blocked.limit,
                    "partition": blocked.partition or None,
                    "retry_at": iso(blocked.retry_at),
                    "details": blocked.details,
                }
            )
    return SimulateResult(
        worker=name,
        limits=[
            SimulatedLimit(
                name=lim.name,
                partition=part or None,
                bucket_capacity=lim.bucket_capacity,
                bucket_span=format_duration(lim.span),
                bucket_span_ms=lim.span_ms,
                weight=w,
                source=source,  # type: ignore[arg-type]
            )
            for lim, part, w, source in plan
        ],
        count=count,
        every=format_duration(step),
        start=begin,
        verdicts=verdicts,
        reserved=reserved,
        blocked=count - reserved,
        ignored=ignored,
    )
