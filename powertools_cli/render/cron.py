"""Terminal rendering of ``powertools cron …``."""

from __future__ import annotations

import json
from datetime import datetime

from rich.console import Console

from powertools_cli.render.ansi import key_values, renders, table
from powertools_core.cron.results import CronActionResult, CronListResult, CronShowResult


def _ts(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds") + "Z"


def _minute(moment: datetime | None) -> str:
    """A fire time to the minute (cron fires on minutes), UTC."""
    if moment is None:
        return "-"
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="minutes") + "Z"


def _last(decision: str | None, job_id: int | None) -> str:
    if decision is None:
        return "-"
    return f"{decision} (job {job_id})" if job_id is not None else decision


@renders(CronListResult)
def _list(result: CronListResult, console: Console) -> None:
    if not result.entries:
        console.print("no cron entries", markup=False)
    else:
        rows = [
            (
                e.name,
                e.expression if e.timezone == "Etc/UTC" else f"{e.expression} {e.timezone}",
                e.worker.rsplit(".", 1)[-1],
                "paused" if e.paused else _minute(e.next_fire),
                _last(e.last_decision, e.last_job_id),
                f"{e.overlap}/{e.catch_up}",
                e.source,
            )
            for e in result.entries
        ]
        table(
            console,
            ["name", "schedule", "worker", "next fire", "last", "policy", "source"],
            rows,
            flex=("last", "worker", "schedule", "name"),
        )
    seen = _ts(result.scheduler_last_seen) if result.scheduler_last_seen else "never"
    console.print(f"scheduler last seen: {seen}", markup=False, style="dim")


@renders(CronShowResult)
def _show(result: CronShowResult, console: Console) -> None:
    e = result.entry
    key_values(
        console,
        [
            ("name", e.name),
            ("schedule", f"{e.expression}: {e.explain}"),
            ("worker", e.worker),
            ("queue", e.queue or "(the worker's)"),
            ("args", json.dumps(e.args, ensure_ascii=False)),
            ("overlap", e.overlap),
            ("catch-up", f"{e.catch_up} (max {e.max_catch_up})"),
            ("source", e.source),
            ("paused", f"since {_ts(e.paused_at)} by {e.paused_by}" if e.paused else "no"),
            ("next fires", ", ".join(_ts(f) for f in result.next_fires) or "-"),
        ],
    )
    if result.slots:
        table(
            console,
            ["slot", "decision", "job", "job state", "claimed", "by"],
            [
                (
                    _ts(s.slot_at) + (" (manual)" if s.manual else ""),
                    s.decision,
                    s.job_id,
                    s.job_state,
                    _ts(s.claimed_at),
                    s.node,
                )
                for s in result.slots
            ],
            title="slots (newest first)",
        )
    else:
        console.print("no slots yet", markup=False)
    if result.missed:
        table(
            console,
            ["fire", "evidence"],
            [(_ts(m.at), m.evidence) for m in result.missed],
            title=f"fires that did not run since {_ts(result.window_start)}",
        )
    else:
        console.print(f"no missed fires since {_ts(result.window_start)}", markup=False)


@renders(CronActionResult)
def _action(result: CronActionResult, console: Console) -> None:
    style = "green" if result.changed else ("yellow" if result.dry_run else "")
    console.print(result.message, markup=False, style=style)
    if result.before is not None and result.after is not None and result.before != result.after:
        rows = [
            (key, f"{result.before.get(key)} -> {result.after.get(key)}")
            for key in result.after
            if result.before.get(key) != result.after.get(key)
        ]
        key_values(console, rows)
