"""Terminal rendering of ``powertools archive`` results (JSON is the model itself).

Laid out for 80 columns: run ids are shortened to 8 characters (JSON has them in full), worker
names to their class name, times to UTC without fractions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console

from powertools_cli.render.ansi import key_values, renders, status_style, table
from powertools_core.archive.results import (
    ArchivedJob,
    ArchiveListResult,
    ArchivePreview,
    ArchiveRunResult,
    ArchiveRunsResult,
    ArchiveShowResult,
    Group,
    RunRecord,
)

MAX_IDS_SHOWN = 10
VALUE_WIDTH = 60

# kind -> (what the rows are, verb for a dry run, verb once done)
_KINDS: dict[str, tuple[str, str, str]] = {
    "archive": ("job", "archive", "archived"),
    "audit_archive": ("audit event", "archive", "archived"),
    "restore": ("job", "restore", "restored"),
    "prune": ("archived job", "permanently delete", "permanently deleted"),
    "audit_prune": ("archived audit event", "permanently delete", "permanently deleted"),
}


def ts(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds") + "Z"


def short_ts(moment: datetime | None) -> str:
    return moment.strftime("%m-%d %H:%M") if moment is not None else "-"


def short_id(run_id: Any) -> str:
    return str(run_id)[:8] if run_id is not None else "-"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _seconds(ms: int | float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f}s"


def _ids(values: Sequence[int], total: int | None = None) -> str:
    shown = ", ".join(str(i) for i in values[:MAX_IDS_SHOWN])
    more = (total if total is not None else len(values)) - min(len(values), MAX_IDS_SHOWN)
    return f"{shown} and {more:,} more" if more > 0 else shown


def _compact(value: Any, width: int = VALUE_WIDTH) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _full(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def filter_text(kind: str, value: dict[str, Any]) -> str:
    """The part of a run's filter a person chose (not the derived cutoffs or batch size)."""
    if kind == "archive":
        parts = [f"retention {value.get('retention') or '-'}"]
        if value.get("queues"):
            parts.append(f"queues {','.join(value['queues'])}")
    elif kind == "audit_archive":
        parts = [f"audit events older than {value.get('older_than', '-')}"]
    elif kind in ("prune", "audit_prune"):
        parts = [f"archived longer ago than {value.get('older_than', '-')}"]
    else:
        parts = []
        for key in ("ids", "run_id", "states", "queues", "workers"):
            item = value.get(key)
            if item:
                text = _ids(item) if key == "ids" else item
                parts.append(f"{key} {','.join(text) if isinstance(text, list) else text}")
    if value.get("source") == "duty":
        parts.append("(leader's retention duty)")
    return "; ".join(parts) or "-"


def _group_table(
    console: Console, kind: str, groups: Sequence[Group], *, oldest: bool = False
) -> None:
    if not groups:
        return
    if kind in ("audit_archive", "audit_prune"):
        headers = ["action", "events"]
        rows: list[list[Any]] = [[g.action, f"{g.count:,}"] for g in groups]
    else:
        headers = ["state", "queue", "jobs"]
        rows = [[g.state, g.queue, f"{g.count:,}"] for g in groups]
    if oldest:
        headers.append("oldest (archived)" if kind in ("prune", "restore") else "oldest")
        for row, g in zip(rows, groups, strict=True):
            row.append(ts(g.oldest))
    table(console, headers, rows)


def _conflict_lines(console: Console, kind: str, conflicts: list[int], count: int) -> None:
    if not count:
        return
    if kind == "restore":
        text = f"refused {_plural(count, 'id')} already in oban_jobs (left in the archive)"
    else:
        text = f"left {_plural(count, 'id')} alone: archived earlier and in oban_jobs again"
    console.print(f"{text}: {_ids(conflicts, count)}", markup=False, style="yellow")


# kind -> the order of the sample (the order the run takes rows in, where it has one)
_SAMPLE_ORDER: dict[str, str] = {
    "archive": "oldest finished first",
    "audit_archive": "oldest first",
    "restore": "lowest id first",
    "prune": "oldest archived first",
    "audit_prune": "oldest archived first",
}


def _sample_table(console: Console, result: ArchivePreview) -> None:
    if not result.sample:
        return
    title = f"sample: {len(result.sample)} of {result.total:,}, {_SAMPLE_ORDER[result.kind]}"
    if result.kind in ("audit_archive", "audit_prune"):
        headers = ["id", "at", "actor", "action", "target"]
        rows: list[list[Any]] = [
            [
                r.id,
                short_ts(r.at),
                r.actor,
                r.action,
                f"{r.target_type}:{r.target_id}" if r.target_id else r.target_type,
            ]
            for r in result.sample
        ]
        table(console, headers, rows, title=title, flex=["target", "actor"])
        return
    when = "finished" if result.kind == "archive" else "archived"
    headers = ["id", "state", "queue", "worker", when, "args"]
    rows = [
        [
            r.id,
            r.state,
            r.queue,
            (r.worker or "-").rsplit(".", 1)[-1],
            short_ts(r.finished_at if result.kind == "archive" else r.archived_at),
            _compact(r.args),
        ]
        for r in result.sample
    ]
    table(console, headers, rows, title=title, flex=["args"])


def preview_body(result: ArchivePreview, console: Console) -> None:
    """The preview without the closing hint (also shown before the confirmation prompt)."""
    what, verb, _ = _KINDS[result.kind]
    console.print(
        f"dry run: would {verb} {_plural(result.total, what)}; nothing was changed",
        markup=False,
        style="bold",
    )
    console.print(f"filter: {filter_text(result.kind, result.filter)}", markup=False)
    if result.as_of is not None:
        console.print(
            f"as of {ts(result.as_of)} (ages counted from here; the token pins it)", markup=False
        )
    _group_table(console, result.kind, result.groups, oldest=True)
    if result.by_worker:
        console.print(
            "by worker: " + ", ".join(f"{k} {v:,}" for k, v in result.by_worker.items()),
            markup=False,
        )
    _conflict_lines(console, result.kind, result.conflicts, result.conflict_count)
    if result.not_found:
        console.print(f"not in the archive: {_ids(result.not_found)}", markup=False, style="yellow")
    _sample_table(console, result)
    console.print(f"preview token: {result.preview_token}", markup=False)


@renders(ArchivePreview)
def _preview(result: ArchivePreview, console: Console) -> None:
    preview_body(result, console)
    console.print(
        f"to execute exactly this plan add --preview-token {result.preview_token} "
        "--actor NAME --reason TEXT",
        markup=False,
        style="dim",
    )


@renders(ArchiveRunResult)
def _run(result: ArchiveRunResult, console: Console) -> None:
    what, _, done = _KINDS[result.kind]
    run = result.run
    headline = (
        f"{done} {_plural(result.moved, what)} in {_plural(result.chunks, 'chunk')}, "
        f"{_seconds(result.duration_ms)} ({result.rows_per_s:,.0f} rows/s)"
    )
    console.print(headline, markup=False, style="bold")
    console.print(f"run {run.id} {run.status}", markup=False, style=status_style(run.status))
    console.print(f"by {run.actor}: {run.reason or '-'}", markup=False)
    console.print(f"filter: {filter_text(result.kind, run.filter)}", markup=False)
    _group_table(console, result.kind, result.groups)
    if run.status == "interrupted":
        console.print(
            "interrupted after the last committed chunk; run the same command again to finish "
            "(nothing was lost or done twice)",
            markup=False,
            style="yellow",
        )
    _conflict_lines(console, result.kind, result.conflicts, result.conflict_count)
    if result.not_found:
        console.print(f"not in the archive: {_ids(result.not_found)}", markup=False, style="yellow")
    if result.preview_token:
        console.print(
            f"plan of preview {result.preview_token} (checked before the first chunk)",
            markup=False,
            style="dim",
        )
    for orphan in result.interrupted_runs:
        console.print(
            f"earlier run {orphan} had died mid-run; marked interrupted",
            markup=False,
            style="dim",
        )


def _job_rows(jobs: Sequence[ArchivedJob]) -> list[list[Any]]:
    return [
        [
            j.id,
            j.state,
            j.queue,
            j.worker.rsplit(".", 1)[-1],
            f"{j.attempt}/{j.max_attempts}",
            short_ts(j.archived_at),
            short_id(j.archive_run_id),
        ]
        for j in jobs
    ]


@renders(ArchiveListResult)
def _list(result: ArchiveListResult, console: Console) -> None:
    chosen = {k: v for k, v in result.filter.items() if v}
    console.print(f"filter: {filter_text('restore', chosen) if chosen else 'all'}", markup=False)
    if not result.jobs:
        console.print("no archived jobs match", style="dim")
        return
    table(
        console,
        ["id", "state", "queue", "worker", "attempt", "archived", "run"],
        _job_rows(result.jobs),
    )
    total = f"more than {result.total:,}" if result.total_capped else f"{result.total:,}"
    shown = f"{len(result.jobs):,} of {total} shown"
    if len(result.jobs) < result.total or result.total_capped:
        shown += f" (--limit {result.limit}; narrow with --state/--queue/--run)"
    console.print(shown, markup=False, style="dim")


def _run_rows(runs: Sequence[RunRecord]) -> list[list[Any]]:
    return [
        [
            short_id(r.id),
            r.kind,
            r.status,
            r.actor,
            f"{int(r.counts.get('moved', 0)):,}",
            short_ts(r.started_at),
            _seconds(r.counts.get("duration_ms")),
        ]
        for r in runs
    ]


@renders(ArchiveRunsResult)
def _runs(result: ArchiveRunsResult, console: Console) -> None:
    if not result.runs:
        console.print("no archive runs yet", style="dim")
        return
    table(
        console,
        ["run", "kind", "status", "actor", "rows", "started", "took"],
        _run_rows(result.runs),
    )


def _error_lines(errors: list[Any]) -> str:
    if not errors:
        return "-"
    lines = []
    for entry in errors:
        if isinstance(entry, dict):
            first = str(entry.get("error", "")).strip().splitlines()
            lines.append(
                f"attempt {entry.get('attempt', '?')} at {entry.get('at', '?')}: "
                f"{first[0] if first else ''}"
            )
        else:
            lines.append(_compact(entry))
    return "\n".join(lines)


def _show_job(job: ArchivedJob, run: RunRecord | None, console: Console) -> None:
    key_values(
        console,
        [
            ("id", job.id),
            ("state", job.state),
            ("queue", job.queue),
            ("worker", job.worker),
            ("args", _full(job.args)),
            ("meta", _full(job.meta)),
            ("tags", ", ".join(job.tags or []) or "-"),
            ("priority", job.priority),
            ("attempt", f"{job.attempt}/{job.max_attempts}"),
            ("attempted by", " ".join(job.attempted_by or []) or "-"),
            ("inserted", ts(job.inserted_at)),
            ("scheduled", ts(job.scheduled_at)),
            ("attempted", ts(job.attempted_at)),
            ("completed", ts(job.completed_at)),
            ("discarded", ts(job.discarded_at)),
            ("cancelled", ts(job.cancelled_at)),
            ("errors", _error_lines(job.errors)),
            ("archived", ts(job.archived_at)),
            (
                "archive run",
                f"{job.archive_run_id} ({run.kind} by {run.actor}: {run.reason or '-'})"
                if run is not None
                else job.archive_run_id,
            ),
        ],
    )


def _show_run(run: RunRecord, console: Console) -> None:
    what, _, done = _KINDS.get(run.kind, ("row", "move", "moved"))
    key_values(
        console,
        [
            ("run", run.id),
            ("kind", run.kind),
            ("status", run.status),
            ("actor", run.actor),
            ("reason", run.reason),
            ("filter", filter_text(run.kind, run.filter)),
            ("started", ts(run.started_at)),
            ("finished", ts(run.finished_at)),
            ("took", _seconds(run.counts.get("duration_ms"))),
            (done, _plural(int(run.counts.get("moved", 0)), what)),
            ("chunks", run.counts.get("chunks", 0)),
            (
                "id range",
                f"{run.counts['min_id']}..{run.counts['max_id']}"
                if run.counts.get("min_id") is not None
                else None,
            ),
        ],
    )
    groups = [Group.model_validate(g) for g in run.counts.get("groups", [])]
    _group_table(console, run.kind, groups)


@renders(ArchiveShowResult)
def _show(result: ArchiveShowResult, console: Console) -> None:
    if result.job is not None:
        _show_job(result.job, result.run, console)
    elif result.run is not None:
        _show_run(result.run, console)
