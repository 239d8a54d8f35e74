"""What every background service shares: the start/stop protocol, reconnecting connections,
and the retry backoff used when the database goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Final, Protocol, runtime_checkable

import psycopg
from psycopg.types.json import set_json_loads

from powertools_core.db.connection import connect_async
from powertools_core.errors import PowertoolsError

log = logging.getLogger("powertools.runtime")

DB_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, PowertoolsError)
"""Failures that mean "the database is unreachable right now": log, back off, reconnect."""


_decode = json.JSONDecoder().decode


# The hot-path connections (fetch, ack) reach every row they touch through an index: by primary
# key from a list of ids, or through the fetch and state indexes. A sequential scan is never the
# right plan there, yet young or skewed statistics (a table truncated or just filled, a fan-in
# that owns most edges) made the planner pick one, or a nested loop that rescans a whole batch
# per row, and cache it: workflow drains ran 10-50x slower. Sequential scans are therefore
# priced out on those connections (the planner still uses one where no index applies).
BY_KEY: Final = "SELECT set_config('enable_seqscan', 'off', false)"


def _loads(data: bytes | bytearray | memoryview | str) -> Any:
    """JSON from the wire without ``json.loads``' encoding sniffing (jsonb is always UTF-8)."""
    return _decode(data if isinstance(data, str) else str(data, "utf-8"))


@runtime_checkable
class Service(Protocol):
    """A background service: ``start`` returns once it runs, ``stop`` once it has stopped."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Backoff:
    """Exponential delay for reconnect loops: 0.1 s doubling up to ``cap``, reset on success."""

    def __init__(self, cap: float = 10.0, first: float = 0.1) -> None:
        self.cap = cap
        self.first = first
        self.current = first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.cap, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first


class ConnectionSlot:
    """One long-lived autocommit connection, (re)opened on demand.

    The hot path keeps its own dedicated connections (fetch, ack, listen, leader) because
    prepared statements live per connection and a pool checkout costs a round trip's worth.
    """

    def __init__(
        self,
        url: str,
        role: str,
        *,
        node: str = "",
        prepare_threshold: int | None = 0,
        fast_json: bool = False,
        by_key: bool = False,
    ) -> None:
        """``by_key``: a hot-path connection, planned without sequential scans (``BY_KEY``)."""
        self.url = url
        self.fast_json = fast_json
        self.by_key = by_key
        self.role = role
        self.application_name = f"powertools:{role}:{node}"[:63] if node else f"powertools:{role}"
        self.prepare_threshold = prepare_threshold
        self.conn: psycopg.AsyncConnection[Any] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            await self.reset()
            conn = await connect_async(
                self.url,
                autocommit=True,
                application_name=self.application_name,
                prepare_threshold=self.prepare_threshold,
            )
            if self.fast_json:
                set_json_loads(_loads, conn)
            if self.by_key:
                try:
                    await conn.execute(BY_KEY, prepare=False)  # once per connection
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.close()
                    raise
            self.conn = conn
        return self.conn

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed and not self.conn.broken


async def sleep_or(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True when the event was set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
