"""Wake-ups and operator signals over LISTEN/NOTIFY, on one dedicated connection per process.

``powertools.<prefix>.insert`` carries a queue name per notification (sent by enqueue and by the
stager); the matching producer reacts if it has room (debounced there). ``powertools.<prefix>.
signal`` carries JSON such as ``{"action": "cancel", "job_id": 42}``: the process running that
job cancels it. Notifications are hints: polling stays the floor, and after a reconnect every
producer polls once to cover what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from powertools_core.db.identifiers import quote_ident
from powertools_core.jobs.notify import insert_channel, signal_channel
from powertools_core.runtime.base import DB_ERRORS, Backoff, ConnectionSlot, log

__all__ = ["Notifier", "insert_channel", "signal_channel"]


class Notifier:
    name = "notifier"

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        on_insert: Callable[[str], None],
        on_signal: Callable[[dict[str, Any]], None],
        on_reconnect: Callable[[], None],
        node: str = "",
        reconnect_max: float = 10.0,
    ) -> None:
        self.slot = ConnectionSlot(url, "listen", node=node, prepare_threshold=None)
        self.prefix = prefix
        self.insert_channel = insert_channel(prefix)
        self.signal_channel = signal_channel(prefix)
        self.on_insert = on_insert
        self.on_signal = on_signal
        self.on_reconnect = on_reconnect
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(reconnect_max)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="powertools-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.slot.reset()

    async def _run(self) -> None:
        first = True
        while True:
            try:
                conn = await self.slot.get()
                await conn.execute(f"LISTEN {quote_ident(self.insert_channel)}")
                await conn.execute(f"LISTEN {quote_ident(self.signal_channel)}")
                self.listening.set()
                self._backoff.reset()
                if not first:
                    self.on_reconnect()
                first = False
                async for note in conn.notifies():
                    if note.channel == self.insert_channel:
                        self.on_insert(_queue_of(note.payload))
                    elif note.channel == self.signal_channel:
                        self._signal(note.payload)
            except DB_ERRORS as exc:
                self.listening.clear()
                delay = self._backoff.next()
                log.warning("notifier: connection lost (%s); reconnecting in %.1fs", exc, delay)
                await self.slot.reset()
                await asyncio.sleep(delay)

    def _signal(self, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("notifier: ignoring malformed signal %r", payload[:200])
            return
        if isinstance(message, dict):
            self.on_signal(message)


def _queue_of(payload: str) -> str:
    """The payload is the queue name; a JSON object with ``queue`` (Oban's style) works too."""
    if payload.startswith("{"):
        with contextlib.suppress(ValueError):
            data = json.loads(payload)
            queue = data.get("queue") if isinstance(data, dict) else None
            if isinstance(queue, str):
                return queue
    return payload
