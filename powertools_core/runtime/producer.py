"""A producer: one queue in one process, with a local concurrency limit.

It claims jobs in batches (free slots + prefetch, one statement), starts them as slots free up
(completion-driven refill needs no round trip), runs ``async def perform`` on the loop and
plain ``def perform`` in the process's bounded thread pool, and hands every outcome to the
acker. It fetches again at once when a fetch came back full; otherwise it waits for a slot, a
NOTIFY (only when it has room), or the poll timer (which backs off while the queue is empty).

A batch with limited jobs is admitted (``runtime.release.Admission``) before any of it starts.
While the limits are admitting everything, that admission runs in the background on its own
connection, so the next claim does not wait for it (claims and admissions overlap, two stages
of one pipeline, bounded by the same demand); batches are still admitted one at a time, in
claim order. Once an admission refuses jobs, the next batch is admitted inline again and the
loop waits as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from powertools_core import telemetry
from powertools_core.errors import PowertoolsError
from powertools_core.jobs import notify as notify_module
from powertools_core.jobs.model import Job
from powertools_core.runtime import outcomes, queries
from powertools_core.runtime.acker import Acker
from powertools_core.runtime.base import DB_ERRORS, Backoff, ConnectionSlot, log, sleep_or
from powertools_core.runtime.outcomes import Ack
from powertools_core.runtime.release import Admission, release
from powertools_core.runtime.threads import SyncRunner
from powertools_core.workers import Worker, exponential_backoff, resolve
from powertools_core.workflows import context as workflow_context

OPERATOR_CANCEL = "cancelled by an operator while executing"
SENDER_WINDOW = notify_module.WINDOW_S
"""The enqueue side sends at most one NOTIFY per queue per this many seconds."""
ADMISSION_RETRY = 0.1
"""Seconds before re-fetching when admission refused the whole batch."""


class WorkerCache:
    """Worker classes by the name stored in ``oban_jobs.worker`` (failures cached too)."""

    def __init__(self) -> None:
        self._found: dict[str, type[Worker] | PowertoolsError] = {}
        self._async: dict[type[Worker], bool] = {}

    def get(self, name: str) -> type[Worker] | PowertoolsError:
        hit = self._found.get(name)
        if hit is None:
            try:
                hit = resolve(name)
            except PowertoolsError as exc:
                hit = exc
            self._found[name] = hit
        return hit

    def is_async(self, cls: type[Worker]) -> bool:
        flag = self._async.get(cls)
        if flag is None:
            flag = self._async[cls] = cls.is_async()
        return flag


class Producer:
    def __init__(
        self,
        *,
        queue: str,
        limit: int,
        prefetch: int,
        prefix: str,
        node: str,
        fetch_slot: ConnectionSlot,
        acker: Acker,
        executor: SyncRunner,
        workers: WorkerCache,
        poll_interval: float = 1.0,
        max_poll_interval: float = 5.0,
        max_fetch: int = 500,
        debounce: float = 0.005,
        reconnect_max: float = 10.0,
        admission: Admission | None = None,
    ) -> None:
        self.queue = queue
        self.limit = limit
        self.prefetch = prefetch
        self.prefix = prefix
        self.node = node
        self.uuid = str(uuid.uuid4())
        self.attempted_by = [node, self.uuid]
        self.fetch_slot = fetch_slot
        self.acker = acker
        self.sync_runner = executor
        self.workers = workers
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_fetch = max_fetch
        self.debounce = debounce
        self.admission = admission
        self.min_demand = max(1, (limit + prefetch) // 4)
        self.running: dict[int, asyncio.Task[None]] = {}
        self.buffer: deque[Job] = deque()
        self.admitting: list[Job] = []
        """Claimed jobs whose admission runs in the background (not started, not buffered)."""
        self._admission: asyncio.Task[None] | None = None
        self.cancel_requested: set[int] = set()
        self.fetching = False
        self.stopping = False
        self.started_jobs = 0
        self.refused_last = 0
        self.fetches = 0
        self.healthy = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._notify_pending = False
        self._followup_pending = False
        self._last_notify = 0.0
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(reconnect_max)
        self._fetch_sql = queries.sql(queries.FETCH, prefix)
        self._reconcile_sql = queries.sql(queries.RECONCILE, prefix)
        self._lost_reply = False
        self.reconciled = 0
        self._loop = asyncio.get_running_loop()

    # service ----------------------------------------------------------------------------
    name = "producer"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"powertools-producer-{self.queue}")

    async def stop(self) -> None:
        """Stop fetching (running jobs go on; ``wait_idle`` waits for them). A background
        admission is finished first, so its jobs are buffered (``take_unstarted``) or given back."""
        self.stopping = True
        self._stopped.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._admitted()

    def take_unstarted(self) -> list[Job]:
        jobs = list(self.buffer)
        self.buffer.clear()
        for job in jobs:
            self._forget(job.id)
        self._check_idle()
        return jobs

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # wake-ups ---------------------------------------------------------------------------
    def notify(self) -> None:
        """An insert NOTIFY for this queue: react only when there is room, debounced.

        The first notification after a quiet window wakes the producer at once (leading edge,
        so an idle queue starts a job within a round trip); more notifications inside the window
        fold into one trailing wake-up. Senders notify on the leading edge only (at most one
        NOTIFY per queue per ``SENDER_WINDOW``), so every reaction is followed by one more fetch
        after that window: a job inserted just after the first one, whose NOTIFY the sender
        swallowed, still starts within the window instead of at the next poll.
        """
        if self.stopping:
            return
        if not self._followup_pending:
            self._followup_pending = True
            self._loop.call_later(SENDER_WINDOW + self.debounce, self._followup)
        if self._notify_pending or self._demand() < self.min_demand:
            return
        now = self._loop.time()
        quiet_since = now - self._last_notify
        if quiet_since >= self.debounce and not self.fetching:
            self._last_notify = now
            self._wake.set()
            return
        self._notify_pending = True
        self._loop.call_later(max(0.0, self.debounce - quiet_since), self._debounced_wake)

    def _debounced_wake(self) -> None:
        self._notify_pending = False
        self._last_notify = self._loop.time()
        self._wake.set()

    def _followup(self) -> None:
        self._followup_pending = False
        if not self.stopping and self._demand() >= self.min_demand:
            self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def cancel(self, job_id: int) -> bool:
        """An operator's cancel signal: stop the job if this producer holds it."""
        task = self.running.get(job_id)
        if task is not None:
            self.cancel_requested.add(job_id)
            task.cancel()
            return True
        for job in self.buffer:
            if job.id == job_id:
                self.buffer.remove(job)
                self._forget(job.id)
                self.acker.push(outcomes.cancelled_by_operator(job, self.uuid, OPERATOR_CANCEL))
                self._check_idle()
                return True
        return False

    # the loop ---------------------------------------------------------------------------
    def _demand(self) -> int:
        return (
            self.limit + self.prefetch - len(self.running) - len(self.buffer) - len(self.admitting)
        )

    async def _run(self) -> None:
        interval = self.poll_interval
        while not self.stopping:
            demand = self._demand()
            idle = not self.running and not self.buffer
            if demand > 0 and (demand >= self.min_demand or idle):
                if self.acker.overloaded():
                    await self.acker.wait_drained()
                    continue
                count = await self._fetch(min(demand, self.max_fetch), overlap=True)
                if count is None:
                    await sleep_or(self._stopped, self._backoff.next())
                    continue
                if count and count >= min(demand, self.max_fetch):
                    interval = self.poll_interval
                    continue
                if count:
                    interval = self.poll_interval
                elif self.refused_last:
                    # A limit is saturated: look again when it may admit (or soon).
                    known = self.admission.retry_delay() if self.admission else None
                    wait = ADMISSION_RETRY if known is None else max(0.005, known)
                    interval = min(self.poll_interval, wait)
                elif idle:
                    interval = min(self.max_poll_interval, interval * 2)
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        if self._wake.is_set():
            self._wake.clear()
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _fetch(self, limit: int, *, overlap: bool = False) -> int | None:
        """Claim up to ``limit`` jobs and start what fits; the count, or None on a DB error.

        With ``overlap``, a batch that needs admission while the limits admit everything is
        admitted in the background and the count claimed is returned at once."""
        rows = await self._claim(limit)
        if rows is None:
            return None
        jobs = [Job.from_row(r) for r in rows]
        if len(jobs) > 1:
            jobs.sort(key=_fetch_order)
        if (
            overlap
            and jobs
            and not self.stopping
            and self.refused_last == 0
            and self.admission is not None
            and self.admission.needed(jobs)
        ):
            # Batches are admitted (and started) in claim order: each background admission
            # waits for the one before it.
            self.admitting.extend(jobs)
            self._check_idle()
            self._admission = self._loop.create_task(
                self._admit_in_background(self._admission, jobs),
                name=f"powertools-admission-{self.queue}",
            )
            return len(jobs)
        await self._admitted()
        return await self._admit(jobs)

    async def _admitted(self) -> None:
        """Wait until every background admission is done."""
        task = self._admission
        if task is not None:
            with contextlib.suppress(Exception):  # logged by the task
                await asyncio.shield(task)

    async def _admit_in_background(
        self, before: asyncio.Task[None] | None, jobs: list[Job]
    ) -> None:
        try:
            if before is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(before)
            await self._admit(jobs)
        except Exception:
            log.exception("producer %s: admitting a claimed batch failed", self.queue)
        finally:
            del self.admitting[: len(jobs)]
            if self._admission is asyncio.current_task():
                self._admission = None
            self._check_idle()
            self._wake.set()

    async def _claim(self, limit: int) -> list[Any] | None:
        """The claim statement; its rows, or None on a DB error."""
        self.fetching = True
        started = time.perf_counter()
        try:
            conn = await self.fetch_slot.get()
            if self._lost_reply:
                await self._reconcile(conn)
            cur = await conn.execute(
                self._fetch_sql,
                {"queue": self.queue, "limit": limit, "attempted_by": self.attempted_by},
                prepare=True,
            )
            rows = await cur.fetchall()
        except DB_ERRORS as exc:
            self.healthy = False
            self._lost_reply = True
            log.warning("producer %s: fetch failed (%s); backing off", self.queue, exc)
            await self.fetch_slot.reset()
            return None
        except psycopg.Error as exc:
            self.healthy = False
            log.error("producer %s: fetch failed: %s", self.queue, exc)
            return None
        finally:
            self.fetching = False
        self.healthy = True
        self._backoff.reset()
        self.fetches += 1
        if telemetry.enabled("fetch"):
            telemetry.emit(
                "fetch",
                {"count": len(rows), "demand": limit, "duration": time.perf_counter() - started},
                {"queue": self.queue, "producer": self.uuid},
            )
        return rows

    async def _admit(self, jobs: list[Job]) -> int | None:
        """Admit a claimed batch, buffer and start what may run; the count, or None when
        admission failed (the batch is given back)."""
        claimed = len(jobs)
        if jobs and self.admission is not None:
            try:
                jobs = list(await self.admission(jobs))
            except Exception as exc:
                log.error("producer %s: admission failed (%s); backing off", self.queue, exc)
                if isinstance(exc, DB_ERRORS):
                    reset = getattr(self.admission, "reset", None)
                    await (reset() if callable(reset) else self.fetch_slot.reset())
                # Give the claimed batch back at once (fenced like an ack); if that fails too,
                # the reconcile before the next fetch still does it.
                self._lost_reply = not await self._give_back(jobs)
                return None
        self.refused_last = claimed - len(jobs)
        if jobs and any(j.meta for j in jobs):
            jobs = await self._load_contexts(jobs)
        self.buffer.extend(jobs)
        self._fill()
        # Jobs refused by admission are not work: count only what will run, so a saturated
        # limit makes the producer wait instead of re-claiming the same jobs at once.
        return len(jobs)

    async def _load_contexts(self, jobs: list[Job]) -> list[Job]:
        """Workflow steps and resumed durable jobs get their context (deps' results, the
        waking signal) before they start; if that read fails they are given back."""
        needing = [j for j in jobs if workflow_context.needs_context(j)]
        if not needing:
            return jobs
        try:
            conn = await self.fetch_slot.get()
            await workflow_context.load_async(conn, self.prefix, needing)
        except Exception as exc:
            log.error("producer %s: loading workflow context failed (%s)", self.queue, exc)
            if isinstance(exc, DB_ERRORS):
                await self.fetch_slot.reset()
            self._lost_reply = not await self._give_back(needing)
            skipped = {j.id for j in needing}
            return [j for j in jobs if j.id not in skipped]
        return jobs

    def _forget(self, job_id: int) -> None:
        """The job will not run here (any more): free what admission gave it."""
        finished = getattr(self.admission, "finished", None)
        if finished is not None:
            finished(job_id)

    async def _give_back(self, jobs: list[Job]) -> bool:
        """Release a claimed batch that will not run; False when the database did not answer."""
        for job in jobs:
            self._forget(job.id)
        try:
            conn = await self.fetch_slot.get()
            await release(conn, self.prefix, jobs, reason="admission_error")
        except DB_ERRORS:
            await self.fetch_slot.reset()
            return False
        return True

    async def _reconcile(self, conn: psycopg.AsyncConnection[Any]) -> None:
        known = [
            *self.running,
            *(j.id for j in self.buffer),
            *(j.id for j in self.admitting),
            *self.acker.pending_ids(self.uuid),
        ]
        cur = await conn.execute(
            self._reconcile_sql, {"queue": self.queue, "producer": self.uuid, "known": known}
        )
        released = len(await cur.fetchall())
        self._lost_reply = False
        if released:
            self.reconciled += released
            log.warning(
                "producer %s: gave back %d job(s) claimed by a lost fetch", self.queue, released
            )

    def _fill(self) -> None:
        while self.buffer and len(self.running) < self.limit and not self.stopping:
            self._start(self.buffer.popleft())
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.running and not self.buffer and not self.admitting:
            self._idle.set()
        else:
            self._idle.clear()

    # running one job --------------------------------------------------------------------
    def _start(self, job: Job) -> None:
        self.started_jobs += 1
        task = self._loop.create_task(self._execute(job))
        self.running[job.id] = task

    def _finish(self, job: Job, ack: Ack) -> None:
        self.acker.push(ack)
        self.running.pop(job.id, None)
        self._forget(job.id)
        self.cancel_requested.discard(job.id)
        if self.buffer and not self.stopping:
            self._start(self.buffer.popleft())
        elif not self.running and not self.buffer:
            self._idle.set()
        if not self.fetching and self._demand() >= self.min_demand:
            self._wake.set()

    async def _execute(self, job: Job) -> None:
        found = self.workers.get(job.worker)
        if isinstance(found, PowertoolsError):
            self._fail(job, 0.0, "unknown_worker", found.one_line(), exponential_backoff)
            return
        try:
            job.args = found.validate_args(job.raw_args)
            worker = found()
        except Exception as exc:
            self._fail(job, 0.0, "error", outcomes.format_exception(exc), exponential_backoff)
            return
        if telemetry.enabled("job.start"):
            self._emit_start(job)
        started = time.perf_counter()
        timeout = found.timeout
        deadline = asyncio.timeout(timeout) if timeout is not None else None
        try:
            if self.workers.is_async(found):
                if deadline is None:
                    result = await worker.perform(job)
                else:
                    async with deadline:
                        result = await worker.perform(job)
            else:
                future = self.sync_runner.run(worker.perform, job)
                if deadline is None:
                    result = await future
                else:
                    async with deadline:
                        result = await future
        except asyncio.CancelledError:
            if job.id in self.cancel_requested:
                self._finish(job, outcomes.cancelled_by_operator(job, self.uuid, OPERATOR_CANCEL))
                return
            raise
        except Exception as exc:
            duration = time.perf_counter() - started
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                text = f"TimeoutError: attempt exceeded the worker timeout of {timeout:g}s"
                self._fail(job, duration, "timeout", text, worker.backoff)
            else:
                self._fail(job, duration, "error", outcomes.format_exception(exc), worker.backoff)
            return
        ack = outcomes.from_result(job, self.uuid, result, worker.backoff)
        self._finish(job, ack)
        if telemetry.enabled("job.stop"):
            telemetry.emit(
                "job.stop",
                {"duration": time.perf_counter() - started},
                {
                    "job": job,
                    "queue": job.queue,
                    "worker": job.worker,
                    "state": ack.state,
                    "result": result,
                },
            )

    def _emit_start(self, job: Job) -> None:
        queued = 0.0
        if job.scheduled_at is not None:
            now = datetime.now(UTC).replace(tzinfo=None)
            queued = max(0.0, (now - job.scheduled_at).total_seconds())
        telemetry.emit(
            "job.start",
            {"system_time": time.time(), "queue_time": queued},
            {"job": job, "queue": job.queue, "worker": job.worker},
        )

    def _fail(
        self, job: Job, duration: float, kind: str, text: str, backoff: Callable[[int], float]
    ) -> None:
        ack = outcomes.failed(job, self.uuid, text, backoff)
        self._finish(job, ack)
        if telemetry.enabled("job.exception"):
            telemetry.emit(
                "job.exception",
                {"duration": duration},
                {
                    "job": job,
                    "queue": job.queue,
                    "worker": job.worker,
                    "state": ack.state,
                    "kind": kind,
                    "error": text,
                },
            )


def _fetch_order(job: Job) -> tuple[int, Any, int]:
    return (job.priority, job.scheduled_at, job.id)
