"""Telemetry: the frozen event contract of the runtime, and how an application subscribes.

Events are named with dotted strings. Each carries ``measurements`` (numbers) and ``metadata``
(context). The names and keys below are a contract: keys may be **added** in a minor release,
never renamed or removed without a major one.

======================  ==========================================  ================================
event                   measurements                                metadata
======================  ==========================================  ================================
``job.start``           ``system_time`` (epoch s), ``queue_time``   ``job``, ``queue``, ``worker``
                        (s between scheduled_at and start)
``job.stop``            ``duration`` (s)                            ``job``, ``queue``, ``worker``,
                                                                    ``state`` (the state the
                                                                    outcome moves the job to),
                                                                    ``result``
``job.exception``       ``duration`` (s)                            ``job``, ``queue``, ``worker``,
                                                                    ``state``, ``kind``
                                                                    (``error``/``timeout``/
                                                                    ``unknown_worker``),
                                                                    ``error`` (text)
``fetch``               ``count``, ``demand``, ``duration`` (s)     ``queue``, ``producer``
``ack.batch``           ``count``, ``stale``, ``duration`` (s)      ``node``
``release``             ``count``, ``released``                     ``reason``
``rescue``              ``count``, ``discarded``                    ``prefix``
``stage``               ``count``                                   ``prefix``, ``queues``
``leader.elected``      ``system_time``                             ``node``, ``prefix``
``leader.resigned``     ``system_time``                             ``node``, ``prefix``
``duty.error``          ``count``                                   ``duty``, ``error``
======================  ==========================================  ================================

Job events fire per job, every other event once per batch. When nothing is attached to an event
the runtime skips building it (one dict lookup), so an unobserved runtime pays nothing.

A handler is ``handler(event, measurements, metadata)``; it runs synchronously on the runtime's
event loop, so it must be quick (hand heavy work to a thread). An exception in a handler is
logged once per handler and swallowed: telemetry never breaks job processing.

Example::

    from powertools_core import telemetry

    def on_ack(event, measurements, metadata):
        stats.gauge("acks.stale", measurements["stale"])

    handle = telemetry.attach(["ack.batch"], on_ack)
    ...
    telemetry.detach(handle)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger("powertools.telemetry")

Handler = Callable[[str, Mapping[str, float], Mapping[str, Any]], None]

EVENTS: Final[Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "job.start": (("system_time", "queue_time"), ("job", "queue", "worker")),
    "job.stop": (("duration",), ("job", "queue", "worker", "state", "result")),
    "job.exception": (("duration",), ("job", "queue", "worker", "state", "kind", "error")),
    "fetch": (("count", "demand", "duration"), ("queue", "producer")),
    "ack.batch": (("count", "stale", "duration"), ("node",)),
    "release": (("count", "released"), ("reason",)),
    "rescue": (("count", "discarded"), ("prefix",)),
    "stage": (("count",), ("prefix", "queues")),
    "leader.elected": (("system_time",), ("node", "prefix")),
    "leader.resigned": (("system_time",), ("node", "prefix")),
    "duty.error": (("count",), ("duty", "error")),
}
"""Every event name with its (measurement keys, metadata keys): the frozen contract."""


@dataclass(frozen=True, eq=False)
class Attachment:
    """What ``attach`` returns; pass it to ``detach``."""

    events: tuple[str, ...]
    handler: Handler
    failed: list[bool] = field(default_factory=lambda: [False])


_lock = threading.Lock()
_handlers: dict[str, tuple[Attachment, ...]] = {}


def attach(event_names: Iterable[str], handler: Handler) -> Attachment:
    """Call ``handler`` for each of ``event_names`` (see ``EVENTS``); returns a handle."""
    names = tuple(event_names)
    unknown = [n for n in names if n not in EVENTS]
    if unknown:
        raise ValueError(f"unknown telemetry event(s): {', '.join(unknown)}")
    attachment = Attachment(names, handler)
    with _lock:
        for name in names:
            _handlers[name] = (*_handlers.get(name, ()), attachment)
    return attachment


def detach(attachment: Attachment) -> None:
    """Stop calling the handler behind ``attachment`` (a no-op when already detached)."""
    with _lock:
        for name in attachment.events:
            remaining = tuple(a for a in _handlers.get(name, ()) if a is not attachment)
            if remaining:
                _handlers[name] = remaining
            else:
                _handlers.pop(name, None)


def enabled(event: str) -> bool:
    """Whether anything listens to ``event`` (check before building costly metadata)."""
    return event in _handlers


def emit(event: str, measurements: Mapping[str, float], metadata: Mapping[str, Any]) -> None:
    """Deliver an event to its handlers; handler errors are logged once and swallowed."""
    for attachment in _handlers.get(event, ()):
        try:
            attachment.handler(event, measurements, metadata)
        except Exception:
            if not attachment.failed[0]:
                attachment.failed[0] = True
                log.exception("telemetry handler %r failed on %s", attachment.handler, event)
