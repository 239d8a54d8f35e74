"""Ops and the runtime agree on one signal channel, even for a prefix at the length limit."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from powertools_core.config import Settings, load_settings
from powertools_core.jobs.notify import MAX_CHANNEL_BYTES, insert_channel, signal_channel
from powertools_core.migrate import install
from powertools_core.ops import cancel_job
from powertools_core.runtime import notifier

LONG = "s" + "x" * 62


def test_a_63_char_prefix_gives_valid_distinct_channels() -> None:
    assert len(LONG) == 63
    assert len(signal_channel(LONG).encode()) <= MAX_CHANNEL_BYTES
    assert signal_channel(LONG) != insert_channel(LONG)
    assert signal_channel("app") == "powertools.app.signal"
    assert notifier.signal_channel is signal_channel


@pytest.fixture
def long_prefix(database_url: str) -> object:
    settings = load_settings(database_url=database_url, prefix=LONG, env={})
    install(settings)
    yield settings
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(LONG)))


def test_ops_cancel_reaches_a_listener_on_signal_channel(
    long_prefix: Settings, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as admin:
        job_id = admin.execute(
            sql.SQL(
                "INSERT INTO {}.oban_jobs (state, queue, worker, args, attempt, attempted_at)"
                " VALUES ('executing', 'q', 'W', '{{}}', 1, now()) RETURNING id"
            ).format(sql.Identifier(LONG))
        ).fetchone()[0]  # type: ignore[index]
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(signal_channel(LONG))))
        cancel_job(long_prefix, job_id, actor="test", reason="signal channel test")
        notes = list(listener.notifies(timeout=10, stop_after=1))
    assert len(notes) == 1
    assert notes[0].channel == signal_channel(LONG)
    assert str(job_id) in notes[0].payload
    json.loads(notes[0].payload)
