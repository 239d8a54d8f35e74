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
