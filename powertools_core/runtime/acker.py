"""The acker: one per process, group-committing job outcomes through one set-based statement.

Finished jobs are appended to a buffer (no I/O on the job's path). A single flush loop writes
whatever has accumulated as one ``UPDATE … FROM unnest(…)`` and, as soon as that returns, the
next batch: batches grow with load and a lone ack goes out at once (no timer). Each row is
fenced by state, attempt and producer, so an ack for an attempt that the lifeline rescued (and
someone else re-claimed) matches nothing: it is counted as stale, never raised.

Durability: a job's slot is freed when its outcome is buffered, not when it is committed; a
crash loses at most the unflushed window, whose jobs are rescued and run again (at-least-once,
as with any Oban-style queue). Shutdown forces a final flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import psycopg

from powertools_core import telemetry
from powertools_core.errors import DatabaseUnavailable
from powertools_core.runtime import queries
from powertools_core.runtime.base import DB_ERRORS, Backoff, ConnectionSlot, log
from powertools_core.runtime.outcomes import Ack
from powertools_core.workflows import flush as effects_flush
from powertools_core.workflows.hook import workflow_steps_acked


def ack_params(batch: Sequence[Ack]) -> dict[str, list[object]]:
    return {
        "ids": [a.id for a in batch],
        "attempts": [a.attempt for a in batch],
        "producers": [a.producer for a in batch],
        "states": [a.state for a in batch],
        "delays": [a.delay for a in batch],
        "bumps": [a.bump for a in batch],
        "errors": [a.error for a in batch],
    }


class Acker:
    name = "acker"

    def __init__(
        self, url: str, prefix: str, node: str, *, max_batch: int = 2000, reconnect_max: float = 10
    ) -> None:
        self.slot = ConnectionSlot(url, "ack", node=node, by_key=True)
        self.prefix = prefix
        self.node = node
        self.max_batch = max_batch
        self.buffer: list[Ack] = []
        self.acked = 0
        self.stale = 0
        self.flushes = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._flushing = False
        self._in_flight: Sequence[Ack] = ()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(reconnect_max)
        self._sql = queries.sql(queries.ACK, prefix)

    # the job path -----------------------------------------------------------------------
    def push(self, ack: Ack) -> None:
        self.buffer.append(ack)
        self._drained.clear()
        if not self._flushing:
            self._wake.set()

    def pending_ids(self, producer: str) -> list[int]:
        """Jobs of ``producer`` whose outcome is buffered or being written right now."""
        return [a.id for a in (*self._in_flight, *self.buffer) if a.producer == producer]

    @property
    def backlog(self) -> int:
        return len(self.buffer)

    def overloaded(self) -> bool:
        """More than two batches waiting: producers pause fetching until this clears."""
        return len(self.buffer) > 2 * self.max_batch

    async def wait_drained(self) -> None:
        await self._drained.wait()

    # service ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="powertools-acker")

    async def stop(self, timeout: float = 15.0) -> None:
        """Flush everything still buffered (retrying for up to ``timeout``), then close."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._task)
            except TimeoutError:
                log.error("acker: %d outcome(s) could not be written before exit", self.backlog)
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        await self.slot.reset()

    async def flush_now(self, batch: Sequence[Ack]) -> list[int]:
        """Write ``batch`` at once (outside the loop); returns the committed ids.

        Plain jobs: one autocommit statement. A batch holding workflow steps or durable jobs
        (``Ack.effects``) is one transaction: the plain rows, the effects rows, their results,
        signals and the promotion of dependents commit together (``workflows.flush``).
        """
        conn = await self.slot.get()
        rich = [a for a in batch if a.effects is not None]
        if not rich:
            cur = await conn.execute(self._sql, ack_params(batch), prepare=True)
            rows = await cur.fetchall()
            steps = [r[0] for r in rows if r[1]]
            if steps:
                # Steps acked without effects (an Ack built elsewhere): promote them right
                # after, as before; the reconciler covers a crash in between.
                await workflow_steps_acked(conn, self.prefix, steps)
            return [r[0] for r in rows]
        plain = [a for a in batch if a.effects is None]
        async with conn.transaction():
            committed: list[int] = []
            steps = []
            if plain:
                cur = await conn.execute(self._sql, ack_params(plain), prepare=True)
                rows = await cur.fetchall()
                committed = [r[0] for r in rows]
                steps = [r[0] for r in rows if r[1]]
            try:
                written = await effects_flush.write(conn, self.prefix, rich, also_promote=steps)
            except (psycopg.Error, DatabaseUnavailable):
                raise
            except Exception as exc:
                # A bug or a value the checks missed: never let it kill the acker or read as
                # "database down" (which would retry the same batch forever).
                raise effects_flush.EffectsWriteError(f"{type(exc).__name__}: {exc}") from exc
        return committed + written.committed

    async def _one_by_one(self, batch: Sequence[Ack], exc: BaseException) -> tuple[list[int], int]:
        """A batch the server rejected (not a connection problem): write rows one at a time so
        one bad row cannot hold back the others; a row that still fails is logged."""
        log.error("acker: batch of %d rejected (%s); writing rows one by one", len(batch), exc)
        committed: list[int] = []
        requeued = 0
        for ack in batch:
            try:
                committed.extend(await self.flush_now([ack]))
            except DB_ERRORS:
                self.buffer.append(ack)
                requeued += 1
            except (psycopg.Error, effects_flush.EffectsWriteError) as row_exc:
                log.error("acker: outcome of job %d could not be written: %s", ack.id, row_exc)
                fallback = ack.effects.refuse if ack.effects is not None else None
                if fallback is None:
                    continue
                # A workflow step or durable job: record the attempt as failed instead, so the
                # job is retried (or discarded) rather than left executing.
                try:
                    committed.extend(
                        await self.flush_now(
                            [fallback(f"the outcome could not be written: {row_exc}")]
                        )
                    )
                except DB_ERRORS:
                    self.buffer.append(ack)
                    requeued += 1
                except (psycopg.Error, effects_flush.EffectsWriteError) as again:
                    log.error("acker: failure of job %d could not be written: %s", ack.id, again)
        return committed, requeued

    async def _run(self) -> None:
        while True:
            if not self.buffer:
                self._drained.set()
                if self._stopping:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch = self.buffer[: self.max_batch]
            del self.buffer[: self.max_batch]
            self._flushing = True
            self._in_flight = batch
            requeued = 0
            started = time.perf_counter()
            try:
                committed = await self.flush_now(batch)
            except DB_ERRORS as exc:
                self.buffer[:0] = batch
                delay = self._backoff.next()
                log.warning(
                    "acker: flush of %d failed (%s); retrying in %.1fs", len(batch), exc, delay
                )
                await self.slot.reset()
                await asyncio.sleep(delay)
                continue
            except (psycopg.Error, effects_flush.EffectsWriteError) as exc:
                committed, requeued = await self._one_by_one(batch, exc)
            finally:
                self._flushing = False
                self._in_flight = ()
            self._backoff.reset()
            stale = len(batch) - len(committed) - requeued
            if stale:
                done = set(committed)
                expected = sum(1 for a in batch if a.expected_stale and a.id not in done)
                stale = max(0, stale - expected)
            self.acked += len(committed)
            self.stale += stale
            self.flushes += 1
            if stale:
                log.warning("acker: %d stale ack(s) ignored (job rescued or changed)", stale)
            if telemetry.enabled("ack.batch"):
                telemetry.emit(
                    "ack.batch",
                    {
                        "count": len(batch),
                        "stale": stale,
                        "duration": time.perf_counter() - started,
                    },
                    {"node": self.node},
                )
