"""Pure archive policy: which terminal states age out when, and the configuration that says so.

No I/O here. ``resolve_retention`` turns the CLI's ``--state``/``--older-than`` and the configured
``[tool.powertools.archive]`` retention into one per-state mapping; ``cutoffs`` turns that into
the timestamps the SQL compares against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from powertools_core.durations import format_duration, parse_duration
from powertools_core.errors import InvalidInput
from powertools_core.schema.oban import JOB_STATES, TERMINAL_STATES

# The timestamp that says how old a terminal job is, per state (Oban sets it on the transition).
TERMINAL_TIMESTAMP: Final = {
    "completed": "completed_at",
    "cancelled": "cancelled_at",
    "discarded": "discarded_at",
}
DEFAULT_RETENTION: Final = {
    "completed": timedelta(days=1),
    "cancelled": timedelta(days=7),
    "discarded": timedelta(days=30),
}
DEFAULT_AUDIT_RETENTION: Final = timedelta(days=90)
DEFAULT_BATCH_SIZE: Final = 10_000
MAX_BATCH_SIZE: Final = 100_000
DEFAULT_INTERVAL: Final = timedelta(minutes=10)
DEFAULT_MAX_ROWS_PER_TICK: Final = 100_000
MIN_REASON_LENGTH: Final = 8

STATE_SPEC_HINT: Final = "e.g. --state completed=1d,cancelled=7d,discarded=30d"
CONFIG_KEYS: Final = (
    "retention",
    "audit_retention",
    "interval",
    "batch_size",
    "max_rows_per_tick",
    "enabled",
)


def _check_terminal(state: str) -> str:
    name = state.strip().lower()
    if name in TERMINAL_STATES:
        return name
    if name in JOB_STATES:
        raise InvalidInput(
            f"cannot archive state {name!r}: only terminal jobs are archived",
            hint=f"use {', '.join(TERMINAL_STATES)}",
        )
    raise InvalidInput(f"unknown job state {state.strip()!r}", hint=STATE_SPEC_HINT)


def parse_state_spec(text: str) -> dict[str, timedelta | None]:
    """``"completed=1d,discarded"`` -> ``{"completed": 1d, "discarded": None}``.

    ``None`` means no age was given for that state. States must be terminal and appear once;
    the order of the text is kept.
    """
    result: dict[str, timedelta | None] = {}
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise InvalidInput("empty --state", hint=STATE_SPEC_HINT)
    for item in items:
        if not item:
            raise InvalidInput(f"empty entry in --state {text!r}", hint=STATE_SPEC_HINT)
        name, sep, age = item.partition("=")
        state = _check_terminal(name)
        if state in result:
            raise InvalidInput(f"state {state!r} is given twice in --state", hint=STATE_SPEC_HINT)
        result[state] = parse_duration(age, name=f"--state age of {state}") if sep else None
    return result


def parse_retention_mapping(data: Mapping[str, Any], where: str) -> dict[str, timedelta]:
    """A configured ``retention = {completed = "1d", ...}`` table, validated."""
    result: dict[str, timedelta] = {}
    for key, value in data.items():
        state = _check_terminal(str(key))
        if not isinstance(value, str):
            raise InvalidInput(f'{where}.{key}: expected a duration string such as "7d"')
        result[state] = parse_duration(value, name=f"{where}.{key}")
    return _ordered(result)


def _ordered(retention: Mapping[str, timedelta]) -> dict[str, timedelta]:
    return {s: retention[s] for s in TERMINAL_STATES if s in retention}


def resolve_retention(
    state_spec: str | None,
    older_than: str | None,
    configured: Mapping[str, timedelta] | None = None,
) -> dict[str, timedelta]:
    """The per-state retention a run applies.

    - ``--state`` lists the states to archive; a state without ``=AGE`` takes ``--older-than``,
      else its configured retention, else the built-in default.
    - ``--older-than`` alone applies to every terminal state.
    - Neither: the configured retention, else the defaults (completed 1d, cancelled 7d,
      discarded 30d).
    """
    fallback = dict(configured) if configured else dict(DEFAULT_RETENTION)
    age = parse_duration(older_than, name="--older-than") if older_than is not None else None
    if state_spec is not None:
        spec = parse_state_spec(state_spec)
        return _ordered(
            {
                state: given
                if given is not None
                else (age if age is not None else fallback.get(state, DEFAULT_RETENTION[state]))
                for state, given in spec.items()
            }
        )
    if age is not None:
        return {state: age for state in TERMINAL_STATES}
    return _ordered(fallback)


def utc_naive(moment: datetime) -> datetime:
    """Oban stores UTC in ``timestamp without time zone``; aware values are converted."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def cutoffs(retention: Mapping[str, timedelta], now: datetime) -> dict[str, datetime]:
    """Per state, the instant before which a job is old enough to archive (naive UTC)."""
    base = utc_naive(now)
    return {state: base - age for state, age in _ordered(retention).items()}


def format_retention(retention: Mapping[str, timedelta]) -> str:
    """The ``--state`` spelling of a retention: ``completed=1d,cancelled=7d``."""
    return ",".join(f"{s}={format_duration(a)}" for s, a in _ordered(retention).items())


def check_batch_size(size: int) -> int:
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise InvalidInput(
            f"invalid batch size {size}", hint=f"use a number from 1 to {MAX_BATCH_SIZE:,}"
        )
    return size


def check_actor_reason(actor: str | None, reason: str | None) -> tuple[str, str]:
    """The rule for every mutation: an actor, and a reason of at least 8 characters.

    Same error codes as ``ops`` (``actor_required``, ``reason_required``, ``reason_too_short``)
    so scripts can handle every refusal the same way.
    """
    from powertools_core.ops.errors import ActorRequired, ReasonRequired, ReasonTooShort

    who = (actor or "").strip()
    why = " ".join((reason or "").split())
    if not who:
        raise ActorRequired(
            "an actor is required to archive, restore or prune",
            hint="pass --actor NAME or set POWERTOOLS_ACTOR",
        )
    if not why:
        raise ReasonRequired(
            "a reason is required to archive, restore or prune",
            hint=f'pass --reason "..." (at least {MIN_REASON_LENGTH} characters)',
        )
    if len(why) < MIN_REASON_LENGTH:
        raise ReasonTooShort(
            f"the reason is too short ({len(why)} characters; at least {MIN_REASON_LENGTH})",
            hint='say why, e.g. --reason "weekly cleanup"',
        )
    return who, why


@dataclass(frozen=True)
class ArchiveConfig:
    """``[tool.powertools.archive]``: what the leader applies periodically."""

    retention: dict[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    audit_retention: timedelta | None = None
    interval: timedelta = DEFAULT_INTERVAL
    batch_size: int = DEFAULT_BATCH_SIZE
    max_rows_per_tick: int = DEFAULT_MAX_ROWS_PER_TICK
    enabled: bool = True
    configured_retention: bool = False


def _duration_value(value: Any, where: str) -> timedelta:
    if isinstance(value, bool):
        raise InvalidInput(f'{where}: expected a duration such as "10m"')
    if isinstance(value, int | float):
        if value <= 0:
            raise InvalidInput(f"{where}: must be positive")
        return timedelta(seconds=value)
    if isinstance(value, str):
        return parse_duration(value, name=where)
    raise InvalidInput(f'{where}: expected a duration such as "10m"')


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{where}: expected a positive whole number")
    return value


def parse_archive_config(data: Mapping[str, Any]) -> ArchiveConfig:
    """Validate the config table; unknown keys are an error so typos do not pass silently."""
    where = "[tool.powertools.archive]"
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidInput(
            f"{where}: unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(CONFIG_KEYS)}"
        )
    config = ArchiveConfig()
    changes: dict[str, Any] = {}
    if "retention" in data:
        raw = data["retention"]
        if not isinstance(raw, Mapping):
            raise InvalidInput(f'{where}.retention: expected a table such as {{completed = "1d"}}')
        # States the table leaves out keep their defaults (as doctor's archive_retention reads it).
        configured = parse_retention_mapping(raw, f"{where}.retention")
        changes["retention"] = _ordered({**DEFAULT_RETENTION, **configured})
        changes["configured_retention"] = True
    if "audit_retention" in data:
        changes["audit_retention"] = _duration_value(
            data["audit_retention"], f"{where}.audit_retention"
        )
    if "interval" in data:
        changes["interval"] = _duration_value(data["interval"], f"{where}.interval")
    if "batch_size" in data:
        changes["batch_size"] = check_batch_size(
            _positive_int(data["batch_size"], f"{where}.batch_size")
        )
    if "max_rows_per_tick" in data:
        changes["max_rows_per_tick"] = _positive_int(
            data["max_rows_per_tick"], f"{where}.max_rows_per_tick"
        )
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise InvalidInput(f"{where}.enabled: expected true or false")
        changes["enabled"] = data["enabled"]
    return replace(config, **changes)
