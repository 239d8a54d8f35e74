"""Foundation: audit, idempotency, producers, limits, lifeline, repair previews, archive.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from powertools_core.migrations.helpers import jsonb, q, schema, ts

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    s = schema()

    # Append-only record of every operator and system action.
    op.create_table(
        "powertools_audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        ts("at", nullable=False, default_now=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False, server_default="ok"),
        sa.Column("run_id", UUID(as_uuid=True), nullable=True),
        jsonb("before", nullable=True, default="null"),
        jsonb("after", nullable=True, default="null"),
        jsonb("meta"),
        schema=s,
    )
    op.create_index("powertools_audit_events_at_index", "powertools_audit_events", ["at"], schema=s)
    op.create_index(
        "powertools_audit_events_actor_index", "powertools_audit_events", ["actor", "at"], schema=s
    )
    op.create_index(
        "powertools_audit_events_target_index",
        "powertools_audit_events",
        ["target_type", "target_id"],
        schema=s,
    )
    op.create_index(
        "powertools_audit_events_run_index", "powertools_audit_events", ["run_id"], schema=s
    )

    # One row per (worker, unique key): the arbiter that makes unique enqueue race-free.
    op.create_table(
        "powertools_idempotency_receipts",
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        ts("inserted_at", nullable=False, default_now=True),
        ts("expires_at"),
        sa.PrimaryKeyConstraint("worker", "key", name="powertools_idempotency_receipts_pkey"),
        schema=s,
    )
    op.create_index(
        "powertools_idempotency_receipts_job_index",
        "powertools_idempotency_receipts",
        ["job_id"],
        schema=s,
    )

    # Live producers (one per queue per worker process) and their heartbeat.
    op.create_table(
        "powertools_producers",
        sa.Column("uuid", UUID(as_uuid=True), primary_key=True),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        ts("started_at", nullable=False, default_now=True),
        ts("beat_at", nullable=False, default_now=True),
        jsonb("meta"),
        schema=s,
    )
    op.create_index(
        "powertools_producers_queue_index", "powertools_producers", ["queue", "beat_at"], schema=s
    )

    # Configured limits (declared in code or set at runtime) and their live buckets.
    op.create_table(
        "powertools_rate_limits",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("scope", sa.Text(), nullable=False, server_default="global"),
        sa.Column("partition_by", sa.Text(), nullable=True),
        sa.Column("bucket_capacity", sa.Integer(), nullable=True),
        sa.Column("bucket_span_ms", sa.BigInteger(), nullable=True),
        sa.Column("global_limit", sa.Integer(), nullable=True),
        sa.Column("partition_limit", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("source", sa.Text(), nullable=False, server_default="code"),
        ts("cooldown_until"),
        sa.Column("cooldown_actor", sa.Text(), nullable=True),
        sa.Column("cooldown_reason", sa.Text(), nullable=True),
        ts("updated_at", nullable=False, default_now=True),
        sa.CheckConstraint(
            "bucket_capacity IS NULL OR bucket_capacity > 0",
            name="powertools_rate_limits_capacity_check",
        ),
        sa.CheckConstraint(
            "bucket_span_ms IS NULL OR bucket_span_ms > 0", name="powertools_rate_limits_span_check"
        ),
        sa.CheckConstraint("weight > 0", name="powertools_rate_limits_weight_check"),
        schema=s,
    )
    op.create_table(
        "powertools_rate_buckets",
        sa.Column("limit_name", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False, server_default=""),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        ts("refilled_at", nullable=False, default_now=True),
        ts("cooldown_until"),
        sa.PrimaryKeyConstraint("limit_name", "partition_key", name="powertools_rate_buckets_pkey"),
        sa.CheckConstraint(
            "tokens >= 0 AND tokens <= capacity", name="powertools_rate_buckets_tokens_check"
        ),
        schema=s,
    )

    # Jobs the lifeline rescued (or discarded) because their producer died.
    op.create_table(
        "powertools_lifeline_incidents",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        ts("at", nullable=False, default_now=True),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("producer_uuid", sa.Text(), nullable=True),
        sa.Column("node", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("detected_by", sa.Text(), nullable=True),
        schema=s,
    )
    op.create_index(
        "powertools_lifeline_incidents_at_index", "powertools_lifeline_incidents", ["at"], schema=s
    )
    op.create_index(
        "powertools_lifeline_incidents_job_index",
        "powertools_lifeline_incidents",
        ["job_id"],
        schema=s,
    )

    # Previews of operator actions: a token binds an execution to what was previewed.
    op.create_table(
        "powertools_repair_previews",
        sa.Column("token", sa.Text(), primary_key=True),
        sa.Column("action", sa.Text(), nullable=False),
        jsonb("filter"),
        sa.Column("plan_hash", sa.Text(), nullable=False),
        jsonb("counts"),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("actor", sa.Text(), nullable=True),
        ts("created_at", nullable=False, default_now=True),
        ts("expires_at", nullable=False),
        ts("executed_at"),
        schema=s,
    )

    # Archive runs (archive, restore, prune) and the archived jobs themselves.
    op.create_table(
        "powertools_archive_runs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="running"),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        jsonb("filter"),
        jsonb("counts"),
        ts("started_at", nullable=False, default_now=True),
        ts("finished_at"),
        schema=s,
    )
    op.create_table(
        "powertools_job_archive",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        jsonb("args"),
        sa.Column(
            "errors", ARRAY(sa.dialects.postgresql.JSONB()), nullable=False, server_default="{}"
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        ts("inserted_at", nullable=False),
        ts("scheduled_at", nullable=False),
        ts("attempted_at"),
        ts("completed_at"),
        sa.Column("attempted_by", ARRAY(sa.Text()), nullable=True),
        ts("discarded_at"),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("tags", ARRAY(sa.Text()), nullable=True),
        jsonb("meta", nullable=True),
        ts("cancelled_at"),
        ts("archived_at", nullable=False, default_now=True),
        sa.Column("archive_run_id", UUID(as_uuid=True), nullable=True),
        schema=s,
    )
    op.create_index(
        "powertools_job_archive_archived_at_index",
        "powertools_job_archive",
        ["archived_at"],
        schema=s,
    )
    op.create_index(
        "powertools_job_archive_run_index", "powertools_job_archive", ["archive_run_id"], schema=s
    )
    op.create_index(
        "powertools_job_archive_state_queue_index",
        "powertools_job_archive",
        ["state", "queue"],
        schema=s,
    )

    # Audit events moved out of powertools_audit_events by `archive run --audit` (never dropped).
    op.create_table(
        "powertools_audit_archive",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        ts("at", nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("run_id", UUID(as_uuid=True), nullable=True),
        jsonb("before", nullable=True, default="null"),
        jsonb("after", nullable=True, default="null"),
        jsonb("meta", nullable=True),
        ts("archived_at", nullable=False, default_now=True),
        sa.Column("archive_run_id", UUID(as_uuid=True), nullable=True),
        schema=s,
    )
    op.create_index(
        "powertools_audit_archive_archived_at_index",
        "powertools_audit_archive",
        ["archived_at"],
        schema=s,
    )
    op.create_index(
        "powertools_audit_archive_at_index", "powertools_audit_archive", ["at"], schema=s
    )

    # Indexes powertools needs on Oban's table: the hot fetch and the stager.
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_oban_jobs_fetch_index "
            "ON {prefix}.oban_jobs (queue, priority, scheduled_at, id) WHERE state = 'available'"
        )
    )
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_oban_jobs_staging_index "
            "ON {prefix}.oban_jobs (scheduled_at, id) WHERE state IN ('scheduled', 'retryable')"
        )
    )
    # Archive selects completed jobs by age (Oban indexes cancelled_at/discarded_at already).
    op.execute(
        q(
            "CREATE INDEX IF NOT EXISTS powertools_oban_jobs_completed_at_index "
            "ON {prefix}.oban_jobs (completed_at) WHERE state = 'completed'"
        )
    )


def downgrade() -> None:
    s = schema()
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_completed_at_index"))
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_staging_index"))
    op.execute(q("DROP INDEX IF EXISTS {prefix}.powertools_oban_jobs_fetch_index"))
    for table in (
        "powertools_audit_archive",
        "powertools_job_archive",
        "powertools_archive_runs",
        "powertools_repair_previews",
        "powertools_lifeline_incidents",
        "powertools_rate_buckets",
        "powertools_rate_limits",
        "powertools_producers",
        "powertools_idempotency_receipts",
        "powertools_audit_events",
    ):
        op.drop_table(table, schema=s)
