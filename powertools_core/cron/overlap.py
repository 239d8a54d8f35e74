"""Overlap policies (pure): what a due fire does when the entry's previous run is still active.

"Active" means a job of this entry that is ``available``, ``scheduled``, ``executing`` or
``retryable`` (a ``suspended`` job is a queued follow-up, counted separately).

=================  ===============  ================================================
policy             previous active  decision
=================  ===============  ================================================
any                no               ``enqueued``: insert the job
``allow``          yes              ``allowed``: insert the job anyway
``skip``           yes              ``skipped``: no job
``queue_one``      yes              ``queued``: insert one follow-up, ``suspended``;
                                    the scheduler makes it ``available`` once no run
                                    is active. A second one while one waits:
                                    ``skipped``
``cancel_previous`` yes             ``cancelled_previous``: cancel the active job(s)
                                    (a running one is told to stop), insert the job
=================  ===============  ================================================

A fire the scheduler did not make (down too long, catch-up policy) is recorded ``missed``; a
fire whose job could not be built (args no longer valid for the worker) is recorded ``failed``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from powertools_core.errors import InvalidInput


class Overlap(StrEnum):
    allow = "allow"
    skip = "skip"
    queue_one = "queue_one"
    cancel_previous = "cancel_previous"


class Decision(StrEnum):
    enqueued = "enqueued"
    allowed = "allowed"
    skipped = "skipped"
    queued = "queued"
    cancelled_previous = "cancelled_previous"
    missed = "missed"
    failed = "failed"
    """The job could not be built (e.g. stored args no longer valid); ``details`` say why."""


INSERTS_JOB: Final = frozenset(
    {Decision.enqueued, Decision.allowed, Decision.queued, Decision.cancelled_previous}
)
ACTIVE_STATES: Final = ("available", "scheduled", "executing", "retryable")


def parse_overlap(value: str | Overlap) -> Overlap:
    try:
        return Overlap(value)
    except ValueError:
        raise InvalidInput(
            f"invalid overlap policy {value!r}",
            hint=f"choose from {', '.join(o.value for o in Overlap)}",
        ) from None


def decide(policy: Overlap, *, active: bool, follow_up_waiting: bool) -> Decision:
    """The decision for one fire (see the module table)."""
    if not active:
        return Decision.enqueued
    if policy is Overlap.allow:
        return Decision.allowed
    if policy is Overlap.skip:
        return Decision.skipped
    if policy is Overlap.queue_one:
        return Decision.skipped if follow_up_waiting else Decision.queued
    return Decision.cancelled_previous
