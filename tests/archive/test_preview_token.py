"""Archive previews: sample rows, counts by worker, and the preview token that pins the plan.

A token from ``--dry-run`` executes exactly the previewed rows (for ``run``/``prune`` the cutoffs
of the preview's instant), refuses with exit 2 and changes nothing when a row joined or left the
selection since, and a malformed token is one line, exit 2, before anything is read.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from powertools_cli.app import app
from powertools_core.archive import plan
from powertools_core.config import Settings
from powertools_core.db.identifiers import qualify
from powertools_core.errors import InvalidInput
from powertools_core.ops.errors import PreviewDrifted
from tests.archive.conftest import (
    REASON,
    audit_rows,
    cli,
    conn_args,
    ids_in,
    insert_job,
    rows,
    snapshot_tables,
)
from tests.support.cli import CONFIG_VARS, STABLE_ENV, one_line_error

EXECUTE = ["--actor", "alice", "--reason", REASON, "--yes"]
TOKEN_RE = re.compile(r"^[0-9a-f]{16}@\d{8}T\d{6}Z$")


def _json(settings: Settings, *args: str) -> dict[str, Any]:
    run = cli(settings, *args, "--format", "json")
    assert run.exit_code == 0, run.output
    data: dict[str, Any] = json.loads(run.stdout)
    return data


def _as_of(preview: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(preview["as_of"].replace("Z", "+00:00")).replace(tzinfo=None)


def _ids_older_than(conn: psycopg.Connection[Any], prefix: str, cutoff: datetime) -> set[int]:
    found = rows(
        conn,
        prefix,
        "SELECT id FROM {prefix}.oban_jobs WHERE state = 'completed' AND completed_at < %s",
        cutoff,
    )
    return {r["id"] for r in found}


def _wait_for_the_next_second(conn: psycopg.Connection[Any], after: datetime) -> None:
    """Cutoffs are whole seconds: poll the server's clock (deadline 5s) until it is past
    ``after``'s second, so a cutoff computed now differs from the preview's."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        row = conn.execute("SELECT date_trunc('second', timezone('UTC', now()))").fetchone()
        assert row is not None
        if row[0] > after:
            return
        time.sleep(0.05)
    raise AssertionError("the database clock did not move past the preview's second")


# the preview ------------------------------------------------------------------------------------


def test_preview_lists_counts_by_worker_a_redacted_sample_oldest_first_and_a_token(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    ages = [3, 9, 5, 8, 2, 7, 4]  # days; seven jobs, the sample shows five
    ids = {
        age: insert_job(
            db,
            p,
            state="completed",
            age=timedelta(days=age),
            worker="app.workers.Report" if age % 2 else "app.workers.Mailer",
            args=Jsonb({"to": "a@example.com", "api_key": "sk_live_secret"}),
        )
        for age in ages
    }
    data = _json(installed, "run", "--older-than", "1d", "--dry-run")
    assert data["total"] == 7
    assert data["by_state"] == {"completed": 7}
    assert data["by_queue"] == {"default": 7}
    assert data["by_worker"] == {"app.workers.Report": 4, "app.workers.Mailer": 3}
    # the first rows the run takes: oldest finished first
    assert [r["id"] for r in data["sample"]] == [ids[a] for a in sorted(ages, reverse=True)[:5]]
    assert all(r["args"]["to"] == "a@example.com" for r in data["sample"])
    assert "sk_live_secret" not in json.dumps(data)
    assert TOKEN_RE.match(data["preview_token"])
    assert data["plan_hash"].startswith(data["preview_token"].split("@")[0])
    as_of = _as_of(data)
    assert as_of.microsecond == 0
    assert data["preview_token"].endswith("@" + as_of.strftime("%Y%m%dT%H%M%SZ"))
    cutoff = datetime.fromisoformat(data["filter"]["cutoffs"]["completed"].replace("Z", ""))
    assert cutoff == as_of - timedelta(days=1)

    ansi = cli(installed, "run", "--older-than", "1d", "--dry-run", env={"COLUMNS": "80"})
    assert "by worker: app.workers.Report 4, app.workers.Mailer 3" in ansi.stdout
    assert "sample: 5 of 7, oldest finished first" in ansi.stdout
    assert "sk_live_secret" not in ansi.stdout
    token = re.search(r"preview token: (\S+)", ansi.stdout)
    assert token is not None and TOKEN_RE.match(token.group(1))


def test_the_same_selection_gives_the_same_token_and_a_changed_one_another(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    insert_job(db, p, state="discarded", age=timedelta(days=60))
    selection = ["restore", "--state", "discarded"]
    assert cli(installed, "run", *EXECUTE).exit_code == 0
    first = _json(installed, *selection, "--dry-run")
    assert re.fullmatch(r"[0-9a-f]{16}", first["preview_token"]) and first["as_of"] is None
    assert _json(installed, *selection, "--dry-run")["preview_token"] == first["preview_token"]
    # the batch size is how the run is chunked, not what it moves
    again = _json(installed, *selection, "--batch-size", "1", "--dry-run")
    assert again["preview_token"] == first["preview_token"]
    other = _json(installed, "restore", "--state", "discarded", "--queue", "nope", "--dry-run")
    assert other["preview_token"] != first["preview_token"]


# executing with the token -----------------------------------------------------------------------


def test_run_with_the_token_moves_exactly_the_rows_old_enough_at_the_preview(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    for age in (2, 3, 40):
        insert_job(db, p, state="completed", age=timedelta(hours=age))
    preview = _json(installed, "run", "--older-than", "1h", "--dry-run")
    as_of = _as_of(preview)
    previewed = _ids_older_than(db, p, as_of - timedelta(hours=1))
    assert len(previewed) == preview["total"] == 3
    # finished exactly at the preview's cutoff: too young then, old enough a moment later
    borderline = insert_job(
        db, p, state="completed", age=timedelta(0), completed_at=as_of - timedelta(hours=1)
    )

    _wait_for_the_next_second(db, as_of)  # so now's cutoff is past the borderline job
    token = preview["preview_token"]
    done = _json(installed, "run", "--older-than", "1h", "--preview-token", token, *EXECUTE)
    assert done["moved"] == 3 and done["preview_token"] == token
    assert done["run"]["filter"]["cutoffs"] == preview["filter"]["cutoffs"]
    assert ids_in(db, p, "powertools_job_archive") == previewed
    assert borderline in ids_in(db, p, "oban_jobs")
    closing = [e for e in audit_rows(db, p) if e["action"] == "archive.run"]
    assert closing[-1]["meta"]["preview_token"] == token

    # without a token the cutoff is now's: the borderline job has aged past it
    later = _json(installed, "run", "--older-than", "1h", *EXECUTE)
    assert later["moved"] == 1 and later["preview_token"] is None
    assert borderline in ids_in(db, p, "powertools_job_archive")


@pytest.mark.parametrize("change", ["added", "removed"])
def test_run_refuses_when_the_selection_drifted_and_changes_nothing(
    installed: Settings, db: psycopg.Connection[Any], change: str
) -> None:
    p = installed.prefix
    ids = [insert_job(db, p, state="completed", age=timedelta(days=d)) for d in (10, 20)]
    token = _json(installed, "run", "--older-than", "7d", "--dry-run")["preview_token"]
    if change == "added":
        insert_job(db, p, state="cancelled", age=timedelta(days=30))
    else:  # an operator retried one of them meanwhile
        db.execute(
            qualify("UPDATE {prefix}.oban_jobs SET state = 'available' WHERE id = %s", p),
            (ids[0],),
        )
    before = snapshot_tables(db, p)
    run = cli(installed, "run", "--older-than", "7d", "--preview-token", token, *EXECUTE)
    assert run.exit_code == 2
    message = one_line_error(run)
    assert f"the selection changed since preview {token}" in message
    assert ("now holds 3 jobs" if change == "added" else "now holds 1 jobs") in message
    assert "nothing was changed" in message
    assert run.stdout == ""
    assert snapshot_tables(db, p) == before
    # checking a token with --dry-run refuses the same way
    dry = cli(installed, "run", "--older-than", "7d", "--preview-token", token, "--dry-run")
    assert dry.exit_code == 2 and "selection changed" in one_line_error(dry)


def test_restore_with_the_token_restores_exactly_the_preview_or_refuses(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    ids = [insert_job(db, p, state="discarded", age=timedelta(days=60)) for _ in range(3)]
    assert cli(installed, "run", *EXECUTE).exit_code == 0
    token = _json(installed, "restore", "--state", "discarded", "--dry-run")["preview_token"]
    # one of them is restored by someone else: the plan no longer holds
    assert cli(installed, "restore", str(ids[0]), *EXECUTE).exit_code == 0
    before = snapshot_tables(db, p)
    refused = cli(installed, "restore", "--state", "discarded", "--preview-token", token, *EXECUTE)
    assert refused.exit_code == 2
    assert "now holds 2 archived jobs" in one_line_error(refused)
    assert snapshot_tables(db, p) == before

    fresh = _json(installed, "restore", "--state", "discarded", "--dry-run")
    assert fresh["preview_token"] != token and fresh["total"] == 2
    done = _json(
        installed,
        "restore",
        "--state",
        "discarded",
        "--preview-token",
        fresh["preview_token"],
        *EXECUTE,
    )
    assert done["moved"] == 2 and done["preview_token"] == fresh["preview_token"]
    assert set(ids) <= ids_in(db, p, "oban_jobs")


def test_prune_with_the_token_deletes_exactly_the_preview_or_refuses(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    p = installed.prefix
    ids = [insert_job(db, p, state="completed", age=timedelta(days=60)) for _ in range(3)]
    assert cli(installed, "run", *EXECUTE).exit_code == 0
    age = "UPDATE {prefix}.powertools_job_archive SET archived_at = archived_at - %s WHERE id = %s"
    for days, job_id in zip((100, 200), ids, strict=False):
        db.execute(qualify(age, p), (timedelta(days=days), job_id))
    token = _json(installed, "prune", "--older-than", "90d", "--dry-run")["preview_token"]
    assert TOKEN_RE.match(token)
    db.execute(qualify(age, p), (timedelta(days=300), ids[2]))  # now old enough too
    before = snapshot_tables(db, p)
    refused = cli(installed, "prune", "--older-than", "90d", "--preview-token", token, *EXECUTE)
    assert refused.exit_code == 2 and "now holds 3 archived jobs" in one_line_error(refused)
    assert snapshot_tables(db, p) == before

    db.execute(qualify(age, p), (timedelta(days=-300), ids[2]))  # back as it was
    done = _json(installed, "prune", "--older-than", "90d", "--preview-token", token, *EXECUTE)
    assert done["moved"] == 2
    assert ids_in(db, p, "powertools_job_archive") == {ids[2]}


def test_audit_archive_with_the_token(installed: Settings, db: psycopg.Connection[Any]) -> None:
    p = installed.prefix
    insert = (
        "INSERT INTO {prefix}.powertools_audit_events (at, actor, action, target_type, result) "
        "VALUES (timezone('UTC', now()) - %s, 'carol', 'ops.retry', 'job', 'ok')"
    )
    db.execute(qualify(insert, p), (timedelta(days=400),))
    preview = _json(installed, "run", "--audit", "--older-than", "365d", "--dry-run")
    assert [r["action"] for r in preview["sample"]] == ["ops.retry"]
    token = preview["preview_token"]
    db.execute(qualify(insert, p), (timedelta(days=500),))
    refused = cli(
        installed, "run", "--audit", "--older-than", "365d", "--preview-token", token, *EXECUTE
    )
    assert refused.exit_code == 2 and "now holds 2 audit events" in one_line_error(refused)
    fresh = _json(installed, "run", "--audit", "--older-than", "365d", "--dry-run")
    done = _json(
        installed,
        "run",
        "--audit",
        "--older-than",
        "365d",
        "--preview-token",
        fresh["preview_token"],
        *EXECUTE,
    )
    assert done["moved"] == 2


# bad tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "token", "fragment"),
    [
        (["run"], "not-a-token", "invalid --preview-token 'not-a-token'"),
        (["run"], "abc", "invalid --preview-token 'abc'"),
        (["run"], "0123456789abcdef", "has no @time part"),
        (["run"], "0123456789abcdef@yesterday", "invalid time 'yesterday'"),
        (["prune", "--older-than", "90d"], "0123456789abcdef", "has no @time part"),
        (["restore", "1"], "0123456789abcdef@20260105T101112Z", "has an @time part"),
    ],
)
def test_a_malformed_token_is_one_line_exit_2_and_changes_nothing(
    installed: Settings,
    db: psycopg.Connection[Any],
    args: list[str],
    token: str,
    fragment: str,
) -> None:
    insert_job(db, installed.prefix, state="completed")
    before = snapshot_tables(db, installed.prefix)
    for extra in (EXECUTE, ["--dry-run"]):
        run = cli(installed, *args, "--preview-token", token, *extra)
        assert run.exit_code == 2
        assert fragment in one_line_error(run)
        assert run.stdout == ""
    assert snapshot_tables(db, installed.prefix) == before


def test_a_well_formed_token_of_another_plan_is_refused(
    installed: Settings, db: psycopg.Connection[Any]
) -> None:
    insert_job(db, installed.prefix, state="completed")
    before = snapshot_tables(db, installed.prefix)
    run = cli(installed, "run", "--preview-token", "0123456789abcdef@20260105T101112Z", *EXECUTE)
    assert run.exit_code == 2
    assert "the selection changed since preview" in one_line_error(run)
    assert snapshot_tables(db, installed.prefix) == before


# the terminal confirmation ----------------------------------------------------------------------


def test_the_confirmation_pins_the_plan_it_showed(
    installed: Settings, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from powertools_cli.commands import archive as archive_cli

    p = installed.prefix
    insert_job(db, p, state="completed", age=timedelta(days=60))
    monkeypatch.setattr(archive_cli, "_stdin_is_tty", lambda: True)
    args = ["archive", "run", "--actor", "alice", "--reason", REASON, *conn_args(installed)]
    env: dict[str, str | None] = {name: None for name in CONFIG_VARS} | STABLE_ENV

    def answer_yes_after_a_job_lands(*a: Any, **k: Any) -> bool:
        # while the operator reads the prompt, another old job appears
        insert_job(db, p, state="completed", age=timedelta(days=50))
        return True

    monkeypatch.setattr(archive_cli.typer, "confirm", answer_yes_after_a_job_lands)
    before = snapshot_tables(db, p)
    drifted = CliRunner().invoke(app, args, env=env)
    assert drifted.exit_code == 2
    assert "would archive 1 job" in drifted.stderr
    assert "preview token:" in drifted.stderr
    assert "the selection changed since preview" in drifted.stderr
    after = snapshot_tables(db, p)
    assert len(after["oban_jobs"]) == 2
    assert after["powertools_job_archive"] == before["powertools_job_archive"] == []
    assert after["powertools_archive_runs"] == [] and after["powertools_audit_events"] == []

    monkeypatch.setattr(archive_cli.typer, "confirm", lambda *a, **k: True)
    accepted = CliRunner().invoke(app, [*args, "--format", "json"], env=env)
    assert accepted.exit_code == 0, accepted.output
    data = json.loads(accepted.stdout)
    assert data["moved"] == 2 and TOKEN_RE.match(data["preview_token"])


# pure: tokens and plan hashes -------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1))
hashes = st.text("0123456789abcdef", min_size=64, max_size=64)


@given(hashes, instants)
def test_a_timed_token_round_trips_its_instant(hash_hex: str, when: datetime) -> None:
    token = plan.make_token(hash_hex, when)
    parsed = plan.parse_token(token.upper(), "archive")
    assert parsed.as_of == when.replace(microsecond=0)
    assert hash_hex.startswith(parsed.hash_prefix)
    plan.check_token(parsed, "archive", hash_hex, 1)  # matches: no error
    with pytest.raises(InvalidInput):
        plan.parse_token(token, "restore")


def test_plan_hash_covers_every_count_and_id_field() -> None:
    group = plan.PlanGroup(("completed", "default", "app.W"), 3, "6", 1, 3)
    base = plan.plan_hash("archive", {"cutoffs": {"completed": "x"}}, [group])
    variants = [
        plan.plan_hash("restore", {"cutoffs": {"completed": "x"}}, [group]),
        plan.plan_hash("archive", {"cutoffs": {"completed": "y"}}, [group]),
        plan.plan_hash("archive", {"cutoffs": {"completed": "x"}}, []),
        plan.plan_hash("archive", {"cutoffs": {"completed": "x"}}, [group], left_alone=[7]),
        plan.plan_hash("archive", {"cutoffs": {"completed": "x"}}, [group], not_found=[9]),
    ]
    for changed in (
        plan.PlanGroup(("completed", "default", "app.V"), 3, "6", 1, 3),
        plan.PlanGroup(("completed", "default", "app.W"), 4, "6", 1, 3),
        plan.PlanGroup(("completed", "default", "app.W"), 3, "7", 1, 3),
        plan.PlanGroup(("completed", "default", "app.W"), 3, "6", 2, 3),
        plan.PlanGroup(("completed", "default", "app.W"), 3, "6", 1, 4),
    ):
        variants.append(plan.plan_hash("archive", {"cutoffs": {"completed": "x"}}, [changed]))
    assert base not in variants and len(set(variants)) == len(variants)
    # the oldest row is shown, not pinned (ids pin the rows)
    shown = plan.PlanGroup(group.key, 3, "6", 1, 3, oldest=datetime(2026, 1, 1))
    assert plan.plan_hash("archive", {"cutoffs": {"completed": "x"}}, [shown]) == base
    parsed = plan.parse_token(plan.make_token(base, datetime(2026, 1, 1)), "archive")
    with pytest.raises(PreviewDrifted):
        plan.check_token(parsed, "archive", variants[0], 3)
