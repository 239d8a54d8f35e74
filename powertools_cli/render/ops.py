"""Terminal rendering of ``powertools ops`` results (JSON is the model itself)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console

from powertools_cli.render.ansi import key_values, renders, table
from powertools_core.ops.results import (
    ActionResult,
    AuditEntry,
    JobListResult,
    JobShowResult,
    JobSummary,
    PreviewResult,
)
from powertools_core.schema.oban import JOB_STATES

MAX_ROWS = 20
ARGS_WIDTH = 40

_REASONS = {
    "illegal_state": "not in a state this action applies to",
    "changed_since_preview": "changed since it was selected",
    "locked": "locked by another transaction (run again)",
}


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def short_when(value: datetime | None) -> str:
    return value.strftime("%m-%d %H:%M") if value is not None else "-"


def compact(value: Any, width: int = ARGS_WIDTH) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def counts_line(counts: dict[str, int]) -> str:
    """Non-zero states in Oban's order, then the total: ``discarded 12 · completed 1 (13)``."""
    shown = [f"{s} {counts[s]:,}" for s in JOB_STATES if counts.get(s)]
    return f"{' · '.join(shown) or 'no jobs'}  (total {sum(counts.values()):,})"


FREE_TEXT = ("args", "reason", "error", "why", "target", "worker", "queue")
"""Columns kept to one line in job and audit tables, cut in this order to fit the terminal
(``ops show ID`` has the whole job)."""


def grid(
    console: Console, headers: list[str], rows: list[list[Any]], *, title: str | None = None
) -> None:
    """A table whose short columns never wrap (long JSON is cut with an ellipsis instead)."""
    table(console, headers, rows, title=title, flex=FREE_TEXT)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def filter_text(value: dict[str, Any]) -> str:
    parts = []
    for key, item in value.items():
        if isinstance(item, list):
            item = ",".join(str(v) for v in item)
        elif isinstance(item, dict):
            item = json.dumps(item, sort_keys=True)
        parts.append(f"{key}={item}")
    return " ".join(parts) or "all jobs"


def _job_rows(jobs: list[JobSummary]) -> list[list[Any]]:
    return [
        [
            j.id,
            j.state,
            j.queue,
            j.worker.rsplit(".", 1)[-1],
            f"{j.attempt}/{j.max_attempts}",
            compact(j.args),
            short_when(j.inserted_at),
        ]
        for j in jobs
    ]


_JOB_HEADERS = ["id", "state", "queue", "worker", "attempt", "args", "inserted"]


@renders(JobListResult)
def _list(result: JobListResult, console: Console) -> None:
    console.print(f"filter: {filter_text(result.filter)}", markup=False)
    console.print(counts_line(result.counts), markup=False, style="bold")
    if not result.jobs:
        console.print("no jobs match", style="dim")
        return
    grid(console, _JOB_HEADERS, _job_rows(result.jobs))
    shown = f"{len(result.jobs):,} of {result.total:,}"
    if result.next_cursor:
        console.print(f"{shown}; next page: --cursor {result.next_cursor}", markup=False)
    else:
        console.print(f"{shown} shown", markup=False, style="dim")


def audit_rows(events: list[AuditEntry]) -> list[list[Any]]:
    rows = []
    for e in events:
        change = ""
        if isinstance(e.before, dict) and isinstance(e.after, dict):
            change = f"{e.before.get('state', '?')}→{e.after.get('state', '?')}"
        if e.target_type == "job_selection":
            target = f"run {str(e.run_id)[:8]}" if e.run_id else "selection"
        else:
            target = f"{e.target_type}:{e.target_id}" if e.target_id else e.target_type
        action = e.action if e.result == "ok" else f"{e.action} ({e.result})"
        at = e.at.strftime("%m-%d %H:%M")
        rows.append([e.id, at, e.actor, action, target, change, e.reason])
    return rows


AUDIT_HEADERS = ["id", "at", "actor", "action", "target", "change", "reason"]


@renders(JobShowResult)
def _show(result: JobShowResult, console: Console) -> None:
    job = result.job
    key_values(
        console,
        [
            ("job", job.id),
            ("state", job.state),
            ("queue", job.queue),
            ("worker", job.worker + ("" if job.worker_registered else "  (not registered here)")),
            ("attempt", f"{job.attempt} of {job.max_attempts}"),
            ("priority", job.priority),
            ("tags", ", ".join(job.tags)),
            ("attempted by", " / ".join(job.attempted_by or [])),
            ("inserted", when(job.inserted_at)),
            ("scheduled", when(job.scheduled_at)),
            ("attempted", when(job.attempted_at)),
            ("completed", when(job.completed_at)),
            ("discarded", when(job.discarded_at)),
            ("cancelled", when(job.cancelled_at)),
        ],
    )
    console.print("args", style="bold")
    console.print(json.dumps(job.args, indent=2, ensure_ascii=False), markup=False)
    if job.meta:
        console.print("meta", style="bold")
        console.print(json.dumps(job.meta, indent=2, ensure_ascii=False), markup=False)
    if job.errors:
        table(
            console,
            ["attempt", "at", "error"],
            [[e.attempt, e.at, e.error.strip()] for e in job.errors],
            title="errors",
        )
    if result.audit:
        grid(console, AUDIT_HEADERS, audit_rows(result.audit), title="audit")
    else:
        console.print("no audit events", style="dim")


def preview_lines(result: PreviewResult) -> list[str]:
    """The preview as plain lines (also shown before the confirmation prompt)."""
    p = result.preview
    verb = p.action
    lines = [
        f"dry run: {verb} would act on {p.would_act:,} of {_plural(p.total, 'selected job')}"
        + (
            f"; {p.would_skip:,} would be skipped ({_REASONS['illegal_state']})"
            if p.would_skip
            else ""
        ),
        f"filter: {filter_text(p.filter)}",
    ]
    if p.by_state:
        lines.append("by state: " + ", ".join(f"{k} {v:,}" for k, v in p.by_state.items()))
    if p.by_queue:
        lines.append("by queue: " + ", ".join(f"{k} {v:,}" for k, v in p.by_queue.items()))
    if p.by_worker:
        lines.append("by worker: " + ", ".join(f"{k} {v:,}" for k, v in p.by_worker.items()))
    lines.append(f"preview token: {p.preview_token}")
    return lines


@renders(PreviewResult)
def _preview(result: PreviewResult, console: Console) -> None:
    lines = preview_lines(result)
    console.print(lines[0], markup=False, style="bold")
    for line in lines[1:-1]:
        console.print(line, markup=False)
    if result.preview.sample:
        grid(console, _JOB_HEADERS, _job_rows(result.preview.sample), title="sample")
    console.print(lines[-1], markup=False)
    console.print(
        f"nothing was changed; to execute exactly this plan add "
        f"--preview-token {result.preview.preview_token} --actor NAME --reason TEXT",
        markup=False,
        style="dim",
    )


@renders(ActionResult)
def _action(result: ActionResult, console: Console) -> None:
    s = result.summary
    past = {"retry": "retried", "cancel": "cancelled", "discard": "discarded"}[result.action]
    head = f"{result.command}: {s.done:,} {past}, {s.skipped:,} skipped, {s.failed:,} failed"
    if result.interrupted:
        head += f"; interrupted with {s.not_attempted:,} not attempted"
    style = "red" if s.failed else ("yellow" if result.interrupted or s.skipped else "green")
    console.print(head, markup=False, style=style)
    key_values(
        console,
        [
            ("filter", filter_text(result.filter)),
            ("actor", result.actor),
            ("reason", result.reason),
            ("run", str(result.run_id)),
            (
                "skipped",
                ", ".join(f"{k} {v:,}" for k, v in s.skipped_by_reason.items()) or None,
            ),
            ("chunks", f"{s.chunks:,} (longest {s.longest_chunk_seconds:.3f}s)"),
            ("time", f"{s.seconds:.3f}s"),
        ],
    )
    if result.skipped:
        rows = [
            [j.id, j.reason, j.state, j.now_state, _REASONS.get(j.reason, "")]
            for j in result.skipped[:MAX_ROWS]
        ]
        table(
            console, ["id", "skipped", "state", "now", "why"], rows, title="skipped", flex=FREE_TEXT
        )
        if len(result.skipped) > MAX_ROWS:
            more = len(result.skipped) - MAX_ROWS
            console.print(f"… and {more:,} more (--format json lists all)", style="dim")
    if result.failed:
        rows = [[j.id, j.state, j.error] for j in result.failed[:MAX_ROWS]]
        table(console, ["id", "state", "error"], rows, title="failed", flex=FREE_TEXT)
        if len(result.failed) > MAX_ROWS:
            more = len(result.failed) - MAX_ROWS
            console.print(f"… and {more:,} more (--format json lists all)", style="dim")
    if result.interrupted:
        console.print(
            f"run the same command again to finish (add --resume {result.run_id} to skip every "
            "job this run already changed)",
            markup=False,
        )
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False, style="yellow")
