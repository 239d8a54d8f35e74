"""A claimed batch whose admission raises goes straight back to ``available``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg

from powertools_core.config import Settings
from powertools_core.jobs.model import Job
from powertools_core.runtime.base import ConnectionSlot
from powertools_core.runtime.producer import Producer, WorkerCache


class Exploding:
    async def __call__(self, jobs: Sequence[Job]) -> Sequence[Job]:
        raise RuntimeError("limiter broke")

    def retry_delay(self) -> float | None:
        return None


def test_admission_error_releases_the_claimed_batch_at_once(
    installed: Settings, conn: psycopg.Connection
) -> None:
    assert installed.database_url
    url = installed.database_url
    p = f'"{installed.prefix}"'
    conn.execute(
        f"INSERT INTO {p}.oban_jobs (state, queue, worker, args) "
        "SELECT 'available', 'adm', 'W', '{}' FROM generate_series(1, 3)"
    )

    async def scenario() -> int | None:
        slot = ConnectionSlot(url, "fetch")
        producer = Producer(
            queue="adm",
            limit=5,
            prefetch=0,
            prefix=installed.prefix,
            node="n1",
            fetch_slot=slot,
            acker=None,  # type: ignore[arg-type]
            executor=None,  # type: ignore[arg-type]
            workers=WorkerCache(),
            admission=Exploding(),  # type: ignore[arg-type]
        )
        try:
            return await producer._fetch(5)
        finally:
            await slot.reset()

    assert asyncio.run(scenario()) is None
    rows = conn.execute(
        f"SELECT state::text, attempt FROM {p}.oban_jobs WHERE queue = 'adm'"
    ).fetchall()
    assert rows == [("available", 0)] * 3
