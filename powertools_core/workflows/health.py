"""The doctor check ``stuck_workflows``: steps the leader's duties should have moved on.

A suspended step whose dependencies all ended, or a parked await whose timeout passed, moves on
within seconds while a worker leader runs the reconciler and the expiry duty. One still waiting
after ``stuck_workflow_after`` means no leader is running them (or they keep failing): the
workflow cannot finish by itself. Read-only, bounded (``LIMIT``) lookups through
``workflows.diagnose``; findings are warnings about live traffic, never promoted by --strict.
"""

from __future__ import annotations

from typing import Final

from powertools_core.doctor.context import CheckContext, Problem
from powertools_core.doctor.thresholds import exact_duration, format_duration
from powertools_core.workflows.diagnose import STUCK_EXPIRED, STUCK_READY

TABLES: Final = ("powertools_workflows", "powertools_workflow_steps", "powertools_workflow_edges")
MAX_LISTED: Final = 10


def _ids(ids: list[int], more: bool) -> str:
    shown = ", ".join(str(i) for i in ids)
    return f"{shown} and more" if more else shown


def stuck_workflows(ctx: CheckContext) -> list[Problem]:
    """Steps due for promotion, and expired awaits, left waiting past the threshold."""
    ctx.require_table("oban_jobs")
    for table in TABLES:
        ctx.require_table(table)
    after = ctx.thresholds.stuck_workflow_after
    params = {"older_than": after.total_seconds(), "limit": MAX_LISTED + 1}
    problems: list[Problem] = []
    ready = list(ctx.rows(STUCK_READY, params))
    if ready:
        more = len(ready) > MAX_LISTED
        ready = ready[:MAX_LISTED]
        oldest = ctx.now - ready[0][3]
        workflows = sorted({r[1] for r in ready})
        problems.append(
            Problem(
                "warning",
                f"{len(ready)}{'+' if more else ''} workflow step(s) still suspended although "
                f"their dependencies ended up to {format_duration(oldest)} ago (threshold "
                f"{exact_duration(after)}): jobs {_ids([r[0] for r in ready], more)} in "
                f"workflow(s) {', '.join(str(w) for w in workflows)}; no worker leader is "
                "running the reconciler",
                ctx.worker_command() + "   # its elected leader's reconciler promotes them",
                f"workflow:{workflows[0]}",
            )
        )
    expired = list(ctx.rows(STUCK_EXPIRED, params))
    if expired:
        more = len(expired) > MAX_LISTED
        expired = expired[:MAX_LISTED]
        oldest = ctx.now - expired[0][3]
        problems.append(
            Problem(
                "warning",
                f"{len(expired)}{'+' if more else ''} durable job(s) parked past their await "
                f"timeout (up to {format_duration(oldest)} ago, threshold "
                f"{exact_duration(after)}): jobs {_ids([r[0] for r in expired], more)}; no "
                "worker leader is waking expired waits",
                ctx.worker_command() + "   # its elected leader wakes them (expired_wait)",
                f"job:{expired[0][0]}",
            )
        )
    return problems
