"""Cross-node concurrency and rate limits: declarations, the pure reservation rule, admission
in the fetch path, and the read side (list, explain, simulate) plus audited cooldowns."""

from powertools_core.limits.declarations import ConcurrencyLimit, Gate, Limit, RateLimit
from powertools_core.limits.glossary import GLOSSARY
from powertools_core.limits.reservation import (
    Blocked,
    GateState,
    Reserved,
    compute_reservation,
    decide_batch,
)

__all__ = [
    "GLOSSARY",
    "Blocked",
    "ConcurrencyLimit",
    "Gate",
    "GateState",
    "Limit",
    "RateLimit",
    "Reserved",
    "compute_reservation",
    "decide_batch",
]
