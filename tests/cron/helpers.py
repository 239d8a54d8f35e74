"""Shared helpers for the cron tests: run async store code, read slots and jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from powertools_core.config import Settings
from powertools_core.cron.entry import EntryConfig, build_config
from powertools_core.cron.scheduler import CronScheduler, PassReport
from tests.cron import app_cron

T = TypeVar("T")


def run_async(settings: Settings, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    async def main() -> T:
        assert settings.database_url
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True
        ) as aconn:
            return await fn(aconn)

    return asyncio.run(main())


def tick(name: str, expr: str = "* * * * *", **kw: Any) -> EntryConfig:
    return build_config(expr, app_cron.CronTick, name=name, args={"n": 7}, **kw)


def scheduler(*entries: EntryConfig, node: str = "test") -> CronScheduler:
    return CronScheduler(node, entries=lambda: list(entries))


def pass_at(settings: Settings, sched: CronScheduler, now: datetime) -> PassReport:
    return run_async(settings, lambda c: sched.run_pass(c, settings.prefix, now))


def slots(conn: psycopg.Connection, prefix: str, name: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT slot_at, decision, job_id, manual FROM "{prefix}".powertools_cron_slots '
        "WHERE entry_name = %s ORDER BY slot_at",
        (name,),
    ).fetchall()


def jobs(conn: psycopg.Connection, prefix: str, name: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT id, state::text, worker, queue, args, meta FROM "{prefix}".oban_jobs '
        "WHERE meta @> jsonb_build_object('cron_name', %s::text) ORDER BY id",
        (name,),
    ).fetchall()


def set_state(conn: psycopg.Connection, prefix: str, job_id: int, state: str) -> None:
    conn.execute(
        f'UPDATE "{prefix}".oban_jobs SET state = %s::"{prefix}".oban_job_state WHERE id = %s',
        (state, job_id),
    )
