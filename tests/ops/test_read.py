"""ops list / ops show / audit list through the Python API (real PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from powertools_core import ops
from powertools_core.config import Settings
from powertools_core.errors import InvalidInput, NotFound
from powertools_core.redaction import REDACTED_TEXT
from tests.ops.conftest import InsertJob
from tests.ops.test_pure import ChargeCard

REASON = "cleanup after incident 7"


def test_list_pages_newest_first_with_counts(installed: Settings, insert_job: InsertJob) -> None:
    ids = [insert_job("discarded", queue="mailers") for _ in range(5)]
    insert_job("completed", queue="mailers")
    insert_job("available", queue="other")
    f = ops.build_filter(states=["discarded"], queue="mailers")

    page = ops.list_jobs(installed, f, limit=2)
    assert [j.id for j in page.jobs] == [ids[4], ids[3]]
    assert page.counts["discarded"] == 5 and page.counts["completed"] == 1
    assert page.counts["available"] == 0
    assert page.total == 5
    assert page.next_cursor == str(ids[3])
    page = ops.list_jobs(installed, f, limit=2, cursor=page.next_cursor)
    assert [j.id for j in page.jobs] == [ids[2], ids[1]]
    page = ops.list_jobs(installed, f, limit=2, cursor=page.next_cursor)
    assert [j.id for j in page.jobs] == [ids[0]]
    assert page.next_cursor is None
    assert page.jobs[0].last_error == "boom 3"
    with pytest.raises(InvalidInput):
        ops.list_jobs(installed, f, cursor="abc")


def test_list_filters(installed: Settings, conn: psycopg.Connection, insert_job: InsertJob) -> None:
    a = insert_job("available", tags=["x", "y"], args={"tenant": "acme", "n": 1})
    b = insert_job("available", tags=["x"], args={"tenant": "other"}, worker="app.Other")
    conn.execute(
        sql.SQL(
            "UPDATE {}.oban_jobs SET inserted_at = inserted_at - interval '3 hours' WHERE id = %s"
        ).format(sql.Identifier(installed.prefix)),
        (b,),
    )

    def ids(**kw: object) -> list[int]:
        return [j.id for j in ops.list_jobs(installed, ops.build_filter(**kw)).jobs]  # type: ignore[arg-type]

    assert ids(tags=["x"]) == [b, a]
    assert ids(tags=["x", "y"]) == [a]
    assert ids(args_contains='{"tenant": "acme"}') == [a]
    assert ids(older_than="2h") == [b]
    assert ids(worker="app.Other") == [b]
    assert ids(ids=[a]) == [a]


def test_show_redacts_and_includes_errors_and_audit(
    installed: Settings, insert_job: InsertJob
) -> None:
    job_id = insert_job(
        "discarded",
        worker=ChargeCard.name(),
        args={"customer": "c1", "card_token": "tok_live", "meta": {"password": "p"}},
        meta={"trace": {"api_key": "k"}, "region": "eu"},
    )
    ops.retry_job(installed, job_id, actor="alice", reason=REASON)
    shown = ops.show_job(installed, job_id)
    job = shown.job
    assert job.worker_registered
    assert job.args == {
        "customer": "c1",
        "card_token": REDACTED_TEXT,
        "meta": {"password": REDACTED_TEXT},
    }
    assert job.meta == {"trace": {"api_key": REDACTED_TEXT}, "region": "eu"}
    assert [(e.attempt, e.error) for e in job.errors] == [
        (1, "boom 1"),
        (2, "boom 2"),
        (3, "boom 3"),
    ]
    assert job.attempted_by == ["node-a", "producer-1"]
    assert [(a.action, a.actor, a.before["state"]) for a in shown.audit] == [
        ("ops.retry", "alice", "discarded")
    ]
    with pytest.raises(NotFound):
        ops.show_job(installed, job_id + 100)


def test_audit_list_filters_and_pages(installed: Settings, insert_job: InsertJob) -> None:
    a, b, c = (insert_job("discarded") for _ in range(3))
    ops.retry_job(installed, a, actor="alice", reason=REASON)
    ops.retry_job(installed, b, actor="bob", reason=REASON)
    ops.cancel_job(installed, b, actor="bob", reason=REASON)
    ops.execute(installed, "retry", ops.build_filter(ids=[c]), actor="carol", reason=REASON)

    everything = ops.audit_list(installed)
    assert [e.action for e in everything.events] == [
        "ops.retry_all",
        "ops.retry",
        "ops.cancel",
        "ops.retry",
        "ops.retry",
    ]
    assert [e.target_id for e in ops.audit_list(installed, actor="bob").events] == [
        str(b),
        str(b),
    ]
    assert [e.action for e in ops.audit_list(installed, job_id=b).events] == [
        "ops.cancel",
        "ops.retry",
    ]
    assert len(ops.audit_list(installed, action="ops.retry").events) == 3
    assert len(ops.audit_list(installed, action="ops.*").events) == 5
    assert len(ops.audit_list(installed, since="1h").events) == 5
    assert ops.audit_list(installed, since="2999-01-01T00:00:00").events == []
    assert ops.audit_list(installed, since=timedelta(hours=1)).filter == {"since": "1h"}
    first = ops.audit_list(installed, limit=2)
    second = ops.audit_list(installed, limit=2, cursor=first.next_cursor)
    assert [e.id for e in first.events + second.events] == [e.id for e in everything.events[:4]]
