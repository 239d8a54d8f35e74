"""Cron expressions (pure): parse with cronsim, nicknames, time zones, fires in a range, words.

Times in and out are naive UTC (the way ``oban_jobs`` stores them); the zone only decides which
wall-clock minutes match. cronsim iterates in the entry's zone, so a daily ``30 1 * * *`` fires
once on the fall-back day (the first 01:30) and, on the spring-forward day, a minute that does
not exist on the wall clock fires at the first instant after the gap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from powertools_core.errors import InvalidInput

NICKNAMES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
EXPRESSION_HINT: Final = (
    'five fields "minute hour day-of-month month day-of-week" (e.g. "*/5 * * * *", '
    '"0 9 * * MON-FRI") or one of ' + ", ".join(NICKNAMES)
)
DEFAULT_TIMEZONE: Final = "Etc/UTC"


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` or a one-line error."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("timezone must be an IANA name", hint="e.g. Europe/Paris or Etc/UTC")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown timezone {name!r}", hint="use an IANA name such as Europe/Paris or Etc/UTC"
        ) from None


def canonical_expression(expression: str) -> str:
    """The five-field form of ``expression`` (nicknames expanded, spaces collapsed)."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("empty cron expression", hint=EXPRESSION_HINT)
    text = " ".join(expression.split())
    lowered = text.lower()
    if lowered == "@reboot":
        raise InvalidInput(
            "@reboot is not supported: cron entries fire on wall-clock times, not on start-up",
            hint="enqueue the job from your start-up code instead",
        )
    if lowered.startswith("@"):
        if lowered not in NICKNAMES:
            raise InvalidInput(f"unknown cron nickname {text!r}", hint=EXPRESSION_HINT)
        return NICKNAMES[lowered]
    if len(text.split(" ")) != 5:
        raise InvalidInput(
            f"invalid cron expression {text!r}: expected 5 fields, got {len(text.split(' '))}",
            hint=EXPRESSION_HINT,
        )
    return text


def naive_utc(moment: datetime) -> datetime:
    """Aware -> naive UTC; naive is taken as UTC already."""
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated expression in a zone. Build with :func:`parse_schedule`."""

    expression: str
    """As written (a nickname stays a nickname)."""
    canonical: str
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def fires_after(self, moment: datetime) -> Iterator[datetime]:
        """Every fire strictly after ``moment``, in order, as naive UTC (endless)."""
        start = naive_utc(moment).replace(tzinfo=UTC).astimezone(self.tz)
        for fire in CronSim(self.canonical, start):
            yield fire.astimezone(UTC).replace(tzinfo=None)

    def next_fire(self, moment: datetime) -> datetime:
        return next(self.fires_after(moment))

    def next_fires(self, moment: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        for fire in self.fires_after(moment):
            if len(out) >= count:
                break
            out.append(fire)
        return out

    def fires_between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Fires in ``(after, until]`` (naive UTC), oldest first."""
        end = naive_utc(until)
        for fire in self.fires_after(after):
            if fire > end:
                return
            yield fire

    def explain(self) -> str:
        """The expression in words, with the zone when it is not UTC."""
        words = CronSim(self.canonical, datetime(2000, 1, 1, tzinfo=self.tz)).explain()
        if self.timezone not in ("UTC", "Etc/UTC"):
            words += f" ({self.timezone})"
        return words


def parse_schedule(expression: str, timezone: str = DEFAULT_TIMEZONE) -> Schedule:
    """Validate ``expression`` in ``timezone`` or raise a one-line ``InvalidInput``."""
    canonical = canonical_expression(expression)
    tz = zone(timezone)
    try:
        CronSim(canonical, datetime(2000, 1, 1, tzinfo=tz))
    except CronSimError as exc:
        raise InvalidInput(
            f"invalid cron expression {expression.strip()!r}: {exc}", hint=EXPRESSION_HINT
        ) from None
    written = " ".join(expression.split())
    if written.startswith("@"):
        written = written.lower()
    return Schedule(expression=written, canonical=canonical, timezone=tz.key)


MINUTE: Final = timedelta(minutes=1)
