"""``powertools doctor``: read-only health checks that CI can gate on and a person can act on.

``checks`` holds one function per check (stable ids in ``CHECK_IDS``), ``runner`` the read-only
session, ``report`` the JSON contract (``schema.json``), ``thresholds`` the tunable limits.
"""

from powertools_core.doctor.checks import CHECK_IDS, CHECKS, STRICT_PROMOTED
from powertools_core.doctor.report import DoctorResult, Finding, json_schema
from powertools_core.doctor.runner import doctor
from powertools_core.doctor.thresholds import THRESHOLD_HELP, Thresholds

__all__ = [
    "CHECKS",
    "CHECK_IDS",
    "STRICT_PROMOTED",
    "THRESHOLD_HELP",
    "DoctorResult",
    "Finding",
    "Thresholds",
    "doctor",
    "json_schema",
]
