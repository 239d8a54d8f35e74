"""Doctor thresholds: defaults, ``[tool.powertools.doctor]`` in the config file, ``--threshold``.

Order, highest first: ``--threshold NAME=VALUE`` > the config file's doctor table > defaults.
Durations are written ``500ms``, ``30s``, ``10m``, ``2h``, ``7d`` (a bare number is seconds).
Unknown names are an error, so a typo never silently keeps a default.

Archive retention is not a doctor threshold: ``archive_retention`` reads the same
``[tool.powertools.archive] retention`` table that ``powertools archive`` applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from powertools_core.errors import InvalidInput
from powertools_core.schema.oban import TERMINAL_STATES

_DURATION_RE: Final = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)(ms|s|m|h|d)?")
_UNITS: Final = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
DURATION_HINT: Final = "write durations like 500ms, 30s, 10m, 2h or 7d"

# The archive's own defaults (powertools archive applies the same when nothing is configured).
DEFAULT_RETENTION: Final = {
    "completed": timedelta(days=1),
    "cancelled": timedelta(days=7),
    "discarded": timedelta(days=30),
}


def parse_duration(value: Any, *, name: str = "duration") -> timedelta:
    """``"10m"`` -> 10 minutes; a bare number (int/float or digits) is seconds."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {name} {value!r}", hint=DURATION_HINT)
    if isinstance(value, int | float):
        if value < 0:
            raise InvalidInput(f"invalid {name} {value!r}: must not be negative")
        return timedelta(seconds=value)
    match = _DURATION_RE.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput(f"invalid {name} {value!r}", hint=DURATION_HINT)
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def format_duration(value: timedelta) -> str:
    """Human age, at most two units, rounded down: ``2d3h``, ``45m``, ``12s``, ``250ms``."""
    ms = int(value.total_seconds() * 1000)
    if ms < 0:
        return "-" + format_duration(-value)
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    while len(parts) > 1 and parts[-1].startswith("0"):
        parts.pop()
    return "".join(parts)


def exact_duration(value: timedelta) -> str:
    """A threshold as written in config: the largest unit that divides it (``90s``, ``2h``)."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit].total_seconds() * 1000)
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


class Thresholds(BaseModel):
    """Every tunable limit of ``doctor`` (see ``THRESHOLD_HELP`` for what each one means)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    statement_timeout: timedelta = timedelta(seconds=5)
    lock_timeout: timedelta = timedelta(seconds=1)
    uniqueness_backlog: int = 50_000
    producer_stale_after: timedelta = timedelta(seconds=60)
    orphan_after: timedelta = timedelta(hours=1)
    backlog_age: timedelta = timedelta(minutes=10)
    long_transaction: timedelta = timedelta(minutes=5)
    bloat_dead_ratio: float = 0.2
    bloat_min_dead_rows: int = 10_000
    vacuum_age: timedelta = timedelta(days=1)
    archive_grace: timedelta = timedelta(hours=1)
    stuck_workflow_after: timedelta = timedelta(minutes=5)

    def as_strings(self) -> dict[str, str]:
        """Each threshold as one would write it in the config file."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            out[name] = exact_duration(value) if isinstance(value, timedelta) else str(value)
        return out


THRESHOLD_HELP: Final = {
    "statement_timeout": "cap on each doctor statement (a check that hits it is an error)",
    "lock_timeout": "how long doctor waits for a lock before giving up on a check",
    "uniqueness_backlog": "eligible jobs (available/scheduled/retryable/executing) that make "
    "unique inserts slow",
    "producer_stale_after": "a producer heartbeat older than this is dead",
    "orphan_after": "an executing job of an unknown producer attempted longer ago is orphaned",
    "backlog_age": "oldest available job per queue older than this is a stuck backlog",
    "long_transaction": "transactions open longer than this (holding back vacuum)",
    "bloat_dead_ratio": "dead/(live+dead) tuples ratio that counts as bloat",
    "bloat_min_dead_rows": "dead tuples below this never count as bloat",
    "vacuum_age": "no (auto)vacuum for this long while dead tuples pile up",
    "archive_grace": "slack past the archive retention before terminal jobs are reported",
    "stuck_workflow_after": "a workflow step due this long (its dependencies ended, or its "
    "await timed out) without moving on is stuck",
}

_COUNTS: Final = {"uniqueness_backlog", "bloat_min_dead_rows"}


def _coerce(name: str, value: Any) -> Any:
    field = Thresholds.model_fields[name]
    if field.annotation is timedelta:
        return parse_duration(value, name=name)
    if name in _COUNTS:
        text = str(value).replace("_", "").replace(",", "").strip()
        if isinstance(value, bool) or not text.isdigit():
            raise InvalidInput(f"invalid {name} {value!r}: expected a whole number, e.g. 50000")
        return int(text)
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"invalid {name} {value!r}: expected a number, e.g. 0.2") from None
    if isinstance(value, bool) or not 0 < ratio <= 1:
        raise InvalidInput(f"invalid {name} {value!r}: expected a ratio between 0 and 1")
    return ratio


def _unknown(name: str, where: str) -> InvalidInput:
    return InvalidInput(
        f"unknown doctor threshold {name!r} in {where}",
        hint=f"known: {', '.join(Thresholds.model_fields)}",
    )


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["backlog_age=30m", ...]`` (the ``--threshold`` flag) into a mapping."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not value.strip():
            raise InvalidInput(
                f"malformed --threshold {item!r}", hint="use NAME=VALUE, e.g. backlog_age=30m"
            )
        result[name] = value.strip()
    return result


def resolve_thresholds(
    configured: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> Thresholds:
    """Defaults, then the config file's doctor table, then the command-line overrides."""
    values: dict[str, Any] = {}
    for where, source in (
        ("[tool.powertools.doctor]", configured or {}),
        ("--threshold", overrides or {}),
    ):
        for name, value in source.items():
            if name not in Thresholds.model_fields:
                raise _unknown(name, where)
            values[name] = _coerce(name, value)
    return Thresholds(**values)


def resolve_retention(archive: Mapping[str, Any] | None) -> dict[str, timedelta]:
    """Per terminal state, how long jobs may stay: ``[tool.powertools.archive] retention``
    (a table such as ``{completed = "1d"}``) over the archive's defaults."""
    retention = dict(DEFAULT_RETENTION)
    raw = (archive or {}).get("retention")
    if raw is None:
        return retention
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            '[tool.powertools.archive].retention: expected a table such as {completed = "1d"}'
        )
    for state, value in raw.items():
        if state not in TERMINAL_STATES:
            raise InvalidInput(
                f"[tool.powertools.archive].retention: {state!r} is not a terminal state",
                hint=f"use {', '.join(TERMINAL_STATES)}",
            )
        retention[state] = parse_duration(value, name=f"retention for {state}")
    return retention
