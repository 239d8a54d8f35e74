"""The cron scheduler: a leader duty that claims every due fire exactly once.

Each pass (``run_once``, every ``interval`` seconds on the elected leader):

1. on its first pass, sync the app's ``Cron(...)`` declarations (code entries);
2. record coverage for the current minute (evidence that a scheduler was alive);
3. promote waiting ``queue_one`` follow-ups whose entry has no active job left;
4. per entry not paused, plan the fires since the entry's ``planned_until`` (``slots``), claim
   each fire to make (its own transaction: slot + job) and record the rest ``missed``;
5. move every entry's ``planned_until`` to ``now`` (paused entries too, so a resume does not
   catch up the paused period).

A crash between steps repeats work safely: claims and missed rows are unique per fire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from powertools_core.cron import store
from powertools_core.cron.entry import EntryConfig, declared
from powertools_core.cron.expression import naive_utc
from powertools_core.cron.slots import plan_slots

log = logging.getLogger("powertools.cron")


@dataclass
class PassReport:
    """What one pass did (tests and telemetry read it)."""

    claimed: list[store.ClaimOutcome] = field(default_factory=list)
    duplicates: int = 0
    missed: int = 0
    promoted: list[int] = field(default_factory=list)
    beyond_lookback: list[str] = field(default_factory=list)

    @property
    def acted(self) -> int:
        return len(self.claimed) + self.missed + len(self.promoted)


class CronScheduler:
    """``LeaderDuty`` (``name``, ``interval``, ``run_once``) firing cron entries."""

    name = "cron"

    def __init__(
        self,
        node: str | None = None,
        *,
        interval: float = 1.0,
        entries: Callable[[], Sequence[EntryConfig]] | None = None,
        clock: Callable[[datetime], datetime] | None = None,
    ) -> None:
        self.node = node
        self.interval = interval
        self.clock = clock
        """Maps the leader's ``now`` to the scheduler's (a test hook; see ``cron.duty``)."""
        self._entries = entries or (lambda: list(declared().values()))
        self._synced = False
        self._missing_tables = False
        self.last: PassReport | None = None

    async def run_once(self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime) -> int:
        """One pass; a schema without the cron tables is reported once, then passes are no-ops
        until the tables appear (so the leader's log is not flooded every second)."""
        try:
            report = await self.run_pass(conn, prefix, now)
        except psycopg.errors.UndefinedTable as exc:
            if not self._missing_tables:
                log.warning(
                    "cron: the cron tables are missing in %s (%s); run `powertools install`. "
                    "Cron entries do not fire until then.",
                    prefix,
                    str(exc).splitlines()[0],
                )
            self._missing_tables = True
            return 0
        self._missing_tables = False
        return report.acted

    async def run_pass(
        self, conn: psycopg.AsyncConnection[Any], prefix: str, now: datetime
    ) -> PassReport:
        at = naive_utc(self.clock(now) if self.clock is not None else now)
        report = PassReport()
        if not self._synced:
            await store.sync_code_entries(conn, prefix, list(self._entries()), at)
            self._synced = True
        await store.record_coverage(conn, prefix, at, self.node)
        report.promoted = await store.promote_follow_ups(conn, prefix)
        entries = await store.list_entries(conn, prefix, skip_invalid=True)
        for entry in entries:
            if entry.paused:
                continue
            plan = plan_slots(
                entry.schedule,
                planned_until=entry.planned_until,
                now=at,
                catch_up=entry.catch_up,
                max_catch_up=entry.max_catch_up,
            )
            if plan.beyond_lookback:
                report.beyond_lookback.append(entry.name)
                log.warning("cron: %s was not planned for over the lookback window", entry.name)
            report.missed += await store.record_missed(
                conn,
                prefix,
                entry.name,
                plan.missed,
                now=at,
                node=self.node,
                catch_up=entry.catch_up,
            )
            for slot_at in plan.fire:
                outcome = await store.claim_slot(
                    conn, prefix, entry.name, slot_at, now=at, node=self.node
                )
                if outcome.decision is None:
                    report.duplicates += 1
                else:
                    report.claimed.append(outcome)
        await store.advance_planned(conn, prefix, [e.name for e in entries], at)
        self.last = report
        return report
