"""Names of powertools' own objects (the tables themselves are created by the migrations)."""

from __future__ import annotations

from typing import Final

VERSION_TABLE: Final = "powertools_alembic_version"

# Every table the migrations create, in creation order; doctor checks they exist.
TABLES: Final = (
    "powertools_audit_events",
    "powertools_idempotency_receipts",
    "powertools_producers",
    "powertools_rate_limits",
    "powertools_rate_buckets",
    "powertools_limit_holds",
    "powertools_lifeline_incidents",
    "powertools_repair_previews",
    "powertools_archive_runs",
    "powertools_job_archive",
    "powertools_audit_archive",
    "powertools_cron_entries",
    "powertools_cron_slots",
    "powertools_cron_coverage",
    "powertools_workflows",
    "powertools_workflow_steps",
    "powertools_workflow_edges",
    "powertools_signals",
    "powertools_limit_leases",
)

# Indexes powertools owns on Oban's table (always named powertools_*).
OBAN_JOBS_INDEXES: Final = {
    "powertools_oban_jobs_fetch_index": (
        "(queue, priority, scheduled_at, id) WHERE state = 'available'"
    ),
    "powertools_oban_jobs_staging_index": (
        "(scheduled_at, id) WHERE state IN ('scheduled', 'retryable')"
    ),
    "powertools_oban_jobs_completed_at_index": "(completed_at) WHERE state = 'completed'",
    "powertools_oban_jobs_await_deadline_index": (
        "(scheduled_at, id) "
        "WHERE state = 'suspended' AND (meta -> 'durable' -> 'await') ? 'timeout'"
    ),
}

# Unique indexes powertools owns on Oban's table (kept apart: their remediation is CREATE UNIQUE
# INDEX, and a duplicate already in the table must be resolved before one can be built).
OBAN_JOBS_UNIQUE_INDEXES: Final = {
    "powertools_oban_jobs_correlation_index": (
        "((meta ->> 'correlation_key')) WHERE meta ? 'correlation_key' "
        "AND state IN ('available', 'scheduled', 'executing', 'retryable', 'suspended')"
    ),
}
