"""Insert notifications: the wake-up hint an idle producer listens for.

A NOTIFY is only a hint (the producers' poll is the floor), so it is cheap to drop and costly to
spam: PostgreSQL serialises every notifying commit on one global lock. The sender therefore
emits at most one notification per (schema, queue) per ``WINDOW_S`` per process, carries only the
queue name as payload (so identical notifications in one transaction fold), and never uses a
per-row trigger. Scheduled jobs are not announced: the stager makes them available later.

The channel name is a contract with the runtime's listener: both call :func:`insert_channel`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

from powertools_core.db.identifiers import validate_prefix

WINDOW_S: Final = 0.05
"""At most one NOTIFY per queue per this many seconds per process."""

MAX_CHANNEL_BYTES: Final = 63
"""PostgreSQL truncates/refuses channel names longer than NAMEDATALEN - 1."""

# One statement for any number of queues; rides the caller's transaction when there is one
# (delivered at commit, dropped on rollback). The payload is the queue name.
NOTIFY_QUEUES: Final = "SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q"


def insert_channel(prefix: str) -> str:
    """``powertools.<prefix>.insert``: the channel inserts into ``prefix`` are announced on.

    Scoped by schema so two installations in one database never wake each other. A prefix too
    long for a channel name (over 63 bytes in total) is shortened deterministically, keeping a
    hash of the full name, so sender and listener still agree.
    """
    return _insert_channel(prefix)


def signal_channel(prefix: str) -> str:
    """``powertools.<prefix>.signal``: the operator channel running jobs listen on.

    Shortened like :func:`insert_channel` when the prefix is long, so ops, the runtime and any
    other sender agree on one name that PostgreSQL accepts.
    """
    return _channel(prefix, "signal")


def _insert_channel(prefix: str) -> str:
    return _channel(prefix, "insert")


@functools.lru_cache(maxsize=128)
def _channel(prefix: str, kind: str) -> str:
    validate_prefix(prefix)
    channel = f"powertools.{prefix}.{kind}"
    if len(channel.encode()) <= MAX_CHANNEL_BYTES:
        return channel
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:10]
    keep = MAX_CHANNEL_BYTES - len("powertools.") - len(kind) - 1 - len(digest) - 1
    return f"powertools.{prefix[:keep]}.{digest}.{kind}"


class Debouncer:
    """Leading-edge rate limit per key: the first call in a window passes, the rest are dropped.

    Thread-safe (enqueue may be called from many threads). The clock is injectable so the logic
    is tested without waiting.
    """

    def __init__(self, window: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def allow(self, prefix: str, queues: Iterable[str]) -> list[str]:
        """The queues (distinct, in first-seen order) that may be notified now."""
        now = self._clock()
        passed: list[str] = []
        with self._lock:
            for queue in queues:
                key = (prefix, queue)
                last = self._last.get(key)
                if last is not None and now - last < self.window:
                    continue
                self._last[key] = now
                passed.append(queue)
            if len(self._last) > 10_000:
                # Bounded memory for processes that touch very many queues over time.
                cutoff = now - self.window
                self._last = {k: v for k, v in self._last.items() if v >= cutoff}
        return passed

    def reset(self) -> None:
        with self._lock:
            self._last.clear()


DEBOUNCER = Debouncer()
"""The process-wide sender debouncer used by enqueue and insert_all."""
