"""A limited batch is admitted in the background while the producer claims the next one.

Admission is a stub that waits on an event, so the tests decide when a decision arrives; the
claims are real (their own schema). What must hold: the claim returns at once, batches are still
admitted one at a time in claim order, a drain waits for the pending admission so its jobs are
given back, and once an admission refuses jobs the producer admits inline again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import psycopg

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.runtime.base import ConnectionSlot
from powertools_core.runtime.producer import Producer, WorkerCache


class HeldAdmission:
    """Admits (or refuses) whole batches once ``decide`` is set; records what it was asked."""

    def __init__(self, *, admit: bool = True) -> None:
        self.decide = asyncio.Event()
        self.asked: list[list[int]] = []
        self.admit = admit

    def needed(self, jobs: Sequence[Job]) -> bool:
        return True

    async def __call__(self, jobs: Sequence[Job]) -> Sequence[Job]:
        self.asked.append([j.id for j in jobs])
        await self.decide.wait()
        return list(jobs) if self.admit else []

    def retry_delay(self) -> float | None:
        return None


def _seed(conn: psycopg.Connection, prefix: str, n: int) -> list[int]:
    rows = conn.execute(
        f'INSERT INTO "{prefix}".oban_jobs (state, queue, worker, args) '
        "SELECT 'available', 'ovl', 'W', '{}' FROM generate_series(1, %s) RETURNING id",
        (n,),
    ).fetchall()
    return sorted(r[0] for r in rows)


def _run(
    settings: Settings, admission: HeldAdmission, body: Callable[[Producer], Awaitable[None]]
) -> None:
    assert settings.database_url
    url = settings.database_url

    async def scenario() -> None:
        slot = ConnectionSlot(url, "fetch")
        # No slots: claimed jobs stay buffered (nothing starts), so buffers can be inspected.
        producer = Producer(
            queue="ovl",
            limit=0,
            prefetch=10,
            prefix=settings.prefix,
            node="n1",
            fetch_slot=slot,
            acker=None,  # type: ignore[arg-type]
            executor=None,  # type: ignore[arg-type]
            workers=WorkerCache(),
            admission=admission,  # type: ignore[arg-type]
        )
        try:
            await body(producer)
        finally:
            admission.decide.set()
            await producer._admitted()
            await slot.reset()

    asyncio.run(scenario())


async def _yield(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_a_drain_waits_for_the_pending_admission_and_gets_its_jobs_back(
    installed: Settings, conn: psycopg.Connection
) -> None:
    ids = _seed(conn, installed.prefix, 3)
    admission = HeldAdmission()

    async def body(producer: Producer) -> None:
        assert await producer._fetch(3, overlap=True) == 3
        # Claimed, not yet admitted: not buffered, but no longer demand either.
        assert [j.id for j in producer.admitting] == ids
        assert list(producer.buffer) == [] and producer._demand() == 7
        stopping = asyncio.create_task(producer.stop())
        await _yield()
        assert not stopping.done()
        admission.decide.set()
        await stopping
        assert [j.id for j in producer.take_unstarted()] == ids

    _run(installed, admission, body)


def test_batches_are_admitted_one_at_a_time_in_claim_order(
    installed: Settings, conn: psycopg.Connection
) -> None:
    ids = _seed(conn, installed.prefix, 4)
    admission = HeldAdmission()

    async def body(producer: Producer) -> None:
        assert await producer._fetch(2, overlap=True) == 2
        second = asyncio.create_task(producer._fetch(2, overlap=True))
        # The second claim completes while the first batch is still being decided ...
        while producer.fetches < 2:
            await asyncio.sleep(0)
        await _yield()
        # ... but its admission waits for the first one.
        assert admission.asked == [ids[:2]]
        admission.decide.set()
        assert await second == 2
        await producer._admitted()
        assert admission.asked == [ids[:2], ids[2:]]
        assert [j.id for j in producer.buffer] == ids

    _run(installed, admission, body)


def test_after_a_refusal_the_next_batch_is_admitted_inline(
    installed: Settings, conn: psycopg.Connection
) -> None:
    _seed(conn, installed.prefix, 4)
    admission = HeldAdmission(admit=False)
    admission.decide.set()

    async def body(producer: Producer) -> None:
        assert await producer._fetch(2, overlap=True) == 2  # claimed; decided in the background
        await producer._admitted()
        assert producer.refused_last == 2
        # Limits refuse now: the producer waits for the verdict (what it starts) again.
        assert await producer._fetch(2, overlap=True) == 0
        assert producer.admitting == [] and producer.refused_last == 2

    _run(installed, admission, body)
