"""What a finished attempt becomes: pure functions from a perform result to an ``Ack`` row.

Semantics follow Oban: a return value completes; ``Snooze(s)`` schedules the job ``s`` seconds
out and raises ``max_attempts`` by one so the snooze does not use up an attempt; ``Cancel`` and
``Discard`` end the job with the reason appended to ``errors``; an exception (or a timeout)
makes it ``retryable`` after the worker's backoff, or ``discarded`` once ``attempt`` has reached
``max_attempts``. Each error entry is ``{"at", "attempt", "error"}`` like Oban's.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from powertools_core.jobs.model import Job
from powertools_core.workers import Cancel, Discard, Snooze, exponential_backoff


@dataclass(slots=True)
class Ack:
    """One row of the group-committed ack statement."""

    id: int
    attempt: int
    producer: str
    state: str
    delay: float = 0.0
    bump: int = 0
    error: str | None = None
    """The JSON text of the error entry to append, or None."""
    expected_stale: bool = False
    """An operator's cancel: the row is usually cancelled already, so no match is not stale."""


def error_entry(attempt: int, text: str, at: datetime | None = None) -> str:
    when = (at or datetime.now(UTC)).replace(tzinfo=None).isoformat(timespec="microseconds")
    return json.dumps({"at": when, "attempt": attempt, "error": text})


def format_exception(exc: BaseException) -> str:
    """The error text stored in ``errors``: the exception line first, then the traceback."""
    head = f"{type(exc).__name__}: {exc}".rstrip(": ")
    tb = "".join(traceback.format_exception(exc)).rstrip()
    return f"{head}\n{tb}"


def completed(job: Job, producer: str) -> Ack:
    return Ack(job.id, job.attempt, producer, "completed")


def from_result(job: Job, producer: str, result: Any) -> Ack:
    """The ack for a ``perform`` that returned ``result``."""
    if isinstance(result, Snooze):
        return Ack(job.id, job.attempt, producer, "scheduled", delay=float(result.seconds), bump=1)
    if isinstance(result, Cancel):
        return Ack(
            job.id,
            job.attempt,
            producer,
            "cancelled",
            error=error_entry(job.attempt, result.reason),
        )
    if isinstance(result, Discard):
        return Ack(
            job.id,
            job.attempt,
            producer,
            "discarded",
            error=error_entry(job.attempt, result.reason),
        )
    return Ack(job.id, job.attempt, producer, "completed")


def failed(
    job: Job,
    producer: str,
    text: str,
    backoff: Callable[[int], float] = exponential_backoff,
) -> Ack:
    """The ack for an attempt that failed with ``text``: retryable after backoff, or discarded."""
    entry = error_entry(job.attempt, text)
    if job.attempt >= job.max_attempts:
        return Ack(job.id, job.attempt, producer, "discarded", error=entry)
    try:
        delay = max(0.0, float(backoff(job.attempt)))
    except Exception:
        delay = exponential_backoff(job.attempt)
    return Ack(job.id, job.attempt, producer, "retryable", delay=delay, error=entry)


def cancelled_by_operator(job: Job, producer: str, reason: str) -> Ack:
    return Ack(
        job.id,
        job.attempt,
        producer,
        "cancelled",
        error=error_entry(job.attempt, reason),
        expected_stale=True,
    )
