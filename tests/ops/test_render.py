"""ANSI rendering of results that are awkward to produce through the CLI (pure, no database)."""

from __future__ import annotations

import io
import uuid

from rich.console import Console
from syrupy.assertion import SnapshotAssertion

from powertools_cli.render.ansi import render_ansi
from powertools_core.ops.results import ActionResult, FailedJob, SkippedJob, Summary


def _render(result: ActionResult) -> str:
    buffer = io.StringIO()
    render_ansi(result, Console(file=buffer, width=100, no_color=True, highlight=False))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def test_interrupted_run_with_failures_and_many_skips(snapshot: SnapshotAssertion) -> None:
    result = ActionResult(
        command="ops cancel-all",
        action="cancel",
        run_id=uuid.UUID(int=7),
        actor="alice",
        reason="bad deploy rolled back",
        filter={"states": ["available"], "queue": "imports"},
        plan_hash="0" * 64,
        interrupted=True,
        summary=Summary(
            selected=60,
            done=10,
            skipped=25,
            failed=1,
            not_attempted=24,
            skipped_by_reason={"changed_since_preview": 24, "locked": 1},
            chunks=4,
            seconds=1.25,
            longest_chunk_seconds=0.5,
        ),
        done=list(range(1, 11)),
        skipped=[
            SkippedJob(
                id=100 + n, reason="changed_since_preview", state="available", now_state="completed"
            )
            for n in range(24)
        ]
        + [SkippedJob(id=200, reason="locked", state="available", now_state="available")],
        failed=[FailedJob(id=300, error="job 300 is protected", state="available")],
    )
    assert result.exit_status() == 1
    text = _render(result)
    assert "… and 5 more (--format json lists all)" in text
    assert f"--resume {uuid.UUID(int=7)}" in text
    assert text == snapshot
