"""Archive-before-delete: move old terminal jobs (and audit events) aside, restore, prune.

Nothing leaves ``oban_jobs`` without landing in ``powertools_job_archive`` in the same
transaction; ``archive prune`` is the only permanent delete, and it deletes from the archive.
"""

from powertools_core.archive.duty import ArchiveDuty
from powertools_core.archive.listing import list_archived, list_runs, show
from powertools_core.archive.policy import ArchiveConfig, parse_archive_config, resolve_retention
from powertools_core.archive.prune import PruneRequest, run_prune
from powertools_core.archive.restore import ArchiveFilter, run_restore
from powertools_core.archive.run import ArchiveRequest, AuditArchiveRequest, run_archive

__all__ = [
    "ArchiveConfig",
    "ArchiveDuty",
    "ArchiveFilter",
    "ArchiveRequest",
    "AuditArchiveRequest",
    "PruneRequest",
    "list_archived",
    "list_runs",
    "parse_archive_config",
    "resolve_retention",
    "run_archive",
    "run_prune",
    "run_restore",
    "show",
]
