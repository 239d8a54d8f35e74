"""How the runtime's leader finds the cron scheduler (``runtime.leader.DUTY_MODULES``)."""

from __future__ import annotations

from powertools_core.cron.scheduler import CronScheduler
from powertools_core.runtime.duties import LeaderDuty
from powertools_core.runtime.leader import DutyContext


def leader_duties(ctx: DutyContext) -> list[LeaderDuty]:
    """One scheduler per leader; it syncs the app's ``Cron(...)`` entries on its first pass."""
    return [CronScheduler(ctx.node)]
