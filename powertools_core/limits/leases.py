"""Concurrency leases held by one worker process: admit and free jobs without a round trip.

A process leases slots of a concurrency gate from the database (``powertools_limits_lease``,
migration 0004) and then admits jobs against them in memory: a job takes one slot of every gate
it needs and gives them back when it finishes. The database counts a lease's slots as taken,
so across processes the limit holds exactly as with per-job holds; what changes is that an
unsaturated limit costs a write per gate now and then instead of one per gate in every batch.

:class:`LeaseBook` is the pure bookkeeping (no I/O; the clock is passed in, so it is tested
with any sequence of events). Its rules:

- a job is admitted only when every gate it needs has a free slot (``used < slots``) on a lease
  confirmed by the database within ``confirm_for`` seconds; in priority order, so within a batch a
  gate that ran out stays out (the strict prefix rule of ``reservation``);
- a gate short of slots asks for what the batch lacks plus as much again as headroom (the
  database grants headroom only out of half the room left);
- slots no job needed during a whole keep-alive interval are given back (``surplus``), so a
  lease shrinks to what the process uses and an idle process holds nothing for long;
- a gate the database reports cooling down admits nothing until then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from powertools_core.limits.declarations import Demand, Gate

CONFIRM_FOR: Final = 2.0
"""Seconds a lease may be used without hearing from the database (the keep-alive renews it
twice as often; a ``limiter cooldown`` takes effect within this)."""

KEEP_EVERY: Final = 0.5
"""Seconds between keep-alives: give back unused slots, renew the rest."""

GateKey = tuple[str, str, str]
"""(schema, limit name, partition)."""


@dataclass(slots=True)
class Lease:
    """One gate's lease as this process knows it."""

    gate: Gate
    slots: int = 0
    used: int = 0
    confirmed: float = -math.inf
    """Monotonic time the database last confirmed ``slots``."""
    spare: int = 0
    """The fewest free slots seen since the last keep-alive (what nobody needed)."""
    blocked_until: datetime | None = None
    blocked_code: str | None = None

    @property
    def free(self) -> int:
        return self.slots - self.used


@dataclass(frozen=True, slots=True)
class Request:
    """What one gate asks of the database: ``need`` (negative: give back) and ``extra``."""

    key: GateKey
    gate: Gate
    need: int
    extra: int


@dataclass(frozen=True, slots=True)
class Grant:
    """The database's answer for one gate."""

    granted: int
    slots: int
    code: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a job was not admitted (the first gate that lacked a slot)."""

    code: str
    gate: Gate
    retry_at: datetime | None


def shortage_code(gate: Gate) -> str:
    return "concurrency_reached" if gate.kind == "concurrency" else "partition_concurrency_reached"


@dataclass
class LeaseBook:
    """One process's leases, per (schema, gate), and which job holds which slots."""

    confirm_for: float = CONFIRM_FOR
    leases: dict[GateKey, Lease] = field(default_factory=dict)
    taken: dict[int, tuple[GateKey, ...]] = field(default_factory=dict)

    def _usable(self, lease: Lease | None, mono: float, wall: datetime) -> bool:
        if lease is None or mono - lease.confirmed > self.confirm_for:
            return False
        if lease.blocked_until is not None:
            if lease.blocked_until > wall:
                return False
            lease.blocked_until = None
            lease.blocked_code = None
        return True

    def requests(
        self,
        prefix: str,
        jobs: Sequence[Sequence[Demand]],
        mono: float,
        wall: datetime,
    ) -> list[Request]:
        """The gates a batch needs the database for: short of free slots, or not confirmed
        recently (``need`` 0 renews). Empty: the batch can be decided from the book alone."""
        wanted: dict[GateKey, tuple[Gate, int]] = {}
        for demands in jobs:
            for d in demands:
                key = (prefix, d.gate.name, d.gate.partition)
                gate, n = wanted.get(key, (d.gate, 0))
                wanted[key] = (gate, n + 1)
        out: list[Request] = []
        for key, (gate, n) in wanted.items():
            lease = self.leases.get(key)
            if (
                lease is not None
                and lease.blocked_until is not None
                and lease.blocked_until > wall
                and mono - lease.confirmed <= self.confirm_for
            ):
                continue  # cooling down, known: refuse without asking
            usable = self._usable(lease, mono, wall)
            free = lease.free if lease is not None else 0
            short = max(0, n - max(free, 0))
            if short or not usable:
                out.append(Request(key, gate, short, short))
        return out

    def apply(self, request: Request, grant: Grant, mono: float) -> None:
        """Record the database's answer for one gate."""
        lease = self.leases.get(request.key)
        if lease is None:
            lease = self.leases[request.key] = Lease(request.gate)
        lease.gate = request.gate
        lease.slots = grant.slots
        lease.confirmed = mono
        lease.spare = min(lease.spare, lease.free)
        if grant.code == "cooldown":
            lease.blocked_until = grant.retry_at
            lease.blocked_code = grant.code
        else:
            lease.blocked_until = None
            lease.blocked_code = None

    def forget(self, keys: Iterable[GateKey]) -> None:
        """Leases the database could not confirm (the call failed): unusable until it does."""
        for key in keys:
            lease = self.leases.get(key)
            if lease is not None:
                lease.confirmed = -math.inf

    def decide(
        self,
        prefix: str,
        jobs: Sequence[tuple[int, Sequence[Demand]]],
        mono: float,
        wall: datetime,
    ) -> list[Refused | None]:
        """Admit ``jobs`` (id and demands, in priority order) from the book; None = admitted.
        An admitted job holds one slot of each of its gates until :meth:`free`."""
        out: list[Refused | None] = []
        for job_id, demands in jobs:
            refusal: Refused | None = None
            keys: list[GateKey] = []
            for d in demands:
                key = (prefix, d.gate.name, d.gate.partition)
                if key in keys:
                    continue
                lease = self.leases.get(key)
                if (
                    lease is not None
                    and lease.blocked_until is not None
                    and lease.blocked_until > wall
                ):
                    refusal = Refused(lease.blocked_code or "cooldown", d.gate, lease.blocked_until)
                    break
                if not self._usable(lease, mono, wall) or lease is None or lease.free <= 0:
                    refusal = Refused(shortage_code(d.gate), d.gate, None)
                    break
                keys.append(key)
            if refusal is None:
                for key in keys:
                    lease = self.leases[key]
                    lease.used += 1
                    lease.spare = min(lease.spare, lease.free)
                if job_id in self.taken:
                    self.free(job_id)
                self.taken[job_id] = tuple(keys)
            out.append(refusal)
        return out

    def free(self, job_id: int) -> None:
        """The job finished or was given back: its slots are free again (idempotent)."""
        keys = self.taken.pop(job_id, None)
        if not keys:
            return
        for key in keys:
            lease = self.leases.get(key)
            if lease is not None and lease.used > 0:
                lease.used -= 1

    def keep_alive(self) -> list[Request]:
        """Per held lease: give back the slots no job needed since the last call (``need`` < 0)
        or just renew; leases with nothing held or used are dropped from the book."""
        out: list[Request] = []
        for key, lease in list(self.leases.items()):
            if lease.slots <= 0 and lease.used <= 0:
                del self.leases[key]
                continue
            back = max(0, min(lease.spare, lease.free))
            if lease.slots > 0:
                out.append(Request(key, lease.gate, -back, 0))
            lease.spare = max(lease.free - back, 0)
        return out

    def release_all(self) -> list[Request]:
        """Every free slot back (shutdown); slots of jobs still running stay with them."""
        return [
            Request(key, lease.gate, -lease.free, 0)
            for key, lease in self.leases.items()
            if lease.free > 0
        ]

    def held(self) -> int:
        return sum(lease.slots for lease in self.leases.values())
