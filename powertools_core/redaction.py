"""What operators may see of job args: secrets are replaced by ``«redacted»`` on every surface.

Two sources decide what is hidden:

- the worker's own declaration: ``Args`` fields typed ``Redacted[...]`` (top-level fields);
- a deny-list of key names (``redact_keys`` in the config file; ``DEFAULT_DENY_KEYS`` otherwise),
  applied at every depth of nested objects and lists.

A key matches a deny entry case-insensitively after normalising separators and camelCase to
``snake_case``: with ``token`` in the list, ``token``, ``Token``, ``accessToken``, ``refresh-token``
and ``user_token`` are hidden, ``token_count`` is not. The value is replaced, the key is kept, so
operators still see which fields a job carried.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

REDACTED_TEXT: Final = "«redacted»"

DEFAULT_DENY_KEYS: Final = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "auth",
    "private_key",
    "credentials",
    "cookie",
    "session_key",
    "credit_card",
    "card_number",
    "cvv",
    "ssn",
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def normalise_key(key: str) -> str:
    """``accessToken`` / ``Access-Token`` / ``ACCESS_TOKEN`` all become ``access_token``."""
    snake = _CAMEL.sub("_", key).lower()
    return _SEPARATORS.sub("_", snake).strip("_")


class DenyList:
    """A compiled deny-list: ``matches(key)`` is true when the key must be hidden."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str] | None = None) -> None:
        chosen = DEFAULT_DENY_KEYS if keys is None else tuple(keys)
        self._keys = frozenset(normalise_key(k) for k in chosen if normalise_key(k))

    @property
    def keys(self) -> frozenset[str]:
        return self._keys

    def matches(self, key: str) -> bool:
        norm = normalise_key(key)
        if norm in self._keys:
            return True
        return any(norm.endswith("_" + k) for k in self._keys)


def _walk(value: Any, deny: DenyList) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED_TEXT if isinstance(k, str) and deny.matches(k) else _walk(v, deny))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_walk(v, deny) for v in value]
    return value


def redact_value(value: Any, deny: DenyList) -> Any:
    """A copy of any JSON value with deny-listed keys hidden at every depth."""
    return _walk(value, deny)


def redact(
    args: Mapping[str, Any] | None,
    worker_cls: Any | None = None,
    deny_keys: DenyList | Iterable[str] | None = None,
) -> dict[str, Any]:
    """A copy of ``args`` safe to show: the worker's ``Redacted`` fields and deny-listed keys
    (nested too) are replaced by ``«redacted»``. ``worker_cls`` is a ``Worker`` subclass or None
    (a job whose worker is not registered here); ``deny_keys`` None means the default list."""
    deny = deny_keys if isinstance(deny_keys, DenyList) else DenyList(deny_keys)
    if not args:
        return {}
    declared: frozenset[str] = frozenset()
    if worker_cls is not None and hasattr(worker_cls, "redacted_fields"):
        declared = worker_cls.redacted_fields()
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key in declared or (isinstance(key, str) and deny.matches(key)):
            out[key] = REDACTED_TEXT
        else:
            out[key] = _walk(value, deny)
    return out
