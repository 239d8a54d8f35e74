"""Runtime settings and the pure parsers behind ``worker run``'s options (no I/O here)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from powertools_core import durations
from powertools_core.errors import InvalidInput

_QUEUE_RE: Final = re.compile(r"^[A-Za-z0-9_.:\-]{1,127}$")

LogFormat = Literal["text", "json"]


def parse_duration(text: str | float | int, *, name: str = "duration") -> float:
    """Seconds from ``500ms``, ``30s``, ``10m``, ``2h``, ``7d`` or a bare number of seconds
    (the project's one duration syntax, :mod:`powertools_core.durations`)."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        try:
            value = durations.parse_duration(text).total_seconds()
        except InvalidInput:
            raise InvalidInput(f"invalid {name} {text!r}", hint=durations.DURATION_HINT) from None
    if value < 0:
        raise InvalidInput(f"invalid {name} {text!r}: must not be negative")
    return value


def parse_queues(spec: str | Iterable[str]) -> dict[str, int]:
    """``default=10,mailers=5`` (or several such strings) into ``{"default": 10, ...}``."""
    parts: list[str] = []
    for chunk in [spec] if isinstance(spec, str) else list(spec):
        parts.extend(p.strip() for p in chunk.split(","))
    queues: dict[str, int] = {}
    for part in parts:
        if not part:
            continue
        name, sep, limit = part.partition("=")
        name = name.strip()
        if not sep or not _QUEUE_RE.match(name) or not limit.strip().isdigit():
            raise InvalidInput(
                f"malformed queue spec {part!r}",
                hint="use NAME=CONCURRENCY pairs, e.g. --queues default=10,mailers=5",
            )
        value = int(limit)
        if not 1 <= value <= 10_000:
            raise InvalidInput(f"queue {name!r}: concurrency must be between 1 and 10000")
        if name in queues:
            raise InvalidInput(f"queue {name!r} is listed twice in the queue spec")
        queues[name] = value
    if not queues:
        raise InvalidInput(
            "empty queue spec", hint="use NAME=CONCURRENCY pairs, e.g. --queues default=10"
        )
    return queues


def default_queues(
    configured: Mapping[str, int] | None, worker_queues: Iterable[str]
) -> dict[str, int]:
    """The config file's ``queues``, else each registered worker's queue with concurrency 10."""
    if configured:
        return dict(configured)
    return {q: 10 for q in sorted(set(worker_queues))}


def default_node() -> str:
    return socket.gethostname() or "localhost"


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything one worker process needs; the knobs below are tuned for production defaults
    and shortened by tests."""

    url: str
    prefix: str
    queues: Mapping[str, int]
    node: str = field(default_factory=default_node)
    grace: float = 30.0
    """Seconds a drain waits for running jobs before leaving them to the lifeline."""
    prefetch: int | None = None
    """Claimed-but-not-started jobs per queue beyond the running ones (default: concurrency)."""
    max_fetch: int = 500
    poll_interval: float = 1.0
    max_poll_interval: float = 5.0
    debounce: float = 0.005
    heartbeat_interval: float = 5.0
    rescue_after: float = 30.0
    """A producer whose heartbeat is older than this is dead; its executing jobs are rescued."""
    orphan_after: float = 1800.0
    """Executing jobs of an unknown producer (another runtime) are rescued after this long."""
    stage_interval: float = 1.0
    lifeline_interval: float = 5.0
    election_interval: float = 5.0
    maintenance_batch: int = 1000
    ack_max_batch: int = 2000
    thread_pool_size: int | None = None
    reconnect_max: float = 10.0
    log_format: LogFormat = "text"
    log_level: str = "info"
    """debug, info, warning or error (``-v`` / ``-q`` on the command line)."""
    health_port: int | None = None
    leader: bool = True
    """Take part in leader election (stager, lifeline and plugged-in duties)."""

    def prefetch_for(self, concurrency: int) -> int:
        return concurrency if self.prefetch is None else self.prefetch
