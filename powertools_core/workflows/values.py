"""JSON values a step hands to the database (results, durable state, signal payloads).

Python's ``json`` accepts more than PostgreSQL's ``jsonb`` does: ``NaN``/``Infinity``, lone
surrogates and the ``\\u0000`` escape all pass ``json.dumps`` but make the statement fail. A
value that reaches the acker must never fail there (one bad row would hold a whole batch back),
so it is encoded and checked here, on the job's path, and a bad one fails the attempt instead.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

_NUL_ESCAPE: Final = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""``\\u0000`` preceded by an even number of backslashes: an escaped NUL, not a literal text."""


class NotJSON(ValueError):
    """A value the ``jsonb`` columns cannot hold; the message says what and why."""


def encode(value: Any, what: str) -> str:
    """Compact JSON text of ``value`` that ``jsonb`` accepts, or ``NotJSON`` naming ``what``."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotJSON(f"{what} is not JSON-serialisable: {exc}") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotJSON(
            f"{what} holds a lone surrogate, which JSON in PostgreSQL cannot store"
        ) from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise NotJSON(f"{what} holds a NUL character (\\u0000), which PostgreSQL cannot store")
    return text
