"""What a finished attempt becomes: pure functions from a perform result to an ``Ack`` row.

Semantics follow Oban: a return value completes; ``Snooze(s)`` schedules the job ``s`` seconds
out and raises ``max_attempts`` by one so the snooze does not use up an attempt; ``Cancel`` and
``Discard`` end the job with the reason appended to ``errors``; an exception (or a timeout)
makes it ``retryable`` after the worker's backoff, or ``discarded`` once ``attempt`` has reached
``max_attempts``. Each error entry is ``{"at", "attempt", "error"}`` like Oban's.

Workflow steps and durable jobs (``meta`` says which) get ``effects`` on their ack: the step's
JSON result, the new ``meta.durable``, the signal to consume, whether to promote dependents.
Their acks are written by ``workflows.flush`` in one transaction; plain jobs keep the cheap
path (``effects`` is None and nothing here costs more than a dict lookup on an empty ``meta``).
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from powertools_core.jobs.model import Job
from powertools_core.workers import Cancel, Discard, Snooze, exponential_backoff
from powertools_core.workflows.builder import META_STEP, META_WORKFLOW_ID
from powertools_core.workflows.context import FanOut
from powertools_core.workflows.durable import (
    KEEP,
    META_DURABLE,
    Await,
    Done,
    DurableContext,
    Next,
    Stop,
)
from powertools_core.workflows.values import NotJSON, encode

DURABLE_OUTCOMES = (Next, Await, Done, Stop)


@dataclass(slots=True)
class Effects:
    """What an ack writes besides the job row (see ``workflows.flush``)."""

    step: tuple[int, str] | None = None
    """(workflow id, step name) of a workflow step: promote its dependents when it ends."""
    result: str | None = None
    """JSON text of the step's result (with ``record``)."""
    record: bool = False
    durable: str | None = None
    """JSON text of the new ``meta.durable`` (None: unchanged)."""
    consume: int | None = None
    """The signal this attempt received, consumed when the ack commits."""
    park: bool = False
    """An ``Await``: re-check for a signal that arrived before the park."""
    schedule: float | None = None
    """Seconds from now for ``scheduled_at`` (an await's timeout, or 0 for ``Next``)."""
    fanout: FanOut | None = None
    """Steps this attempt added to its workflow (``job.workflow.add``)."""
    may_have_added: bool = True
    """Whether the step may have added steps (in this attempt or an earlier one): when it
    ends, its ``added_by`` fan-in edges are materialised. False only for a step that is not
    durable and adds nothing in this, its ending, attempt (no earlier attempt can have added:
    additions are written only with an attempt's successful ack)."""
    refuse: Callable[[str], Ack] | None = None
    """Builds the failed ack that replaces this one when its effects cannot be written
    (additions refused, or a row the acker could not write)."""


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
    effects: Effects | None = None
    """Workflow and durable effects; None for plain jobs (the autocommit group-commit path)."""


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


def from_result(
    job: Job,
    producer: str,
    result: Any,
    backoff: Callable[[int], float] = exponential_backoff,
) -> Ack:
    """The ack for a ``perform`` that returned ``result``."""
    if job.meta or isinstance(result, DURABLE_OUTCOMES):
        return _with_effects(job, producer, result, backoff)
    return _plain(job, producer, result)


def _plain(job: Job, producer: str, result: Any) -> Ack:
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


def _with_effects(job: Job, producer: str, result: Any, backoff: Callable[[int], float]) -> Ack:
    """Outcomes of jobs with ``meta`` (workflow steps, durable jobs) or durable results."""
    meta = job.meta
    step = step_of(job)
    durable = META_DURABLE in meta or isinstance(result, DURABLE_OUTCOMES)
    if step is None and not durable:
        return _plain(job, producer, result)
    ctx = job.durable
    consume = ctx.signal.id if ctx.signal is not None else None
    refuse = functools.partial(failed, job, producer, backoff=backoff)
    if isinstance(result, Snooze):
        return Ack(job.id, job.attempt, producer, "scheduled", delay=float(result.seconds), bump=1)
    if isinstance(result, Cancel | Discard | Stop):
        state = "discarded" if isinstance(result, Discard) else "cancelled"
        return Ack(
            job.id,
            job.attempt,
            producer,
            state,
            error=error_entry(job.attempt, result.reason),
            effects=Effects(step=step, consume=consume, refuse=refuse),
        )
    try:
        if isinstance(result, Next):
            fx = Effects(step=step, consume=consume, schedule=0.0, refuse=refuse)
            fx.durable = _durable_text(ctx, result.step, result.state)
            _attach_additions(fx, job)
            return Ack(job.id, job.attempt, producer, "available", bump=1, effects=fx)
        if isinstance(result, Await):
            state = ctx.state if result.state is KEEP else result.state
            waiting: dict[str, Any] = {"signals": list(result.signals)}
            if result.timeout is not None:
                waiting["timeout"] = result.timeout
            fx = Effects(
                step=step, consume=consume, park=True, schedule=result.timeout, refuse=refuse
            )
            fx.durable = _durable_text(ctx, result.step or ctx.step, state, waiting=waiting)
            _attach_additions(fx, job)
            return Ack(job.id, job.attempt, producer, "suspended", bump=1, effects=fx)
        value = result.result if isinstance(result, Done) else result
        fx = Effects(step=step, consume=consume, refuse=refuse)
        if step is not None:
            fx.result = encode(value, f"the result of workflow step {meta.get(META_STEP)!r}")
            fx.record = True
        if durable:
            fx.durable = _durable_text(ctx, ctx.step, ctx.state, result=value)
        _attach_additions(fx, job)
        fx.may_have_added = durable or fx.fanout is not None
        return Ack(job.id, job.attempt, producer, "completed", effects=fx)
    except NotJSON as exc:
        return failed(job, producer, f"{type(exc).__name__}: {exc}", backoff)


def step_of(job: Job) -> tuple[int, str] | None:
    """(workflow id, step name) when ``job`` is a workflow step."""
    meta = job.meta
    if META_WORKFLOW_ID not in meta:
        return None
    return int(meta[META_WORKFLOW_ID]), str(meta.get(META_STEP, ""))


def _attach_additions(fx: Effects, job: Job) -> None:
    ctx = job.workflow_context
    if ctx is not None and ctx.additions:
        fx.fanout = FanOut(ctx.workflow_id, ctx.step, tuple(ctx.additions))


def _durable_text(
    ctx: DurableContext,
    step: str,
    state: Any,
    *,
    waiting: dict[str, Any] | None = None,
    result: Any = KEEP,
) -> str:
    """The new ``meta.durable`` as JSON text (``NotJSON`` when the state cannot be stored)."""
    value: dict[str, Any] = {"step": step, "state": state}
    if waiting is not None:
        value["await"] = waiting
    if result is not KEEP:
        value["result"] = result
    return encode(value, f"the durable state of step {step!r}")


def failed(
    job: Job,
    producer: str,
    text: str,
    backoff: Callable[[int], float] = exponential_backoff,
) -> Ack:
    """The ack for an attempt that failed with ``text``: retryable after backoff, or discarded.

    A workflow step that is discarded promotes (cascades to) its dependents; a retryable one
    keeps them waiting and needs nothing more. The signal a failed attempt received is not
    consumed: the retry gets it again.
    """
    entry = error_entry(job.attempt, text)
    if job.attempt >= job.max_attempts:
        step = step_of(job)
        fx = Effects(step=step) if step is not None else None
        return Ack(job.id, job.attempt, producer, "discarded", error=entry, effects=fx)
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
        effects=Effects(step=step_of(job)) if META_WORKFLOW_ID in job.meta else None,
    )
