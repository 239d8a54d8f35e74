"""Cron: entries declared in code or at runtime, fired by the leader through unique slots.

Pure parts (``expression``, ``slots``, ``overlap``) decide what is due and what to do about a
previous run; ``store`` writes slots, jobs, coverage and entries; ``scheduler`` is the leader duty.
"""

from powertools_core.cron.entry import Cron, declared
from powertools_core.cron.expression import Schedule, parse_schedule
from powertools_core.cron.overlap import Decision, Overlap
from powertools_core.cron.slots import CatchUp

__all__ = ["CatchUp", "Cron", "Decision", "Overlap", "Schedule", "declared", "parse_schedule"]
