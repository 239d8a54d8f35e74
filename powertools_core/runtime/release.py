"""Giving claimed-but-unstarted jobs back, and the optional admission hook of the limits module.

``release`` is a stable function other capabilities rely on (the limiter releases the jobs its
admission refuses): fenced like an ack, it puts each job back to ``available`` with its attempt
restored, so a job released by a stale process is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from powertools_core import telemetry
from powertools_core.jobs.model import Job
from powertools_core.runtime import queries

log = logging.getLogger("powertools.runtime")


async def release(
    conn: psycopg.AsyncConnection[Any], prefix: str, jobs: Sequence[Job], *, reason: str = "release"
) -> list[int]:
    """Put claimed jobs that never started back to ``available``; returns the released ids."""
    if not jobs:
        return []
    params = {
        "ids": [j.id for j in jobs],
        "attempts": [j.attempt for j in jobs],
        "producers": [j.producer or "" for j in jobs],
    }
    cur = await conn.execute(queries.sql(queries.RELEASE, prefix), params, prepare=True)
    released = [r[0] for r in await cur.fetchall()]
    if telemetry.enabled("release"):
        telemetry.emit(
            "release", {"count": len(jobs), "released": len(released)}, {"reason": reason}
        )
    return released


def release_sync(conn: psycopg.Connection[Any], prefix: str, jobs: Sequence[Job]) -> list[int]:
    """``release`` for a synchronous connection."""
    if not jobs:
        return []
    params = {
        "ids": [j.id for j in jobs],
        "attempts": [j.attempt for j in jobs],
        "producers": [j.producer or "" for j in jobs],
    }
    cur = conn.execute(queries.sql(queries.RELEASE, prefix), params)
    return [r[0] for r in cur.fetchall()]


class Admission:
    """Runs ``powertools_core.limits.admission.admit`` over a claimed batch when any of its
    workers declares ``limits``; refused jobs are released at once. Absent module: no-op.

    ``fetch_slot`` is the connection it decides and releases on: the runtime gives it one of
    its own, so a producer can claim its next batch while this one is being admitted.

    The process's concurrency leases (``limits.leases``) live here: producers report every
    admitted job that finishes or is given back (:meth:`finished`), a keep-alive task gives back
    unused slots and renews the rest, and :meth:`close` returns what is free at shutdown."""

    MODULE = "powertools_core.limits.admission"
    LEASES = "powertools_core.limits.leases"

    def __init__(
        self, prefix: str, fetch_slot: Any, workers: Any, *, lease_ttl: float = 30.0
    ) -> None:
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        """Seconds a lease counts without renewal (the runtime passes its ``rescue_after``)."""
        self.fetch_slot = fetch_slot
        self.workers = workers
        self._admit: Any = None
        self._opening: Any = None
        self._module: Any = None
        self._looked = False
        self.rejected = 0
        self.owner = f"lease:{uuid.uuid4()}"
        self.book: Any = None
        self._keeper: asyncio.Task[None] | None = None

    def _load(self) -> Any:
        if not self._looked:
            self._looked = True
            try:
                module = importlib.import_module(self.MODULE)
            except ModuleNotFoundError:
                module = None
            self._module = module
            self._admit = getattr(module, "admit", None) if module is not None else None
            self._opening = getattr(module, "next_opening", None) if module is not None else None
            with contextlib.suppress(ModuleNotFoundError, AttributeError):
                self.book = importlib.import_module(self.LEASES).LeaseBook()
        return self._admit

    def retry_delay(self) -> float | None:
        """Seconds until a limit that refused jobs may admit again, when the limiter knows."""
        if not callable(self._opening):
            return None
        at = self._opening(self.prefix)
        if not isinstance(at, datetime):
            return None
        now = datetime.now(UTC).replace(tzinfo=None)
        delay: float = (at.replace(tzinfo=None) - now).total_seconds()
        return max(0.0, delay)

    def _limited(self, job: Job) -> bool:
        found = self.workers.get(job.worker)
        return bool(getattr(found, "limits", ()))

    def needed(self, jobs: Sequence[Job]) -> bool:
        """Whether any job of the batch is under a limit (else admission passes it as is)."""
        return any(self._limited(j) for j in {j.worker: j for j in jobs}.values())

    async def reset(self) -> None:
        """Drop the connection admission uses (after a connection error)."""
        await self.fetch_slot.reset()

    def finished(self, job_id: int) -> None:
        """An admitted job finished, or was given back before it started: free its slots."""
        if self.book is not None:
            self.book.free(job_id)

    async def __call__(self, jobs: Sequence[Job]) -> Sequence[Job]:
        if not self.needed(jobs):
            return jobs
        admit = self._load()
        if admit is None:
            return jobs
        conn = await self.fetch_slot.get()
        # now=None: the database's clock decides, so every node admits on one timeline.
        if self.book is not None:
            outcome = admit(conn, self.prefix, list(jobs), None, leases=self.book, owner=self.owner)
            if self._keeper is None and self.book.leases:
                self._keeper = asyncio.create_task(self._keep(), name="powertools-leases")
        else:
            outcome = admit(conn, self.prefix, list(jobs), None)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        admitted, rejected = outcome
        if rejected:
            self.rejected += len(rejected)
            await release(conn, self.prefix, rejected, reason="admission")
        return list(admitted)

    async def _keep(self) -> None:
        """Twice a second: give back slots nobody needed and renew the rest (a failed call
        leaves the leases unusable until one succeeds; admission then asks again itself)."""
        module = self._module
        interval = importlib.import_module(self.LEASES).KEEP_EVERY
        while True:
            await asyncio.sleep(interval)
            try:
                conn = await self.fetch_slot.get()
                await module.keep_alive(
                    conn, self.prefix, self.book, self.owner, ttl=self.lease_ttl
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("limits: renewing leases failed (%s); will retry", exc)
                with contextlib.suppress(Exception):
                    await self.fetch_slot.reset()

    async def close(self) -> None:
        """Stop the keep-alive and give back every free leased slot (at shutdown, after the
        running jobs drained)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self.book is None or not self.book.leases or self._module is None:
            return
        try:
            conn = await self.fetch_slot.get()
            await self._module.release_leases(conn, self.prefix, self.book, self.owner)
        except Exception as exc:
            log.warning("limits: could not give back leased slots (%s); they lapse", exc)
