"""Durations as written everywhere in powertools: ``500ms``, ``30s``, ``10m``, ``2h``, ``7d``.

Private to the limits package until the shared ``powertools_core.durations`` lands; the two
accept the same spellings.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from powertools_core.errors import InvalidInput

_UNITS: Final = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_RE: Final = re.compile(r"(\d{1,12})(ms|s|m|h|d)")
DURATION_HINT: Final = "write a whole number and a unit: 500ms, 30s, 10m, 2h or 7d"


def parse_duration(text: str, *, name: str = "duration") -> timedelta:
    """``"10m"`` -> ``timedelta(minutes=10)``; anything else is an ``InvalidInput``."""
    match = _RE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(f"invalid {name} {text!r}", hint=DURATION_HINT)
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: 90 s -> ``"90s"``, 2 days -> ``"2d"``, 1.5 s -> ``"1500ms"``."""
    us = value // timedelta(microseconds=1)
    if us == 0:
        return "0s"
    if us % 1000:
        return f"{us / 1000:g}ms"
    ms = us // 1000
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit] // timedelta(milliseconds=1)
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
