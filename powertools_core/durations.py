"""Durations as people write them (``500ms``, ``30s``, ``10m``, ``2h``, ``7d``, ``1h30m``).

One parser and one formatter so every flag, config value and API argument spells durations the
same way (DESIGN §9). Millisecond resolution: that is the finest unit anyone schedules with, and
it keeps ``parse_duration(format_duration(d)) == d`` exact for every value we produce.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from powertools_core.errors import InvalidInput

# Largest first: the formatter walks this list, the parser looks units up in it.
UNITS_MS: Final = (
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
)
_UNIT_MS: Final = dict(UNITS_MS)
_PART_RE: Final = re.compile(r"(\d+)(ms|d|h|m|s)")
DURATION_HINT: Final = "write durations like 500ms, 30s, 10m, 2h, 7d or 1h30m"


def parse_duration(text: str, *, name: str = "duration") -> timedelta:
    """``"1h30m"`` -> ``timedelta(hours=1, minutes=30)``; a bare number means seconds.

    Raises ``InvalidInput`` naming ``name`` (e.g. ``--grace``) and the text, so a bad flag
    value is a one-line error.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"invalid {name} {text!r}", hint=DURATION_HINT)
    raw = text.strip().lower()
    if not raw:
        raise InvalidInput(f"invalid {name} '' (empty)", hint=DURATION_HINT)
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    total_ms = 0
    pos = 0
    last_size = None
    for match in _PART_RE.finditer(raw):
        if match.start() != pos:
            break
        unit = match.group(2)
        size = _UNIT_MS[unit]
        if last_size is not None and size >= last_size:
            # "1h1h" or "30s1h": almost certainly a typo, never a meaningful spelling.
            raise InvalidInput(
                f"invalid {name} {text!r}: write units largest first, once each",
                hint=DURATION_HINT,
            )
        last_size = size
        total_ms += int(match.group(1)) * size
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise InvalidInput(f"invalid {name} {text!r}", hint=DURATION_HINT)
    return timedelta(milliseconds=total_ms)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling at millisecond resolution: 90s -> ``"1m30s"``.

    Sub-millisecond parts are rounded to the nearest millisecond; negative values are written
    with a leading ``-`` (they only appear in reports, e.g. "overdue by").
    """
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    sign = "-" if total_ms < 0 else ""
    remaining = abs(total_ms)
    parts: list[str] = []
    for unit, size in UNITS_MS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def to_timedelta(value: timedelta | float | int | str, *, what: str = "duration") -> timedelta:
    """Accept seconds (int/float), a duration string or a timedelta; reject negatives."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {what} {value!r}", hint=DURATION_HINT)
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInput(f"invalid {what} {value!r}", hint=DURATION_HINT)
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        result = parse_duration(value, name=what)
    else:
        raise InvalidInput(f"invalid {what} {value!r}", hint=DURATION_HINT)
    if result < timedelta(0):
        raise InvalidInput(f"invalid {what} {value!r}: must not be negative", hint=DURATION_HINT)
    return result
