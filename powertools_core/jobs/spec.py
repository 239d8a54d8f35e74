"""What to insert: ``JobSpec`` (a validated job not yet in the database), ``Unique``, results.

Everything here is pure (no I/O) so a spec can be built, inspected and tested without a database;
``Worker.new`` builds specs and ``powertools_core.jobs.insert`` writes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from powertools_core.durations import to_timedelta
from powertools_core.errors import InvalidInput
from powertools_core.jobs.model import Job
from powertools_core.schema.oban import JOB_STATES

UNIQUE_DEFAULT_STATES: Final = ("available", "scheduled", "executing", "retryable", "suspended")
"""A job blocks duplicates until it ends: every state except the terminal ones."""

ALL_STATES: Final = tuple(JOB_STATES)


@dataclass(frozen=True, slots=True, init=False)
class Unique:
    """Uniqueness of a job: at most one job per worker + key among ``states`` within ``period``.

    - ``keys``: the args fields that make two jobs "the same" (``None``: all args).
    - ``states``: a job in one of these states blocks a duplicate; once it leaves them (e.g.
      completes) the next insert takes the key over.
    - ``period``: seconds (or ``"10m"``/timedelta) since the blocking job was inserted during
      which it blocks; ``None`` means for as long as it stays in ``states``.
    - ``by_queue``: the same args on different queues are different jobs.
    """

    keys: tuple[str, ...] | None = None
    states: tuple[str, ...] = UNIQUE_DEFAULT_STATES
    period: float | None = None
    by_queue: bool = False

    def __init__(
        self,
        keys: Iterable[str] | None = None,
        states: Iterable[str] = UNIQUE_DEFAULT_STATES,
        period: float | int | str | timedelta | None = None,
        by_queue: bool = False,
    ) -> None:
        if isinstance(keys, str):
            keys = (keys,)
        key_tuple = None if keys is None else tuple(keys)
        if key_tuple is not None and (
            not key_tuple or not all(isinstance(k, str) and k for k in key_tuple)
        ):
            raise InvalidInput("unique keys must be a non-empty list of args field names or None")
        state_tuple = (states,) if isinstance(states, str) else tuple(states)
        unknown = [s for s in state_tuple if s not in JOB_STATES]
        if unknown or not state_tuple:
            raise InvalidInput(
                f"invalid unique states {list(state_tuple)!r}",
                hint=f"choose from {', '.join(JOB_STATES)}",
            )
        seconds = None
        if period is not None:
            seconds = to_timedelta(period, what="unique period").total_seconds()
            if seconds <= 0:
                raise InvalidInput("unique period must be positive (or None for no limit)")
        object.__setattr__(self, "keys", key_tuple)
        object.__setattr__(self, "states", tuple(dict.fromkeys(state_tuple)))
        object.__setattr__(self, "period", seconds)
        object.__setattr__(self, "by_queue", bool(by_queue))


IDEMPOTENT: Final = Unique(states=ALL_STATES)
"""Uniqueness of an explicit idempotency key: the key returns its job for as long as it exists."""


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys and raw UTF-8: equal data gives equal text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def unique_key(worker: str, queue: str, args: Mapping[str, Any], unique: Unique) -> str:
    """The receipt key of a unique job: a SHA-256 over the chosen args (and queue).

    Missing keys count as ``null`` (validated args always carry every field, so this only
    matters for free-form args). The worker is not hashed because receipts are keyed by
    (worker, key) already. Prefixed ``u:`` so it can never equal an idempotency key (``k:``).
    """
    chosen = dict(args) if unique.keys is None else {k: args.get(k) for k in unique.keys}
    payload: dict[str, Any] = {"args": chosen}
    if unique.by_queue:
        payload["queue"] = queue
    return "u:" + hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def idempotency_receipt_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 512:
        raise InvalidInput("idempotency_key must be a non-empty string of at most 512 characters")
    return "k:" + key


def utcnow() -> datetime:
    """Naive UTC, the way ``oban_jobs`` stores time."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Aware datetimes are converted to UTC; naive ones are taken to be UTC already."""
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated job that is not in the database yet (``Worker.new`` builds it).

    ``scheduled_at`` ``None`` means "now, by the database clock"; ``receipt_key`` is set when
    the job is unique (by ``unique`` or an explicit idempotency key).
    """

    worker: str
    queue: str
    args: dict[str, Any]
    priority: int = 0
    max_attempts: int = 20
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    scheduled_at: datetime | None = None
    state: str = "available"
    unique: Unique | None = None
    receipt_key: str | None = None

    @property
    def is_unique(self) -> bool:
        return self.receipt_key is not None


@dataclass(frozen=True, slots=True)
class InsertResult:
    """One enqueue: the job (new, or the existing one when ``conflict``)."""

    job: Job
    conflict: bool = False

    @property
    def id(self) -> int:
        return self.job.id


@dataclass(frozen=True, slots=True)
class BulkInsertResult:
    """What ``insert_all`` did.

    ``inserted`` new jobs and ``conflicts`` duplicates of unique jobs. ``results`` holds one
    ``InsertResult`` per spec in input order when ``returning=True`` was asked for; the default
    COPY path writes rows without reading them back, so it only reports counts.
    """

    inserted: int
    conflicts: int = 0
    results: tuple[InsertResult, ...] | None = None

    @property
    def ids(self) -> list[int]:
        if self.results is None:
            raise InvalidInput("insert_all ran without returning=True, so it has no ids")
        return [r.job.id for r in self.results]


def normalise_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """Tags as Oban keeps them: strings, stripped, de-duplicated, in the order given."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = (tags,)
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidInput(f"tags must be strings, got {tag!r}")
        text = tag.strip()
        if text and text not in out:
            out.append(text)
    return tuple(out)


def schedule(
    schedule_in: float | int | str | timedelta | None,
    scheduled_at: datetime | None,
    now: datetime | None = None,
) -> tuple[str, datetime | None]:
    """The state and ``scheduled_at`` for the scheduling options of one enqueue.

    A time in the future makes the job ``scheduled`` (the stager releases it); a time at or
    before ``now`` is ``available`` at once but keeps the given time, so it sorts fairly.
    """
    if schedule_in is not None and scheduled_at is not None:
        raise InvalidInput("give schedule_in or scheduled_at, not both")
    now = now or utcnow()
    if schedule_in is not None:
        delay = to_timedelta(schedule_in, what="schedule_in")
        if delay <= timedelta(0):
            return "available", None
        return "scheduled", now + delay
    if scheduled_at is not None:
        if not isinstance(scheduled_at, datetime):
            raise InvalidInput(f"scheduled_at must be a datetime, got {scheduled_at!r}")
        at = to_naive_utc(scheduled_at)
        return ("scheduled" if at > now else "available"), at
    return "available", None


def check_json(value: Any, what: str) -> None:
    """Fail early (and by name) on values the JSON columns cannot hold."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {exc}") from None
