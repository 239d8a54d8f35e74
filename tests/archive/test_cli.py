"""`powertools archive` through the CLI: refusals, dry runs, runs, restore, prune, snapshots."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from syrupy.assertion import SnapshotAssertion

from powertools_core.config import Settings
from powertools_core.db.identifiers import qualify
from tests.archive.conftest import (
    ALL_STATES,
    REASON,
    audit_rows,
    cli,
    count,
    ids_in,
    insert_job,
    job_row,
    rows,
    run_rows,
    snapshot_tables,
    stable_json,
    stable_text,
)
from tests.support.cli import one_line_error

EXECUTE = ["--actor", "alice", "--reason", REASON, "--yes"]
NARROW = {"COLUMNS": "80"}


@pytest.fixture
def seeded(installed: Settings, db: psycopg.Connection[Any]) -> dict[str, int]:
    """One 60-day-old job per state in `mailers`, plus fresh terminal ones in `default`."""
    p = installed.prefix
    ids = {state: insert_job(db, p, state=state, queue="mailers") for state in ALL_STATES}
    for state in ("completed", "discarded", "cancelled"):
        ids[f"fresh_{state}"] = insert_job(db, p, state=state, age=timedelta(minutes=5))
    return ids


# refusals: nothing touches the database ---------------------------------------------------------


COMMANDS = {
    "run": ["run"],
    "run-audit": ["run", "--audit", "--older-than", "30d"],
    "restore": ["restore", "1"],
    "prune": ["prune", "--older-than", "1d"],
}


@pytest.mark.parametrize(
    ("extra", "env", "fragment"),
    [
        (["--reason", REASON, "--yes"], {}, "an actor is required"),
        (["--actor", "alice", "--yes"], {}, "a reason is required"),
        (["--actor", "alice", "--reason", "short", "--yes"], {}, "the reason is too short"),
        (["--actor", "alice", "--reason", REASON], {}, "--yes is required"),
        (["--reason", REASON], {"POWERTOOLS_ACTOR": "alice"}, "--yes is required"),
    ],
    ids=["no-actor", "no-reason", "short-reason", "no-yes", "env-actor-no-yes"],
)
@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
def test_execution_needs_actor_reason_and_yes(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    command: str,
    extra: list[str],
    env: dict[str, str | None],
    fragment: str,
) -> None:
    before = snapshot_tables(db, installed.prefix)
    run = cli(installed, *COMMANDS[command], *extra, env=env)
    assert run.exit_code == 2
    assert fragment in one_line_error(run)
    assert run.stdout == ""
    assert snapshot_tables(db, installed.prefix) == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--state", "available=1d"], "cannot archive state 'available'"),
        (["run", "--state", "executing"], "only terminal jobs are archived"),
        (["run", "--state", "finished=1d"], "unknown job state 'finished'"),
        (["run", "--state", "completed=1d,completed=2d"], "given twice"),
        (["run", "--state", "completed=1x"], "invalid --state age of completed '1x'"),
        (["run", "--state", ""], "empty --state"),
        (["run", "--state", "completed=1d,,discarded"], "empty entry in --state"),
        (["run", "--older-than", "7days"], "invalid --older-than '7days'"),
        (["run", "--older-than", "1h1h"], "largest first"),
        (["run", "--batch-size", "0"], "invalid batch size 0"),
        (["run", "--batch-size", "100001"], "invalid batch size 100001"),
        (["run", "--audit", "--state", "completed=1d"], "do not apply to --audit"),
        (["restore"], "say what to restore"),
        (["restore", "--run", "yesterday"], "is not a run id"),
        (["restore", "--state", "available"], "archived jobs are never in state"),
        (["prune", "--older-than", "forever"], "invalid --older-than 'forever'"),
        (["list", "--state", "retryable"], "archived jobs are never in state"),
        (["runs", "--kind", "delete"], "unknown run kind 'delete'"),
        (["show", "latest"], "neither a job id nor a run id"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    args: list[str],
    fragment: str,
) -> None:
    before = snapshot_tables(db, installed.prefix)
    mutation = args[0] in ("run", "restore", "prune")
    run = cli(installed, *args, *(EXECUTE if mutation else []))
    assert run.exit_code == 2, run.output
    assert fragment in one_line_error(run)
    assert snapshot_tables(db, installed.prefix) == before


def test_bad_config_table_is_one_line(
    installed: Settings, db: psycopg.Connection[Any], tmp_path: Any, monkeypatch: Any
) -> None:
    (tmp_path / "powertools.toml").write_text('[archive]\nretention = { available = "1d" }\n')
    monkeypatch.chdir(tmp_path)
    run = cli(installed, "run", "--dry-run")
    assert run.exit_code == 2
    assert "cannot archive state 'available'" in one_line_error(run)


def test_show_unknown_ids_exit_2(installed: Settings) -> None:
    run = cli(installed, "show", "424242")
    assert run.exit_code == 2
    assert "job 424242 is not in the archive" in one_line_error(run)
    run = cli(installed, "show", "2f0c6f7e-0d9b-4a7e-9a51-1d2b3c4d5e6f")
    assert run.exit_code == 2
    assert "no archive run" in one_line_error(run)


# archive run ------------------------------------------------------------------------------------


def test_dry_run_shows_what_would_move_and_changes_nothing(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    snapshot: SnapshotAssertion,
    snapshot_json: SnapshotAssertion,
) -> None:
    before = snapshot_tables(db, installed.prefix)
    ansi = cli(installed, "run", "--dry-run", env=NARROW)
    assert ansi.exit_code == 0, ansi.output
    assert stable_text(ansi, installed) == snapshot(name="ansi")
    as_json = cli(installed, "run", "--dry-run", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["total"] == 3 and data["dry_run"] is True
    assert stable_json(as_json) == snapshot_json(name="json")
    assert snapshot_tables(db, installed.prefix) == before


def test_run_moves_only_old_terminal_jobs_records_run_and_audits(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    snapshot_json: SnapshotAssertion,
) -> None:
    p = installed.prefix
    old = {s: seeded[s] for s in ("completed", "discarded", "cancelled")}
    before = {i: job_row(db, p, "oban_jobs", i) for i in old.values()}
    run = cli(installed, "run", "--batch-size", "2", *EXECUTE, "--format", "json")
    assert run.exit_code == 0, run.output
    assert stable_json(run) == snapshot_json(name="json")
    assert ids_in(db, p, "powertools_job_archive") == set(old.values())
    assert ids_in(db, p, "oban_jobs") == set(seeded.values()) - set(old.values())
    for job_id, row in before.items():
        assert job_row(db, p, "powertools_job_archive", job_id) == row
    archived = rows(db, p, "SELECT archive_run_id FROM {prefix}.powertools_job_archive")
    (recorded,) = run_rows(db, p)
    assert {r["archive_run_id"] for r in archived} == {recorded["id"]}
    assert recorded["kind"] == "archive" and recorded["status"] == "completed"
    assert recorded["actor"] == "alice" and recorded["reason"] == REASON
    # batch 2: the three states move together, oldest first, in two chunks
    assert recorded["counts"]["moved"] == 3 and recorded["counts"]["chunks"] == 2
    assert recorded["filter"]["retention"] == "completed=1d,discarded=30d,cancelled=7d"
    events = audit_rows(db, p)
    assert [e["action"] for e in events] == ["archive.run.chunk"] * 2 + ["archive.run"]
    assert {e["actor"] for e in events} == {"alice"}
    assert {e["run_id"] for e in events} == {recorded["id"]}
    assert [e["meta"]["count"] for e in events[:2]] == [2, 1]
    assert events[-1]["result"] == "ok"


def test_run_ansi_in_80_columns(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    snapshot: SnapshotAssertion,
) -> None:
    run = cli(installed, "run", "--state", "completed=30d,discarded", *EXECUTE, env=NARROW)
    assert run.exit_code == 0, run.output
    assert max(len(line) for line in run.stdout.splitlines()) <= 80
    assert stable_text(run, installed) == snapshot
    assert ids_in(db, installed.prefix, "powertools_job_archive") == {
        seeded["completed"],
        seeded["discarded"],
    }


def test_state_and_queue_select_what_moves(
    installed: Settings, db: psycopg.Connection[Any], seeded: dict[str, int]
) -> None:
    p = installed.prefix
    run = cli(installed, "run", "--state", "completed=1m", "--queue", "default", *EXECUTE)
    assert run.exit_code == 0, run.output
    assert ids_in(db, p, "powertools_job_archive") == {seeded["fresh_completed"]}
    run = cli(installed, "run", "--older-than", "1m", "--queue", "mailers", *EXECUTE)
    assert run.exit_code == 0, run.output
    assert ids_in(db, p, "powertools_job_archive") == {
        seeded["fresh_completed"],
        seeded["completed"],
        seeded["discarded"],
        seeded["cancelled"],
    }


def test_configured_retention_is_the_default(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    tmp_path: Any,
    monkeypatch: Any,
) -> None:
    (tmp_path / "powertools.toml").write_text(
        '[archive]\nretention = { completed = "1m" }\nbatch_size = 1\n'
    )
    monkeypatch.chdir(tmp_path)
    run = cli(installed, "run", *EXECUTE, "--format", "json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    # completed from the file; discarded/cancelled keep their defaults; batch_size from the file
    assert data["run"]["filter"]["retention"] == "completed=1m,discarded=30d,cancelled=7d"
    assert data["chunks"] == 4
    assert ids_in(db, installed.prefix, "powertools_job_archive") == {
        seeded["completed"],
        seeded["fresh_completed"],
        seeded["discarded"],
        seeded["cancelled"],
    }


def _insert_with_id(conn: psycopg.Connection[Any], prefix: str, job_id: int, state: str) -> None:
    conn.execute(
        qualify(
            "INSERT INTO {prefix}.oban_jobs (id, state, queue, worker, args, completed_at) "
            "VALUES (%s, %s, 'mailers', 'app.workers.Reused', %s, "
            "timezone('UTC', now()) - interval '90 days')",
            prefix,
        ),
        (job_id, state, Jsonb({"reused": True})),
    )


def test_restore_refuses_ids_back_in_oban_jobs(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    snapshot: SnapshotAssertion,
    snapshot_json: SnapshotAssertion,
) -> None:
    p = installed.prefix
    assert cli(installed, "run", *EXECUTE).exit_code == 0
    taken, free = seeded["completed"], seeded["discarded"]
    _insert_with_id(db, p, taken, "available")
    live = job_row(db, p, "oban_jobs", taken)
    archived = job_row(db, p, "powertools_job_archive", taken)

    preview = cli(installed, "restore", str(taken), str(free), "424242", "--dry-run", env=NARROW)
    assert preview.exit_code == 0, preview.output
    assert stable_text(preview, installed) == snapshot(name="preview")

    run = cli(installed, "restore", str(taken), str(free), "424242", *EXECUTE, "--format", "json")
    assert run.exit_code == 1, run.output
    data = json.loads(run.stdout)
    assert data["conflicts"] == [taken] and data["not_found"] == [424242]
    assert stable_json(run) == snapshot_json(name="json")
    assert job_row(db, p, "oban_jobs", taken) == live
    assert job_row(db, p, "powertools_job_archive", taken) == archived
    assert free in ids_in(db, p, "oban_jobs") and free not in ids_in(
        db, p, "powertools_job_archive"
    )

    again = cli(installed, "restore", str(taken), *EXECUTE, env=NARROW)
    assert again.exit_code == 1
    assert f"refused 1 id already in oban_jobs (left in the archive): {taken}" in again.stdout


def test_archive_run_leaves_a_reused_id_alone_and_reports_it(
    installed: Settings, db: psycopg.Connection[Any], seeded: dict[str, int]
) -> None:
    p = installed.prefix
    assert cli(installed, "run", *EXECUTE).exit_code == 0
    reused = seeded["completed"]
    _insert_with_id(db, p, reused, "completed")
    live = job_row(db, p, "oban_jobs", reused)
    run = cli(installed, "run", *EXECUTE, "--format", "json")
    assert run.exit_code == 1, run.output
    data = json.loads(run.stdout)
    assert data["moved"] == 0 and data["conflicts"] == [reused] and data["conflict_count"] == 1
    assert job_row(db, p, "oban_jobs", reused) == live


def test_restore_by_run_round_trips_every_column(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    snapshot: SnapshotAssertion,
) -> None:
    p = installed.prefix
    before = {i: job_row(db, p, "oban_jobs", i) for i in seeded.values()}
    first = json.loads(cli(installed, "run", *EXECUTE, "--format", "json").stdout)
    second = json.loads(
        cli(installed, "run", "--older-than", "1m", *EXECUTE, "--format", "json").stdout
    )
    assert first["moved"] == 3 and second["moved"] == 3
    run = cli(installed, "restore", "--run", first["run"]["id"], *EXECUTE, env=NARROW)
    assert run.exit_code == 0, run.output
    assert stable_text(run, installed) == snapshot
    assert ids_in(db, p, "powertools_job_archive") == {
        seeded["fresh_completed"],
        seeded["fresh_discarded"],
        seeded["fresh_cancelled"],
    }
    run = cli(installed, "restore", "--state", "completed", "--state", "discarded", *EXECUTE)
    assert run.exit_code == 0, run.output
    run = cli(
        installed, "restore", "--queue", "default", "--worker", "app.workers.Mailer", *EXECUTE
    )
    assert run.exit_code == 0, run.output
    assert count(db, p, "powertools_job_archive") == 0
    assert {i: job_row(db, p, "oban_jobs", i) for i in seeded.values()} == before
    kinds = [(r["kind"], r["actor"], r["counts"]["moved"]) for r in run_rows(db, p)]
    assert kinds == [
        ("archive", "alice", 3),
        ("archive", "alice", 3),
        ("restore", "alice", 3),
        ("restore", "alice", 2),
        ("restore", "alice", 1),
    ]
    assert [e["action"] for e in audit_rows(db, p)].count("archive.restore") == 3


# list / runs / show ---------------------------------------------------------------------------


def test_list_runs_and_show(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    snapshot: SnapshotAssertion,
    snapshot_json: SnapshotAssertion,
) -> None:
    done = json.loads(cli(installed, "run", *EXECUTE, "--format", "json").stdout)
    run_id = done["run"]["id"]
    for name, args in {
        "list": ["list", "--state", "completed", "--state", "discarded", "--queue", "mailers"],
        "list_run": ["list", "--run", run_id, "--limit", "2"],
        "runs": ["runs"],
        "show_job": ["show", str(seeded["completed"])],
        "show_run": ["show", run_id],
    }.items():
        ansi = cli(installed, *args, env=NARROW)
        assert ansi.exit_code == 0, ansi.output
        assert stable_text(ansi, installed, short_runs=[run_id]) == snapshot(name=name)
        as_json = cli(installed, *args, "--format", "json")
        assert as_json.exit_code == 0, as_json.output
        assert stable_json(as_json) == snapshot_json(name=f"{name}_json")


def test_list_and_show_redact_secrets(installed: Settings, db: psycopg.Connection[Any]) -> None:
    job_id = insert_job(
        db,
        installed.prefix,
        state="completed",
        args=Jsonb({"to": "a@example.com", "api_key": "sk_live_1", "nested": {"password": "pw"}}),
        meta=Jsonb({"token": "t0k3n"}),
    )
    assert cli(installed, "run", *EXECUTE).exit_code == 0
    for args in (["list"], ["show", str(job_id)]):
        for fmt in ("ansi", "json"):
            out = cli(installed, *args, "--format", fmt).stdout
            assert "a@example.com" in out or (args == ["list"] and fmt == "ansi")
            assert "sk_live_1" not in out and '"pw"' not in out and "t0k3n" not in out


# prune --------------------------------------------------------------------------------------


def _age_archive(conn: psycopg.Connection[Any], prefix: str, table: str, ids: list[int]) -> None:
    conn.execute(
        qualify(
            f"UPDATE {{prefix}}.{table} SET archived_at = archived_at - interval '100 days' "
            "WHERE id = ANY(%s)",
            prefix,
        ),
        (ids,),
    )


def test_prune_deletes_only_old_rows_of_the_archive_and_is_audited(
    installed: Settings,
    db: psycopg.Connection[Any],
    seeded: dict[str, int],
    snapshot: SnapshotAssertion,
) -> None:
    p = installed.prefix
    assert cli(installed, "run", *EXECUTE).exit_code == 0
    # an old terminal job still in oban_jobs (too young for archive run's retention) must stay
    assert cli(installed, "run", "--state", "completed=1m", *EXECUTE).exit_code == 0
    old_terminal = insert_job(db, p, state="completed", age=timedelta(days=400))
    live_before = rows(db, p, "SELECT * FROM {prefix}.oban_jobs ORDER BY id")
    _age_archive(db, p, "powertools_job_archive", [seeded["completed"], seeded["discarded"]])
    kept = {seeded["cancelled"], seeded["fresh_completed"]}

    before = snapshot_tables(db, p)
    preview = cli(installed, "prune", "--older-than", "90d", "--dry-run", env=NARROW)
    assert preview.exit_code == 0, preview.output
    assert stable_text(preview, installed) == snapshot(name="preview")
    assert snapshot_tables(db, p) == before

    run = cli(installed, "prune", "--older-than", "90d", *EXECUTE, "--format", "json")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["moved"] == 2
    assert ids_in(db, p, "powertools_job_archive") == kept
    assert rows(db, p, "SELECT * FROM {prefix}.oban_jobs ORDER BY id") == live_before
    assert old_terminal in ids_in(db, p, "oban_jobs")
    prune_events = [e for e in audit_rows(db, p) if e["action"].startswith("archive.prune")]
    assert [e["action"] for e in prune_events] == ["archive.prune.chunk", "archive.prune"]
    assert {e["actor"] for e in prune_events} == {"alice"}
    assert prune_events[0]["meta"]["count"] == 2
    assert run_rows(db, p)[-1]["kind"] == "prune"


# audit events ---------------------------------------------------------------------------------


INSERT_EVENT = """
INSERT INTO {prefix}.powertools_audit_events
    (at, actor, action, target_type, target_id, reason, result, run_id, before, after, meta)
VALUES (timezone('UTC', now()) - %s, 'carol', 'ops.retry', 'job', %s, 'old incident', 'ok',
        gen_random_uuid(), %s, %s, %s)
RETURNING id
"""
EVENT_COLUMNS = (
    "id, at, actor, action, target_type, target_id, reason, result, run_id, before, after, meta"
)


def test_audit_events_are_archived_never_dropped_and_pruned_from_the_archive(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    old, recent = [], []
    for n, age in enumerate([400, 500, 10]):
        (event_id,) = db.execute(
            qualify(INSERT_EVENT, p),
            (
                timedelta(days=age),
                str(n),
                Jsonb({"state": "discarded"}),
                Jsonb({"state": "available"}),
                Jsonb({"n": n}),
            ),
        ).fetchone()  # type: ignore[misc]
        (old if age > 365 else recent).append(event_id)
    select = f"SELECT {EVENT_COLUMNS} FROM {{prefix}}.%s WHERE id = ANY(%%s) ORDER BY id"
    before = rows(db, p, select % "powertools_audit_events", old)

    preview = cli(installed, "run", "--audit", "--older-than", "365d", "--dry-run", "-f", "json")
    assert preview.exit_code == 0 and json.loads(preview.stdout)["total"] == 2
    run = cli(installed, "run", "--audit", "--older-than", "365d", *EXECUTE, "--format", "json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["kind"] == "audit_archive" and data["moved"] == 2
    assert rows(db, p, select % "powertools_audit_archive", old) == before
    live = ids_in(db, p, "powertools_audit_events")
    assert not live & set(old) and set(recent) <= live
    assert "archive.run_audit" in {e["action"] for e in audit_rows(db, p)}

    # prune --audit deletes from the audit archive only, and only what is old there
    assert cli(installed, "prune", "--audit", "--older-than", "90d", *EXECUTE).exit_code == 0
    assert ids_in(db, p, "powertools_audit_archive") == set(old)
    _age_archive(db, p, "powertools_audit_archive", old[:1])
    run = cli(installed, "prune", "--audit", "--older-than", "90d", *EXECUTE, "--format", "json")
    assert run.exit_code == 0 and json.loads(run.stdout)["kind"] == "audit_prune"
    assert ids_in(db, p, "powertools_audit_archive") == set(old[1:])
    assert set(recent) <= ids_in(db, p, "powertools_audit_events")
