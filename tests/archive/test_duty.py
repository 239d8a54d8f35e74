"""The leader's retention duty: same code path as `archive run`, actor `system`, discovered by the
runtime through DUTY_MODULES and configured by `[tool.powertools.archive]`."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from powertools_core.archive.duty import BACKLOG_INTERVAL, ArchiveDuty
from powertools_core.archive.policy import parse_archive_config
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput
from powertools_core.runtime.leader import DutyContext, discover_duties
from tests.archive.conftest import audit_rows, count, ids_in, insert_job, run_rows, seed_many


def _run_once(settings: Settings, duty: ArchiveDuty, now: datetime | None = None) -> int:
    assert settings.database_url

    async def main() -> int:
        conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
        async with conn:
            return await duty.run_once(conn, settings.prefix, now or datetime.now(UTC))

    return asyncio.run(main())


def _context(settings: Settings, archive: dict[str, Any] | None) -> DutyContext:
    assert settings.database_url
    configured = settings if archive is None else settings.model_copy(update={"archive": archive})
    return DutyContext(settings.database_url, settings.prefix, "node-1", configured)


def _archive_duties(ctx: DutyContext) -> list[ArchiveDuty]:
    return [d for d in discover_duties(ctx) if isinstance(d, ArchiveDuty)]


def test_discovery_finds_the_duty_with_the_configured_policy(installed: Settings) -> None:
    (default,) = _archive_duties(_context(installed, None))
    assert default.config.retention == parse_archive_config({}).retention
    assert default.interval == 600
    (configured,) = _archive_duties(
        _context(installed, {"retention": {"completed": "2h"}, "interval": "30s"})
    )
    assert configured.config.retention["completed"] == timedelta(hours=2)
    assert configured.config.retention["discarded"] == timedelta(days=30)
    assert configured.interval == 30
    assert _archive_duties(_context(installed, {"enabled": False})) == []


def test_a_bad_table_skips_the_duty_and_says_so(
    installed: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        duties = discover_duties(_context(installed, {"retention": {"completed": "soon"}}))
    assert not [d for d in duties if isinstance(d, ArchiveDuty)]
    assert duties, "the other duties still run"
    assert "duty provider" in caplog.text and "failed" in caplog.text


@pytest.mark.parametrize(
    "table",
    [
        {"retension": {}},
        {"retention": "1d"},
        {"retention": {"executing": "1d"}},
        {"interval": "often"},
        {"batch_size": 0},
        {"batch_size": 500_000},
        {"max_rows_per_tick": -1},
        {"enabled": "yes"},
        {"audit_retention": True},
    ],
)
def test_bad_config_tables_are_refused(table: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        parse_archive_config(table)


def test_run_once_archives_as_system_through_the_run_engine(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    old = [insert_job(db, p, state=s) for s in ("completed", "discarded", "cancelled")]
    fresh = insert_job(db, p, state="completed", age=timedelta(minutes=1))
    running = insert_job(db, p, state="executing")
    duty = ArchiveDuty(parse_archive_config({"batch_size": 2}))
    assert _run_once(installed, duty) == 3
    assert ids_in(db, p, "powertools_job_archive") == set(old)
    assert ids_in(db, p, "oban_jobs") == {fresh, running}
    (run,) = run_rows(db, p)
    assert run["kind"] == "archive" and run["status"] == "completed"
    assert run["actor"] == "system" and run["filter"]["source"] == "duty"
    events = audit_rows(db, p)
    assert {e["actor"] for e in events} == {"system"}
    assert events[-1]["action"] == "archive.run"
    # nothing due: no run, no audit event, nothing written
    assert _run_once(installed, duty) == 0
    assert len(run_rows(db, p)) == 1 and len(audit_rows(db, p)) == len(events)


def test_a_capped_tick_comes_back_soon_and_the_next_one_continues(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    seed_many(db, p, state="completed", count=25)
    duty = ArchiveDuty(parse_archive_config({"max_rows_per_tick": 10, "batch_size": 4}))
    assert _run_once(installed, duty) == 10
    assert duty.interval == BACKLOG_INTERVAL
    assert _run_once(installed, duty) == 10
    assert _run_once(installed, duty) == 5
    assert duty.interval == 600
    assert count(db, p, "oban_jobs") == 0 and count(db, p, "powertools_job_archive") == 25


def test_audit_retention_archives_old_events_as_system(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    db.execute(
        f'INSERT INTO "{p}".powertools_audit_events (at, actor, action, target_type) '
        "VALUES (timezone('UTC', now()) - interval '2 days', 'carol', 'ops.retry', 'job'), "
        "(timezone('UTC', now()), 'carol', 'ops.retry', 'job')"
    )
    duty = ArchiveDuty(parse_archive_config({"audit_retention": "1d"}))
    # a clock one hour ahead: the duty uses the `now` the leader passes
    assert _run_once(installed, duty, datetime.now(UTC) + timedelta(hours=1)) == 1
    assert count(db, p, "powertools_audit_archive") == 1
    (run,) = run_rows(db, p)
    assert run["kind"] == "audit_archive" and run["actor"] == "system"


def test_a_reused_id_makes_the_duty_retry_the_chunk_guarded(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    """The duty does not count first, so it meets a reused id only when the fast move fails on
    the archive's primary key: that chunk is rolled back and redone skipping the id."""
    p = installed.prefix
    first = insert_job(db, p, state="completed")
    duty = ArchiveDuty(parse_archive_config({"batch_size": 10}))
    assert _run_once(installed, duty) == 1
    db.execute(
        f'INSERT INTO "{p}".oban_jobs (id, state, queue, worker, completed_at) '
        "VALUES (%s, 'completed', 'default', 'app.workers.Reused', "
        "timezone('UTC', now()) - interval '90 days')",
        (first,),
    )
    others = [insert_job(db, p, state="discarded") for _ in range(3)]
    assert _run_once(installed, duty) == 3
    assert ids_in(db, p, "powertools_job_archive") == {first, *others}
    assert ids_in(db, p, "oban_jobs") == {first}
    (row,) = db.execute(f'SELECT worker FROM "{p}".oban_jobs WHERE id = %s', (first,))
    assert row[0] == "app.workers.Reused"
