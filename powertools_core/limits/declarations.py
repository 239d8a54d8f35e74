"""Declaring limits on a worker: rate limits (token buckets) and concurrency limits.

```python
class Charge(Worker):
    queue = "payments"
    limits = (
        RateLimit("stripe", bucket_capacity=100, bucket_span="1s", partition_by="account"),
        ConcurrencyLimit("stripe-calls", global_limit=20, partition_limit=2,
                         partition_by="account"),
    )
```

Everything is validated when the class is defined (``Worker.__init_subclass__``), so a limit
that could never admit anything (``weight > bucket_capacity``) fails at import, not at 3 a.m.
Several workers may share a limit by naming it the same; their numbers must then agree.

A declaration expands, for one job's args, into *gates*: one token bucket or one concurrency
counter for one partition. Gates are what admission locks, counts and debits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal

from powertools_core.durations import DURATION_HINT, format_duration, parse_duration
from powertools_core.errors import InvalidInput

GLOBAL_PARTITION: Final = ""
"""The partition key of a global (unpartitioned) gate."""

GATE_CACHE: Final = 10_000
"""Gates a limit keeps for reuse (admission resolves the same ones batch after batch)."""

MAX_LEVEL: Final = 2**62
"""bucket_capacity * bucket_span in microseconds must stay below this (the exact token level is
stored as a bigint, see ``reservation``)."""

Resolver = str | Callable[[Mapping[str, Any]], Any]
"""An args key, or a function of the job's args (a dict of the JSON stored in ``oban_jobs``)."""

GateKind = Literal["rate", "concurrency", "partition_concurrency"]


@dataclass(frozen=True, slots=True)
class Gate:
    """One admission point for one partition: a token bucket or a concurrency counter."""

    name: str
    partition: str
    kind: GateKind
    capacity: int
    span_us: int = 0
    """Rate gates only: the bucket span in microseconds (0 for concurrency gates)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.partition)

    @property
    def full_level(self) -> int:
        return self.capacity * self.span_us


@dataclass(frozen=True, slots=True)
class Demand:
    """A gate and what one job asks of it (tokens for a bucket, 1 slot for a counter)."""

    gate: Gate
    weight: int


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput(f"{what}: name must be a non-empty string of at most 200 characters")
    return name


def _check_resolver(value: object, what: str, field_name: str) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if not value:
            raise InvalidInput(f"{what}: {field_name} must be a non-empty args key or a function")
        return
    if not callable(value):
        raise InvalidInput(f"{what}: {field_name} must be an args key (str) or a function of args")


def _positive_int(value: object, what: str, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{what}: {field_name} must be a positive integer, got {value!r}")
    return value


def describe_resolver(value: Resolver | None) -> str | None:
    """How a resolver is shown to operators: ``args.account`` or ``module.function``."""
    if value is None:
        return None
    if isinstance(value, str):
        return f"args.{value}"
    module = getattr(value, "__module__", "") or ""
    name = getattr(value, "__qualname__", None) or type(value).__name__
    return f"{module}.{name}" if module else str(name)


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``bucket_capacity`` tokens, refilled continuously over ``bucket_span``.

    A job costs ``weight`` tokens (or what ``weight_by`` resolves from its args). With
    ``partition_by`` every partition (e.g. every tenant) has its own bucket.
    """

    name: str
    bucket_capacity: int
    bucket_span: str | timedelta | float
    """``"1s"``, ``"10m"`` …, a ``timedelta``, or seconds."""
    partition_by: Resolver | None = None
    weight: int = 1
    weight_by: Resolver | None = None
    span: timedelta = field(init=False, repr=False, compare=False)
    _gates: dict[str, Gate] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_gates", {})
        what = f"rate limit {self.name!r}"
        _check_name(self.name, "rate limit")
        _positive_int(self.bucket_capacity, what, "bucket_capacity")
        span = _as_span(self.bucket_span, what)
        object.__setattr__(self, "span", span)
        _positive_int(self.weight, what, "weight")
        if self.weight > self.bucket_capacity:
            raise InvalidInput(
                f"{what}: weight {self.weight} exceeds bucket_capacity {self.bucket_capacity}; "
                "such a job could never run",
                hint="lower the weight or raise bucket_capacity",
            )
        _check_resolver(self.partition_by, what, "partition_by")
        _check_resolver(self.weight_by, what, "weight_by")
        if self.bucket_capacity * self.span_us >= MAX_LEVEL:
            raise InvalidInput(f"{what}: bucket_capacity * bucket_span is too large")

    @property
    def kind(self) -> Literal["rate"]:
        return "rate"

    @property
    def span_us(self) -> int:
        return self.span // timedelta(microseconds=1)

    @property
    def span_ms(self) -> int:
        return self.span // timedelta(milliseconds=1)

    @property
    def scope(self) -> Literal["global", "partitioned"]:
        return "global" if self.partition_by is None else "partitioned"

    def config(self) -> dict[str, Any]:
        """What must agree between workers sharing the name (and what the store records)."""
        return {
            "kind": "rate",
            "scope": self.scope,
            "bucket_capacity": self.bucket_capacity,
            "bucket_span_ms": self.span_ms,
            "weight": self.weight,
        }

    def describe(self) -> str:
        text = f"{self.bucket_capacity} per {format_duration(self.span)}"
        if self.partition_by is not None:
            text += f" per {describe_resolver(self.partition_by)}"
        return text

    def gate(self, partition: str) -> Gate:
        # Admission asks for the same gates batch after batch: keep them (bounded).
        found = self._gates.get(partition)
        if found is None:
            if len(self._gates) >= GATE_CACHE:
                self._gates.clear()
            found = self._gates[partition] = Gate(
                self.name, partition, "rate", self.bucket_capacity, self.span_us
            )
        return found

    def demands(self, args: Mapping[str, Any]) -> list[Demand]:
        partition = resolve_partition(self, args)
        return [Demand(self.gate(partition), resolve_weight(self, args))]


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``global_limit`` jobs executing across all nodes, and/or at most
    ``partition_limit`` per partition (``partition_by`` is then required)."""

    name: str
    global_limit: int | None = None
    partition_limit: int | None = None
    partition_by: Resolver | None = None
    _demands: dict[str, Demand] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_demands", {})
        what = f"concurrency limit {self.name!r}"
        _check_name(self.name, "concurrency limit")
        if self.global_limit is None and self.partition_limit is None:
            raise InvalidInput(f"{what}: set global_limit, partition_limit, or both")
        if self.global_limit is not None:
            _positive_int(self.global_limit, what, "global_limit")
        if self.partition_limit is not None:
            _positive_int(self.partition_limit, what, "partition_limit")
            if self.partition_by is None:
                raise InvalidInput(f"{what}: partition_limit needs partition_by")
        elif self.partition_by is not None:
            raise InvalidInput(f"{what}: partition_by needs partition_limit")
        _check_resolver(self.partition_by, what, "partition_by")

    @property
    def kind(self) -> Literal["concurrency"]:
        return "concurrency"

    @property
    def scope(self) -> Literal["global", "partitioned"]:
        return "global" if self.partition_by is None else "partitioned"

    def config(self) -> dict[str, Any]:
        return {
            "kind": "concurrency",
            "scope": self.scope,
            "global_limit": self.global_limit,
            "partition_limit": self.partition_limit,
        }

    def describe(self) -> str:
        parts = []
        if self.global_limit is not None:
            parts.append(f"{self.global_limit} executing")
        if self.partition_limit is not None:
            parts.append(
                f"{self.partition_limit} executing per {describe_resolver(self.partition_by)}"
            )
        return ", ".join(parts)

    def global_gate(self) -> Gate | None:
        if self.global_limit is None:
            return None
        return Gate(self.name, GLOBAL_PARTITION, "concurrency", self.global_limit)

    def partition_gate(self, partition: str) -> Gate | None:
        if self.partition_limit is None:
            return None
        return Gate(self.name, partition, "partition_concurrency", self.partition_limit)

    def demands(self, args: Mapping[str, Any]) -> list[Demand]:
        out: list[Demand] = []
        if self.global_limit is not None:
            out.append(self._demand(GLOBAL_PARTITION))
        if self.partition_limit is not None:
            out.append(self._demand(resolve_partition(self, args)))
        return out

    def _demand(self, partition: str) -> Demand:
        """The one-slot demand on a gate of this limit (kept: admission asks for the same
        gates batch after batch; bounded)."""
        found = self._demands.get(partition)
        if found is None:
            gate = (
                self.global_gate()
                if partition == GLOBAL_PARTITION
                else self.partition_gate(partition)
            )
            assert gate is not None
            if len(self._demands) >= GATE_CACHE:
                self._demands.clear()
            found = self._demands[partition] = Demand(gate, 1)
        return found


Limit = RateLimit | ConcurrencyLimit


def parse_named_duration(text: str, name: str) -> timedelta:
    """``parse_duration`` whose error names the flag or field (``invalid --every '1x'``)."""
    try:
        return parse_duration(text)
    except InvalidInput:
        raise InvalidInput(f"invalid {name} {text!r}", hint=DURATION_HINT) from None


def _as_span(value: object, what: str) -> timedelta:
    if isinstance(value, timedelta):
        span = value
    elif isinstance(value, str):
        span = parse_named_duration(value, f"{what}: bucket_span")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        span = timedelta(seconds=value)
    else:
        raise InvalidInput(f"{what}: bucket_span must be a duration like 1s, 10m or 2h")
    if span < timedelta(milliseconds=1):
        raise InvalidInput(f"{what}: bucket_span must be at least 1ms")
    return span


def _partition_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _lookup(resolver: Resolver, args: Mapping[str, Any], what: str, field_name: str) -> Any:
    if isinstance(resolver, str):
        if not isinstance(args, Mapping) or resolver not in args:
            raise InvalidInput(
                f"{what}: args have no {resolver!r} key to resolve {field_name}",
                hint=f"pass args with {resolver!r}, e.g. --args '{{\"{resolver}\": ...}}'",
            )
        return args[resolver]
    try:
        return resolver(args)
    except Exception as exc:
        raise _failed(resolver, what, field_name, exc) from None


def _failed(resolver: Resolver, what: str, field_name: str, exc: Exception) -> InvalidInput:
    return InvalidInput(
        f"{what}: {field_name} {describe_resolver(resolver)} failed on these args: "
        f"{type(exc).__name__}: {exc}"
    )


def resolve_partition(limit: Limit, args: Mapping[str, Any]) -> str:
    """The partition key of ``args`` under ``limit`` (``""`` for a global limit)."""
    resolver = limit.partition_by
    if resolver is None:
        return GLOBAL_PARTITION
    # Admission resolves every claimed job: the common cases first, messages only on errors.
    if not isinstance(resolver, str):
        try:
            value = resolver(args)
        except Exception as exc:
            raise _failed(resolver, _what(limit), "partition_by", exc) from None
    elif isinstance(args, Mapping) and resolver in args:
        value = args[resolver]
    else:
        value = _lookup(resolver, args, _what(limit), "partition_by")
    if type(value) is str and value:
        return value
    if value is None:
        raise InvalidInput(f"{_what(limit)}: partition_by resolved to null for these args")
    text = _partition_text(value)
    if text == GLOBAL_PARTITION:
        raise InvalidInput(
            f"{_what(limit)}: partition_by resolved to an empty string for these args"
        )
    return text


def _what(limit: Limit) -> str:
    return f"{limit.kind} limit {limit.name!r}"


def resolve_weight(limit: RateLimit, args: Mapping[str, Any]) -> int:
    """Tokens a job with ``args`` costs; a weight above the capacity is an error."""
    if limit.weight_by is None:
        return limit.weight
    what = f"rate limit {limit.name!r}"
    value = _lookup(limit.weight_by, args, what, "weight_by")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{what}: weight_by must resolve to a positive integer, got {value!r}")
    if value > limit.bucket_capacity:
        raise InvalidInput(
            f"{what}: weight {value} exceeds bucket_capacity {limit.bucket_capacity}; "
            "this job could never run"
        )
    return value


# Declarations on workers ------------------------------------------------------------------------

_DECLARED: dict[str, tuple[Limit, str]] = {}
"""Every limit declared by a worker defined in this process: name -> (limit, first worker)."""


def declared() -> dict[str, Limit]:
    return {name: limit for name, (limit, _) in _DECLARED.items()}


def validate_worker_limits(limits: object, where: str) -> tuple[Limit, ...]:
    """Check a worker's ``limits`` attribute; register the names it declares."""
    if not isinstance(limits, tuple | list):
        raise InvalidInput(f"{where}: limits must be a tuple of RateLimit/ConcurrencyLimit")
    seen: set[str] = set()
    for item in limits:
        if not isinstance(item, RateLimit | ConcurrencyLimit):
            raise InvalidInput(
                f"{where}: limits may only hold RateLimit or ConcurrencyLimit, got {item!r}"
            )
        if item.name in seen:
            raise InvalidInput(f"{where}: limit {item.name!r} is declared twice")
        seen.add(item.name)
        known = _DECLARED.get(item.name)
        if known is not None and known[1] != where and known[0].config() != item.config():
            raise InvalidInput(
                f"{where}: limit {item.name!r} is also declared by {known[1]} with different "
                f"settings ({known[0].config()} vs {item.config()})",
                hint="workers sharing a limit name must declare the same numbers",
            )
    for item in limits:
        _DECLARED.setdefault(item.name, (item, where))
    return tuple(limits)


def worker_demands(limits: tuple[Any, ...], args: Mapping[str, Any]) -> list[Demand]:
    """Every gate a job with ``args`` must pass, with its weight (raises ``InvalidInput`` when
    the args do not resolve a partition or weight)."""
    out: list[Demand] = []
    for limit in limits:
        out.extend(limit.demands(args))
    return out
