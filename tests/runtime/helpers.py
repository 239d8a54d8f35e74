"""Seeding jobs with plain SQL, running a runtime in a thread, and waiting on conditions."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from powertools_core.config import Settings
from powertools_core.runtime.config import RuntimeConfig
from powertools_core.runtime.notifier import insert_channel
from powertools_core.runtime.supervisor import Runtime
from tests.support.apps import recorder

T = TypeVar("T")

W = "tests.support.apps.recorder."

INSERT = """
INSERT INTO {}.oban_jobs (worker, queue, args, priority, state, scheduled_at, max_attempts)
SELECT w, q, a::jsonb, p, s::{}.oban_job_state, coalesce(t, timezone('UTC', now())), m
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::timestamp[], %s::int[])
    AS u(w, q, a, p, s, t, m)
RETURNING id
"""


def seed(
    conn: psycopg.Connection[Any],
    schema: str,
    worker: str,
    count: int = 1,
    *,
    args: dict[str, Any] | None = None,
    queue: str = "default",
    priorities: Sequence[int] | None = None,
    state: str = "available",
    scheduled_at: datetime | None = None,
    max_attempts: int = 5,
) -> list[int]:
    """Insert ``count`` jobs for ``worker`` (short name under tests.support.apps.recorder)."""
    name = worker if "." in worker else W + worker
    payload = json.dumps({"schema": schema, **(args or {})})
    prios = list(priorities) if priorities is not None else [0] * count
    query = sql.SQL(INSERT).format(sql.Identifier(schema), sql.Identifier(schema))
    cur = conn.execute(
        query,
        (
            [name] * count,
            [queue] * count,
            [payload] * count,
            prios,
            [state] * count,
            [scheduled_at] * count,
            [max_attempts] * count,
        ),
    )
    return [r[0] for r in cur.fetchall()]


def notify(conn: psycopg.Connection[Any], schema: str, queue: str = "default") -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (insert_channel(schema), queue))


def make_runs_table(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL(recorder.RUNS_DDL).format(sql.Identifier(schema)))


def runs(conn: psycopg.Connection[Any], schema: str) -> list[tuple[int, int, int]]:
    """(job_id, attempt, pid) per recorded execution, in order."""
    query = sql.SQL("SELECT job_id, attempt, pid FROM {}.pt_test_runs ORDER BY at, job_id")
    return [tuple(r) for r in conn.execute(query.format(sql.Identifier(schema))).fetchall()]  # type: ignore[misc]


def states(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    query = sql.SQL("SELECT state::text, count(*) FROM {}.oban_jobs GROUP BY 1")
    return {r[0]: r[1] for r in conn.execute(query.format(sql.Identifier(schema))).fetchall()}


def job_row(conn: psycopg.Connection[Any], schema: str, job_id: int) -> dict[str, Any]:
    query = sql.SQL("SELECT * FROM {}.oban_jobs WHERE id = %s").format(sql.Identifier(schema))
    cur = conn.execute(query, (job_id,))
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return {d.name: v for d, v in zip(cur.description, row, strict=True)}


def wait_for(check: Callable[[], T], *, timeout: float = 20.0, message: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.02)


def config_for(settings: Settings, **overrides: Any) -> RuntimeConfig:
    assert settings.database_url
    base = RuntimeConfig(
        url=settings.database_url,
        prefix=settings.prefix,
        queues={"default": 5},
        node="test-node",
        grace=5.0,
        poll_interval=0.2,
        max_poll_interval=0.5,
        heartbeat_interval=0.2,
        rescue_after=1.0,
        stage_interval=0.1,
        lifeline_interval=0.2,
        election_interval=0.2,
    )
    return replace(base, **overrides)


class RunningRuntime:
    """A ``Runtime`` on its own event loop in a thread, stoppable from the test."""

    def __init__(self, config: RuntimeConfig, **kwargs: Any) -> None:
        self.config = config
        self.kwargs = kwargs
        self.runtime: Runtime | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.runtime = Runtime(self.config, **self.kwargs)
            await self.runtime.start()
            self.started.set()
            await self.runtime._stop_requested.wait()
            await self.runtime.stop()

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self.started.set()

    def start(self) -> RunningRuntime:
        self.thread.start()
        assert self.started.wait(30), "runtime did not start"
        if self.error:
            raise self.error
        return self

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the runtime's loop and return its result."""
        assert self.loop is not None
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn())
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(10)
        return box[0]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.loop is not None and self.runtime is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.runtime.request_stop)
        self.thread.join(30)
        assert not self.thread.is_alive(), "runtime did not stop"
        if self.error:
            raise self.error


@contextmanager
def running(config: RuntimeConfig, **kwargs: Any) -> Iterator[RunningRuntime]:
    rt = RunningRuntime(config, **kwargs).start()
    try:
        yield rt
    finally:
        rt.stop()
