"""powertools: operations toolkit and worker runtime for PostgreSQL job queues on Oban's schema.

The public API is importable from here (a facade, like Oban's top-level module).
"""

from powertools_core.config import Settings, load_settings
from powertools_core.cron.entry import Cron
from powertools_core.errors import PowertoolsError
from powertools_core.jobs.insert import insert_all, insert_all_async
from powertools_core.jobs.model import Job
from powertools_core.jobs.spec import BulkInsertResult, InsertResult, JobSpec, Unique
from powertools_core.limits.declarations import ConcurrencyLimit, RateLimit
from powertools_core.version import __version__
from powertools_core.workers import Cancel, Discard, Redacted, Snooze, Worker, worker
from powertools_core.workflows import Batch, Workflow, added_by
from powertools_core.workflows.durable import Await, Done, Next, Stop, correlate
from powertools_core.workflows.signals import signal, signal_async

__all__ = [
    "Await",
    "Batch",
    "BulkInsertResult",
    "Cancel",
    "ConcurrencyLimit",
    "Cron",
    "Discard",
    "Done",
    "InsertResult",
    "Job",
    "JobSpec",
    "Next",
    "PowertoolsError",
    "RateLimit",
    "Redacted",
    "Settings",
    "Snooze",
    "Stop",
    "Unique",
    "Worker",
    "Workflow",
    "__version__",
    "added_by",
    "correlate",
    "insert_all",
    "insert_all_async",
    "load_settings",
    "signal",
    "signal_async",
    "worker",
]
