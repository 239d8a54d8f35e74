"""The leader prunes dead idempotency receipts through the discovered duty."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg

from powertools_core.config import Settings
from powertools_core.runtime.leader import DutyContext, discover_duties


def test_the_discovered_duty_prunes_dead_receipts_and_is_idempotent(
    installed: Settings, conn: psycopg.Connection
) -> None:
    assert installed.database_url
    p = f'"{installed.prefix}"'
    live = conn.execute(
        f"INSERT INTO {p}.oban_jobs (state, queue, worker, args) "
        "VALUES ('available', 'q', 'W', '{}') RETURNING id"
    ).fetchone()[0]  # type: ignore[index]
    conn.execute(
        f"INSERT INTO {p}.powertools_idempotency_receipts (worker, key, job_id, expires_at) VALUES"
        " ('W', 'live', %(live)s, NULL),"
        " ('W', 'expired', %(live)s, timezone('UTC', now()) - interval '1 hour'),"
        " ('W', 'orphan', -1, NULL)",
        {"live": live},
    )
    ctx = DutyContext(url=installed.database_url, prefix=installed.prefix, node="n1")
    duty = next(d for d in discover_duties(ctx) if d.name == "jobs.prune_receipts")

    async def run() -> list[int]:
        async with await psycopg.AsyncConnection.connect(
            installed.database_url or "", autocommit=True
        ) as aconn:
            return [await duty.run_once(aconn, installed.prefix, datetime.now(UTC)) for _ in (1, 2)]

    assert asyncio.run(run()) == [2, 0]
    keys = conn.execute(f"SELECT key FROM {p}.powertools_idempotency_receipts").fetchall()
    assert keys == [("live",)]
