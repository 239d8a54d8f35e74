"""Durable multi-step jobs: ``Next``, ``Await``, ``Done``, ``Stop`` and what a step sees.

A durable job is an ordinary ``oban_jobs`` row. Its progress lives in ``meta["durable"]``::

    {"step": "charge", "state": {...},                    # where to continue, committed state
     "await": {"signals": ["approved"], "timeout": 172800, "expired": true},   # while parked
     "result": ...}                                       # after Done(result)

so Oban and every other tool see an ordinary job (``suspended`` while it awaits a signal).

Attempt semantics: ``Next`` and ``Await`` do not use up an attempt. Like ``Snooze`` (and Oban's
snooze) the ack raises ``max_attempts`` by one, so the failure budget (``max_attempts`` minus the
steps taken) is shared by all steps of one instance: an exception in any step counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from powertools_core.durations import to_timedelta
from powertools_core.errors import InvalidInput
from powertools_core.workflows import graph

META_DURABLE: Final = "durable"
META_CORRELATION_KEY: Final = "correlation_key"
FIRST_STEP: Final = "start"
"""The step a durable job starts at before any ``Next``."""

KEY_MAX: Final = 512
SIGNAL_NAME_MAX: Final = 200


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()
"""``Await(..., state=KEEP)`` (the default): the committed state stays as it is."""


def check_signal_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > SIGNAL_NAME_MAX:
        raise InvalidInput(
            f"a signal name must be a non-empty string of at most {SIGNAL_NAME_MAX} "
            f"characters, got {name!r}"
        )
    return name


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > KEY_MAX:
        raise InvalidInput(
            f"a correlation key must be a non-empty string of at most {KEY_MAX} characters, "
            f"got {key!r}"
        )
    return key


def correlate(key: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Job ``meta`` carrying correlation ``key``: ``Order.new(args, meta=correlate("order-17"))``.

    A key is unique among live jobs (a partial unique index): inserting a second live job with
    the same key fails with a unique violation on ``powertools_oban_jobs_correlation_index``.
    """
    return {**(meta or {}), META_CORRELATION_KEY: check_key(key)}


@dataclass(frozen=True, slots=True)
class Next:
    """Continue at ``step`` with ``state`` committed (the same row runs again at once)."""

    step: str
    state: Any = None

    def __post_init__(self) -> None:
        graph.check_name(self.step, "Next step")


@dataclass(frozen=True, slots=True, init=False)
class Await:
    """Park until one of ``signals`` arrives or ``timeout`` passes, then continue at ``step``
    (default: the current step) with ``state`` (default: unchanged)."""

    signals: tuple[str, ...]
    timeout: float | None
    step: str | None
    state: Any

    def __init__(
        self,
        signals: str | Iterable[str],
        *,
        timeout: float | int | str | timedelta | None = None,
        step: str | None = None,
        state: Any = KEEP,
    ) -> None:
        names = (signals,) if isinstance(signals, str) else tuple(signals)
        if not names:
            raise InvalidInput("Await needs at least one signal name")
        names = tuple(dict.fromkeys(check_signal_name(n) for n in names))
        seconds = None
        if timeout is not None:
            seconds = to_timedelta(timeout, what="Await timeout").total_seconds()
            if seconds <= 0:
                raise InvalidInput("Await timeout must be positive (or None to wait forever)")
        if step is not None:
            graph.check_name(step, "Await step")
        object.__setattr__(self, "signals", names)
        object.__setattr__(self, "timeout", seconds)
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "state", state)


@dataclass(frozen=True, slots=True)
class Done:
    """Finish: the job completes and ``result`` is recorded (``meta.durable.result``, and the
    workflow result when the job is a workflow step)."""

    result: Any = None


@dataclass(frozen=True, slots=True)
class Stop:
    """End for good without a result: the job is ``cancelled`` with ``reason`` in ``errors``."""

    reason: str = "stopped"


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal as the resumed step receives it."""

    id: int
    name: str
    payload: Any
    inserted_at: datetime | None = None


@dataclass(slots=True)
class DurableContext:
    """``job.durable``: where this run continues and why it runs.

    ``signal`` is the signal that woke the step (None otherwise); ``timed_out`` is true when the
    wait's timeout passed with no matching signal (``expired_wait``). The runtime loads the
    signal before ``perform``; outside the runtime ``signal`` is None.
    """

    step: str = FIRST_STEP
    state: Any = None
    awaiting: tuple[str, ...] = ()
    timed_out: bool = False
    signal: Signal | None = None
    key: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> DurableContext:
        raw = meta.get(META_DURABLE)
        key = meta.get(META_CORRELATION_KEY)
        if not isinstance(raw, dict):
            return cls(key=key if isinstance(key, str) else None)
        waiting = raw.get("await") if isinstance(raw.get("await"), dict) else None
        return cls(
            step=str(raw.get("step") or FIRST_STEP),
            state=raw.get("state"),
            awaiting=tuple(waiting.get("signals") or ()) if waiting else (),
            timed_out=bool(waiting.get("expired")) if waiting else False,
            key=key if isinstance(key, str) else None,
            raw=dict(raw),
        )

    @property
    def resumed(self) -> bool:
        """Whether this run follows an ``Await`` (woken by a signal or by its timeout)."""
        return bool(self.awaiting)


def awaiting_meta(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``await`` object of a job's meta, or None when it does not wait."""
    raw = meta.get(META_DURABLE)
    if isinstance(raw, dict) and isinstance(raw.get("await"), dict):
        return raw["await"]  # type: ignore[no-any-return]
    return None
