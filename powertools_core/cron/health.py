"""The doctor check ``cron_health``: scheduler absent, missed or failed fires, unknown workers.

Read-only and bounded (indexed lookups on the cron tables). Findings are warnings: they describe
live traffic, not schema drift, so ``--strict`` does not promote them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from powertools_core.doctor.context import CheckContext, Problem
from powertools_core.durations import format_duration

SCHEDULER_STALE_AFTER: Final = timedelta(minutes=5)
LOOKBACK: Final = timedelta(days=1)
MAX_LISTED: Final = 10

ACTIVE_ENTRIES: Final = """
SELECT name, worker FROM {prefix}.powertools_cron_entries WHERE paused_at IS NULL ORDER BY name
"""
LAST_COVERAGE: Final = "SELECT max(seen_at) FROM {prefix}.powertools_cron_coverage"
BAD_SLOTS: Final = """
SELECT s.entry_name, s.decision, count(*), max(s.slot_at)
FROM {prefix}.powertools_cron_slots AS s
WHERE s.decision IN ('missed', 'failed') AND s.slot_at > %(since)s
GROUP BY s.entry_name, s.decision
ORDER BY s.entry_name, s.decision
"""


def cron_health(ctx: CheckContext) -> list[Problem]:
    """Cron entries that cannot fire or did not: no scheduler alive, missed or failed fires in
    the last day, and (with --app) entries naming a worker the app does not register."""
    for table in ("powertools_cron_entries", "powertools_cron_slots", "powertools_cron_coverage"):
        ctx.require_table(table)
    problems: list[Problem] = []
    entries = list(ctx.rows(ACTIVE_ENTRIES))
    if entries:
        seen = ctx.rows(LAST_COVERAGE)[0][0]
        if seen is None or ctx.now - seen > SCHEDULER_STALE_AFTER:
            when = (
                "has never run"
                if seen is None
                else (f"last ran {format_duration(ctx.now - seen)} ago")
            )
            problems.append(
                Problem(
                    "warning",
                    f"{len(entries)} active cron entr{'y' if len(entries) == 1 else 'ies'} in "
                    f"{ctx.prefix} but the cron scheduler {when}: no worker leader is up, so "
                    "nothing fires",
                    ctx.worker_command() + "   # its elected leader runs the scheduler",
                    ctx.name("powertools_cron_coverage"),
                )
            )
    for name, decision, count, newest in ctx.rows(BAD_SLOTS, {"since": ctx.now - LOOKBACK})[
        :MAX_LISTED
    ]:
        what = "missed" if decision == "missed" else "failed to build the job for"
        problems.append(
            Problem(
                "warning",
                f"cron entry {name} {what} {count} fire(s) in the last "
                f"{format_duration(LOOKBACK)} (newest {newest.isoformat()}Z)",
                ctx.cli(f"cron show {name}"),
                f"cron:{name}",
            )
        )
    if ctx.app:
        problems.extend(_unknown_workers(ctx, [(r[0], r[1]) for r in entries]))
    return problems


def _unknown_workers(ctx: CheckContext, entries: list[tuple[str, str]]) -> list[Problem]:
    from powertools_core.errors import PowertoolsError
    from powertools_core.workers import load_app, resolve

    try:
        load_app(ctx.app)
    except PowertoolsError:
        return []  # the app itself does not import; the worker commands report that
    problems = []
    for name, worker in entries:
        try:
            resolve(worker)
        except PowertoolsError:
            problems.append(
                Problem(
                    "warning",
                    f"cron entry {name} names worker {worker}, which the app "
                    f"({', '.join(ctx.app)}) does not register: its jobs would never run",
                    ctx.cli(f"cron show {name}")
                    + "   # fix the Cron(...) line, or `cron set --worker` for a runtime entry",
                    f"cron:{name}",
                )
            )
    return problems
