"""The specification of admission: a pure function from (state, gate, weight, now) to a verdict.

No I/O, no clock of its own, no randomness: the SQL admission path, ``limiter explain`` and
``limiter simulate`` all decide through this module, and a property test holds the database
path to it.

Token buckets refill continuously at ``capacity / span`` and a full bucket holds ``capacity``.
To make "exactly when" exact, the level is kept as an integer in *ticks*: one token is
``span_us`` ticks and the bucket gains ``capacity`` ticks per microsecond, so refill, debit and
the ``retry_at`` of a blocked request involve no rounding (timestamps have microsecond
resolution, in Python and in PostgreSQL alike).

Order of checks for one gate: an operator cooldown wins over everything, then the bucket (or
the concurrency counter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from powertools_core.limits.declarations import Demand, Gate

US: Final = timedelta(microseconds=1)

BlockerCode = Literal[
    "limit_reached", "cooldown", "concurrency_reached", "partition_concurrency_reached"
]


@dataclass(frozen=True, slots=True)
class GateState:
    """What the database holds for one gate (``powertools_rate_buckets``).

    ``level``: for a token bucket, the tokens times ``span_us`` as of ``refilled_at``; for a
    concurrency gate, the jobs executing under it now.
    """

    level: int
    refilled_at: datetime | None = None
    cooldown_until: datetime | None = None
    cooldown_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Reserved:
    state: GateState
    """The gate's state after this reservation (write it back to commit the reservation)."""
    tokens_left: float | None = None
    """Token buckets: tokens remaining right after this reservation."""
    in_use: int | None = None
    """Concurrency gates: executing jobs under the gate including this one."""


@dataclass(frozen=True, slots=True)
class Blocked:
    code: BlockerCode
    retry_at: datetime | None
    """When the same request would be reserved, if nothing else happens first; None when that
    depends on running jobs finishing (concurrency) or can never happen (weight > capacity)."""
    limit: str
    partition: str
    details: dict[str, Any] = field(default_factory=dict)


Verdict = Reserved | Blocked


def fresh_state(gate: Gate, now: datetime) -> GateState:
    """A gate nobody used yet: a full bucket, or an idle counter."""
    return GateState(level=gate.full_level if gate.kind == "rate" else 0, refilled_at=now)


def level_at(state: GateState, gate: Gate, now: datetime) -> int:
    """The bucket's level in ticks at ``max(now, refilled_at)`` (a clock that went backwards
    refills nothing)."""
    if state.refilled_at is None or now <= state.refilled_at:
        return min(state.level, gate.full_level)
    elapsed = (now - state.refilled_at) // US
    return min(gate.full_level, state.level + elapsed * gate.capacity)


def tokens(level: int, gate: Gate) -> float:
    return level / gate.span_us if gate.span_us else float(level)


def compute_reservation(
    state: GateState | None, limit: Gate, weight: int, now: datetime
) -> Reserved | Blocked:
    """Would a request of ``weight`` pass ``limit`` at ``now``? ``state`` None is a fresh gate."""
    gate = limit
    current = state if state is not None else fresh_state(gate, now)
    if current.cooldown_until is not None and current.cooldown_until > now:
        return Blocked(
            "cooldown",
            current.cooldown_until,
            gate.name,
            gate.partition,
            {"reason": current.cooldown_reason},
        )
    if gate.kind == "rate":
        return _reserve_tokens(current, gate, weight, now)
    if current.level + 1 <= gate.capacity:
        return Reserved(replace(current, level=current.level + 1), in_use=current.level + 1)
    code: BlockerCode = (
        "concurrency_reached" if gate.kind == "concurrency" else "partition_concurrency_reached"
    )
    return Blocked(
        code, None, gate.name, gate.partition, {"limit": gate.capacity, "executing": current.level}
    )


def _reserve_tokens(current: GateState, gate: Gate, weight: int, now: datetime) -> Verdict:
    base = now if current.refilled_at is None else max(now, current.refilled_at)
    level = level_at(current, gate, now)
    need = weight * gate.span_us
    if weight > gate.capacity:
        return Blocked(
            "limit_reached",
            None,
            gate.name,
            gate.partition,
            {"capacity": gate.capacity, "weight": weight, "never": True},
        )
    if level >= need:
        left = level - need
        return Reserved(
            GateState(left, base, current.cooldown_until, current.cooldown_reason),
            tokens_left=tokens(left, gate),
        )
    wait_us = -(-(need - level) // gate.capacity)
    return Blocked(
        "limit_reached",
        base + wait_us * US,
        gate.name,
        gate.partition,
        {"capacity": gate.capacity, "tokens": tokens(level, gate), "weight": weight},
    )


Key = tuple[str, str]


def decide_batch(
    states: Mapping[Key, GateState | None],
    requests: Sequence[Sequence[Demand]],
    now: datetime,
) -> tuple[list[Verdict | None], dict[Key, GateState]]:
    """Admit a batch in order (its order is the priority order).

    A request passes when every gate it needs reserves; only then are the gates debited. Once a
    gate has blocked a request, it blocks every later request of the batch too (strict
    prefix), so a heavy job at the head is not overtaken by lighter ones behind it.

    Returns one entry per request (None: admitted, else the first ``Blocked``) and the new state
    of every gate that changed.
    """
    current: dict[Key, GateState | None] = dict(states)
    changed: dict[Key, GateState] = {}
    closed: dict[Key, Blocked] = {}
    verdicts: list[Verdict | None] = []
    for demands in requests:
        blocked: Blocked | None = None
        pending: dict[Key, GateState] = {}
        for demand in demands:
            key = demand.gate.key
            if key in closed:
                blocked = closed[key]
                break
            state = pending.get(key, current.get(key))
            verdict = compute_reservation(state, demand.gate, demand.weight, now)
            if isinstance(verdict, Blocked):
                closed[key] = verdict
                blocked = verdict
                break
            pending[key] = verdict.state
        if blocked is None:
            current.update(pending)
            changed.update(pending)
        verdicts.append(blocked)
    return verdicts, changed
