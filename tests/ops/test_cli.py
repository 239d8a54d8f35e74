"""`powertools ops` and `powertools audit` through the CLI: enforcement, exit codes, snapshots."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest
from psycopg import sql
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension
from typer.testing import CliRunner

from powertools_cli.app import app
from powertools_core.config import Settings
from tests.ops.conftest import InsertJob, audit_rows, job_row
from tests.ops.test_pure import ChargeCard
from tests.support.cli import (
    CONFIG_VARS,
    STABLE_ENV,
    Run,
    invoke,
    normalise,
    one_line_error,
    run_process,
)

REASON = "provider outage fixed"
_TIMES = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?"), "YYYY-MM-DD hh:mm:ss"),
    (re.compile(r"\b\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?"), "MM-DD hh:mm"),
    (re.compile(r"\d+\.\d{3}s"), "N.NNNs"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<run-id>"),
    (re.compile(r"run [0-9a-f]{8}"), "run <run>"),
]


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


def _conn_args(settings: Settings) -> list[str]:
    assert settings.database_url
    return ["--database-url", settings.database_url, "--prefix", settings.prefix]


def _run(settings: Settings, *args: str, env: dict[str, str | None] | None = None) -> Run:
    return invoke([*args, *_conn_args(settings)], env=env)


def _text(run: Run, settings: Settings) -> str:
    text = normalise(run.stdout, {settings.prefix: "<schema>"})
    for pattern, replacement in _TIMES:
        text = pattern.sub(replacement, text)
    return text


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if item is not None and (
                key in ("at", "seconds", "longest_chunk_seconds", "run_id") or key.endswith("_at")
            ):
                out[key] = f"<{key}>"
            else:
                out[key] = _stable(item)
        return out
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _json(run: Run) -> Any:
    return _stable(json.loads(run.stdout))


@pytest.fixture
def seeded(installed: Settings, insert_job: InsertJob) -> list[int]:
    """Three discarded mailers jobs (one a registered worker with a secret), one completed."""
    return [
        insert_job(
            "discarded",
            queue="mailers",
            worker=ChargeCard.name(),
            args={"customer": "c1", "card_token": "tok_live_1", "extra": {"password": "pw"}},
        ),
        insert_job("discarded", queue="mailers", args={"to": "a@example.com", "api_key": "k1"}),
        insert_job("discarded", queue="mailers", args={"to": "b@example.com"}),
        insert_job("completed", queue="mailers", args={"to": "c@example.com"}),
    ]


# enforcement -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "env", "fragment"),
    [
        (["--reason", REASON, "--yes"], {}, "an actor is required"),
        (["--actor", "alice", "--yes"], {}, "a reason is required"),
        (["--actor", "alice", "--reason", "too short"[:7], "--yes"], {}, "reason is too short"),
        (["--actor", "alice", "--reason", REASON], {}, "--yes is required"),
        (["--reason", REASON], {"POWERTOOLS_ACTOR": "alice"}, "--yes is required"),
    ],
)
@pytest.mark.parametrize("command", [["retry-all", "--state", "discarded"], ["retry", "ID"]])
def test_execution_needs_actor_reason_and_yes(
    installed: Settings,
    conn: psycopg.Connection,
    seeded: list[int],
    command: list[str],
    extra: list[str],
    env: dict[str, str | None],
    fragment: str,
) -> None:
    args = ["ops", *[str(seeded[0]) if a == "ID" else a for a in command], *extra]
    run = _run(installed, *args, env=env)
    assert run.exit_code == 2
    assert fragment in one_line_error(run)
    assert run.stdout == ""
    assert audit_rows(conn, installed.prefix) == []
    assert job_row(conn, installed.prefix, seeded[0])["state"] == "discarded"


def test_actor_from_environment_and_yes_executes(
    installed: Settings, conn: psycopg.Connection, seeded: list[int]
) -> None:
    run = _run(
        installed,
        "ops",
        "retry",
        str(seeded[1]),
        "--reason",
        REASON,
        "--yes",
        env={"POWERTOOLS_ACTOR": "env-alice"},
    )
    assert run.exit_code == 0, run.output
    (event,) = audit_rows(conn, installed.prefix)
    assert event["actor"] == "env-alice"


# bulk: preview, execute, refuse ---------------------------------------------------------------


def test_dry_run_ansi_and_json(
    installed: Settings,
    conn: psycopg.Connection,
    seeded: list[int],
    snapshot: SnapshotAssertion,
    snapshot_json: SnapshotAssertion,
) -> None:
    args = ["ops", "retry-all", "--queue", "mailers", "--dry-run", "--app", "tests.ops.test_pure"]
    ansi = _run(installed, *args)
    assert ansi.exit_code == 0, ansi.output
    assert "tok_live_1" not in ansi.stdout and "k1" not in ansi.stdout
    assert _text(ansi, installed) == snapshot(name="ansi")
    as_json = _run(installed, *args, "--format", "json")
    assert as_json.exit_code == 0
    assert "tok_live_1" not in as_json.stdout and '"k1"' not in as_json.stdout
    assert _json(as_json) == snapshot_json(name="json")
    assert audit_rows(conn, installed.prefix) == []


def test_execute_json_and_ansi(
    installed: Settings,
    conn: psycopg.Connection,
    seeded: list[int],
    snapshot: SnapshotAssertion,
    snapshot_json: SnapshotAssertion,
) -> None:
    common = ["--actor", "alice", "--reason", REASON, "--yes", "--batch-size", "2"]
    run = _run(
        installed,
        "ops",
        "retry-all",
        "--id",
        str(seeded[0]),
        "--id",
        str(seeded[3]),
        "--state",
        "discarded",
        *common,
        "--format",
        "json",
    )
    assert run.exit_code == 0, run.output
    assert _json(run) == snapshot_json(name="json")
    ansi = _run(
        installed,
        "ops",
        "discard-all",
        "--queue",
        "mailers",
        "--state",
        "available",
        "--state",
        "completed",
        *common,
    )
    assert ansi.exit_code == 0, ansi.output
    assert _text(ansi, installed) == snapshot(name="ansi")


def test_stale_preview_token_is_refused(
    installed: Settings, conn: psycopg.Connection, seeded: list[int]
) -> None:
    preview = _run(
        installed, "ops", "retry-all", "--queue", "mailers", "--dry-run", "--format", "json"
    )
    token = json.loads(preview.stdout)["preview"]["preview_token"]
    conn.execute(
        sql.SQL("UPDATE {}.oban_jobs SET state = 'available' WHERE id = %s").format(
            sql.Identifier(installed.prefix)
        ),
        (seeded[2],),
    )
    run = _run(
        installed,
        "ops",
        "retry-all",
        "--queue",
        "mailers",
        "--preview-token",
        token,
        "--actor",
        "alice",
        "--reason",
        REASON,
        "--yes",
    )
    assert run.exit_code == 2
    assert "selection changed since preview" in one_line_error(run)
    assert audit_rows(conn, installed.prefix) == []


def test_failed_job_exits_1(
    installed: Settings, conn: psycopg.Connection, seeded: list[int]
) -> None:
    schema = sql.Identifier(installed.prefix)
    conn.execute(
        sql.SQL(
            "CREATE FUNCTION {}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'read-only job'; END $$"
        ).format(schema)
    )
    conn.execute(
        sql.SQL(
            "CREATE TRIGGER refuse BEFORE UPDATE ON {}.oban_jobs FOR EACH ROW "
            "WHEN (OLD.id = {}) EXECUTE FUNCTION {}.refuse()"
        ).format(schema, sql.Literal(seeded[1]), schema)
    )
    run = _run(
        installed,
        "ops",
        "retry-all",
        "--state",
        "discarded",
        "--actor",
        "alice",
        "--reason",
        REASON,
        "--yes",
        "--format",
        "json",
    )
    assert run.exit_code == 1
    data = json.loads(run.stdout)
    assert data["done"] == [seeded[0], seeded[2]]
    assert [f["id"] for f in data["failed"]] == [seeded[1]]
    assert "read-only job" in data["failed"][0]["error"]


def test_single_illegal_state_is_skipped_not_an_error(
    installed: Settings, conn: psycopg.Connection, seeded: list[int]
) -> None:
    run = _run(
        installed,
        "ops",
        "discard",
        str(seeded[3]),
        "--actor",
        "alice",
        "--reason",
        REASON,
        "--yes",
        "--format",
        "json",
    )
    assert run.exit_code == 0
    data = json.loads(run.stdout)
    assert data["skipped"] == [
        {"id": seeded[3], "reason": "illegal_state", "state": "completed", "now_state": None}
    ]
    missing = _run(
        installed, "ops", "discard", "999999", "--actor", "alice", "--reason", REASON, "--yes"
    )
    assert missing.exit_code == 2
    assert "not found" in one_line_error(missing)


# reading ------------------------------------------------------------------------------------


def test_list_show_and_audit_snapshots(
    installed: Settings,
    seeded: list[int],
    snapshot: SnapshotAssertion,
    snapshot_json: SnapshotAssertion,
) -> None:
    app = ["--app", "tests.ops.test_pure"]
    executed = _run(
        installed, "ops", "retry", str(seeded[0]), "--actor", "alice", "--reason", REASON, "--yes"
    )
    assert executed.exit_code == 0

    listing = _run(installed, "ops", "list", "--queue", "mailers", "--limit", "3", *app)
    assert listing.exit_code == 0, listing.output
    assert _text(listing, installed) == snapshot(name="list_ansi")
    listing_json = _run(installed, "ops", "list", "--limit", "3", "--format", "json", *app)
    assert _json(listing_json) == snapshot_json(name="list_json")

    show = _run(installed, "ops", "show", str(seeded[0]), *app)
    assert show.exit_code == 0, show.output
    assert _text(show, installed) == snapshot(name="show_ansi")
    show_json = _run(installed, "ops", "show", str(seeded[0]), "--format", "json", *app)
    assert _json(show_json) == snapshot_json(name="show_json")
    for run in (listing, listing_json, show, show_json):
        assert "tok_live_1" not in run.stdout and '"pw"' not in run.stdout
        assert '"k1"' not in run.stdout

    audit = _run(installed, "audit", "list", "--actor", "alice")
    assert audit.exit_code == 0, audit.output
    assert _text(audit, installed) == snapshot(name="audit_ansi")
    audit_json = _run(installed, "audit", "list", "--job", str(seeded[0]), "--format", "json")
    assert _json(audit_json) == snapshot_json(name="audit_json")

    bad = _run(installed, "audit", "list", "--since", "yesterday")
    assert bad.exit_code == 2
    assert "invalid duration" in one_line_error(bad)


def test_on_a_terminal_the_preview_is_shown_and_confirmed(
    installed: Settings,
    conn: psycopg.Connection,
    seeded: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from powertools_cli.commands import ops as ops_cli

    monkeypatch.setattr(ops_cli, "_stdin_is_tty", lambda: True)
    args = [
        "ops",
        "retry-all",
        "--state",
        "discarded",
        "--actor",
        "alice",
        "--reason",
        REASON,
        *_conn_args(installed),
    ]
    env: dict[str, str | None] = {name: None for name in CONFIG_VARS} | STABLE_ENV
    declined = CliRunner().invoke(app, args, input="n\n", env=env)
    assert declined.exit_code == 2
    assert "would act on 3 of 3" in declined.stderr
    assert "aborted; nothing was changed" in declined.stderr
    assert audit_rows(conn, installed.prefix) == []

    accepted = CliRunner().invoke(app, args, input="y\n", env=env)
    assert accepted.exit_code == 0, accepted.output
    assert "3 retried" in accepted.stdout
    assert len(audit_rows(conn, installed.prefix, action="ops.retry")) == 3


def test_resume_refuses_unknown_runs_and_other_filters(
    installed: Settings, seeded: list[int]
) -> None:
    common = ["--actor", "alice", "--reason", REASON, "--yes"]
    unknown = _run(
        installed, "ops", "retry-all", "--resume", "00000000-0000-0000-0000-000000000000", *common
    )
    assert unknown.exit_code == 2
    assert "no run" in one_line_error(unknown)
    first = _run(
        installed,
        "ops",
        "retry-all",
        "--state",
        "discarded",
        "--id",
        str(seeded[0]),
        *common,
        "--format",
        "json",
    )
    run_id = json.loads(first.stdout)["run_id"]
    other = _run(installed, "ops", "retry-all", "--state", "discarded", "--resume", run_id, *common)
    assert other.exit_code == 2
    assert "used different filters" in one_line_error(other)
    wrong_action = _run(installed, "ops", "cancel-all", "--resume", run_id, *common)
    assert wrong_action.exit_code == 2
    assert "not a cancel run" in one_line_error(wrong_action)


def test_console_script_enforces_yes_and_prints_one_json_object(
    installed: Settings, conn: psycopg.Connection, seeded: list[int]
) -> None:
    base = ["ops", "retry-all", "--state", "discarded", "--actor", "alice", "--reason", REASON]
    refused = run_process([*base, *_conn_args(installed)])
    assert refused.exit_code == 2
    assert "--yes is required" in one_line_error(refused)
    assert audit_rows(conn, installed.prefix) == []
    done = run_process([*base, "--yes", "--format", "json", *_conn_args(installed)])
    assert done.exit_code == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["schema_version"], data["command"]) == (1, "ops retry-all")
    assert data["done"] == seeded[:3]
