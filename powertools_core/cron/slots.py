"""Which fires are due now, and which of them to make or record as missed (pure).

The scheduler remembers per entry the moment up to which it has planned (``planned_until``).
Each pass plans the fires in ``(planned_until, now]``:

- a fire at most ``grace`` old is *on time* and is always made;
- an older one was missed while no scheduler ran (deploy, outage). The catch-up policy decides:
  ``none`` makes none of them; ``latest`` makes the most recent one, unless an on-time fire is
  being made anyway (one run is the point); ``all`` makes the ``max_catch_up`` most recent.
  Every late fire not made is recorded ``missed`` — never dropped silently.

A fire older than ``lookback`` before ``now`` is not considered at all (it is reported as
``beyond_lookback``) so a scheduler returning after months does not plan years of minutes.

Coverage (the minutes a scheduler was alive) tells a fire nobody recorded apart: with coverage
it was missed; without, there is no evidence either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from powertools_core.cron.expression import Schedule
from powertools_core.errors import InvalidInput

ON_TIME_GRACE: Final = timedelta(minutes=1)
MAX_LOOKBACK: Final = timedelta(days=31)
MAX_CATCH_UP: Final = 1000


class CatchUp(StrEnum):
    latest = "latest"
    all = "all"
    none = "none"


def parse_catch_up(value: str | CatchUp) -> CatchUp:
    try:
        return CatchUp(value)
    except ValueError:
        raise InvalidInput(
            f"invalid catch-up policy {value!r}",
            hint=f"choose from {', '.join(c.value for c in CatchUp)}",
        ) from None


def check_max_catch_up(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CATCH_UP:
        raise InvalidInput(f"max_catch_up must be an integer from 0 to {MAX_CATCH_UP}")
    return value


@dataclass(frozen=True, slots=True)
class SlotPlan:
    fire: tuple[datetime, ...] = ()
    """Fires to claim now, oldest first."""
    missed: tuple[datetime, ...] = ()
    """Late fires the policy does not make, oldest first."""
    beyond_lookback: bool = False
    """Part of the gap was older than the lookback and was not planned."""


def plan_slots(
    schedule: Schedule,
    *,
    planned_until: datetime | None,
    now: datetime,
    catch_up: CatchUp,
    max_catch_up: int,
    grace: timedelta = ON_TIME_GRACE,
    lookback: timedelta = MAX_LOOKBACK,
) -> SlotPlan:
    """What to do with the fires in ``(planned_until, now]`` (naive UTC).

    ``planned_until`` ``None`` (an entry never planned) starts the entry at ``now``: nothing is
    due and nothing is missed.
    """
    if planned_until is None or planned_until >= now:
        return SlotPlan()
    start = max(planned_until, now - lookback)
    due = list(schedule.fires_between(start, now))
    on_time = [f for f in due if now - f <= grace]
    late = [f for f in due if now - f > grace]
    made: list[datetime]
    if catch_up is CatchUp.none or not late:
        made = []
    elif catch_up is CatchUp.latest:
        made = [] if on_time else late[-1:]
    else:
        made = late[max(0, len(late) - max_catch_up) :] if max_catch_up else []
    missed = late[: len(late) - len(made)]
    return SlotPlan(
        fire=tuple(made + on_time), missed=tuple(missed), beyond_lookback=start > planned_until
    )


class Evidence(StrEnum):
    recorded = "recorded"
    """A slot row exists (its decision says what happened)."""
    missed = "missed"
    """No slot, but a scheduler was alive that minute: the fire was lost."""
    no_evidence = "no_evidence"
    """No slot and no scheduler alive that minute: nothing to say either way."""


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def classify_fires(
    fires: Iterable[datetime],
    recorded: Mapping[datetime, str],
    covered_minutes: Iterable[datetime],
) -> list[tuple[datetime, Evidence, str | None]]:
    """Each expected fire with its evidence and, when recorded, the slot's decision."""
    covered = {minute_of(m) for m in covered_minutes}
    out: list[tuple[datetime, Evidence, str | None]] = []
    for fire in fires:
        if fire in recorded:
            out.append((fire, Evidence.recorded, recorded[fire]))
        elif minute_of(fire) in covered:
            out.append((fire, Evidence.missed, None))
        else:
            out.append((fire, Evidence.no_evidence, None))
    return out
