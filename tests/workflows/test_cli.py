"""`powertools workflow list/show` through the CLI against real rows (syrupy snapshots)."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
from syrupy.assertion import SnapshotAssertion

from powertools_core.config import Settings
from powertools_core.workflows import Workflow, promote
from tests.support.cli import Run, invoke, normalise, one_line_error
from tests.workflows.app_wf import Step

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?")


def cli(settings: Settings, *args: str) -> Run:
    return invoke(
        [
            "workflow",
            *args,
            "--database-url",
            settings.database_url or "",
            "--prefix",
            settings.prefix,
        ]
    )


def seeded(settings: Settings, conn: psycopg.Connection[Any]) -> int:
    """A diamond with a cleanup step: a completed (2s), b retryable, c running."""
    s = settings.prefix
    wf = (
        Workflow("import-42")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .add("c", Step.new({}), deps=["a"])
        .add("d", Step.new({}), deps=["b", "c"])
        .add("cleanup", Step.new({}), deps=["d"], on_failure="continue")
        .insert(conn=conn, prefix=s)
    )
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed', attempt = 1, "
        "attempted_at = '2026-01-01 00:00:00', completed_at = '2026-01-01 00:00:02' "
        "WHERE id = %s",
        [wf.job_ids["a"]],
    )
    promote(conn, s, [wf.job_ids["a"]])
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'retryable', attempt = 1 WHERE id = %s",
        [wf.job_ids["b"]],
    )
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'executing', attempt = 1 WHERE id = %s",
        [wf.job_ids["c"]],
    )
    done = Workflow("done").add("only", Step.new({})).insert(conn=conn, prefix=s)
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed' WHERE id = %s", [done.job_ids["only"]]
    )
    return wf.id


def stable(settings: Settings, text: str) -> str:
    return TIME.sub("<time>", normalise(text, {settings.prefix: "<schema>"}))


def test_list_and_show_json(
    installed: Settings, conn: psycopg.Connection, snapshot: SnapshotAssertion
) -> None:
    wf_id = seeded(installed, conn)
    listed = cli(installed, "list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert [w["name"] for w in data["workflows"]] == ["done", "import-42"]
    assert stable(installed, listed.stdout) == snapshot(name="list")
    shown = cli(installed, "show", str(wf_id), "--format", "json")
    assert shown.exit_code == 0, shown.output
    steps = {s["name"]: s for s in json.loads(shown.stdout)["steps"]}
    assert steps["d"]["blocker"] == "waiting_on_retryable_dependency"
    assert steps["cleanup"]["blocker"] == "waiting_on_dependencies"
    assert steps["a"]["duration_s"] == 2.0
    assert stable(installed, shown.stdout) == snapshot(name="show")


def test_list_and_show_ansi(
    installed: Settings, conn: psycopg.Connection, snapshot: SnapshotAssertion
) -> None:
    wf_id = seeded(installed, conn)
    listed = cli(installed, "list", "--state", "running")
    assert listed.exit_code == 0, listed.output
    assert "import-42" in listed.stdout and "done" not in listed.stdout
    assert stable(installed, listed.stdout) == snapshot(name="list")
    shown = cli(installed, "show", str(wf_id))
    assert shown.exit_code == 0, shown.output
    assert stable(installed, shown.stdout) == snapshot(name="show")


def test_unknown_workflow_and_bad_state_are_one_line_errors(installed: Settings) -> None:
    missing = cli(installed, "show", "999")
    assert missing.exit_code == 2
    assert "workflow 999 not found" in one_line_error(missing)
    bad = cli(installed, "list", "--state", "sleeping")
    assert bad.exit_code == 2
    assert "unknown workflow state 'sleeping'" in one_line_error(bad)


WHY = ["--actor", "alice", "--reason", "testing workflow ops", "--yes"]


def job_states(conn: psycopg.Connection[Any], schema: str, wf_id: int) -> dict[str, str]:
    rows = conn.execute(
        f'SELECT s.name, j.state::text FROM "{schema}".powertools_workflow_steps s '
        f'JOIN "{schema}".oban_jobs j ON j.id = s.job_id WHERE s.workflow_id = %s',
        [wf_id],
    ).fetchall()
    return dict(rows)


def audit(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT actor, action, target_id, reason FROM "{schema}".powertools_audit_events '
        "WHERE action LIKE 'workflow.%%' ORDER BY id"
    ).fetchall()


def test_cancel_cascades_to_pending_steps_signals_executing_ones_and_is_audited(
    installed: Settings, database_url: str, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf_id = seeded(installed, conn)
    c_job = conn.execute(
        f'SELECT job_id FROM "{s}".powertools_workflow_steps WHERE workflow_id = %s '
        "AND name = 'c'",
        [wf_id],
    ).fetchone()
    assert c_job is not None
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "powertools.{s}.signal"')
        run = cli(installed, "cancel", str(wf_id), *WHY, "--format", "json")
        assert run.exit_code == 0, run.output
        notes = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert [json.loads(p) for p in notes] == [{"action": "cancel", "job_id": c_job[0]}]
    assert json.loads(run.stdout)["changed"] == {
        "b": "cancelled",
        "d": "cancelled",
        "cleanup": "cancelled",
    }
    assert job_states(conn, s, wf_id) == {
        "a": "completed",
        "b": "cancelled",
        "c": "executing",
        "d": "cancelled",
        "cleanup": "cancelled",
    }
    rows = audit(conn, s)
    assert rows[0] == ("alice", "workflow.cancel", str(wf_id), "testing workflow ops")
    assert sorted(r[1] for r in rows[1:]) == ["workflow.cancel_step"] * 3
    shown = json.loads(cli(installed, "show", str(wf_id), "--format", "json").stdout)
    assert shown["workflow"]["state"] == "cancelled"
    assert {st["name"]: st["blocker"] for st in shown["steps"]}["c"] == "cancel_requested"


def test_retry_of_a_failed_step_reopens_its_dependents(
    installed: Settings, conn: psycopg.Connection
) -> None:
    s = installed.prefix
    wf = (
        Workflow("retry-me")
        .add("a", Step.new({}))
        .add("b", Step.new({}), deps=["a"])
        .add("c", Step.new({}), deps=["b"])
        .insert(conn=conn, prefix=s)
    )
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'discarded', attempt = 3, discarded_at = now() "
        "WHERE id = %s",
        [wf.job_ids["a"]],
    )
    promote(conn, s, [wf.job_ids["a"]])
    assert job_states(conn, s, wf.id) == {"a": "discarded", "b": "cancelled", "c": "cancelled"}
    run = cli(installed, "retry", str(wf.id), "--step", "a", *WHY, "--format", "json")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["changed"] == {
        "a": "available",
        "b": "suspended",
        "c": "suspended",
    }
    assert job_states(conn, s, wf.id) == {"a": "available", "b": "suspended", "c": "suspended"}
    (max_attempts,) = conn.execute(
        f'SELECT max_attempts FROM "{s}".oban_jobs WHERE id = %s', [wf.job_ids["a"]]
    ).fetchone() or (None,)
    assert max_attempts == 4
    assert [r[1] for r in audit(conn, s)] == [
        "workflow.retry",
        "workflow.retry_step",
        "workflow.reopen_step",
        "workflow.reopen_step",
    ]
    # The reopened chain now runs on promotion like any other.
    conn.execute(
        f"UPDATE \"{s}\".oban_jobs SET state = 'completed' WHERE id = %s", [wf.job_ids["a"]]
    )
    assert promote(conn, s, [wf.job_ids["a"]]) == 1
    assert job_states(conn, s, wf.id)["b"] == "available"


def test_mutations_need_actor_reason_and_yes(installed: Settings, conn: psycopg.Connection) -> None:
    wf_id = seeded(installed, conn)
    no_yes = cli(installed, "cancel", str(wf_id), "--actor", "alice", "--reason", "long enough")
    assert no_yes.exit_code == 2 and "--yes is required" in one_line_error(no_yes)
    short = cli(installed, "retry", str(wf_id), "--actor", "alice", "--reason", "short", "--yes")
    assert short.exit_code == 2 and "too short" in one_line_error(short)
    unknown = cli(installed, "retry", str(wf_id), "--step", "ghost", *WHY)
    assert unknown.exit_code == 2 and "has no step 'ghost'" in one_line_error(unknown)
    assert audit(conn, installed.prefix) == []
