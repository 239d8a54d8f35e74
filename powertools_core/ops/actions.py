"""The three operator actions on jobs: which states each may act on, and what it writes.

Legality is a table (pure, tested over every state); the SQL for one chunk of an action is a
named constant. Each chunk statement locks the chunk's rows with ``FOR UPDATE SKIP LOCKED``,
acts only on rows whose state *and* attempt still equal what the selection saw, writes one audit
event per changed job in the same statement, and returns what it changed. Rows it did not touch
are classified afterwards (``changed_since_preview`` or ``locked``).

Retry follows Oban's engine: ``available``, ``scheduled_at`` now, ``max_attempts`` raised to
``attempt + 1`` when exhausted, ``completed_at``/``cancelled_at``/``discarded_at`` cleared. Cancel
sets ``cancelled`` + ``cancelled_at``; a job that is ``executing`` is also told to stop through
the runtime's signal channel (the NOTIFY is delivered when the chunk commits), and the running
attempt's late ack is fenced off by its state. Discard sets ``discarded`` + ``discarded_at``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from powertools_core.jobs.notify import signal_channel as signal_channel
from powertools_core.schema.oban import JOB_STATES


class Action(StrEnum):
    retry = "retry"
    cancel = "cancel"
    discard = "discard"

    @property
    def audit_action(self) -> str:
        """The audit ``action`` of the per-job event (``ops.retry``)."""
        return f"ops.{self.value}"

    @property
    def run_audit_action(self) -> str:
        """The audit ``action`` of a bulk run's summary event (``ops.retry_all``)."""
        return f"ops.{self.value}_all"

    @property
    def past(self) -> str:
        return {"retry": "retried", "cancel": "cancelled", "discard": "discarded"}[self.value]


LEGAL_FROM: Final[dict[Action, frozenset[str]]] = {
    Action.retry: frozenset({"retryable", "discarded", "cancelled", "completed"}),
    Action.cancel: frozenset({"available", "scheduled", "retryable", "executing"}),
    Action.discard: frozenset({"available", "scheduled", "retryable"}),
}
"""States each action may act on; a job in any other state is skipped (``illegal_state``)."""

DEFAULT_STATES: Final[dict[Action, tuple[str, ...]]] = {
    Action.retry: ("retryable", "discarded", "cancelled"),
    Action.cancel: ("available", "scheduled", "retryable", "executing"),
    Action.discard: ("available", "scheduled", "retryable"),
}
"""What a bulk action selects when no ``--state`` is given. Retry leaves ``completed`` jobs
alone unless asked (``--state completed``): re-running successful work is never a default."""

# Skip reasons (stable strings; they appear in JSON).
ILLEGAL_STATE: Final = "illegal_state"
CHANGED_SINCE_PREVIEW: Final = "changed_since_preview"
LOCKED: Final = "locked"
NOT_FOUND: Final = "not_found"
ALREADY_DONE_IN_RUN: Final = "already_done_in_run"


def is_legal(action: Action, state: str) -> bool:
    return state in LEGAL_FROM[action]


def skip_reason(action: Action, state: str) -> str | None:
    """None when ``action`` may act on a job in ``state``; else the skip reason."""
    if state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r}")
    return None if is_legal(action, state) else ILLEGAL_STATE


def explain_skip(action: Action, state: str) -> str:
    allowed = ", ".join(s for s in JOB_STATES if s in LEGAL_FROM[action])
    return f"{action.value} acts on {allowed}; this job is {state}"


# One chunk = one statement. ``%(ids)s``/``%(states)s``/``%(attempts)s`` are the chunk's
# selection (parallel arrays, ids ascending; ``low``/``high`` its first and last id, which keeps
# the primary-key scan to the chunk's range); rows whose state or attempt moved are not picked.
_CHUNK_TEMPLATE: Final = """
WITH sel AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(states)s::text[], %(attempts)s::int[])
        AS s(id, state, attempt)
), picked AS (
    SELECT j.id, j.state::text AS state, j.queue, j.attempt, j.max_attempts, j.scheduled_at,
           j.completed_at, j.cancelled_at, j.discarded_at
    FROM {prefix}.oban_jobs AS j
    JOIN sel ON sel.id = j.id
    WHERE j.id BETWEEN %(low)s AND %(high)s
      AND j.state = sel.state::{prefix}.oban_job_state AND j.attempt = sel.attempt
    ORDER BY j.id
    FOR UPDATE OF j SKIP LOCKED
), changed AS ({changed}
), audited AS (
    INSERT INTO {prefix}.powertools_audit_events
        (actor, action, target_type, target_id, reason, result, run_id, before, after, meta)
    SELECT %(actor)s, %(audit_action)s, 'job', c.id::text, %(reason)s, 'ok', %(run_id)s,
           c.before, c.after, jsonb_build_object('queue', c.queue, 'worker', c.worker)
    FROM changed AS c
)
SELECT c.id, c.before ->> 'state', c.queue FROM changed AS c ORDER BY c.id
"""

RETRY_CHUNK: Final = _CHUNK_TEMPLATE.replace(
    "{changed}",
    """
    UPDATE {prefix}.oban_jobs AS j
    SET state = 'available',
        scheduled_at = timezone('UTC', now()),
        max_attempts = GREATEST(j.max_attempts, j.attempt + 1),
        completed_at = NULL,
        cancelled_at = NULL,
        discarded_at = NULL
    FROM picked AS p
    WHERE j.id = p.id
    RETURNING j.id, j.queue, j.worker,
        jsonb_build_object('state', p.state, 'scheduled_at', p.scheduled_at,
            'max_attempts', p.max_attempts, 'completed_at', p.completed_at,
            'cancelled_at', p.cancelled_at, 'discarded_at', p.discarded_at) AS before,
        jsonb_build_object('state', j.state, 'scheduled_at', j.scheduled_at,
            'max_attempts', j.max_attempts, 'completed_at', j.completed_at,
            'cancelled_at', j.cancelled_at, 'discarded_at', j.discarded_at) AS after
""",
)

CANCEL_CHUNK: Final = _CHUNK_TEMPLATE.replace(
    "{changed}",
    """
    UPDATE {prefix}.oban_jobs AS j
    SET state = 'cancelled', cancelled_at = timezone('UTC', now())
    FROM picked AS p
    WHERE j.id = p.id
    RETURNING j.id, j.queue, j.worker,
        jsonb_build_object('state', p.state, 'cancelled_at', p.cancelled_at) AS before,
        jsonb_build_object('state', j.state, 'cancelled_at', j.cancelled_at) AS after
""",
)

DISCARD_CHUNK: Final = _CHUNK_TEMPLATE.replace(
    "{changed}",
    """
    UPDATE {prefix}.oban_jobs AS j
    SET state = 'discarded', discarded_at = timezone('UTC', now())
    FROM picked AS p
    WHERE j.id = p.id
    RETURNING j.id, j.queue, j.worker,
        jsonb_build_object('state', p.state, 'discarded_at', p.discarded_at) AS before,
        jsonb_build_object('state', j.state, 'discarded_at', j.discarded_at) AS after
""",
)

CHUNK_SQL: Final[dict[Action, str]] = {
    Action.retry: RETRY_CHUNK,
    Action.cancel: CANCEL_CHUNK,
    Action.discard: DISCARD_CHUNK,
}

# Tell the runtime to stop running jobs we just cancelled (delivered at commit).
NOTIFY_SIGNALS: Final = "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"

# Where the rows a chunk did not change are now (no lock: a report, not a decision).
CURRENT_STATES: Final = """
SELECT j.id, j.state::text, j.attempt
FROM {prefix}.oban_jobs AS j WHERE j.id = ANY(%(ids)s::bigint[])
"""
