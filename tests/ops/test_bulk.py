"""The bulk engine against real PostgreSQL: drift, concurrent changes, locks, interruption,
resumption, per-job failures, audit rows and the stop signal for running jobs."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from datetime import datetime

import psycopg
import pytest
from psycopg import sql

from powertools_core import ops
from powertools_core.config import Settings
from powertools_core.errors import NotFound
from powertools_core.ops.bulk import ChunkReport
from powertools_core.ops.errors import ActorRequired, ReasonRequired, ReasonTooShort
from tests.ops.conftest import InsertJob, audit_rows, job_row

REASON = "provider outage fixed"


def _execute(settings: Settings, action: str, **kwargs: object) -> ops.ActionResult:
    filters = {k: kwargs.pop(k) for k in list(kwargs) if k in ("states", "queue", "ids", "limit")}
    kwargs.setdefault("concurrency", 1)
    return ops.execute(
        settings,
        action,
        ops.build_filter(**filters),  # type: ignore[arg-type]
        actor="alice",
        reason=REASON,
        handle_sigint=False,
        **kwargs,  # type: ignore[arg-type]
    )


def _per_job_events(conn: psycopg.Connection, schema: str, action: str) -> Counter[int]:
    return Counter(int(r["target_id"]) for r in audit_rows(conn, schema, action=action))


def test_preview_changes_nothing_and_its_token_pins_the_plan(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("discarded", queue="mailers") for _ in range(3)]
    insert_job("completed", queue="mailers")
    job_filter = ops.build_filter(states=["discarded", "completed"], queue="mailers")

    first = ops.preview(installed, "retry", job_filter).preview
    again = ops.preview(installed, "retry", job_filter).preview
    assert first.preview_token == again.preview_token
    assert (first.total, first.would_act, first.would_skip) == (4, 4, 0)
    assert first.by_state == {"completed": 1, "discarded": 3}
    assert first.by_queue == {"mailers": 4}
    assert [j.id for j in first.sample] == [*ids, ids[-1] + 1]
    assert audit_rows(conn, installed.prefix) == []
    assert all(job_row(conn, installed.prefix, i)["state"] == "discarded" for i in ids)
    discard_preview = ops.preview(installed, "discard", job_filter).preview
    assert discard_preview.preview_token != first.preview_token
    assert discard_preview.would_act == 0

    # A job changes state between preview and execute: the token no longer matches.
    conn.execute(
        sql.SQL("UPDATE {}.oban_jobs SET state = 'retryable' WHERE id = %s").format(
            sql.Identifier(installed.prefix)
        ),
        (ids[0],),
    )
    with pytest.raises(ops.PreviewDrifted) as refused:
        _execute(
            installed,
            "retry",
            states=["discarded", "completed"],
            queue="mailers",
            preview_token=first.preview_token,
        )
    assert refused.value.exit_code == 2
    assert audit_rows(conn, installed.prefix) == []
    assert job_row(conn, installed.prefix, ids[1])["state"] == "discarded"

    fresh = ops.preview(installed, "retry", job_filter).preview
    assert fresh.preview_token != first.preview_token
    done = _execute(
        installed,
        "retry",
        states=["discarded", "completed"],
        queue="mailers",
        preview_token=fresh.preview_token,
    )
    assert done.done == [*ids[1:], ids[-1] + 1]
    assert done.plan_hash == fresh.plan_hash


def test_job_changed_after_selection_is_skipped_as_changed_since_preview(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("available") for _ in range(4)]
    schema = sql.Identifier(installed.prefix)

    def worker_completes_job_three(report: ChunkReport) -> None:
        if report.index == 0:
            # Another connection (a worker) fetches and completes job 3 between chunks.
            with psycopg.connect(conn.info.dsn, autocommit=True) as worker:
                worker.execute(
                    sql.SQL(
                        "UPDATE {}.oban_jobs SET state = 'executing', attempt = attempt + 1, "
                        "attempted_at = timezone('UTC', now()) WHERE id = %s"
                    ).format(schema),
                    (ids[2],),
                )
                worker.execute(
                    sql.SQL(
                        "UPDATE {}.oban_jobs SET state = 'completed', "
                        "completed_at = timezone('UTC', now()) WHERE id = %s"
                    ).format(schema),
                    (ids[2],),
                )

    result = _execute(
        installed,
        "cancel",
        states=["available"],
        batch_size=2,
        on_chunk=worker_completes_job_three,
    )
    assert result.done == [ids[0], ids[1], ids[3]]
    assert [(s.id, s.reason, s.state, s.now_state) for s in result.skipped] == [
        (ids[2], "changed_since_preview", "available", "completed")
    ]
    assert result.exit_status() == 0
    assert job_row(conn, installed.prefix, ids[2])["state"] == "completed"
    assert job_row(conn, installed.prefix, ids[2])["cancelled_at"] is None
    assert ids[2] not in _per_job_events(conn, installed.prefix, "ops.cancel")
    run = audit_rows(conn, installed.prefix, target_type="job_selection")[0]
    assert run["meta"]["outcome"]["skipped_by_reason"] == {"changed_since_preview": 1}


def test_row_locked_by_another_transaction_is_skipped_then_done_on_rerun(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("discarded") for _ in range(3)]
    with psycopg.connect(conn.info.dsn) as holder:
        holder.execute(
            sql.SQL("SELECT 1 FROM {}.oban_jobs WHERE id = %s FOR UPDATE").format(
                sql.Identifier(installed.prefix)
            ),
            (ids[1],),
        )
        first = _execute(installed, "retry", states=["discarded"])
        holder.rollback()
    assert first.done == [ids[0], ids[2]]
    assert [(s.id, s.reason) for s in first.skipped] == [(ids[1], "locked")]
    second = _execute(installed, "retry", states=["discarded"])
    assert second.done == [ids[1]]
    assert _per_job_events(conn, installed.prefix, "ops.retry") == {i: 1 for i in ids}


def test_interrupted_run_resumes_without_acting_twice(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("discarded", queue="mailers") for _ in range(10)]

    def stop_after_first_chunk(report: ChunkReport) -> None:
        if report.index == 0:
            raise KeyboardInterrupt

    first = _execute(
        installed, "retry", states=["discarded"], batch_size=3, on_chunk=stop_after_first_chunk
    )
    assert first.interrupted
    assert first.done == ids[:3]
    assert first.summary.not_attempted == 7
    assert first.exit_status() == 1
    run_event = audit_rows(conn, installed.prefix, target_type="job_selection")[0]
    assert run_event["result"] == "interrupted"
    assert run_event["meta"]["outcome"]["not_attempted"] == 7

    second = _execute(installed, "retry", states=["discarded"], batch_size=3)
    assert not second.interrupted
    assert second.done == ids[3:]
    assert second.exit_status() == 0
    assert _per_job_events(conn, installed.prefix, "ops.retry") == {i: 1 for i in ids}
    assert {job_row(conn, installed.prefix, i)["state"] for i in ids} == {"available"}


def test_resume_run_skips_jobs_the_run_already_changed_even_if_they_match_again(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("discarded") for _ in range(6)]

    def stop(report: ChunkReport) -> None:
        raise KeyboardInterrupt

    first = _execute(installed, "retry", states=["discarded"], batch_size=2, on_chunk=stop)
    assert first.done == ids[:2]
    # A retried job runs and is discarded again before the operator resumes.
    conn.execute(
        sql.SQL("UPDATE {}.oban_jobs SET state = 'discarded' WHERE id = %s").format(
            sql.Identifier(installed.prefix)
        ),
        (ids[0],),
    )
    resumed = _execute(installed, "retry", states=["discarded"], resume_run=str(first.run_id))
    assert resumed.run_id == first.run_id
    assert resumed.done == ids[2:]
    assert job_row(conn, installed.prefix, ids[0])["state"] == "discarded"
    events = audit_rows(conn, installed.prefix, action="ops.retry", run_id=first.run_id)
    assert Counter(int(e["target_id"]) for e in events) == {i: 1 for i in ids}


def test_sigint_stops_after_the_current_chunk(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("retryable") for _ in range(6)]
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when run in the background (nohup, &)

    def press_ctrl_c(report: ChunkReport) -> None:
        if report.index == 0:
            os.kill(os.getpid(), signal.SIGINT)

    result = ops.execute(
        installed,
        "discard",
        ops.build_filter(states=["retryable"]),
        actor="alice",
        reason=REASON,
        batch_size=2,
        on_chunk=press_ctrl_c,
        concurrency=1,
    )
    assert result.interrupted
    assert result.done == ids[:2]
    assert result.summary.not_attempted == 4
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is put back


def test_a_failing_job_fails_alone_and_exit_status_is_1(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("discarded") for _ in range(5)]
    schema = sql.Identifier(installed.prefix)
    conn.execute(
        sql.SQL(
            "CREATE FUNCTION {}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = {} THEN RAISE EXCEPTION 'job % is protected', NEW.id; END IF; "
            "RETURN NEW; END $$"
        ).format(schema, sql.Literal(ids[2]))
    )
    conn.execute(
        sql.SQL(
            "CREATE TRIGGER refuse BEFORE UPDATE ON {}.oban_jobs FOR EACH ROW "
            "EXECUTE FUNCTION {}.refuse()"
        ).format(schema, schema)
    )
    result = _execute(installed, "retry", states=["discarded"], batch_size=5)
    assert result.done == [ids[0], ids[1], ids[3], ids[4]]
    assert [(f.id, f.state) for f in result.failed] == [(ids[2], "discarded")]
    assert "is protected" in result.failed[0].error
    assert result.exit_status() == 1
    assert job_row(conn, installed.prefix, ids[2])["state"] == "discarded"
    assert ids[2] not in _per_job_events(conn, installed.prefix, "ops.retry")
    run = audit_rows(conn, installed.prefix, target_type="job_selection")[0]
    assert run["result"] == "partial"


def test_audit_rows_record_exactly_what_changed(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    job_id = insert_job("discarded", attempt=2, max_attempts=2, queue="q1")
    before = job_row(conn, installed.prefix, job_id)
    result = _execute(installed, "retry", ids=[job_id])
    after = job_row(conn, installed.prefix, job_id)
    (event,) = audit_rows(conn, installed.prefix, target_type="job")
    assert (event["actor"], event["action"], event["reason"]) == ("alice", "ops.retry", REASON)
    assert event["run_id"] == result.run_id
    for column in ("state", "max_attempts"):
        assert event["before"][column] == before[column]
        assert event["after"][column] == after[column]

    def when(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text is not None else None

    for column in ("scheduled_at", "discarded_at"):
        assert when(event["before"][column]) == before[column]
        assert when(event["after"][column]) == after[column]
    assert event["meta"] == {"queue": "q1", "worker": "app.workers.SendEmail"}
    (run,) = audit_rows(conn, installed.prefix, target_type="job_selection")
    assert run["target_id"] == str(result.run_id)
    assert run["meta"]["filter"] == {"ids": [job_id]}
    assert run["meta"]["selected"] == {"total": 1, "by_state": {"discarded": 1}}
    assert run["meta"]["outcome"]["done"] == 1


def test_cancelling_an_executing_job_notifies_its_runtime(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    running = insert_job("executing")
    waiting = insert_job("available")
    channel = f"powertools.{installed.prefix}.signal"
    with psycopg.connect(conn.info.dsn, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        result = _execute(installed, "cancel", ids=[running, waiting])
        assert result.done == [running, waiting]
        received = list(listener.notifies(timeout=10, stop_after=1))
    assert [(n.channel, json.loads(n.payload)) for n in received] == [
        (channel, {"action": "cancel", "job_id": running})
    ]
    row = job_row(conn, installed.prefix, running)
    assert row["state"] == "cancelled" and row["cancelled_at"] is not None


def test_limit_takes_the_lowest_ids_and_batch_size_sets_chunks(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("discarded") for _ in range(7)]
    seen: list[tuple[int, ...]] = []
    result = _execute(
        installed,
        "retry",
        states=["discarded"],
        limit=5,
        batch_size=2,
        on_chunk=lambda r: seen.append(r.ids),
    )
    assert result.done == ids[:5]
    assert seen == [tuple(ids[0:2]), tuple(ids[2:4]), tuple(ids[4:5])]
    assert result.summary.chunks == 3


def test_reason_and_actor_are_required_before_anything_happens(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    job_id = insert_job("discarded")
    with pytest.raises(ActorRequired):
        ops.retry_job(installed, job_id, actor="  ", reason=REASON)
    with pytest.raises(ReasonRequired):
        ops.retry_job(installed, job_id, actor="alice", reason=" ")
    with pytest.raises(ReasonTooShort):
        ops.retry_job(installed, job_id, actor="alice", reason="oops")
    assert job_row(conn, installed.prefix, job_id)["state"] == "discarded"
    assert audit_rows(conn, installed.prefix) == []
    with pytest.raises(NotFound):
        ops.retry_job(installed, 999_999, actor="alice", reason=REASON)


def test_concurrent_chunks_act_once_each_and_report_in_id_order(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("retryable" if n % 5 else "completed") for n in range(40)]
    seen: list[int] = []
    result = _execute(
        installed,
        "discard",
        states=["retryable", "completed"],
        batch_size=3,
        concurrency=3,
        on_chunk=lambda r: seen.append(r.index),
    )
    legal = [i for n, i in enumerate(ids) if n % 5]
    assert result.done == legal
    assert [s.id for s in result.skipped] == [i for n, i in enumerate(ids) if not n % 5]
    assert sorted(seen) == list(range(14))
    assert result.summary.chunks == 14
    assert _per_job_events(conn, installed.prefix, "ops.discard") == {i: 1 for i in legal}


def test_interrupting_concurrent_chunks_then_rerunning_acts_once(
    installed: Settings, conn: psycopg.Connection, insert_job: InsertJob
) -> None:
    ids = [insert_job("retryable") for _ in range(30)]

    def stop(report: ChunkReport) -> None:
        raise KeyboardInterrupt

    first = _execute(
        installed, "cancel", states=["retryable"], batch_size=4, concurrency=2, on_chunk=stop
    )
    assert first.interrupted
    assert 0 < len(first.done) <= 8
    assert first.summary.not_attempted == 30 - len(first.done)
    second = _execute(installed, "cancel", states=["retryable"], batch_size=4, concurrency=2)
    assert sorted(first.done + second.done) == ids
    assert _per_job_events(conn, installed.prefix, "ops.cancel") == {i: 1 for i in ids}
