"""The runtime of one worker process: producers, acker, notifier, heartbeat, leader, health.

``Runtime.start()`` connects, registers one producer row per queue and starts every service;
``Runtime.stop()`` drains: stop fetching, give unstarted prefetched jobs back, wait up to
``grace`` for running jobs, force a last ack flush, and remove the producer rows of producers
that finished (a producer whose jobs outlived the grace keeps its row, so the lifeline rescues
those jobs as soon as its heartbeat goes stale). ``Runtime.run()`` does both around SIGTERM /
SIGINT; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.runtime import queries
from powertools_core.runtime.acker import Acker
from powertools_core.runtime.base import DB_ERRORS, ConnectionSlot, Service, log, sleep_or
from powertools_core.runtime.config import RuntimeConfig
from powertools_core.runtime.duties import LeaderDuty
from powertools_core.runtime.health import HealthServer
from powertools_core.runtime.leader import DutyContext, Leader, discover_duties
from powertools_core.runtime.maintenance import Lifeline, Stager
from powertools_core.runtime.notifier import Notifier
from powertools_core.runtime.producer import Producer, WorkerCache
from powertools_core.runtime.release import Admission, release
from powertools_core.runtime.threads import DaemonThreadPool, SyncRunner


class Heartbeat:
    """One statement per interval refreshes every producer row of this process."""

    name = "heartbeat"

    def __init__(self, runtime: Runtime, interval: float) -> None:
        self.runtime = runtime
        self.interval = interval
        self.beats = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="powertools-heartbeat")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not await sleep_or(self._stop, self.interval):
            try:
                await self.runtime.beat(self.runtime.producers.values())
                self.beats += 1
            except DB_ERRORS as exc:
                log.warning("heartbeat failed (%s); will retry", exc)
                await self.runtime.maint.reset()


class Runtime:
    def __init__(
        self,
        config: RuntimeConfig,
        *,
        duties: Sequence[LeaderDuty] = (),
        discover: bool = True,
        settings: Settings | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.extra_duties = list(duties)
        self.discover = discover
        self.producers: dict[str, Producer] = {}
        self.services: list[Service] = []
        self.stopping = False
        self.stopped = asyncio.Event()
        self.released = 0
        self.left_running = 0
        self.started_at = time.monotonic()
        self._stop_requested = asyncio.Event()
        self._signals = 0
        self.fetch = ConnectionSlot(
            config.url, "fetch", node=config.node, fast_json=True, by_key=True
        )
        # Admission decides claimed batches on its own connection, so claims and admissions of
        # limited queues overlap (see runtime.producer).
        self.admission_slot = ConnectionSlot(config.url, "admission", node=config.node)
        self.maint = ConnectionSlot(
            config.url, "maintenance", node=config.node, prepare_threshold=None
        )
        self.acker = Acker(
            config.url,
            config.prefix,
            config.node,
            max_batch=config.ack_max_batch,
            reconnect_max=config.reconnect_max,
        )
        self.workers = WorkerCache()
        self.executor: DaemonThreadPool | None = None
        self.notifier: Notifier | None = None
        self.leader: Leader | None = None
        self.heartbeat: Heartbeat | None = None
        self.health: HealthServer | None = None
        self.admission: Admission | None = None

    # lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        await self.fetch.get()
        await self.maint.get()
        size = cfg.thread_pool_size or min(512, sum(cfg.queues.values()) + 4)
        self.executor = DaemonThreadPool(size)
        runner = SyncRunner(asyncio.get_running_loop(), self.executor)
        await self.acker.start()
        admission = self.admission = Admission(
            cfg.prefix, self.admission_slot, self.workers, lease_ttl=cfg.rescue_after
        )
        for queue, limit in cfg.queues.items():
            self.producers[queue] = Producer(
                queue=queue,
                limit=limit,
                prefetch=cfg.prefetch_for(limit),
                prefix=cfg.prefix,
                node=cfg.node,
                fetch_slot=self.fetch,
                acker=self.acker,
                executor=runner,
                workers=self.workers,
                poll_interval=cfg.poll_interval,
                max_poll_interval=cfg.max_poll_interval,
                max_fetch=cfg.max_fetch,
                debounce=cfg.debounce,
                reconnect_max=cfg.reconnect_max,
                admission=admission,
            )
        await self.beat(self.producers.values())
        self.notifier = Notifier(
            cfg.url,
            cfg.prefix,
            on_insert=self._on_insert,
            on_signal=self._on_signal,
            on_reconnect=self._poke_all,
            node=cfg.node,
            reconnect_max=cfg.reconnect_max,
        )
        await self.notifier.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.notifier.listening.wait()
        for producer in self.producers.values():
            await producer.start()
        self.heartbeat = Heartbeat(self, cfg.heartbeat_interval)
        await self.heartbeat.start()
        if cfg.leader:
            self.leader = Leader(
                cfg.url,
                cfg.prefix,
                cfg.node,
                self._duties(),
                election_interval=cfg.election_interval,
                reconnect_max=cfg.reconnect_max,
            )
            await self.leader.start()
        if cfg.health_port is not None:
            self.health = HealthServer(cfg.health_port, self.ready)
            await self.health.start()
        log.info(
            "worker started: node=%s prefix=%s queues=%s",
            cfg.node,
            cfg.prefix,
            ",".join(f"{q}={n}" for q, n in cfg.queues.items()),
        )

    def _duties(self) -> list[LeaderDuty]:
        cfg = self.config
        duties: list[LeaderDuty] = [
            Stager(cfg.stage_interval, cfg.maintenance_batch),
            Lifeline(
                cfg.node,
                interval=cfg.lifeline_interval,
                rescue_after=cfg.rescue_after,
                orphan_after=cfg.orphan_after,
                batch=cfg.maintenance_batch,
            ),
            *self.extra_duties,
        ]
        if self.discover:
            context = DutyContext(cfg.url, cfg.prefix, cfg.node, self.settings)
            duties.extend(discover_duties(context))
        return duties

    async def stop(self, grace: float | None = None) -> None:
        """Drain (see the module docstring); safe to call more than once."""
        if self.stopping:
            await self.stopped.wait()
            return
        self.stopping = True
        grace = self.config.grace if grace is None else grace
        if self.leader is not None:
            await self.leader.stop()
        for producer in self.producers.values():
            await producer.stop()
        unstarted = [job for p in self.producers.values() for job in p.take_unstarted()]
        await self._release(unstarted)
        waiting = [p.wait_idle() for p in self.producers.values() if p.running]
        if waiting:
            log.info("draining: waiting up to %gs for %d running job(s)", grace, self.running)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(*waiting)
        self.left_running = self.running
        if self.left_running:
            log.warning(
                "grace period over: %d job(s) still running are left to the lifeline",
                self.left_running,
            )
        if self.admission is not None:
            await self.admission.close()
        if self.notifier is not None:
            await self.notifier.stop()
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        await self.acker.stop()
        finished = [p for p in self.producers.values() if not p.running]
        with contextlib.suppress(*DB_ERRORS):
            conn = await self.maint.get()
            await conn.execute(
                queries.sql(queries.DELETE_PRODUCERS, self.config.prefix),
                {"uuids": [p.uuid for p in finished]},
            )
        if self.health is not None:
            await self.health.stop()
        await self.fetch.reset()
        await self.admission_slot.reset()
        await self.maint.reset()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        log.info(
            "worker stopped: %d job(s) run, %d acked, %d stale ack(s), %d released",
            self.jobs_started,
            self.acker.acked,
            self.acker.stale,
            self.released,
        )
        self.stopped.set()

    async def _release(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        try:
            conn = await self.maint.get()
            self.released += len(await release(conn, self.config.prefix, jobs, reason="drain"))
        except DB_ERRORS as exc:
            log.warning("could not release %d prefetched job(s) (%s)", len(jobs), exc)

    async def run(
        self,
        *,
        signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
        on_started: Callable[[], None] | None = None,
    ) -> None:
        """Start, serve until one of ``signals`` (or ``request_stop``), then drain."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_os_signal, sig)
        if on_started is not None:
            on_started()
        await self._stop_requested.wait()
        await self.stop()

    async def wait_stop_requested(self) -> None:
        await self._stop_requested.wait()

    def request_stop(self) -> None:
        self._stop_requested.set()

    def _on_os_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now; running jobs will be rescued")
            for handler in list(log.handlers) + list(log.parent.handlers if log.parent else []):
                with contextlib.suppress(Exception):
                    handler.flush()
            os._exit(128 + sig)
        log.info("%s received: draining (send again to exit at once)", signal.Signals(sig).name)
        self._stop_requested.set()

    # wake-ups and signals ---------------------------------------------------------------
    def _on_insert(self, queue: str) -> None:
        producer = self.producers.get(queue)
        if producer is not None:
            producer.notify()

    def _poke_all(self) -> None:
        for producer in self.producers.values():
            producer.poke()

    def _on_signal(self, message: dict[str, Any]) -> None:
        if message.get("action") == "cancel":
            job_id = message.get("job_id")
            if isinstance(job_id, int):
                for producer in self.producers.values():
                    if producer.cancel(job_id):
                        log.info("job %d cancelled by signal", job_id)
                        break

    # producers' rows --------------------------------------------------------------------
    async def beat(self, producers: Any) -> None:
        items = list(producers)
        if not items:
            return
        conn = await self.maint.get()
        await conn.execute(
            queries.sql(queries.UPSERT_PRODUCERS, self.config.prefix),
            {
                "node": self.config.node,
                "pid": os.getpid(),
                "uuids": [p.uuid for p in items],
                "queues": [p.queue for p in items],
                "concurrency": [p.limit for p in items],
            },
        )

    # introspection ----------------------------------------------------------------------
    @property
    def running(self) -> int:
        return sum(len(p.running) for p in self.producers.values())

    @property
    def jobs_started(self) -> int:
        return sum(p.started_jobs for p in self.producers.values())

    def ready(self) -> bool:
        return (
            not self.stopping
            and self.fetch.connected
            and bool(self.producers)
            and all(p.healthy for p in self.producers.values())
        )

    def stats(self) -> dict[str, Any]:
        return {
            "jobs_started": self.jobs_started,
            "acked": self.acker.acked,
            "stale_acks": self.acker.stale,
            "released": self.released,
            "left_running": self.left_running,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
        }
