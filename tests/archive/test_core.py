from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from powertools_core import signal
from powertools_core.archive import ArchiveFilter, ArchiveRequest, resolve_retention, run_archive
from powertools_core.archive.policy import cutoffs, format_retention, parse_state_spec
from powertools_core.archive.prune import PruneRequest, run_prune
from powertools_core.archive.restore import run_restore
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput
from powertools_core.workflows import Workflow, promote
from tests.archive.conftest import ALL_STATES, count, insert_job, job_row
from tests.workflows.app_wf import Step

ages = st.integers(min_value=0, max_value=10_000).map(lambda n: timedelta(minutes=n))


@given(st.dictionaries(st.sampled_from(["completed", "cancelled", "discarded"]), ages, min_size=1))
def test_state_spec_round_trips(retention: dict[str, timedelta]) -> None:
    assert resolve_retention(format_retention(retention), None) == retention
    limits = cutoffs(retention, datetime(2026, 1, 1, tzinfo=UTC))
    assert all(limits[s] == datetime(2026, 1, 1) - a for s, a in retention.items())


@pytest.mark.parametrize("spec", ["available=1d", "executing", "completed=1d,completed=2d", ""])
def test_bad_state_specs_are_rejected(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_state_spec(spec)


def test_archive_then_restore_round_trips_and_skips_non_terminal(installed, db) -> None:
    prefix = installed.prefix
    ids = {state: insert_job(db, prefix, state=state) for state in ALL_STATES}
    before = {s: job_row(db, prefix, "oban_jobs", i) for s, i in ids.items()}
    result = run_archive(
        installed,
        ArchiveRequest(retention=resolve_retention(None, None), batch_size=2),
        actor="alice",
        reason="test archive run",
    )
    assert result.moved == 3 and result.run.status == "completed"
    assert count(db, prefix, "oban_jobs") == 5
    for state in ("completed", "discarded", "cancelled"):
        assert job_row(db, prefix, "powertools_job_archive", ids[state]) == before[state]
    restored = run_restore(
        installed,
        ArchiveFilter(ids=(ids["completed"], ids["discarded"], ids["cancelled"])),
        actor="alice",
        reason="test restore run",
    )
    assert restored.moved == 3 and restored.exit_status() == 0
    assert {s: job_row(db, prefix, "oban_jobs", i) for s, i in ids.items()} == before
    assert count(db, prefix, "powertools_job_archive") == 0


def test_column_lists_match_oban_jobs_and_the_archive_table(installed, db) -> None:
    from powertools_core.archive.sql import AUDIT_COLUMNS, JOB_COLUMNS
    from powertools_core.schema.oban import OBAN_JOBS_COLUMNS

    def columns(table: str) -> list[str]:
        found = db.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (installed.prefix, table),
        ).fetchall()
        return [r[0] for r in found]

    listed = [c.strip() for c in JOB_COLUMNS.split(",")]
    assert listed == list(OBAN_JOBS_COLUMNS)
    assert sorted(columns("oban_jobs")) == sorted(listed)
    assert columns("powertools_job_archive") == [*listed, "archived_at", "archive_run_id"]
    audit = [c.strip() for c in AUDIT_COLUMNS.split(",")]
    assert sorted(columns("powertools_audit_events")) == sorted(audit)
    assert columns("powertools_audit_archive") == [*audit, "archived_at", "archive_run_id"]


TIMESTAMPS = ("completed_at", "discarded_at", "cancelled_at")


def test_non_terminal_jobs_are_never_archived_whatever_their_timestamps(installed, db) -> None:
    """Every state x every terminal timestamp set long ago (as a retried or rescued job keeps):
    only terminal jobs whose own state's timestamp is old enough move."""
    prefix = installed.prefix
    expected = set()
    for state in ALL_STATES:
        for column in TIMESTAMPS:
            for age in (timedelta(days=400), timedelta(minutes=1)):
                overrides = dict.fromkeys(TIMESTAMPS)
                overrides[column] = datetime.now(UTC).replace(tzinfo=None) - age
                job_id = insert_job(db, prefix, state=state, age=age, **overrides)
                own = {"completed": "completed_at", "discarded": "discarded_at"}.get(
                    state, "cancelled_at" if state == "cancelled" else None
                )
                if own == column and age > timedelta(days=1):
                    expected.add(job_id)
    result = run_archive(
        installed,
        ArchiveRequest(retention=resolve_retention(None, "1d"), batch_size=3),
        actor="alice",
        reason="test archive run",
    )
    archived = {r[0] for r in db.execute(f'SELECT id FROM "{prefix}".powertools_job_archive')}
    assert archived == expected and result.moved == len(expected) == 3
    states = {r[0] for r in db.execute(f'SELECT state FROM "{prefix}".powertools_job_archive')}
    assert states <= {"completed", "discarded", "cancelled"}
    assert count(db, prefix, "oban_jobs", "state NOT IN ('completed','discarded','cancelled')") == (
        5 * len(TIMESTAMPS) * 2
    )


def test_rows_another_transaction_holds_are_skipped_not_waited_for(installed, db) -> None:
    prefix = installed.prefix
    held = insert_job(db, prefix, state="completed", age=timedelta(days=90))  # the oldest
    rest = [insert_job(db, prefix, state="completed", age=timedelta(days=60)) for _ in range(3)]
    assert installed.database_url
    with psycopg.connect(installed.database_url) as other:
        other.execute(f'SELECT 1 FROM "{prefix}".oban_jobs WHERE id = %s FOR UPDATE', (held,))
        result = run_archive(
            installed,
            ArchiveRequest(retention=resolve_retention(None, "1d"), batch_size=2),
            actor="alice",
            reason="test archive run",
        )
        assert result.moved == 3 and result.run.status == "completed"
        other.rollback()
    archived = {r[0] for r in db.execute(f'SELECT id FROM "{prefix}".powertools_job_archive')}
    assert archived == set(rest)
    again = run_archive(
        installed,
        ArchiveRequest(retention=resolve_retention(None, "1d")),
        actor="alice",
        reason="test archive run",
    )
    assert again.moved == 1


def test_a_running_workflows_finished_steps_stay_until_the_workflow_ends(installed, db) -> None:
    """Its dependents and the reconciler read the finished steps' states in oban_jobs."""

    prefix = installed.prefix
    wf = Workflow("billing").add("a", Step.new({})).add("b", Step.new({}), deps=["a"])
    ids = wf.insert(conn=db, prefix=prefix).job_ids
    a, b = ids["a"], ids["b"]
    old = "timezone('UTC', now()) - interval '60 days'"
    db.execute(
        qualify(
            f"UPDATE {{prefix}}.oban_jobs SET state = 'completed', completed_at = {old} "
            "WHERE id = %s",
            prefix,
        ),
        [a],
    )
    plain = insert_job(db, prefix, state="completed")
    request = ArchiveRequest(retention=resolve_retention(None, None), batch_size=1)

    preview = run_archive(installed, request, actor="alice", reason="preview", dry_run=True)
    assert preview.total == 1 and [r.id for r in preview.sample] == [plain]
    first = run_archive(installed, request, actor="alice", reason="keep live workflow")
    assert first.moved == 1
    assert count(db, prefix, "powertools_job_archive", f"id = {plain}") == 1
    assert count(db, prefix, "oban_jobs", f"id = {a}") == 1

    promote(db, prefix, [a])
    db.execute(
        qualify(
            f"UPDATE {{prefix}}.oban_jobs SET state = 'completed', completed_at = {old} "
            "WHERE id = %s",
            prefix,
        ),
        [b],
    )
    after = run_archive(installed, request, actor="alice", reason="workflow ended")
    assert after.moved == 2
    assert count(db, prefix, "oban_jobs", f"id IN ({a}, {b})") == 0


def _wf_rows(db: psycopg.Connection, prefix: str, workflow_id: int) -> tuple[int, int, int]:
    """(workflows, steps, edges) rows of one workflow."""
    row = db.execute(
        qualify(
            "SELECT (SELECT count(*) FROM {prefix}.powertools_workflows WHERE id = %(w)s), "
            "(SELECT count(*) FROM {prefix}.powertools_workflow_steps WHERE workflow_id = %(w)s),"
            " (SELECT count(*) FROM {prefix}.powertools_workflow_edges WHERE workflow_id = %(w)s)",
            prefix,
        ),
        {"w": workflow_id},
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_pruning_a_job_for_good_takes_its_signals_and_its_ended_workflows_rows(
    installed, db
) -> None:
    """Signals and workflow rows live as long as a job of theirs is in oban_jobs or the
    archive; the prune that deletes the last one deletes them too, and nothing else."""
    prefix = installed.prefix
    wf = Workflow("ledger").add("a", Step.new({})).add("b", Step.new({}), deps=["a"])
    ins = wf.insert(conn=db, prefix=prefix)
    a, b = ins.job_ids["a"], ins.job_ids["b"]
    other = Workflow("untouched").add("only", Step.new({})).insert(conn=db, prefix=prefix)
    signal(b, "approved", {"by": "carol"}, dedupe_key="once", conn=db, prefix=prefix)
    signal(other.job_ids["only"], "approved", conn=db, prefix=prefix)
    db.execute(
        qualify(
            "UPDATE {prefix}.oban_jobs SET state = 'completed', "
            "completed_at = timezone('UTC', now()) - interval '60 days' WHERE id = ANY(%s)",
            prefix,
        ),
        [[a, b]],
    )
    request = ArchiveRequest(retention=resolve_retention(None, None))
    assert run_archive(installed, request, actor="alice", reason="workflow ended").moved == 2
    restored = run_restore(
        installed, ArchiveFilter(ids=(a,)), actor="alice", reason="look at it again"
    )
    assert restored.moved == 1
    prune = PruneRequest(older_than=timedelta(hours=1))
    age_archive = qualify(
        "UPDATE {prefix}.powertools_job_archive SET archived_at = archived_at - interval '1 day'",
        prefix,
    )
    db.execute(age_archive)

    # b is deleted for good: its signal goes; a is back in oban_jobs, so the workflow stays.
    assert run_prune(installed, prune, actor="alice", reason="retention of b").moved == 1
    assert count(db, prefix, "powertools_signals", f"target = '{b}'") == 0
    assert _wf_rows(db, prefix, ins.id) == (1, 2, 1)

    # a is archived and pruned too: the workflow has no job left anywhere.
    db.execute(
        qualify(
            "UPDATE {prefix}.oban_jobs SET completed_at = timezone('UTC', now()) "
            "- interval '60 days' WHERE id = %s",
            prefix,
        ),
        [a],
    )
    assert run_archive(installed, request, actor="alice", reason="archive a again").moved == 1
    db.execute(age_archive)
    assert run_prune(installed, prune, actor="alice", reason="retention of a").moved == 1
    assert _wf_rows(db, prefix, ins.id) == (0, 0, 0)
    # another workflow's rows and a live job's signal are left alone
    assert _wf_rows(db, prefix, other.id) == (1, 1, 0)
    target = other.job_ids["only"]
    assert count(db, prefix, "powertools_signals", f"target = '{target}'") == 1
