"""Leader election per prefix, and the loop that runs the cluster-wide duties.

Every worker process competes for a session advisory lock (key derived from the prefix) on its
own connection; the holder runs each duty every ``duty.interval`` seconds until it stops or its
connection drops (which releases the lock, so another process takes over within one election
interval).

Capabilities plug duties in two ways, both collected by :func:`discover_duties`:

- a provider registered in code: ``register_duty_provider(lambda ctx: [MyDuty()])``;
- a module in ``DUTY_MODULES`` (or an entry point in the ``powertools.leader_duties`` group)
  exposing ``leader_duties(ctx) -> Iterable[LeaderDuty]``; a module that does not exist is
  skipped, so capabilities can land in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

from powertools_core import telemetry
from powertools_core.config import Settings
from powertools_core.runtime import queries
from powertools_core.runtime.base import DB_ERRORS, Backoff, ConnectionSlot, log, sleep_or
from powertools_core.runtime.duties import LeaderDuty


@dataclass(frozen=True)
class DutyContext:
    """What a duty provider may use to build its duties."""

    url: str
    prefix: str
    node: str
    settings: Settings | None = None
    """The resolved settings of ``worker run`` (config file sections such as ``archive``);
    None when the runtime was started without them."""


DutyProvider = Callable[[DutyContext], Iterable[LeaderDuty]]

DUTY_MODULES: tuple[str, ...] = (
    "powertools_core.cron.duty",
    "powertools_core.archive.duty",
    "powertools_core.workflows.duty",
    "powertools_core.limits.duties",
    "powertools_core.jobs.duties",
)
ENTRY_POINT_GROUP = "powertools.leader_duties"

_providers: list[DutyProvider] = []


def register_duty_provider(provider: DutyProvider) -> DutyProvider:
    """Add duties to every leader started after this call (usable as a decorator)."""
    if provider not in _providers:
        _providers.append(provider)
    return provider


def unregister_duty_provider(provider: DutyProvider) -> None:
    if provider in _providers:
        _providers.remove(provider)


def discover_duties(ctx: DutyContext) -> list[LeaderDuty]:
    """Duties from registered providers, ``DUTY_MODULES`` and entry points (absent = skipped)."""
    providers: list[DutyProvider] = list(_providers)
    for module_name in DUTY_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            log.exception(
                "leader: cannot import duty module %s; its duties are skipped", module_name
            )
            continue
        except Exception:
            log.exception(
                "leader: cannot import duty module %s; its duties are skipped", module_name
            )
            continue
        provider = getattr(module, "leader_duties", None)
        if callable(provider) and provider not in providers:
            providers.append(provider)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:
            log.exception("leader: cannot load duty entry point %s; skipped", entry.name)
            continue
        if callable(loaded) and loaded not in providers:
            providers.append(loaded)
    duties: list[LeaderDuty] = []
    for provider in providers:
        try:
            duties.extend(provider(ctx))
        except Exception:
            log.exception("leader: duty provider %r failed; its duties are skipped", provider)
    return duties


def leader_key(prefix: str) -> int:
    """The advisory lock key for ``prefix`` (signed 64-bit, stable across processes)."""
    digest = hashlib.sha256(f"powertools:leader:{prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leader:
    name = "leader"

    def __init__(
        self,
        url: str,
        prefix: str,
        node: str,
        duties: Sequence[LeaderDuty],
        *,
        election_interval: float = 5.0,
        reconnect_max: float = 10.0,
    ) -> None:
        self.slot = ConnectionSlot(url, "leader", node=node, prepare_threshold=None)
        self.prefix = prefix
        self.node = node
        self.duties = list(duties)
        self.election_interval = election_interval
        self.is_leader = False
        self.runs: dict[str, int] = {d.name: 0 for d in self.duties}
        self._key = leader_key(prefix)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(reconnect_max)
        self._due: dict[int, float] = {}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="powertools-leader")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.is_leader and self.slot.connected and self.slot.conn is not None:
            with contextlib.suppress(Exception):
                await self.slot.conn.execute(queries.RELEASE_LEADER_LOCK, {"key": self._key})
            self._resign()
        await self.slot.reset()

    def _resign(self) -> None:
        if self.is_leader:
            self.is_leader = False
            log.info("leader: %s resigned for prefix %s", self.node, self.prefix)
            if telemetry.enabled("leader.resigned"):
                telemetry.emit(
                    "leader.resigned",
                    {"system_time": time.time()},
                    {"node": self.node, "prefix": self.prefix},
                )

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = await self._tick()
                self._backoff.reset()
            except DB_ERRORS as exc:
                self._resign()
                wait = self._backoff.next()
                log.warning("leader: database unavailable (%s); retrying in %.1fs", exc, wait)
                await self.slot.reset()
            await sleep_or(self._stop, wait)

    async def _tick(self) -> float:
        conn = await self.slot.get()
        if not self.is_leader:
            cur = await conn.execute(queries.TRY_LEADER_LOCK, {"key": self._key})
            row = await cur.fetchone()
            if not (row and row[0]):
                return self.election_interval
            self.is_leader = True
            self._due = {}
            log.info("leader: %s leads prefix %s", self.node, self.prefix)
            if telemetry.enabled("leader.elected"):
                telemetry.emit(
                    "leader.elected",
                    {"system_time": time.time()},
                    {"node": self.node, "prefix": self.prefix},
                )
        now_mono = time.monotonic()
        for index, duty in enumerate(self.duties):
            if self._stop.is_set():
                break
            if self._due.get(index, 0.0) > now_mono:
                continue
            try:
                await duty.run_once(conn, self.prefix, datetime.now(UTC))
                self.runs[duty.name] = self.runs.get(duty.name, 0) + 1
            except DB_ERRORS:
                raise
            except Exception as exc:
                log.exception("leader: duty %s failed", duty.name)
                if telemetry.enabled("duty.error"):
                    telemetry.emit(
                        "duty.error", {"count": 1}, {"duty": duty.name, "error": str(exc)}
                    )
            self._due[index] = time.monotonic() + float(duty.interval)
        if not self._due:
            return self.election_interval
        return max(0.01, min(self._due.values()) - time.monotonic())
