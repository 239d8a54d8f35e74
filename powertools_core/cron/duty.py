"""How the runtime's leader finds the cron scheduler (``runtime.leader.DUTY_MODULES``).

Test hook: ``POWERTOOLS_CRON_CLOCK="EPOCH:SPEED[:OFFSET]"`` makes the scheduler see time run
``SPEED`` times faster from the Unix time ``EPOCH``, shifted by ``OFFSET`` seconds, so process
tests can watch minute-granular entries fire within seconds and simulate downtime as a clock
jump. Unset (always, in production) the scheduler uses the leader's clock unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from powertools_core.cron.scheduler import CronScheduler
from powertools_core.errors import InvalidInput
from powertools_core.runtime.duties import LeaderDuty
from powertools_core.runtime.leader import DutyContext

CLOCK_ENV: Final = "POWERTOOLS_CRON_CLOCK"


def parse_clock(text: str) -> Callable[[datetime], datetime]:
    """The clock ``POWERTOOLS_CRON_CLOCK`` describes (see the module docstring)."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3) or parts[1] <= 0:
        raise InvalidInput(f"invalid {CLOCK_ENV} {text!r}", hint="write EPOCH:SPEED[:OFFSET]")
    epoch = datetime.fromtimestamp(parts[0], UTC)
    speed = parts[1]
    offset = timedelta(seconds=parts[2] if len(parts) == 3 else 0.0)

    def clock(now: datetime) -> datetime:
        return epoch + (now - epoch) * speed + offset

    return clock


def leader_duties(ctx: DutyContext) -> list[LeaderDuty]:
    """One scheduler per leader; it syncs the app's ``Cron(...)`` entries on its first pass."""
    text = os.environ.get(CLOCK_ENV)
    return [CronScheduler(ctx.node, clock=parse_clock(text) if text else None)]
